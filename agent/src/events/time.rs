//! Event timestamps: kernel boot-clock nanoseconds turned into RFC 3339 UTC
//! with nanoseconds (`2024-11-19T09:55:53.138247256Z`), as Kunai writes them.

use std::fmt;

use serde::{Serialize, Serializer};

/// A UTC instant in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcTime(pub i128);

impl UtcTime {
    /// The current time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        UtcTime(d.as_nanos() as i128)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000_000) as i64;
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        write!(f, "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", s / 3600, (s / 60) % 60, s % 60)
    }
}

thread_local! {
    /// The last second formatted and its `YYYY-MM-DDTHH:MM:SS.`: events come
    /// thousands per second, so the calendar arithmetic is done once per second.
    static LAST_SECOND: std::cell::Cell<(i64, [u8; 20])> = const { std::cell::Cell::new((i64::MIN, [0; 20])) };
}

impl UtcTime {
    /// Writes `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` into `buf` (no formatting machinery:
    /// every event has a timestamp).
    fn rfc3339(&self, buf: &mut [u8; 30]) {
        let secs = self.0.div_euclid(1_000_000_000) as i64;
        let nanos = self.0.rem_euclid(1_000_000_000) as u64;
        let put = |buf: &mut [u8], at: usize, width: usize, mut v: u64| {
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        let (last, mut prefix) = LAST_SECOND.get();
        if last != secs {
            let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
            let s = secs.rem_euclid(86_400) as u64;
            put(&mut prefix, 0, 4, y.clamp(0, 9999) as u64);
            put(&mut prefix, 5, 2, mo as u64);
            put(&mut prefix, 8, 2, d as u64);
            put(&mut prefix, 11, 2, s / 3600);
            put(&mut prefix, 14, 2, (s / 60) % 60);
            put(&mut prefix, 17, 2, s % 60);
            for (at, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.')] {
                prefix[at] = c;
            }
            LAST_SECOND.set((secs, prefix));
        }
        buf[..20].copy_from_slice(&prefix);
        put(buf, 20, 9, nanos);
        buf[29] = b'Z';
    }
}

impl Serialize for UtcTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        self.rfc3339(&mut buf);
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A timestamp that is not `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad UTC time {0:?} (expected YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ)")]
pub struct BadUtcTime(pub String);

impl std::str::FromStr for UtcTime {
    type Err = BadUtcTime;
    /// Reads what `Display` writes (and any fraction of 0 to 9 digits).
    fn from_str(s: &str) -> Result<Self, BadUtcTime> {
        let bad = || BadUtcTime(s.to_string());
        let b = s.as_bytes();
        if b.len() < 20 || !s.is_ascii() || b[b.len() - 1] != b'Z' {
            return Err(bad());
        }
        let num = |from: usize, to: usize| s[from..to].parse::<u32>().map_err(|_| bad());
        let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
        if seps.iter().any(|&(at, c)| b[at] != c) {
            return Err(bad());
        }
        let (y, mo, d, h, mi, sec) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let frac = &s[19..s.len() - 1];
        let nanos = match frac.strip_prefix('.') {
            None if frac.is_empty() => 0,
            Some(digits) if (1..=9).contains(&digits.len()) && digits.bytes().all(|c| c.is_ascii_digit()) => {
                digits.parse::<u64>().map_err(|_| bad())? * 10u64.pow(9 - digits.len() as u32)
            }
            _ => return Err(bad()),
        };
        let secs = days_from_civil(y as i64, mo, d) * 86_400 + (h * 3600 + mi * 60 + sec) as i64;
        Ok(UtcTime(secs as i128 * 1_000_000_000 + nanos as i128))
    }
}

impl<'de> serde::Deserialize<'de> for UtcTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl UtcTime {
    /// Seconds since the Unix epoch, as a float (Cuckoo's report times).
    pub fn epoch_secs(&self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// Converts the kernel's boot-clock timestamps (`bpf_ktime_get_boot_ns`) to UTC.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// UTC nanoseconds at boot-clock zero.
    offset_ns: i128,
}

/// Nanoseconds of clock `id` (CLOCK_BOOTTIME, CLOCK_THREAD_CPUTIME_ID, ...).
pub(crate) fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; clock ids are constants.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl BootClock {
    /// Measures the offset between CLOCK_REALTIME and CLOCK_BOOTTIME now.
    pub fn new() -> Self {
        // Take the smallest of a few samples' gaps, so a preemption between the two reads does not skew it.
        let mut best = (i128::MAX, 0i128);
        for _ in 0..5 {
            let b0 = clock_ns(libc::CLOCK_BOOTTIME);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let b1 = clock_ns(libc::CLOCK_BOOTTIME);
            if b1 - b0 < best.0 {
                best = (b1 - b0, r - (b0 + b1) / 2);
            }
        }
        BootClock { offset_ns: best.1 }
    }

    /// UTC time of a boot-clock timestamp.
    pub fn utc(&self, boot_ns: u64) -> UtcTime {
        UtcTime(self.offset_ns + boot_ns as i128)
    }

    /// Nanoseconds of the boot clock now.
    pub fn boot_now_ns() -> u64 {
        clock_ns(libc::CLOCK_BOOTTIME) as u64
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_nanos() {
        // 2024-11-19T09:55:53.138247256Z
        let t = UtcTime(1_732_010_153_138_247_256);
        assert_eq!(t.to_string(), "2024-11-19T09:55:53.138247256Z");
        assert_eq!(UtcTime(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(UtcTime(951_782_400_000_000_000).to_string(), "2000-02-29T00:00:00.000000000Z");
        for t in [0, 1_732_010_153_138_247_256, 951_782_400_000_000_001, 4_102_444_799_999_999_999] {
            let json = serde_json::to_string(&UtcTime(t)).unwrap();
            assert_eq!(json, format!("\"{}\"", UtcTime(t)), "fast path equals Display");
        }
        // the cached second: same second, next second, back to an earlier one
        for t in [1_732_010_153_000_000_001, 1_732_010_153_999_999_999, 1_732_010_154_000_000_000, 0] {
            let json = serde_json::to_string(&UtcTime(t)).unwrap();
            assert_eq!(json, format!("\"{}\"", UtcTime(t)));
        }
    }

    #[test]
    fn parses_what_it_writes() {
        for t in [0, 1_732_010_153_138_247_256, 951_782_400_000_000_001, 4_102_444_799_999_999_999, -86_400_000_000_000]
        {
            let text = UtcTime(t).to_string();
            assert_eq!(text.parse::<UtcTime>().unwrap(), UtcTime(t), "{text}");
            let back: UtcTime = serde_json::from_str(&format!("\"{text}\"")).unwrap();
            assert_eq!(back, UtcTime(t));
        }
        assert_eq!("2024-11-19T09:55:53Z".parse::<UtcTime>().unwrap(), UtcTime(1_732_010_153_000_000_000));
        assert_eq!("2024-11-19T09:55:53.5Z".parse::<UtcTime>().unwrap(), UtcTime(1_732_010_153_500_000_000));
        for bad in [
            "",
            "2024-11-19 09:55:53Z",
            "2024-13-19T09:55:53Z",
            "2024-11-19T09:55:53.Z",
            "2024-11-19T09:55:53",
            "é024-11-19T09:55:53Z",
        ] {
            assert!(bad.parse::<UtcTime>().is_err(), "{bad}");
        }
    }

    #[test]
    fn boot_clock_is_close_to_now() {
        let c = BootClock::new();
        let t = c.utc(BootClock::boot_now_ns());
        assert!((t.0 - UtcTime::now().0).abs() < 50_000_000, "{t} vs now");
    }
}

//! MISP's data model as the store and the exporter use it: attribute types
//! with their normalisation (`types`), and events as clients send them (`input`).

pub mod input;
pub mod levels;
pub mod types;

/// MISP's `date` (YYYY-MM-DD, UTC) of a Unix time.
pub fn date_of(unix: i64) -> String {
    let (y, m, d) = civil_date(unix);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC calendar date (year, month, day) of a Unix time.
pub fn civil_date(unix: i64) -> (i64, i64, i64) {
    // days since 1970-01-01 to a civil date (Howard Hinnant's algorithm)
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The host of a value: a URL's host (without user, port or path), else the
/// value itself; lowercased, without a final dot.
pub fn host_of(value: &str) -> String {
    let v = value.trim();
    let rest = v.split_once("://").map_or(v, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(h) => h.split(']').next().unwrap_or(h),
        None => host.split(':').next().unwrap_or(host),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts() {
        assert_eq!(super::host_of("https://u@Host.Example.:8443/x?y"), "host.example");
        assert_eq!(super::host_of("http://[2001:db8::1]:80/"), "2001:db8::1");
        assert_eq!(super::host_of(" Plain.Example "), "plain.example");
    }

    #[test]
    fn dates() {
        assert_eq!(super::date_of(0), "1970-01-01");
        assert_eq!(super::date_of(1_727_780_000), "2024-10-01");
        assert_eq!(super::date_of(951_782_400), "2000-02-29");
    }
}

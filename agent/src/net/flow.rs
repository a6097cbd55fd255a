//! Flows: Community ID v1 (corelight/community-id-spec), public address
//! classification and Shannon entropy of a data sample.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use sha1::{Digest, Sha1};

/// Transport protocols of the flows the sensor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// IPPROTO_TCP.
    Tcp,
    /// IPPROTO_UDP.
    Udp,
}

impl Proto {
    /// From an IP protocol number.
    pub fn from_number(n: u16) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// Both addresses in one family: IPv4-mapped IPv6 addresses become IPv4, so
/// that a v4 flow seen on a dual-stack socket hashes like the same flow on a v4 socket.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Community ID v1 of a flow, seed 0: `1:` + base64(SHA-1(seed, the lower
/// endpoint's address, the other's, protocol, 0, the lower's port, the other's)).
pub fn community_id(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: Proto) -> String {
    let (src, dst) = (canonical(src), canonical(dst));
    let (a, b) = (octets(src), octets(dst));
    // the endpoint with the smaller (address, port) goes first, so both directions hash alike
    let ((a, ap), (b, bp)) =
        if (&a, sport) <= (&b, dport) { ((a, sport), (b, dport)) } else { ((b, dport), (a, sport)) };
    let mut h = Sha1::new();
    h.update(0u16.to_be_bytes());
    h.update(&a);
    h.update(&b);
    h.update([proto.number(), 0]);
    h.update(ap.to_be_bytes());
    h.update(bp.to_be_bytes());
    format!("1:{}", base64::engine::general_purpose::STANDARD.encode(h.finalize()))
}

fn public_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, o2, _] = a.octets();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
        || o0 == 0
        || o0 >= 240 // reserved
        || (o0 == 100 && (o1 & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
        || (o0 == 192 && o1 == 0 && o2 == 0) // 192.0.0.0/24, IETF protocol assignments
        || (o0 == 198 && (o1 & 0xfe) == 18)) // 198.18.0.0/15, benchmarking
}

fn public_v6(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = a.segments();
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)) // discard-only
}

/// Whether an address is globally routable (not loopback, private,
/// link-local, shared, multicast, documentation or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => public_v4(a),
        IpAddr::V6(a) => public_v6(a),
    }
}

/// Shannon entropy of `data` in bits per byte (0 for empty data, 8 at most).
/// Computed as log2(n) - sum(c * log2(c)) / n over the byte counts c: one
/// logarithm per distinct byte, none per byte.
pub fn entropy(data: &[u8]) -> f32 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[b as usize] += 1;
    }
    let n = data.len() as f64;
    let sum: f64 = counts.iter().filter(|&&c| c > 1).map(|&c| c as f64 * (c as f64).log2()).sum();
    (n.log2() - sum / n).max(0.0) as f32
}

/// Appends an IPv4 or IPv6 address as text (IPv4 without the formatting machinery: it is in every network event).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(itoa::Buffer::new().format(*o));
            }
        }
        IpAddr::V6(a) => {
            use std::fmt::Write;
            let _ = write!(out, "{a}");
        }
    }
}

/// An address as text.
pub fn ip_string(ip: IpAddr) -> String {
    let mut s = String::with_capacity(15);
    push_ip(&mut s, ip);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn community_id_matches_the_spec_examples() {
        // the spec's baseline: tcp.pcap's first flow, and its reverse direction
        let fwd = community_id(ip("128.232.110.120"), 34855, ip("66.35.250.204"), 80, Proto::Tcp);
        assert_eq!(fwd, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        let rev = community_id(ip("66.35.250.204"), 80, ip("128.232.110.120"), 34855, Proto::Tcp);
        assert_eq!(rev, fwd);
    }

    #[test]
    fn mapped_v6_hashes_like_v4() {
        let v4 = community_id(ip("127.0.0.1"), 1000, ip("127.0.66.80"), 80, Proto::Tcp);
        let v6 = community_id(ip("::ffff:127.0.0.1"), 1000, ip("::ffff:127.0.66.80"), 80, Proto::Tcp);
        assert_eq!(v4, v6);
        assert_ne!(v4, community_id(ip("127.0.0.1"), 1000, ip("127.0.66.80"), 80, Proto::Udp));
    }

    #[test]
    fn public_addresses() {
        for private in [
            "127.0.53.53",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in ["8.8.8.8", "185.199.108.153", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn ip_text() {
        for a in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.20.3.100", "::1", "2001:db8::2", "::ffff:1.2.3.4"] {
            assert_eq!(ip_string(ip(a)), ip(a).to_string());
        }
    }

    #[test]
    fn entropy_bounds() {
        assert_eq!(entropy(b""), 0.0);
        assert_eq!(entropy(b"aaaa"), 0.0);
        assert!((entropy(b"abab") - 1.0).abs() < 1e-6);
        let all: Vec<u8> = (0..=255).collect();
        assert!((entropy(&all) - 8.0).abs() < 1e-4);
    }

    proptest! {
        #[test]
        fn community_id_is_symmetric(a: [u8; 4], b: [u8; 4], pa: u16, pb: u16) {
            let (a, b) = (IpAddr::from(a), IpAddr::from(b));
            prop_assert_eq!(community_id(a, pa, b, pb, Proto::Udp), community_id(b, pb, a, pa, Proto::Udp));
        }

        #[test]
        fn entropy_is_within_0_and_8_and_shannons(data: Vec<u8>) {
            let e = entropy(&data);
            prop_assert!((0.0..=8.0001).contains(&e));
            // the textbook sum over probabilities
            let mut counts = [0f64; 256];
            data.iter().for_each(|&b| counts[b as usize] += 1.0);
            let n = data.len() as f64;
            let h: f64 = -counts.iter().filter(|&&c| c > 0.0).map(|c| (c / n) * (c / n).log2()).sum::<f64>();
            prop_assert!((e as f64 - h).abs() < 1e-4, "{} vs {}", e, h);
        }

        #[test]
        fn ipv4_text_matches_std(a: [u8; 4]) {
            prop_assert_eq!(ip_string(IpAddr::from(a)), IpAddr::from(a).to_string());
        }
    }
}

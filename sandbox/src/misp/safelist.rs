//! A small Cuckoo-style safelist: hosts every analysis contacts whatever the
//! sample (OS connectivity checks, certificate revocation, time, package
//! mirrors) and addresses that never name a remote host. Values on it are
//! noise in a MISP event, not indicators.

use std::net::IpAddr;

/// Domains (and their subdomains) on the safelist.
pub const DOMAINS: &[&str] = &[
    // Windows connectivity, time and certificate checks (Cuckoo's domain whitelist)
    "msftncsi.com",
    "msftconnecttest.com",
    "time.windows.com",
    "windowsupdate.com",
    "crl.microsoft.com",
    "teredo.ipv6.microsoft.com",
    // certificate revocation (the seed's blacklist example)
    "crl.verisign.com",
    "ocsp.verisign.com",
    "sc.symcb.com",
    "ocsp.digicert.com",
    "crl3.digicert.com",
    "crl4.digicert.com",
    "ocsp.pki.goog",
    "ocsp.sectigo.com",
    "r3.o.lencr.org",
    // Linux guests: connectivity, time and package mirrors
    "connectivity-check.ubuntu.com",
    "ntp.ubuntu.com",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    "deb.debian.org",
    "security.debian.org",
    "detectportal.firefox.com",
    "pool.ntp.org",
];

/// Why `host` (a domain or an address) is on the safelist, if it is.
pub fn reason(host: &str) -> Option<&'static str> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return address(ip);
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Some("the local host");
    }
    DOMAINS
        .iter()
        .any(|d| host == *d || host.strip_suffix(d).is_some_and(|p| p.ends_with('.')))
        .then_some("a host every analysis contacts")
}

fn address(ip: IpAddr) -> Option<&'static str> {
    let why = match ip {
        IpAddr::V4(v4) if v4.is_loopback() => "a loopback address",
        IpAddr::V4(v4) if v4.is_unspecified() || v4.is_broadcast() => "not a host address",
        IpAddr::V4(v4) if v4.is_link_local() => "a link-local address",
        IpAddr::V4(v4) if v4.is_multicast() => "a multicast address",
        IpAddr::V6(v6) if v6.is_loopback() || v6.is_unspecified() => "a loopback or unspecified address",
        IpAddr::V6(v6) if v6.is_multicast() => "a multicast address",
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "a link-local address",
        _ => return None,
    };
    Some(why)
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn os_noise_and_local_addresses_are_safe_malware_hosts_are_not() {
        for safe in [
            "www.msftncsi.com",
            "CRL.VeriSign.com.",
            "ctldl.windowsupdate.com",
            "127.0.0.53",
            "::1",
            "224.0.0.251",
            "fe80::1",
            "localhost",
        ] {
            assert!(reason(safe).is_some(), "{safe}");
        }
        for not in ["why.kunai.rocks", "evilwindowsupdate.com", "203.0.113.7", "8.8.8.8", "2001:db8::1"] {
            assert!(reason(not).is_none(), "{not}");
        }
    }
}

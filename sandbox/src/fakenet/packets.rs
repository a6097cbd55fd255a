//! What the fake internet's packet tap sees on `lo`: TCP connection
//! attempts (SYN) and UDP datagrams, parsed from raw IPv4/IPv6 packets.
//! Outside input: lengths are checked, nothing panics; what is not TCP or
//! UDP over IPv4/IPv6 (or is cut short) is ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A packet of interest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A TCP SYN (a connection attempt).
    Syn {
        /// Sender.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
    },
    /// A UDP datagram.
    Udp {
        /// Sender.
        src: SocketAddr,
        /// Destination.
        dst: SocketAddr,
        /// Its payload.
        payload: &'a [u8],
    },
}

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Parses one IP packet (no link-layer header).
pub fn parse(pkt: &[u8]) -> Option<Packet<'_>> {
    let version = pkt.first()? >> 4;
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match version {
        4 => {
            let ihl = ((pkt[0] & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]) as usize;
            if ihl < 20 || total < ihl || pkt.len() < total {
                return None;
            }
            // a fragment other than the first has no L4 header
            let frag = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff;
            if frag != 0 {
                return None;
            }
            let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            (src.into(), dst.into(), pkt[9], &pkt[ihl..total])
        }
        6 => {
            if pkt.len() < 40 {
                return None;
            }
            let len = u16::from_be_bytes([pkt[4], pkt[5]]) as usize;
            let end = 40usize.checked_add(len)?;
            let l4 = pkt.get(40..end)?;
            let a = |at: usize| -> Option<Ipv6Addr> {
                Some(Ipv6Addr::from(<[u8; 16]>::try_from(pkt.get(at..at + 16)?).ok()?))
            };
            // extension headers are not followed: TCP and UDP come right after in practice
            (IpAddr::V6(a(8)?).to_canonical(), IpAddr::V6(a(24)?).to_canonical(), pkt[6], l4)
        }
        _ => return None,
    };
    let port = |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*l4.get(at)?, *l4.get(at + 1)?])) };
    let (sport, dport) = (port(0)?, port(2)?);
    match proto {
        TCP => {
            let flags = *l4.get(13)?;
            let (syn, ack) = (flags & 0x02 != 0, flags & 0x10 != 0);
            (syn && !ack).then(|| Packet::Syn { src: SocketAddr::new(src, sport), dst: SocketAddr::new(dst, dport) })
        }
        UDP => {
            let len = port(4)? as usize;
            let payload = l4.get(8..len.max(8).min(l4.len()))?;
            Some(Packet::Udp { src: SocketAddr::new(src, sport), dst: SocketAddr::new(dst, dport), payload })
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let total = 20 + l4.len();
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, proto, 0, 0];
        p.extend(src);
        p.extend(dst);
        p.extend(l4);
        p
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut t = sport.to_be_bytes().to_vec();
        t.extend(dport.to_be_bytes());
        t.extend([0; 8]);
        t.extend([0x50, flags, 0, 0, 0, 0, 0, 0]);
        t
    }

    #[test]
    fn syn_and_udp() {
        let syn = ipv4(TCP, [10, 0, 0, 1], [203, 0, 113, 7], &tcp(40000, 4444, 0x02));
        assert_eq!(
            parse(&syn),
            Some(Packet::Syn { src: "10.0.0.1:40000".parse().unwrap(), dst: "203.0.113.7:4444".parse().unwrap() })
        );
        let synack = ipv4(TCP, [10, 0, 0, 1], [203, 0, 113, 7], &tcp(40000, 4444, 0x12));
        assert_eq!(parse(&synack), None);
        let mut udp = 5000u16.to_be_bytes().to_vec();
        udp.extend(9999u16.to_be_bytes());
        udp.extend(11u16.to_be_bytes());
        udp.extend([0, 0, b'a', b'b', b'c']);
        let p = ipv4(UDP, [127, 0, 0, 1], [198, 51, 100, 9], &udp);
        match parse(&p) {
            Some(Packet::Udp { dst, payload, .. }) => {
                assert_eq!(dst, "198.51.100.9:9999".parse().unwrap());
                assert_eq!(payload, b"abc");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn short_packets_are_ignored() {
        let syn = ipv4(TCP, [10, 0, 0, 1], [1, 1, 1, 1], &tcp(1, 2, 0x02));
        for n in 0..syn.len() {
            assert_eq!(parse(&syn[..n]), None, "cut at {n}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_v6(mut bytes in proptest::collection::vec(any::<u8>(), 40..200)) {
            bytes[0] = 0x60;
            let _ = parse(&bytes);
        }
    }
}

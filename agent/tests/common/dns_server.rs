//! A tiny authoritative DNS responder on a loopback address, UDP and TCP
//! port 53, for the network tests. It answers `why.kunai.rocks` with
//! `CNAME kunai-project.github.io` and `A 127.0.66.80`, `big.kunai.rocks`
//! with BIG_RECORDS TXT records (an answer over 4 KB, see [`big_record`]);
//! other names get NXDOMAIN.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

pub const NAME: &str = "why.kunai.rocks";
pub const CNAME_TARGET: &str = "kunai-project.github.io";
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 66, 80);
pub const BIG_NAME: &str = "big.kunai.rocks";
pub const BIG_RECORDS: usize = 20;

/// The text of TXT record `i` of the big answer: 200 bytes, numbered.
pub fn big_record(i: usize) -> String {
    format!("{i:03}{}", "t".repeat(197))
}

pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut r = Message::new();
    r.set_id(q.id()).set_message_type(MessageType::Response).set_recursion_desired(q.recursion_desired());
    r.set_recursion_available(true).set_authoritative(true);
    let question = q.queries().first()?.clone();
    r.add_query(question.clone());
    let name = Name::from_str(&format!("{NAME}.")).unwrap();
    let big = Name::from_str(&format!("{BIG_NAME}.")).unwrap();
    if question.name().to_lowercase() == big {
        for i in 0..BIG_RECORDS {
            r.add_answer(Record::from_rdata(big.clone(), 60, RData::TXT(TXT::new(vec![big_record(i)]))));
        }
    } else if question.name().to_lowercase() == name {
        let target = Name::from_str(&format!("{CNAME_TARGET}.")).unwrap();
        r.add_answer(Record::from_rdata(name, 60, RData::CNAME(CNAME(target.clone()))));
        if question.query_type() == RecordType::A {
            r.add_answer(Record::from_rdata(target, 60, RData::A(A(ADDRESS))));
        }
    } else {
        r.set_response_code(ResponseCode::NXDomain);
    }
    r.to_vec().ok()
}

/// Serves on `ip`:53 (UDP and TCP) until dropped.
pub fn start(ip: Ipv4Addr) -> DnsServer {
    let addr = SocketAddr::from((ip, 53));
    let stop = Arc::new(AtomicBool::new(false));
    let udp = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("test DNS server cannot bind udp {addr}: {e}"));
    udp.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let tcp = TcpListener::bind(addr).unwrap_or_else(|e| panic!("test DNS server cannot bind tcp {addr}: {e}"));
    tcp.set_nonblocking(true).unwrap();
    let s = stop.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while !s.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = udp.recv_from(&mut buf) {
                if let Some(resp) = answer(&buf[..n]) {
                    let _ = udp.send_to(&resp, peer);
                }
            }
        }
    });
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let Ok((mut conn, _)) = tcp.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut len = [0u8; 2];
            if conn.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if conn.read_exact(&mut q).is_err() {
                continue;
            }
            if let Some(resp) = answer(&q) {
                let mut framed = (resp.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&resp);
                let _ = conn.write_all(&framed);
            }
        }
    });
    DnsServer { addr, stop }
}

//! Network records into `connect`, `send_data` and `dns_query` events.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::record::{Net, NetKind};
use crate::enrich::proctable::Process;
use crate::enrich::resolved::ResolvedNames;
use crate::events::*;
use crate::net::{community_id, dns, entropy, ip_string, is_public, Proto};

/// What network events need to remember: the names each process resolved,
/// and the DNS queries each socket has in flight.
#[derive(Default)]
pub struct Network {
    names: ResolvedNames,
    texts: Texts,
    queries: Queries,
}

/// Ids of the DNS queries each socket sent and got no answer to yet, by
/// socket cookie: only an answer carrying one of them teaches names. An
/// answer nobody asked for (forged, or for another socket) still makes a
/// `dns_query`, but no `dst.hostname`.
#[derive(Default)]
struct Queries(HashMap<u64, Vec<u16>, ahash::RandomState>);

/// Queries in flight per socket, at most (a resolver asks A and AAAA, and retries).
const QUERIES_PER_SOCKET: usize = 16;

impl Queries {
    fn sent(&mut self, cookie: u64, id: u16) {
        if self.0.len() >= TEXTS_MAX && !self.0.contains_key(&cookie) {
            self.0.clear();
        }
        let ids = self.0.entry(cookie).or_default();
        if ids.len() >= QUERIES_PER_SOCKET {
            ids.remove(0);
        }
        ids.push(id);
    }

    /// Whether `id` answers a query of the socket; the query is then answered.
    fn answered(&mut self, cookie: u64, id: u16) -> bool {
        let Some(ids) = self.0.get_mut(&cookie) else { return false };
        let Some(i) = ids.iter().position(|&q| q == id) else { return false };
        ids.remove(i);
        if ids.is_empty() {
            self.0.remove(&cookie);
        }
        true
    }
}

/// `socket {domain, type, proto}` from the kernel's numbers.
pub fn socket_info(family: u16, sock_type: u16, proto: u16) -> SocketInfo {
    let domain = match family {
        1 => "AF_UNIX",
        2 => "AF_INET",
        10 => "AF_INET6",
        16 => "AF_NETLINK",
        17 => "AF_PACKET",
        _ => "AF_UNKNOWN",
    };
    let kind = match sock_type {
        1 => "SOCK_STREAM",
        2 => "SOCK_DGRAM",
        3 => "SOCK_RAW",
        5 => "SOCK_SEQPACKET",
        _ => "SOCK_UNKNOWN",
    };
    let proto = match proto {
        6 => "TCP",
        17 => "UDP",
        _ => "UNKNOWN",
    };
    SocketInfo { domain: domain.into(), kind: kind.into(), proto: proto.into() }
}

/// The texts network events repeat (addresses, flow ids), made once and
/// shared: a process talking to one server makes thousands of events about
/// the same few addresses and flows.
#[derive(Default)]
struct Texts {
    ips: HashMap<IpAddr, Text, ahash::RandomState>,
    flows: HashMap<(u16, SocketAddr, SocketAddr), Text, ahash::RandomState>,
    unknown_host: Option<Text>,
}

/// Entries per table before it is emptied: bounded memory whatever the
/// traffic (a connect storm makes a new flow per connection).
const TEXTS_MAX: usize = 4096;

impl Texts {
    fn ip(&mut self, ip: IpAddr) -> Text {
        if self.ips.len() >= TEXTS_MAX {
            self.ips.clear();
        }
        self.ips.entry(ip).or_insert_with(|| ip_string(ip).into()).clone()
    }

    /// The Community ID of the record's flow ("" when not TCP/UDP).
    fn flow_id(&mut self, r: &Net) -> Text {
        let key = (r.proto, r.src, r.dst);
        if let Some(id) = self.flows.get(&key) {
            return id.clone();
        }
        let id: Text = match Proto::from_number(r.proto) {
            Some(p) => community_id(r.src.ip(), r.src.port(), r.dst.ip(), r.dst.port(), p).into(),
            None => "".into(),
        };
        if self.flows.len() >= TEXTS_MAX {
            self.flows.clear();
        }
        self.flows.insert(key, id.clone());
        id
    }

    fn sock_addr(&mut self, a: SocketAddr) -> SockAddr {
        SockAddr { ip: self.ip(a.ip().to_canonical()), port: a.port() }
    }

    fn remote(&mut self, a: SocketAddr, hostname: Option<Text>) -> Endpoint {
        let ip = a.ip().to_canonical();
        Endpoint { hostname, ip: self.ip(ip), port: a.port(), public: is_public(ip), is_v6: ip.is_ipv6() }
    }

    /// "?", Kunai's `dst.hostname` for an address the process did not resolve.
    fn unknown_host(&mut self) -> Text {
        self.unknown_host.get_or_insert_with(|| "?".into()).clone()
    }
}

impl Network {
    /// The event data of a network record of process `p` (identified by
    /// `key`), or None when it reports nothing (bytes from port 53 that are
    /// not a DNS response, like the length prefix of a TCP answer read alone).
    pub fn data(&mut self, r: &Net, p: &Process, key: (u32, u64)) -> Option<EventData> {
        let (ancestors, command_line, exe) =
            (p.ancestors.clone(), p.command_line.clone(), FilePath { path: p.exe.clone() });
        match r.kind {
            NetKind::Dns => {
                let received = r.size.max(0) as usize;
                let parsed =
                    if r.proto == 6 { dns::parse_tcp(&r.data, received) } else { dns::parse(&r.data, received) };
                let answer = match parsed {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("{} bytes from {} are not a DNS response: {e}", r.data.len(), r.dst);
                        return None;
                    }
                };
                if self.queries.answered(r.cookie, answer.id) {
                    self.names.learn(key, &answer.query, &answer.addresses);
                } else {
                    tracing::debug!("DNS answer id {} from {} answers no query of its socket", answer.id, r.dst);
                }
                Some(EventData::DnsQuery(DnsQueryData {
                    ancestors,
                    command_line,
                    exe,
                    socket: socket_info(r.family, r.sock_type, r.proto),
                    src: self.texts.sock_addr(r.src),
                    query: answer.query,
                    query_type: answer.query_type,
                    response: answer.answers,
                    dns_server: self.texts.remote(r.dst, None),
                    community_id: self.texts.flow_id(r),
                    truncated: answer.truncated,
                }))
            }
            NetKind::Connect | NetKind::Send => {
                if r.kind == NetKind::Send && r.dst.port() == 53 {
                    if let Some(id) = dns::query_id(&r.data, r.size.max(0) as usize, r.proto == 6) {
                        self.queries.sent(r.cookie, id);
                    }
                }
                let hostname = match self.names.name(key, r.dst.ip()) {
                    Some(name) => name.clone(),
                    None => self.texts.unknown_host(),
                };
                let (socket, src, dst, community_id) = (
                    socket_info(r.family, r.sock_type, r.proto),
                    self.texts.sock_addr(r.src),
                    self.texts.remote(r.dst, Some(hostname)),
                    self.texts.flow_id(r),
                );
                Some(if r.kind == NetKind::Connect {
                    EventData::Connect(ConnectData {
                        ancestors,
                        command_line,
                        exe,
                        socket,
                        src,
                        dst,
                        community_id,
                        connected: r.connected,
                    })
                } else {
                    EventData::SendData(SendDataData {
                        ancestors,
                        command_line,
                        exe,
                        socket,
                        src,
                        dst,
                        community_id,
                        connected: r.connected,
                        data_entropy: entropy(&r.data),
                        data_size: r.size.max(0) as u64,
                    })
                })
            }
        }
    }

    /// Forgets what an exited process resolved.
    pub fn forget(&mut self, key: (u32, u64)) {
        self.names.forget(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Some process (its fields do not matter to these tests).
    fn some_process() -> Process {
        crate::enrich::proctable::ProcessTable::new(uuid::Uuid::nil()).lookup(u32::MAX - 1, 0, 0).clone()
    }

    fn dns_net(kind: NetKind, cookie: u64, data: Vec<u8>) -> Net {
        Net {
            kind,
            hdr: crate::bpf::abi::zeroed(),
            cookie,
            size: data.len() as i64,
            family: 2,
            sock_type: 2,
            proto: 17,
            src: "127.0.0.1:4000".parse().unwrap(),
            dst: "127.0.53.53:53".parse().unwrap(),
            connected: false,
            data,
        }
    }

    #[test]
    fn only_an_answer_to_a_query_of_the_socket_teaches_names() {
        let mut net = Network::default();
        let p = some_process();
        let key = (1, 1);
        let answer = crate::net::dns::tests::sample_response(); // id 7, why.kunai.rocks -> 127.0.66.80
        let ip: IpAddr = "127.0.66.80".parse().unwrap();
        let mut query = answer.clone();
        query[2] &= 0x7f; // QR bit off: the query with the same id

        // no query sent: a dns_query, but no name learned
        assert!(net.data(&dns_net(NetKind::Dns, 10, answer.clone()), &p, key).is_some());
        assert!(net.names.name(key, ip).is_none(), "an unsolicited answer taught a name");
        // a query with another id on the socket, or id 7 on another socket
        query[..2].copy_from_slice(&8u16.to_be_bytes());
        net.data(&dns_net(NetKind::Send, 10, query.clone()), &p, key);
        query[..2].copy_from_slice(&7u16.to_be_bytes());
        net.data(&dns_net(NetKind::Send, 11, query.clone()), &p, key);
        net.data(&dns_net(NetKind::Dns, 10, answer.clone()), &p, key);
        assert!(net.names.name(key, ip).is_none(), "the answer's id matches no query of its socket");
        // the query, then its answer: learned; the same answer again answers nothing
        net.data(&dns_net(NetKind::Send, 10, query), &p, key);
        net.data(&dns_net(NetKind::Dns, 10, answer.clone()), &p, key);
        assert_eq!(net.names.name(key, ip).map(|n| n.to_string()).as_deref(), Some("why.kunai.rocks"));
        assert!(!net.queries.answered(10, 7), "a query is answered once");
    }

    #[test]
    fn a_truncated_answer_is_a_dns_query_marked_truncated() {
        let mut net = Network::default();
        let msg = crate::net::dns::tests::big_response(20);
        let mut r = dns_net(NetKind::Dns, 1, msg[..2048].to_vec());
        r.size = msg.len() as i64;
        let Some(EventData::DnsQuery(d)) = net.data(&r, &some_process(), (1, 1)) else { panic!("no dns_query") };
        assert!(d.truncated);
        assert_eq!(d.response.len(), 9);
    }

    #[test]
    fn shared_texts_equal_what_they_stand_for_and_stay_bounded() {
        let mut t = Texts::default();
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.1:4000".parse().unwrap(), "[::1]:53".parse().unwrap());
        let mut net = Net {
            kind: NetKind::Send,
            hdr: crate::bpf::abi::zeroed(),
            cookie: 0,
            size: 0,
            family: 10,
            sock_type: 2,
            proto: 17,
            src: a,
            dst: b,
            connected: true,
            data: Vec::new(),
        };
        let id = t.flow_id(&net);
        assert_eq!(*id, community_id(a.ip(), 4000, b.ip(), 53, Proto::Udp));
        assert!(std::sync::Arc::ptr_eq(&id, &t.flow_id(&net)), "a flow's id is made once");
        net.src = "127.0.0.1:4001".parse().unwrap();
        assert_ne!(t.flow_id(&net), id, "another flow, another id");
        assert_eq!(&*t.ip(a.ip()), "127.0.0.1");
        assert_eq!(&*t.remote(b, None).ip, "::1");
        for port in 0..(2 * TEXTS_MAX as u16) {
            net.src.set_port(port);
            t.flow_id(&net);
        }
        assert!(t.flows.len() <= TEXTS_MAX);
    }
}

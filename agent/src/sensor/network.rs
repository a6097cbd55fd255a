//! Network records into `connect`, `send_data` and `dns_query` events.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::record::{Net, NetKind};
use crate::enrich::proctable::Process;
use crate::enrich::resolved::ResolvedNames;
use crate::events::*;
use crate::net::{community_id, dns, entropy, ip_string, is_public, Proto};

/// What network events need to remember: the names each process resolved.
#[derive(Default)]
pub struct Network {
    names: ResolvedNames,
    texts: Texts,
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
                let parsed = if r.proto == 6 { dns::parse_tcp(&r.data) } else { dns::parse(&r.data) };
                let answer = match parsed {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("{} bytes from {} are not a DNS response: {e}", r.data.len(), r.dst);
                        return None;
                    }
                };
                self.names.learn(key, &answer.query, &answer.addresses);
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
                }))
            }
            NetKind::Connect | NetKind::Send => {
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

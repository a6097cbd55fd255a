//! Network records into `connect`, `send_data` and `dns_query` events.

use std::net::SocketAddr;

use super::record::{Net, NetKind};
use crate::enrich::proctable::Process;
use crate::enrich::resolved::ResolvedNames;
use crate::events::*;
use crate::net::{community_id, dns, entropy, ip_string, is_public, Proto};

/// What network events need to remember: the names each process resolved.
#[derive(Default)]
pub struct Network {
    names: ResolvedNames,
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

fn sock_addr(a: SocketAddr) -> SockAddr {
    SockAddr { ip: ip_string(a.ip().to_canonical()), port: a.port() }
}

fn remote(a: SocketAddr, hostname: Option<String>) -> Endpoint {
    let ip = a.ip().to_canonical();
    Endpoint { hostname, ip: ip_string(ip), port: a.port(), public: is_public(ip), is_v6: ip.is_ipv6() }
}

fn flow_id(r: &Net) -> String {
    match Proto::from_number(r.proto) {
        Some(p) => community_id(r.src.ip(), r.src.port(), r.dst.ip(), r.dst.port(), p),
        None => String::new(),
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
                    src: sock_addr(r.src),
                    query: answer.query,
                    query_type: answer.query_type,
                    response: answer.answers,
                    dns_server: remote(r.dst, None),
                    community_id: flow_id(r),
                }))
            }
            NetKind::Connect | NetKind::Send => {
                let hostname = self.names.name(key, r.dst.ip()).map_or_else(|| "?".to_string(), |n| n.to_string());
                let (socket, src, dst, community_id) = (
                    socket_info(r.family, r.sock_type, r.proto),
                    sock_addr(r.src),
                    remote(r.dst, Some(hostname)),
                    flow_id(r),
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

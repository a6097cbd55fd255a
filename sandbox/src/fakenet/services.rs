//! Services placed on the fake internet on top of its sinks: what a lab
//! scenario (or a job) needs to answer, such as a web page with its own
//! body or a "C2" that keeps its clients connected.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// One service: a listener for `port` on `ip` (every address when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The address it answers on; `None` for every address.
    pub ip: Option<IpAddr>,
    /// Its TCP port (any but the resolver's 53).
    pub port: u16,
    /// What it does.
    pub kind: ServiceKind,
}

/// What a [`Service`] does with a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// HTTP: every request is logged like the sinks' and answered 200 with this body.
    Http {
        /// The response body.
        body: Vec<u8>,
        /// Its `Content-Type`.
        content_type: String,
    },
    /// A command-and-control listener: sends `send` first, then keeps the
    /// connection open (no idle timeout) until the client closes it or the
    /// fake internet stops, logging what the client sent.
    C2 {
        /// Bytes sent on connect (a command, a banner; may be empty).
        send: Vec<u8>,
    },
}

impl Service {
    /// Whether it answers a connection to `dst`.
    pub fn serves(&self, dst: SocketAddr) -> bool {
        self.port == dst.port() && self.ip.is_none_or(|ip| ip.to_canonical() == dst.ip().to_canonical())
    }
}

/// The service for a connection to `dst`: one on that very address first, else one on every address.
pub fn find(services: &[Service], dst: SocketAddr) -> Option<&Service> {
    services.iter().find(|s| s.ip.is_some() && s.serves(dst)).or_else(|| services.iter().find(|s| s.serves(dst)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_on_an_address_wins_over_one_on_every_address() {
        let any = Service { ip: None, port: 4444, kind: ServiceKind::C2 { send: b"id\n".to_vec() } };
        let one = Service {
            ip: Some("198.51.100.7".parse().unwrap()),
            port: 4444,
            kind: ServiceKind::C2 { send: Vec::new() },
        };
        let services = [any.clone(), one.clone()];
        assert_eq!(find(&services, "198.51.100.7:4444".parse().unwrap()), Some(&one));
        assert_eq!(find(&services, "[::ffff:198.51.100.7]:4444".parse().unwrap()), Some(&one));
        assert_eq!(find(&services, "203.0.113.9:4444".parse().unwrap()), Some(&any));
        assert_eq!(find(&services, "198.51.100.7:443".parse().unwrap()), None);
    }
}

//! DNS responses seen by the sensor, parsed with hickory-proto: the question
//! and the answers, as `dns_query` reports them.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::RData;

/// Why bytes received from port 53 are not a DNS response the sensor can report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// hickory-proto could not parse the message.
    #[error("not a DNS message: {0}")]
    Malformed(String),
    /// A query, not a response.
    #[error("DNS message is a query, not a response")]
    NotAResponse,
    /// A response without a question section.
    #[error("DNS response has no question")]
    NoQuestion,
}

/// The part of a DNS response `dns_query` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsResponse {
    /// The name asked, without the final dot.
    pub query: String,
    /// Its record type ("A", "AAAA", "TXT"...).
    pub query_type: String,
    /// Each answer's data as text (names without the final dot), in order.
    pub answers: Vec<String>,
    /// The addresses among the answers, for the per-process name cache.
    pub addresses: Vec<IpAddr>,
}

fn trim_dot(mut s: String) -> String {
    if s.len() > 1 && s.ends_with('.') {
        s.pop();
    }
    s
}

/// Parses one DNS message as received on a UDP socket.
pub fn parse(msg: &[u8]) -> Result<DnsResponse, DnsError> {
    let m = Message::from_vec(msg).map_err(|e| DnsError::Malformed(e.to_string()))?;
    if m.message_type() != MessageType::Response {
        return Err(DnsError::NotAResponse);
    }
    let q = m.queries().first().ok_or(DnsError::NoQuestion)?;
    let mut answers = Vec::with_capacity(m.answers().len());
    let mut addresses = Vec::new();
    for rr in m.answers() {
        match rr.data() {
            RData::A(a) => addresses.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => addresses.push(IpAddr::V6(a.0)),
            _ => {}
        }
        answers.push(trim_dot(rr.data().to_string()));
    }
    Ok(DnsResponse {
        query: trim_dot(q.name().to_string()),
        query_type: q.query_type().to_string(),
        answers,
        addresses,
    })
}

/// Parses what a TCP/53 socket delivered: one message after its two-byte
/// length prefix (RFC 1035 4.2.2), or a message without it when the process
/// read the prefix separately.
pub fn parse_tcp(data: &[u8]) -> Result<DnsResponse, DnsError> {
    if data.len() >= 2 && u16::from_be_bytes([data[0], data[1]]) as usize == data.len() - 2 {
        return parse(&data[2..]);
    }
    parse(data)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use proptest::prelude::*;
    use std::str::FromStr;

    /// why.kunai.rocks → CNAME kunai-project.github.io → A 127.0.66.80, as bytes.
    pub(crate) fn sample_response() -> Vec<u8> {
        let name = Name::from_str("why.kunai.rocks.").unwrap();
        let target = Name::from_str("kunai-project.github.io.").unwrap();
        let mut m = Message::new();
        m.set_id(7).set_message_type(MessageType::Response);
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(name, 60, RData::CNAME(CNAME(target.clone()))));
        m.add_answer(Record::from_rdata(target, 60, RData::A(A::new(127, 0, 66, 80))));
        m.to_vec().unwrap()
    }

    #[test]
    fn parses_a_cname_chain() {
        let r = parse(&sample_response()).unwrap();
        assert_eq!(r.query, "why.kunai.rocks");
        assert_eq!(r.query_type, "A");
        assert_eq!(r.answers, ["kunai-project.github.io", "127.0.66.80"]);
        assert_eq!(r.addresses, [IpAddr::from([127, 0, 66, 80])]);
    }

    #[test]
    fn tcp_framing() {
        let msg = sample_response();
        let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&msg);
        assert_eq!(parse_tcp(&framed).unwrap().query, "why.kunai.rocks");
        assert_eq!(parse_tcp(&msg).unwrap().query, "why.kunai.rocks");
    }

    #[test]
    fn queries_and_garbage_are_refused() {
        let mut q = Message::new();
        q.add_query(Query::query(Name::from_str("a.example.").unwrap(), RecordType::A));
        assert_eq!(parse(&q.to_vec().unwrap()), Err(DnsError::NotAResponse));
        assert!(matches!(parse(b"\x00\x01garbage"), Err(DnsError::Malformed(_))));
        assert!(parse(&[]).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(data: Vec<u8>) {
            let _ = parse(&data);
            let _ = parse_tcp(&data);
        }

        #[test]
        fn truncated_responses_never_panic(cut in 0usize..200) {
            let msg = sample_response();
            let _ = parse(&msg[..cut.min(msg.len())]);
        }
    }
}

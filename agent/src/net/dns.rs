//! DNS responses seen by the sensor, parsed with hickory-proto: the question
//! and the answers, as `dns_query` reports them. The sensor copies at most
//! 2,048 bytes of an answer: a longer one is parsed record by record up to
//! where the copy ends, and marked truncated.

use std::net::IpAddr;

use hickory_proto::op::{Header, MessageType, Query};
use hickory_proto::rr::{RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

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
    /// The message id: an answer to a query this socket sent carries its id.
    pub id: u16,
    /// The name asked, without the final dot.
    pub query: String,
    /// Its record type ("A", "AAAA", "TXT"...).
    pub query_type: String,
    /// Each answer's data as text (names without the final dot), in order.
    pub answers: Vec<String>,
    /// The addresses among the answers, for the per-process name cache.
    pub addresses: Vec<IpAddr>,
    /// Only part of the message was seen (longer than the sensor's copy) or
    /// the server cut it (TC bit): `answers` holds the records that fit.
    pub truncated: bool,
}

fn trim_dot(mut s: String) -> String {
    if s.len() > 1 && s.ends_with('.') {
        s.pop();
    }
    s
}

fn malformed(e: impl std::fmt::Display, at: usize) -> DnsError {
    DnsError::Malformed(format!("{e} (at byte {at})"))
}

/// Parses one DNS message as received on a UDP socket: `msg` is what the
/// sensor copied of the `received` bytes. When the copy is shorter, the
/// answers that fit are kept and the response is marked truncated.
pub fn parse(msg: &[u8], received: usize) -> Result<DnsResponse, DnsError> {
    let cut = received > msg.len();
    let mut d = BinDecoder::new(msg);
    let header = Header::read(&mut d).map_err(|e| malformed(e, 0))?;
    if header.message_type() != MessageType::Response {
        return Err(DnsError::NotAResponse);
    }
    if header.query_count() == 0 {
        return Err(DnsError::NoQuestion);
    }
    let mut question = None;
    for _ in 0..header.query_count() {
        let at = d.index();
        let q = Query::read(&mut d).map_err(|e| malformed(e, at))?;
        question.get_or_insert(q);
    }
    let q = question.ok_or(DnsError::NoQuestion)?;
    let mut truncated = cut || header.truncated();
    let mut answers = Vec::with_capacity(header.answer_count().min(64) as usize);
    let mut addresses = Vec::new();
    for _ in 0..header.answer_count() {
        let at = d.index();
        let rr: Record = match Record::read(&mut d) {
            Ok(rr) => rr,
            // the copy ended inside this record: what came before stands
            Err(_) if cut => {
                truncated = true;
                break;
            }
            Err(e) => return Err(malformed(e, at)),
        };
        match rr.data() {
            RData::A(a) => addresses.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => addresses.push(IpAddr::V6(a.0)),
            _ => {}
        }
        answers.push(trim_dot(rr.data().to_string()));
    }
    Ok(DnsResponse {
        id: header.id(),
        query: trim_dot(q.name().to_string()),
        query_type: q.query_type().to_string(),
        answers,
        addresses,
        truncated,
    })
}

/// Where the DNS message starts in what a TCP/53 socket delivered: after
/// its two-byte length prefix (RFC 1035 4.2.2) when the read holds it
/// whole, at 0 when the process read the prefix separately.
pub fn tcp_message_start(data: &[u8], received: usize) -> usize {
    if data.len() >= 2 && u16::from_be_bytes([data[0], data[1]]) as usize == received.saturating_sub(2) {
        2
    } else {
        0
    }
}

/// Parses what a TCP/53 socket delivered (see [`tcp_message_start`]). A
/// read that holds the prefix and only the head of a longer message (the
/// rest comes in later reads) is parsed as far as it goes, and marked truncated.
pub fn parse_tcp(data: &[u8], received: usize) -> Result<DnsResponse, DnsError> {
    let start = tcp_message_start(data, received);
    let whole = parse(&data[start..], received.saturating_sub(start));
    let announced = match data {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]) as usize,
        _ => 0,
    };
    match whole {
        // the prefix of a message longer than this read: what follows it is its head
        Err(_) if start == 0 && announced > received.saturating_sub(2) => parse(&data[2..], announced),
        other => other,
    }
}

/// The id of a DNS query as sent (`tcp`: over a TCP/53 socket, maybe after
/// the length prefix); None when the bytes are too short to hold one.
pub fn query_id(data: &[u8], sent: usize, tcp: bool) -> Option<u16> {
    let start = if tcp { tcp_message_start(data, sent) } else { 0 };
    let id = data.get(start..start + 2)?;
    // a TCP prefix sent alone is two bytes too: not a message
    (sent.saturating_sub(start) >= 12).then(|| u16::from_be_bytes([id[0], id[1]]))
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
        let msg = sample_response();
        let r = parse(&msg, msg.len()).unwrap();
        assert_eq!(r.id, 7);
        assert!(!r.truncated);
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
        assert_eq!(parse_tcp(&framed, framed.len()).unwrap().query, "why.kunai.rocks");
        assert_eq!(parse_tcp(&msg, msg.len()).unwrap().query, "why.kunai.rocks");
        assert_eq!(query_id(&framed, framed.len(), true), Some(7));
        assert_eq!(query_id(&msg, msg.len(), false), Some(7));
        assert_eq!(query_id(&framed[..2], 2, true), None, "a length prefix sent alone");
    }

    #[test]
    fn queries_and_garbage_are_refused() {
        let mut q = Message::new();
        q.add_query(Query::query(Name::from_str("a.example.").unwrap(), RecordType::A));
        let q = q.to_vec().unwrap();
        assert_eq!(parse(&q, q.len()), Err(DnsError::NotAResponse));
        assert!(matches!(parse(b"\x00\x01garbage", 9), Err(DnsError::Malformed(_))));
        assert!(parse(&[], 0).is_err());
    }

    /// A response with `n` TXT answers of 200 bytes each: over 2,048 bytes from n = 11.
    pub(crate) fn big_response(n: usize) -> Vec<u8> {
        use hickory_proto::rr::rdata::TXT;
        let name = Name::from_str("big.kunai.rocks.").unwrap();
        let mut m = Message::new();
        m.set_id(9).set_message_type(MessageType::Response);
        m.add_query(Query::query(name.clone(), RecordType::TXT));
        for i in 0..n {
            let text = format!("{i:03}{}", "t".repeat(197));
            m.add_answer(Record::from_rdata(name.clone(), 60, RData::TXT(TXT::new(vec![text]))));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn a_long_answer_cut_at_2048_bytes_keeps_the_records_that_fit() {
        let msg = big_response(20);
        assert!(msg.len() > 4000);
        let r = parse(&msg[..2048], msg.len()).unwrap();
        assert!(r.truncated);
        assert_eq!(r.query, "big.kunai.rocks");
        assert_eq!(r.query_type, "TXT");
        // each TXT record is about 213 bytes after the 33-byte header and question
        assert_eq!(r.answers.len(), 9, "{:?}", r.answers);
        assert!(r.answers[8].starts_with("008"), "{:?}", r.answers[8]);

        let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&msg);
        let r = parse_tcp(&framed[..2048], framed.len()).unwrap();
        assert!(r.truncated);
        assert_eq!(r.answers.len(), 9);
        let whole = parse(&msg, msg.len()).unwrap();
        assert_eq!((whole.answers.len(), whole.truncated), (20, false));
        // a TCP read that got only the head of the message, prefix included
        let r = parse_tcp(&framed[..1500], 1500).unwrap();
        assert!(r.truncated);
        assert_eq!(r.answers.len(), 6);
    }

    proptest! {
        #[test]
        fn never_panics(data: Vec<u8>, extra in 0usize..100) {
            let _ = parse(&data, data.len() + extra);
            let _ = parse_tcp(&data, data.len() + extra);
            let _ = query_id(&data, data.len() + extra, true);
        }

        #[test]
        fn truncated_responses_never_panic(cut in 0usize..200) {
            let msg = sample_response();
            let _ = parse(&msg[..cut.min(msg.len())], msg.len());
        }

        #[test]
        fn any_cut_of_a_long_answer_gives_a_prefix_of_its_answers(n in 1usize..20, cut in 0usize..5000) {
            let msg = big_response(n);
            let whole = parse(&msg, msg.len()).unwrap();
            let cut = cut.min(msg.len());
            match parse(&msg[..cut], msg.len()) {
                Ok(part) => {
                    prop_assert!(part.truncated || cut == msg.len());
                    prop_assert_eq!(&whole.answers[..part.answers.len()], &part.answers[..]);
                    prop_assert_eq!(part.query, whole.query);
                }
                // only a cut inside the header or the question leaves nothing to report
                Err(e) => prop_assert!(cut < 33, "cut at {} of {}: {}", cut, msg.len(), e),
            }
        }
    }
}

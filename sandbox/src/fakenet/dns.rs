//! The fake internet's resolver: answers from the job's records first
//! (following CNAME chains), then every other A/AAAA question with the sink
//! address. Queries are outside input: a malformed one is an error naming
//! what was wrong, never a panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::detonation::{DnsQuery, DnsRecord, DnsRecordData};

/// TTL of every answer, seconds.
const TTL: u32 = 60;
/// Longest CNAME chain followed (a loop in the job's records stops here).
const MAX_CHAIN: usize = 8;

/// What the resolver knows.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The job's records.
    pub records: Vec<DnsRecord>,
    /// Answer of every other A question.
    pub sink_v4: Ipv4Addr,
    /// Answer of every other AAAA question.
    pub sink_v6: Ipv6Addr,
}

/// Why a DNS message got no answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DnsError {
    /// Not a DNS message.
    #[error("DNS message from {peer}: malformed: {reason}")]
    Malformed {
        /// Who sent it.
        peer: String,
        /// What the parser said.
        reason: String,
    },
    /// A message that is not a standard query with one question.
    #[error("DNS message from {peer}: {reason}")]
    NotAQuery {
        /// Who sent it.
        peer: String,
        /// What it was.
        reason: String,
    },
}

fn key(name: &Name) -> String {
    name.to_lowercase().to_ascii().trim_end_matches('.').to_string()
}

impl Zone {
    fn lookup<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a DnsRecordData> + 'a {
        self.records.iter().filter(move |r| r.name.eq_ignore_ascii_case(name)).map(|r| &r.data)
    }

    /// The addresses of `name` that `pick` selects, or the sink when it has none.
    fn addresses<T>(&self, name: &str, pick: impl Fn(&DnsRecordData) -> Option<T>, sink: T) -> Vec<T> {
        let mine: Vec<T> = self.lookup(name).filter_map(pick).collect();
        if mine.is_empty() {
            vec![sink]
        } else {
            mine
        }
    }

    /// Answers one query message (`peer` names the sender in errors):
    /// the response bytes and what to log.
    pub fn answer(&self, query: &[u8], peer: &str, time: f64) -> Result<(Vec<u8>, DnsQuery), DnsError> {
        let msg =
            Message::from_vec(query).map_err(|e| DnsError::Malformed { peer: peer.into(), reason: e.to_string() })?;
        let not_query = |reason: &str| DnsError::NotAQuery { peer: peer.into(), reason: reason.into() };
        if msg.message_type() != MessageType::Query || msg.op_code() != OpCode::Query {
            return Err(not_query("not a standard query"));
        }
        let [q] = msg.queries() else {
            return Err(not_query(&format!("{} questions (one expected)", msg.queries().len())));
        };
        let mut resp = Message::new();
        resp.set_id(msg.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_authoritative(true)
            .set_recursion_desired(msg.recursion_desired())
            .set_recursion_available(true)
            .set_response_code(ResponseCode::NoError);
        resp.add_query(Query::query(q.name().clone(), q.query_type()));
        let mut log = DnsQuery { time, name: key(q.name()), qtype: q.query_type().to_string(), answers: Vec::new() };

        let mut owner = q.name().clone();
        let mut current = key(&owner);
        for _ in 0..MAX_CHAIN {
            let Some(DnsRecordData::CNAME(target)) =
                self.lookup(&current).find(|d| matches!(d, DnsRecordData::CNAME(_)))
            else {
                break;
            };
            let Ok(target_name) = Name::from_ascii(format!("{}.", target.trim_end_matches('.'))) else { break };
            resp.add_answer(Record::from_rdata(owner.clone(), TTL, RData::CNAME(CNAME(target_name.clone()))));
            log.answers.push(("CNAME".into(), key(&target_name)));
            owner = target_name;
            current = key(&owner);
        }
        let mut add = |rdata: RData, log: &mut DnsQuery| {
            log.answers.push((rdata.record_type().to_string(), rdata.to_string()));
            resp.add_answer(Record::from_rdata(owner.clone(), TTL, rdata));
        };
        match q.query_type() {
            RecordType::A => {
                let pick = |d: &DnsRecordData| if let DnsRecordData::A(ip) = d { Some(*ip) } else { None };
                for ip in self.addresses(&current, pick, self.sink_v4) {
                    add(RData::A(A(ip)), &mut log);
                }
            }
            RecordType::AAAA => {
                let pick = |d: &DnsRecordData| if let DnsRecordData::AAAA(ip) = d { Some(*ip) } else { None };
                for ip in self.addresses(&current, pick, self.sink_v6) {
                    add(RData::AAAA(AAAA(ip)), &mut log);
                }
            }
            // other types: the CNAME chain, if any, and no data
            _ => {}
        }
        let bytes = resp.to_vec().map_err(|e| DnsError::Malformed { peer: peer.into(), reason: e.to_string() })?;
        Ok((bytes, log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zone() -> Zone {
        Zone {
            records: vec![
                DnsRecord {
                    name: "why.kunai.rocks".into(),
                    data: DnsRecordData::CNAME("kunai-project.github.io".into()),
                },
                DnsRecord {
                    name: "kunai-project.github.io".into(),
                    data: DnsRecordData::A(Ipv4Addr::new(127, 0, 66, 80)),
                },
                DnsRecord { name: "loop.test".into(), data: DnsRecordData::CNAME("loop.test".into()) },
            ],
            sink_v4: Ipv4Addr::new(192, 0, 2, 1),
            sink_v6: "2001:db8::1".parse().unwrap(),
        }
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(42).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn job_records_first_with_their_cname_chain() {
        let (bytes, log) = zone().answer(&query("Why.Kunai.Rocks.", RecordType::A), "t", 0.0).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.id(), 42);
        assert_eq!(m.message_type(), MessageType::Response);
        assert_eq!(log.name, "why.kunai.rocks");
        assert_eq!(
            log.answers,
            vec![("CNAME".into(), "kunai-project.github.io".into()), ("A".into(), "127.0.66.80".into())]
        );
        assert_eq!(m.answers().len(), 2);
    }

    #[test]
    fn other_names_get_the_sink() {
        let (_, log) = zone().answer(&query("evil.example.", RecordType::A), "t", 0.0).unwrap();
        assert_eq!(log.answers, vec![("A".into(), "192.0.2.1".into())]);
        let (_, log) = zone().answer(&query("evil.example.", RecordType::AAAA), "t", 0.0).unwrap();
        assert_eq!(log.answers, vec![("AAAA".into(), "2001:db8::1".into())]);
        let (_, log) = zone().answer(&query("evil.example.", RecordType::TXT), "t", 0.0).unwrap();
        assert!(log.answers.is_empty());
    }

    #[test]
    fn a_cname_loop_ends() {
        let (_, log) = zone().answer(&query("loop.test.", RecordType::A), "t", 0.0).unwrap();
        assert_eq!(log.answers.len(), MAX_CHAIN + 1);
    }

    #[test]
    fn garbage_and_responses_are_refused() {
        let e = zone().answer(b"\x00\x01", "10.0.0.1:53", 0.0).unwrap_err();
        assert!(e.to_string().contains("10.0.0.1:53"), "{e}");
        let (resp, _) = zone().answer(&query("a.b.", RecordType::A), "t", 0.0).unwrap();
        assert!(matches!(zone().answer(&resp, "t", 0.0), Err(DnsError::NotAQuery { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = zone().answer(&bytes, "p", 0.0);
        }

        #[test]
        fn mutated_queries_never_panic(i in 0usize..40, b in any::<u8>()) {
            let mut q = query("why.kunai.rocks.", RecordType::A);
            let i = i % q.len();
            q[i] = b;
            let _ = zone().answer(&q, "p", 0.0);
        }
    }
}

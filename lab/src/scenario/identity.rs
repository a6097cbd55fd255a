//! Who a scenario is: its names, level and ATT&CK techniques.

use std::fmt;
use std::str::FromStr;

use ioclab_agent::ioc::IocValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Declares a newtype over `String` checked by `$check` when parsed,
/// (de)serialized as text, with `$pattern` as its JSON Schema.
macro_rules! checked_text {
    ($(#[doc = $doc:literal])* $name:ident, $what:literal, $pattern:expr, $check:expr) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(into = "String")]
        pub struct $name(String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                super::text::parse(d)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let pattern: Option<&str> = $pattern;
                match pattern {
                    Some(p) => schemars::json_schema!({ "type": "string", "pattern": p, "description": $what }),
                    None => schemars::json_schema!({ "type": "string", "description": $what }),
                }
            }
        }

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                match check(&s) {
                    Ok(()) => Ok($name(s)),
                    Err(why) => Err(format!("not {}: {why}", $what)),
                }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                s.to_string().try_into()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Turns a yes/no check into a reason naming the expected form.
fn expect(ok: bool, form: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("expected {form}"))
    }
}

const SLUG: &str = "^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$";
const ATTACK: &str = "^T[0-9]{4}(\\.[0-9]{3})?$";
const UUID: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_attack_id(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(1..5),
        9 => b[0] == b'T' && digits(1..5) && b[5] == b'.' && digits(6..9),
        _ => false,
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

checked_text! {
    /// A short name: a scenario's folder, a step's, question's or detection's id.
    ScenarioId, "an id", Some(SLUG), |s| expect(is_slug(s), "lower-case letters, digits and inner hyphens, at most 64")
}

checked_text! {
    /// A MITRE ATT&CK technique or sub-technique id (`T1071`, `T1071.004`).
    AttackId, "an ATT&CK technique id", Some(ATTACK), |s| expect(is_attack_id(s), "T followed by 4 digits, optionally .NNN (T1071.004)")
}

checked_text! {
    /// A UUID in lower-case text form.
    Uuid, "a lower-case UUID", Some(UUID), |s| expect(is_uuid(s), "8-4-4-4-12 lower-case hex digits")
}

checked_text! {
    /// An IoC value as the agent matches it: a domain, IP, hash or absolute path.
    IocText, "an IoC value", None, |s| s.parse::<IocValue>().map(|_| ()).map_err(|e| e.to_string())
}

impl IocText {
    /// The typed value.
    pub fn value(&self) -> IocValue {
        self.0.parse().expect("checked when parsed")
    }
}

/// Who a scenario is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// First steps: one stage, guided.
    Beginner,
    /// Knows the tools; several stages.
    Intermediate,
    /// Few hints, answers taken from the run.
    Advanced,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Beginner => "beginner",
            Level::Intermediate => "intermediate",
            Level::Advanced => "advanced",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_ids_follow_mitre_form() {
        for good in ["T1071", "T1071.004", "T0000"] {
            assert!(good.parse::<AttackId>().is_ok(), "{good}");
        }
        for bad in ["T107", "T1071.04", "t1071", "T1071.0045", "TA0001", "T1071.", ""] {
            assert!(bad.parse::<AttackId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs_and_uuids() {
        assert!("dns-ioc-why-kunai-rocks".parse::<ScenarioId>().is_ok());
        assert!("Bad_Id".parse::<ScenarioId>().is_err());
        assert!("-x".parse::<ScenarioId>().is_err());
        assert!("4f3b2a10-6c1d-4e8f-9a2b-0c1d2e3f4a5b".parse::<Uuid>().is_ok());
        assert!("4F3B2A10-6c1d-4e8f-9a2b-0c1d2e3f4a5b".parse::<Uuid>().is_err());
        assert!("not-a-uuid".parse::<Uuid>().is_err());
    }
}

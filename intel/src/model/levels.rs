//! MISP's event-level enumerations: distribution, threat level, analysis
//! state. MISP sends them as strings of digits; configs give them as numbers.

use serde::{Deserialize, Serialize};

macro_rules! misp_enum {
    ($(#[doc = $doc:literal])* $name:ident ($what:literal) { $($(#[doc = $vdoc:literal])* $variant:ident = $n:literal,)+ }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub enum $name {
            $($(#[doc = $vdoc])* $variant = $n,)+
        }

        impl $name {
            /// Every value, in MISP's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// MISP's number.
            pub fn id(self) -> i64 {
                self as i64
            }

            /// What the number means, for people.
            pub fn meaning(self) -> &'static str {
                match self {
                    $($name::$variant => concat!($($vdoc),*).trim()),+
                }
            }

            /// The allowed numbers and their meanings, for error messages and help.
            pub fn choices() -> String {
                Self::ALL.iter().map(|v| format!("{} {}", v.id(), v.meaning())).collect::<Vec<_>>().join(", ")
            }
        }

        impl TryFrom<i64> for $name {
            type Error = String;
            fn try_from(n: i64) -> Result<Self, String> {
                match n {
                    $($n => Ok($name::$variant),)+
                    _ => Err(format!(concat!("{} is not a MISP ", $what, " (one of: {})"), n, Self::choices())),
                }
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                v.id()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.id())
            }
        }
    };
}

misp_enum! {
    /// Who may see an event (`distribution`).
    Distribution ("distribution") {
        /// your organisation only
        Organisation = 0,
        /// this community
        Community = 1,
        /// connected communities
        Connected = 2,
        /// all communities
        All = 3,
        /// a sharing group
        SharingGroup = 4,
    }
}

misp_enum! {
    /// How bad an event is (`threat_level_id`).
    ThreatLevel ("threat level") {
        /// high
        High = 1,
        /// medium
        Medium = 2,
        /// low
        Low = 3,
        /// undefined
        Undefined = 4,
    }
}

misp_enum! {
    /// How far the analysis of an event went (`analysis`).
    Analysis ("analysis state") {
        /// initial
        Initial = 0,
        /// ongoing
        Ongoing = 1,
        /// completed
        Completed = 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_both_ways_and_errors_list_the_choices() {
        assert_eq!(ThreatLevel::try_from(4), Ok(ThreatLevel::Undefined));
        assert_eq!(Distribution::Organisation.id(), 0);
        assert_eq!(serde_json::to_string(&Analysis::Completed).unwrap(), "2");
        let e = ThreatLevel::try_from(0).unwrap_err();
        assert!(e.contains("1 high") && e.contains("4 undefined"), "{e}");
        assert!(serde_json::from_str::<Distribution>("5").is_err());
    }
}

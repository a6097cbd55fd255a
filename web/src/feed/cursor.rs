//! The paging cursor of the event stream (`?before=<source>:<n>`): the
//! position of the last event a page showed; the next page starts below it.

use std::fmt;
use std::str::FromStr;

use ioclab_lab::run::RunId;

/// Where endpoint events come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The live lab's feed (`n` = its sequence number).
    Live,
    /// A run's `events.jsonl` (`n` = the line, from 0).
    Run(RunId),
}

impl Source {
    /// `live` or the run's id, as URLs carry it.
    pub fn as_str(&self) -> &str {
        match self {
            Source::Live => "live",
            Source::Run(id) => id.as_str(),
        }
    }

    /// `live`, or a run id (`None` for anything else).
    pub fn parse(s: &str) -> Option<Source> {
        if s == "live" {
            return Some(Source::Live);
        }
        RunId::parse(s).map(Source::Run)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event's position: its source and its number there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// Where the event is.
    pub source: Source,
    /// Its number in the source.
    pub n: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.n)
    }
}

/// Why a cursor was refused: the input (cut to 80 characters), where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor before={input:?} is not <source>:<number> (live:12, or a run id:12): {why} at character {at}")]
pub struct CursorError {
    /// The cursor as given (its first 80 characters).
    pub input: String,
    /// The character where it goes wrong (from 0).
    pub at: usize,
    /// What is wrong there.
    pub why: &'static str,
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Cursor, CursorError> {
        let err = |at_byte: usize, why| CursorError {
            input: s.chars().take(80).collect(),
            at: s[..at_byte].chars().count(),
            why,
        };
        // run ids never hold `:`: the last one splits source and number
        let Some(colon) = s.rfind(':') else { return Err(err(s.len(), "no `:` between the source and the number")) };
        let (source, number) = (&s[..colon], &s[colon + 1..]);
        let source = Source::parse(source).ok_or_else(|| err(0, "the source is neither `live` nor a run id"))?;
        if number.is_empty() {
            return Err(err(s.len(), "the number is missing"));
        }
        if let Some(i) = number.find(|c: char| !c.is_ascii_digit()) {
            return Err(err(colon + 1 + i, "the number holds something other than digits"));
        }
        let n = number.parse().map_err(|_| err(colon + 1, "the number is too large"))?;
        Ok(Cursor { source, n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cursors_read_and_write_back() {
        let c: Cursor = "dns-ioc-20261130T120000Z-1:42".parse().unwrap();
        assert_eq!(c.source, Source::Run(RunId::parse("dns-ioc-20261130T120000Z-1").unwrap()));
        assert_eq!(c.n, 42);
        assert_eq!(c.to_string(), "dns-ioc-20261130T120000Z-1:42");
        assert_eq!("live:0".parse::<Cursor>().unwrap(), Cursor { source: Source::Live, n: 0 });
    }

    #[test]
    fn bad_cursors_say_what_and_where() {
        let e = "live".parse::<Cursor>().unwrap_err();
        assert_eq!((e.at, e.why), (4, "no `:` between the source and the number"));
        let e = "live:12x".parse::<Cursor>().unwrap_err();
        assert_eq!(e.at, 7);
        assert!(e.to_string().contains("before=\"live:12x\""), "{e}");
        let e = "../etc:1".parse::<Cursor>().unwrap_err();
        assert_eq!(e.why, "the source is neither `live` nor a run id");
        assert_eq!("live:".parse::<Cursor>().unwrap_err().why, "the number is missing");
        assert_eq!("live:99999999999999999999999".parse::<Cursor>().unwrap_err().why, "the number is too large");
        assert_eq!("é:-1".parse::<Cursor>().unwrap_err().at, 0);
        let long = "x".repeat(500);
        assert_eq!(long.parse::<Cursor>().unwrap_err().input.len(), 80);
    }

    proptest! {
        #[test]
        fn any_text_is_a_cursor_or_an_error_never_a_panic(s in "\\PC{0,40}") {
            match s.parse::<Cursor>() {
                Ok(c) => prop_assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c),
                Err(e) => prop_assert!(e.at <= s.chars().count()),
            }
        }

        #[test]
        fn every_position_reads_back(id in "[a-z0-9][a-z0-9._-]{0,40}", n in any::<u64>()) {
            let c = Cursor { source: Source::parse(&id).unwrap(), n };
            prop_assert_eq!(c.to_string().parse::<Cursor>().unwrap(), c);
        }

        #[test]
        fn near_cursors_are_refused_with_a_place_inside_them(s in "(live|run-[0-9]{1,3})[:]?[0-9a-z:é-]{0,6}") {
            if let Err(e) = s.parse::<Cursor>() {
                prop_assert!(e.at <= s.chars().count());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

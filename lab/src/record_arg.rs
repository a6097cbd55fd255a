//! `NAME=TYPE:VALUE`, the DNS records given on the command line
//! (`ioclab lab shell --record why.kunai.rocks=CNAME:kunai-project.github.io`).

use ioclab_sandbox::detonation::{DnsRecord, DnsRecordData};

/// Why a `--record` argument was refused; the message quotes the argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--record {arg:?}: {why} (expected NAME=TYPE:VALUE, e.g. why.kunai.rocks=CNAME:kunai-project.github.io)")]
pub struct RecordArgError {
    /// The argument as given.
    pub arg: String,
    /// What is wrong with it.
    pub why: String,
}

/// Parses `NAME=TYPE:VALUE` (TYPE is A, AAAA or CNAME, any case).
pub fn parse_record_arg(arg: &str) -> Result<DnsRecord, RecordArgError> {
    let err = |why: String| RecordArgError { arg: arg.to_string(), why };
    let (name, rest) = arg.split_once('=').ok_or_else(|| err("no '=' after the name".into()))?;
    let name = domain(name).map_err(|why| err(format!("name: {why}")))?;
    let (rtype, value) = rest.split_once(':').ok_or_else(|| err("no ':' between the type and the value".into()))?;
    let data = match rtype.to_ascii_uppercase().as_str() {
        "A" => DnsRecordData::A(value.parse().map_err(|_| err(format!("{value:?} is not an IPv4 address")))?),
        "AAAA" => DnsRecordData::AAAA(value.parse().map_err(|_| err(format!("{value:?} is not an IPv6 address")))?),
        "CNAME" => DnsRecordData::CNAME(domain(value).map_err(|why| err(format!("CNAME target: {why}")))?),
        other => return Err(err(format!("type {other:?} is not one of A, AAAA, CNAME"))),
    };
    Ok(DnsRecord { name, data })
}

/// A DNS name, lower case, without the final dot.
fn domain(s: &str) -> Result<String, String> {
    let d = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if d.is_empty() {
        return Err("empty".into());
    }
    if d.len() > 253 {
        return Err(format!("{} characters, more than 253", d.len()));
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {label:?} in {s:?} must have 1 to 63 characters"));
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
            return Err(format!("{c:?} in {s:?} is not a letter, digit, '-' or '_'"));
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_blog_records_parse() {
        let r = parse_record_arg("Why.Kunai.Rocks.=cname:kunai-project.github.io").unwrap();
        assert_eq!(r.name, "why.kunai.rocks");
        assert_eq!(r.data, DnsRecordData::CNAME("kunai-project.github.io".into()));
        let r = parse_record_arg("kunai-project.github.io=A:127.0.66.80").unwrap();
        assert_eq!(r.data, DnsRecordData::A([127, 0, 66, 80].into()));
        let r = parse_record_arg("v6.example=AAAA:2001:db8::5").unwrap();
        assert_eq!(r.data, DnsRecordData::AAAA("2001:db8::5".parse().unwrap()));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        for (arg, want) in [
            ("why.kunai.rocks", "no '='"),
            ("why.kunai.rocks=A", "no ':'"),
            ("=A:1.2.3.4", "name: empty"),
            ("a..b=A:1.2.3.4", "label \"\""),
            ("x y=A:1.2.3.4", "' '"),
            ("x=MX:mail.x", "\"MX\""),
            ("x=A:300.1.1.1", "not an IPv4"),
            ("x=AAAA:1.2.3.4", "not an IPv6"),
            ("x=CNAME:", "CNAME target: empty"),
        ] {
            let e = parse_record_arg(arg).unwrap_err().to_string();
            assert!(e.contains(&format!("{arg:?}")) && e.contains(want), "{arg}: {e}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_errors_name_the_argument(arg in ".{0,80}") {
            if let Err(e) = parse_record_arg(&arg) {
                let quoted = format!("{arg:?}");
                prop_assert!(e.to_string().contains(&quoted), "{} lacks {}", e, quoted);
            }
        }

        #[test]
        fn near_valid_arguments_never_panic(
            name in "[a-zA-Z0-9._ -]{0,70}",
            rtype in "(A|AAAA|CNAME|a|cname|TXT|)",
            value in "[0-9a-f:.x]{0,45}",
        ) {
            let arg = format!("{name}={rtype}:{value}");
            match parse_record_arg(&arg) {
                Ok(r) => prop_assert!(!r.name.is_empty() && !r.name.ends_with('.')),
                Err(e) => prop_assert_eq!(e.arg, arg),
            }
        }
    }
}

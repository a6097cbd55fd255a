//! The sample: its hashes and type, and the package that runs it.

use std::io::Read;
use std::path::Path;

use md5::Digest as _;

use crate::detonation::{DetonateError, FileFacts};
use ioclab_agent::hashes::{Md5, Sha1, Sha256, Sha512};

/// Hashes and type of the file at `path`, read whole.
pub fn facts(path: &Path) -> std::io::Result<FileFacts> {
    let mut f = std::fs::File::open(path)?;
    let (mut md5, mut sha1, mut sha256, mut sha512) =
        (md5::Md5::new(), sha1::Sha1::new(), sha2::Sha256::new(), sha2::Sha512::new());
    let mut head = Vec::with_capacity(4096);
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let b = &buf[..n];
        if head.len() < 4096 {
            head.extend_from_slice(&b[..n.min(4096 - head.len())]);
        }
        md5.update(b);
        sha1.update(b);
        sha256.update(b);
        sha512.update(b);
        size += n as u64;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(FileFacts {
        size,
        md5: Md5(md5.finalize().into()),
        sha1: Sha1(sha1.finalize().into()),
        sha256: Sha256(sha256.finalize().into()),
        sha512: Sha512(sha512.finalize().into()),
        ssdeep: None,
        kind: kind(&head, &name),
    })
}

fn elf_machine(m: u16) -> &'static str {
    match m {
        3 => "Intel 80386",
        40 => "ARM",
        62 => "x86-64",
        183 => "ARM aarch64",
        243 => "RISC-V",
        _ => "unknown arch",
    }
}

/// What the content is, in file(1)'s words for the common cases.
pub fn kind(head: &[u8], name: &str) -> String {
    if head.starts_with(b"\x7fELF") && head.len() >= 20 {
        let bits = if head[4] == 2 { "64-bit" } else { "32-bit" };
        let le = head[5] != 2;
        let u16_at = |i: usize| {
            if le {
                u16::from_le_bytes([head[i], head[i + 1]])
            } else {
                u16::from_be_bytes([head[i], head[i + 1]])
            }
        };
        let ty = match u16_at(16) {
            1 => "relocatable",
            2 => "executable",
            3 => "pie executable",
            4 => "core file",
            _ => "unknown type",
        };
        return format!("ELF {bits} {} {ty}, {}", if le { "LSB" } else { "MSB" }, elf_machine(u16_at(18)));
    }
    if let Some(interp) = shebang(head) {
        let name = Path::new(&interp).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(interp);
        return match name.as_str() {
            "sh" | "dash" => "POSIX shell script, ASCII text executable".into(),
            other => format!("{other} script, ASCII text executable"),
        };
    }
    let magic: &[(&[u8], &str)] = &[
        (b"\x1f\x8b", "gzip compressed data"),
        (b"PK\x03\x04", "Zip archive data"),
        (b"%PDF-", "PDF document"),
        (b"MZ", "PE32 executable (MS-DOS stub)"),
        (b"BZh", "bzip2 compressed data"),
        (b"\xfd7zXZ\x00", "XZ compressed data"),
    ];
    if let Some((_, k)) = magic.iter().find(|(m, _)| head.starts_with(m)) {
        return (*k).into();
    }
    let text = !head.is_empty() && std::str::from_utf8(head).is_ok() && !head.contains(&0);
    match (text, extension(name)) {
        (true, Some("sh")) => "POSIX shell script, ASCII text".into(),
        (true, Some("py")) => "Python script, ASCII text".into(),
        (true, _) => "ASCII text".into(),
        (false, _) if head.is_empty() => "empty".into(),
        _ => "data".into(),
    }
}

fn extension(name: &str) -> Option<&str> {
    Path::new(name).extension().and_then(|e| e.to_str())
}

/// The interpreter named by a `#!` line (`env X` gives X).
pub fn shebang(head: &[u8]) -> Option<String> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let interp = words.next()?;
    if interp.ends_with("/env") {
        return words.find(|w| !w.starts_with('-')).map(str::to_string);
    }
    Some(interp.to_string())
}

/// How a file runs inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The name reported ("elf", "sh", "python3", "curl"...).
    pub name: String,
    /// The interpreter to run the file with; `None`: exec the file itself.
    pub interpreter: Option<String>,
}

/// Interpreters a package name or extension maps to.
const INTERPRETERS: &[(&str, &str)] = &[
    ("sh", "/bin/sh"),
    ("bash", "/bin/bash"),
    ("python", "/usr/bin/python3"),
    ("python3", "/usr/bin/python3"),
    ("py", "/usr/bin/python3"),
    ("perl", "/usr/bin/perl"),
    ("pl", "/usr/bin/perl"),
];

const HOST_MACHINE: u16 = if cfg!(target_arch = "x86_64") {
    62
} else if cfg!(target_arch = "aarch64") {
    183
} else {
    0
};

/// Chooses the package: the job's, else from the content (ELF: itself;
/// `#!`: itself, through its interpreter; else by extension).
pub fn choose(requested: Option<&str>, head: &[u8], name: &str) -> Result<Package, DetonateError> {
    let no = |reason: String| DetonateError::NoPackage { name: name.to_string(), reason };
    if let Some(p) = requested.filter(|p| !p.is_empty()) {
        if p == "elf" || p == "bin" {
            return Ok(Package { name: "elf".into(), interpreter: None });
        }
        return match INTERPRETERS.iter().find(|(k, _)| *k == p) {
            Some((k, i)) => Ok(Package { name: (*k).into(), interpreter: Some((*i).into()) }),
            None => Err(no(format!(
                "unknown package {p:?} (known: elf, {})",
                INTERPRETERS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ))),
        };
    }
    if head.starts_with(b"\x7fELF") {
        if head.len() >= 20 && HOST_MACHINE != 0 {
            let le = head[5] != 2;
            let m =
                if le { u16::from_le_bytes([head[18], head[19]]) } else { u16::from_be_bytes([head[18], head[19]]) };
            if m != HOST_MACHINE {
                return Err(no(format!(
                    "an ELF for {}, this machine runs {}",
                    elf_machine(m),
                    elf_machine(HOST_MACHINE)
                )));
            }
        }
        return Ok(Package { name: "elf".into(), interpreter: None });
    }
    if let Some(interp) = shebang(head) {
        let base = Path::new(&interp).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(interp);
        return Ok(Package { name: base, interpreter: None });
    }
    if head.is_empty() {
        return Err(no("the file is empty".into()));
    }
    if let Some((k, i)) = extension(name).and_then(|e| INTERPRETERS.iter().find(|(k, _)| *k == e)) {
        let k = if *k == "py" {
            "python3"
        } else if *k == "pl" {
            "perl"
        } else {
            k
        };
        return Ok(Package { name: k.into(), interpreter: Some((*i).into()) });
    }
    Err(no(format!("{}: not an ELF, no #! line, no known extension (.sh, .py, .pl)", kind(head, name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0";
        if cfg!(target_arch = "x86_64") {
            assert_eq!(choose(None, elf, "a").unwrap().name, "elf");
            assert_eq!(kind(elf, "a"), "ELF 64-bit LSB executable, x86-64");
        }
        assert_eq!(choose(None, b"#!/usr/bin/env python3\nprint(1)", "x").unwrap().name, "python3");
        assert_eq!(choose(None, b"#!/bin/sh\necho", "x").unwrap(), Package { name: "sh".into(), interpreter: None });
        assert_eq!(choose(None, b"echo hi\n", "x.sh").unwrap().interpreter.as_deref(), Some("/bin/sh"));
        assert_eq!(choose(None, b"print(1)\n", "x.py").unwrap().name, "python3");
        let e = choose(None, b"\x00\x01\x02binary", "blob.bin").unwrap_err().to_string();
        assert!(e.contains("blob.bin") && e.contains("data"), "{e}");
        assert!(choose(None, b"", "e").unwrap_err().to_string().contains("empty"));
        assert!(choose(Some("cobol"), b"x", "e").unwrap_err().to_string().contains("unknown package"));
        assert_eq!(choose(Some("bash"), b"x", "e").unwrap().interpreter.as_deref(), Some("/bin/bash"));
    }

    #[test]
    fn foreign_elves_are_refused() {
        let arm = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xb7\0";
        if cfg!(target_arch = "x86_64") {
            assert!(choose(None, arm, "a").unwrap_err().to_string().contains("aarch64"));
        }
    }

    #[test]
    fn hashes_match_known_values() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        let f = facts(&p).unwrap();
        assert_eq!(f.size, 3);
        assert_eq!(f.md5.to_string(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(f.sha256.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(f.kind, "ASCII text");
    }
}

//! A sample zipped the way MISP stores `malware-sample` attachments: two
//! entries, `<md5>` (the file) and `<md5>.filename.txt` (its name), under
//! the password `infected` with the traditional PKWARE cipher ("ZipCrypto",
//! what `zip -P` writes and what MISP produces), which Python's `zipfile`
//! and PyMISP read. Deflated with flate2.

use std::io::Write;

use flate2::write::DeflateEncoder;
use flate2::Compression;
use rand::RngCore;

/// MISP's password for sample archives.
pub const PASSWORD: &[u8] = b"infected";

fn crc_table() -> &'static [u32; 256] {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *slot = c;
        }
        t
    })
}

/// One step of CRC-32, as the cipher's key schedule uses it.
fn crc_step(crc: u32, byte: u8) -> u32 {
    crc_table()[((crc ^ byte as u32) & 0xff) as usize] ^ (crc >> 8)
}

fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, b| crc_step(c, *b))
}

/// The traditional PKWARE stream cipher (APPNOTE 6.1).
struct ZipCrypto([u32; 3]);

impl ZipCrypto {
    fn new(password: &[u8]) -> Self {
        let mut k = ZipCrypto([0x1234_5678, 0x2345_6789, 0x3456_7890]);
        for b in password {
            k.update(*b);
        }
        k
    }

    fn update(&mut self, plain: u8) {
        let k = &mut self.0;
        k[0] = crc_step(k[0], plain);
        k[1] = k[1].wrapping_add(k[0] & 0xff).wrapping_mul(134_775_813).wrapping_add(1);
        k[2] = crc_step(k[2], (k[1] >> 24) as u8);
    }

    fn encrypt(&mut self, plain: u8) -> u8 {
        let t = (self.0[2] | 2) & 0xffff;
        let c = plain ^ ((t.wrapping_mul(t ^ 1) >> 8) & 0xff) as u8;
        self.update(plain);
        c
    }
}

struct Entry {
    name: String,
    crc: u32,
    size: u32,
    body: Vec<u8>,
    offset: u32,
}

/// The archive MISP keeps for a sample of `md5` called `filename`.
pub fn misp_sample_zip(sample: &[u8], md5: &str, filename: &str) -> std::io::Result<Vec<u8>> {
    let files = [(md5.to_string(), sample), (format!("{md5}.filename.txt"), filename.as_bytes())];
    let too_big = || std::io::Error::other("the sample is larger than a 32-bit zip holds (4 GiB)");
    let mut out = Vec::new();
    let mut entries = Vec::new();
    for (name, data) in files {
        let crc = crc32(data);
        let mut z = DeflateEncoder::new(Vec::new(), Compression::default());
        z.write_all(data)?;
        let deflated = z.finish()?;
        let mut cipher = ZipCrypto::new(PASSWORD);
        let mut header = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut header[..11]);
        // the last header byte is the CRC's high byte: readers check the password with it
        header[11] = (crc >> 24) as u8;
        let body: Vec<u8> = header.iter().chain(deflated.iter()).map(|b| cipher.encrypt(*b)).collect();
        let offset = u32::try_from(out.len()).map_err(|_| too_big())?;
        let size = u32::try_from(data.len()).map_err(|_| too_big())?;
        let e = Entry { name, crc, size, body, offset };
        local_header(&mut out, &e)?;
        out.extend_from_slice(&e.body);
        entries.push(e);
    }
    let cd_start = u32::try_from(out.len()).map_err(|_| too_big())?;
    for e in &entries {
        central_header(&mut out, e)?;
    }
    let cd_size = u32::try_from(out.len()).map_err(|_| too_big())? - cd_start;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // disk numbers
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    Ok(out)
}

/// Version needed 2.0, flag bit 0 (encrypted), deflate, a fixed DOS time (1980-01-01).
fn common_fields(out: &mut Vec<u8>, e: &Entry) -> std::io::Result<()> {
    let body = u32::try_from(e.body.len()).map_err(|_| std::io::Error::other("entry too large"))?;
    out.extend_from_slice(&20u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0x0021u16.to_le_bytes());
    out.extend_from_slice(&e.crc.to_le_bytes());
    out.extend_from_slice(&body.to_le_bytes());
    out.extend_from_slice(&e.size.to_le_bytes());
    out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // extra length
    Ok(())
}

fn local_header(out: &mut Vec<u8>, e: &Entry) -> std::io::Result<()> {
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    common_fields(out, e)?;
    out.extend_from_slice(e.name.as_bytes());
    Ok(())
}

fn central_header(out: &mut Vec<u8>, e: &Entry) -> std::io::Result<()> {
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // made by
    common_fields(out, e)?;
    out.extend_from_slice(&[0, 0, 0, 0]); // comment length, disk number
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // internal and external attributes
    out.extend_from_slice(&e.offset.to_le_bytes());
    out.extend_from_slice(e.name.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_the_check_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// Python's zipfile (what PyMISP uses) opens it with `infected`, refuses
    /// it without, and finds MISP's two entries.
    #[test]
    fn python_zipfile_reads_it_with_the_password_only() {
        let sample = b"#!/bin/sh\necho stage2\n".repeat(50);
        let md5 = "0123456789abcdef0123456789abcdef";
        let zip = misp_sample_zip(&sample, md5, "dropper.sh").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.zip");
        std::fs::write(&path, &zip).unwrap();
        let script = "import sys, zipfile\n\
            z = zipfile.ZipFile(sys.argv[1])\n\
            print(sorted(z.namelist()))\n\
            try:\n    z.read(z.namelist()[0])\n    print('opened without password')\nexcept RuntimeError:\n    print('needs password')\n\
            sys.stdout.write(z.read(sys.argv[2] + '.filename.txt', pwd=b'infected').decode() + '\\n')\n\
            sys.stdout.write(str(len(z.read(sys.argv[2], pwd=b'infected'))) + '\\n')\n";
        let out = std::process::Command::new("python3").arg("-c").arg(script).arg(&path).arg(md5).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("['{md5}', '{md5}.filename.txt']"));
        assert_eq!(lines[1], "needs password");
        assert_eq!(lines[2], "dropper.sh");
        assert_eq!(lines[3], sample.len().to_string());
    }
}

//! The name of a kernel module, from the `.modinfo` section of its ELF image
//! (NUL-separated `key=value` strings; the build adds `name=`). Images come
//! from anyone who calls init_module/finit_module: every offset is checked,
//! nothing here panics.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

/// Why a `.modinfo` section could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModinfoError {
    /// The bytes do not start like a 64-bit ELF file.
    #[error("not a 64-bit ELF image")]
    NotElf64,
    /// A header or table points past the end of the image.
    #[error("ELF {0} out of the image's bounds")]
    OutOfBounds(&'static str),
    /// No section is named `.modinfo`.
    #[error("no .modinfo section")]
    NoModinfo,
}

const EHDR_LEN: usize = 64;
const SHDR_LEN: usize = 64;

/// Reads unsigned integers in the image's byte order.
struct Elf<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Elf<'_> {
    fn uint(&self, at: usize, len: usize, what: &'static str) -> Result<u64, ModinfoError> {
        let b = at.checked_add(len).and_then(|end| self.bytes.get(at..end)).ok_or(ModinfoError::OutOfBounds(what))?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if self.big_endian { b[i] } else { b[len - 1 - i] };
            v = (v << 8) | byte as u64;
        }
        Ok(v)
    }

    /// (offset, size) of section `index`, checked against the image.
    fn section(&self, shoff: usize, index: usize) -> Result<(usize, usize), ModinfoError> {
        let at = index
            .checked_mul(SHDR_LEN)
            .and_then(|o| o.checked_add(shoff))
            .ok_or(ModinfoError::OutOfBounds("section header"))?;
        let offset = self.uint(at.saturating_add(24), 8, "section header")? as usize;
        let size = self.uint(at.saturating_add(32), 8, "section header")? as usize;
        match offset.checked_add(size) {
            Some(end) if end <= self.bytes.len() => Ok((offset, size)),
            _ => Err(ModinfoError::OutOfBounds("section")),
        }
    }
}

/// The `.modinfo` section of a 64-bit ELF image (a `.ko` file's content).
pub fn modinfo_section(image: &[u8]) -> Result<&[u8], ModinfoError> {
    if image.len() < EHDR_LEN || &image[..4] != b"\x7fELF" || image[4] != 2 {
        return Err(ModinfoError::NotElf64);
    }
    let elf = Elf { bytes: image, big_endian: image[5] == 2 };
    let shoff = elf.uint(40, 8, "header")? as usize;
    let shentsize = elf.uint(58, 2, "header")? as usize;
    let shnum = elf.uint(60, 2, "header")? as usize;
    let shstrndx = elf.uint(62, 2, "header")? as usize;
    if shentsize != SHDR_LEN || shstrndx >= shnum {
        return Err(ModinfoError::OutOfBounds("section header table"));
    }
    let (str_off, str_size) = elf.section(shoff, shstrndx)?;
    let names = &image[str_off..str_off + str_size];
    for i in 0..shnum {
        let at = shoff.checked_add(i * SHDR_LEN).ok_or(ModinfoError::OutOfBounds("section header"))?;
        let name_off = elf.uint(at, 4, "section header")? as usize;
        let name = names.get(name_off..).map(|n| n.split(|&b| b == 0).next().unwrap_or(&[]));
        if name == Some(b".modinfo") {
            let (off, size) = elf.section(shoff, i)?;
            return Ok(&image[off..off + size]);
        }
    }
    Err(ModinfoError::NoModinfo)
}

/// The value of `key` in `.modinfo` content (the first one; entries may be
/// separated by several NULs, for alignment).
pub fn modinfo_value<'a>(modinfo: &'a [u8], key: &str) -> Option<Cow<'a, str>> {
    modinfo.split(|&b| b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(key.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(rest))
    })
}

/// A module's name from its file name: `/lib/modules/.../nf_tables.ko.zst` → `nf_tables`.
pub fn name_from_file_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = [".xz", ".zst", ".gz"].iter().find_map(|ext| base.strip_suffix(ext)).unwrap_or(base);
    base.strip_suffix(".ko").unwrap_or(base).to_string()
}

/// The name of the module in the file at `path`: `name=` of its
/// `.modinfo`, else (compressed, stripped or unreadable) its file name.
/// Files over `max_size` bytes are not read.
pub fn module_name_of_file(path: &str, max_size: u64) -> String {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::fs::File::open(Path::new(path))?.take(max_size).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    if let Ok(bytes) = read() {
        if let Some(name) = modinfo_section(&bytes).ok().and_then(|m| modinfo_value(m, "name")) {
            return name.into_owned();
        }
    }
    name_from_file_name(path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal little-endian ELF64 image: a null section, `.modinfo` with
    /// `modinfo`, and the section-name table.
    pub(crate) fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let mut img = vec![0u8; EHDR_LEN];
        img[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let modinfo_off = img.len();
        img.extend_from_slice(modinfo);
        let names_off = img.len();
        img.extend_from_slice(names);
        while img.len() % 8 != 0 {
            img.push(0);
        }
        let shoff = img.len();
        let shdr = |name: u32, off: usize, size: usize| {
            let mut h = vec![0u8; SHDR_LEN];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        img.extend(shdr(0, 0, 0));
        img.extend(shdr(1, modinfo_off, modinfo.len()));
        img.extend(shdr(10, names_off, names.len()));
        img[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
        img[58..60].copy_from_slice(&(SHDR_LEN as u16).to_le_bytes());
        img[60..62].copy_from_slice(&3u16.to_le_bytes());
        img[62..64].copy_from_slice(&2u16.to_le_bytes());
        img
    }

    #[test]
    fn finds_the_name() {
        let img = elf_with_modinfo(b"license=GPL\0\0\0depends=\0name=ioclab_probe\0vermagic=6.18\0");
        let m = modinfo_section(&img).unwrap();
        assert_eq!(modinfo_value(m, "name").as_deref(), Some("ioclab_probe"));
        assert_eq!(modinfo_value(m, "license").as_deref(), Some("GPL"));
        assert_eq!(modinfo_value(m, "depends").as_deref(), Some(""));
        assert_eq!(modinfo_value(m, "nam"), None, "whole keys only");
    }

    #[test]
    fn clear_errors() {
        assert_eq!(modinfo_section(b"MZ\0\0"), Err(ModinfoError::NotElf64));
        let mut img = elf_with_modinfo(b"name=x\0");
        let no_modinfo = {
            let mut i = img.clone();
            let at = i.len() - 2 * SHDR_LEN; // .modinfo's header: rename it to the null name
            i[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
            i
        };
        assert_eq!(modinfo_section(&no_modinfo), Err(ModinfoError::NoModinfo));
        img.truncate(img.len() - 40); // cuts the offset and size of the last section header
        assert!(matches!(modinfo_section(&img), Err(ModinfoError::OutOfBounds(_))));
    }

    #[test]
    fn file_names() {
        assert_eq!(name_from_file_name("/lib/modules/6.1/kernel/net/nf_tables.ko.zst"), "nf_tables");
        assert_eq!(name_from_file_name("rootkit.ko"), "rootkit");
        assert_eq!(name_from_file_name("/tmp/blob"), "blob");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("file-name.ko");
        std::fs::write(&p, elf_with_modinfo(b"name=real_name\0")).unwrap();
        assert_eq!(module_name_of_file(p.to_str().unwrap(), 1 << 20), "real_name");
        std::fs::write(&p, b"not elf").unwrap();
        assert_eq!(module_name_of_file(p.to_str().unwrap(), 1 << 20), "file-name");
        assert_eq!(module_name_of_file("/nonexistent/gone.ko.xz", 1 << 20), "gone");
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = modinfo_section(&bytes);
            let _ = modinfo_value(&bytes, "name");
        }

        #[test]
        fn corrupted_images_never_panic(modinfo in "[a-z=\\x00]{0,64}", flips in proptest::collection::vec((0usize..400, any::<u8>()), 1..8)) {
            let mut img = elf_with_modinfo(modinfo.as_bytes());
            for (at, b) in flips {
                let n = img.len();
                img[at % n] = b;
            }
            let _ = modinfo_section(&img).map(|m| modinfo_value(m, "name"));
        }
    }
}

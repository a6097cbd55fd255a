//! Idempotent file operations: write only what differs, replace by rename
//! (a running binary is never written in place), remove what is there.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{InstallError, Outcome};

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io { what, path, source }
}

/// A sibling of `path` to write before renaming over it.
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.ioclab-install-{}", std::process::id()))
}

fn mode(path: &Path) -> Option<u32> {
    fs::symlink_metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

fn make_parent(path: &Path) -> Result<(), InstallError> {
    let parent = path.parent().expect("an absolute path has a parent");
    fs::DirBuilder::new().recursive(true).mode(0o755).create(parent).map_err(io("creating", parent))
}

/// Whether two files hold the same bytes (read in blocks: the binary is big).
fn same_content(a: &Path, b: &Path) -> Result<bool, InstallError> {
    let (ma, mb) = (fs::metadata(a).map_err(io("reading", a))?, fs::metadata(b).map_err(io("reading", b))?);
    if ma.len() != mb.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (fs::File::open(a).map_err(io("reading", a))?, fs::File::open(b).map_err(io("reading", b))?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).map_err(io("reading", a))?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n]).map_err(io("reading", b))?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Copies `src` to `dst` with `perm` unless `dst` already holds the same bytes and mode.
pub fn install_file(src: &Path, dst: &Path, perm: u32) -> Result<Outcome, InstallError> {
    let existed = dst.exists();
    if existed && mode(dst) == Some(perm) && same_content(src, dst)? {
        return Ok(Outcome::AlreadyInstalled);
    }
    make_parent(dst)?;
    let tmp = temporary(dst);
    fs::copy(src, &tmp).map_err(io("copying to", &tmp))?;
    finish(&tmp, dst, perm)?;
    Ok(if existed { Outcome::Updated } else { Outcome::Created })
}

/// Writes `bytes` to `path` with `perm` unless it already holds them.
pub fn write_file(path: &Path, bytes: &[u8], perm: u32) -> Result<Outcome, InstallError> {
    let existed = path.exists();
    if existed && mode(path) == Some(perm) && fs::read(path).map_err(io("reading", path))? == bytes {
        return Ok(Outcome::AlreadyInstalled);
    }
    make_parent(path)?;
    let tmp = temporary(path);
    fs::write(&tmp, bytes).map_err(io("writing", &tmp))?;
    finish(&tmp, path, perm)?;
    Ok(if existed { Outcome::Updated } else { Outcome::Created })
}

fn finish(tmp: &Path, dst: &Path, perm: u32) -> Result<(), InstallError> {
    let done = fs::set_permissions(tmp, fs::Permissions::from_mode(perm))
        .map_err(io("setting the mode of", tmp))
        .and_then(|()| fs::rename(tmp, dst).map_err(io("renaming into place", dst)));
    if done.is_err() {
        let _ = fs::remove_file(tmp);
    }
    done
}

/// Creates the directory `path` (and its parents) with `perm` if missing.
pub fn create_dir(path: &Path, perm: u32) -> Result<Outcome, InstallError> {
    if path.is_dir() {
        return Ok(Outcome::AlreadyInstalled);
    }
    make_parent(path)?;
    fs::DirBuilder::new().mode(perm).create(path).map_err(io("creating", path))?;
    // the umask may have narrowed the mode
    fs::set_permissions(path, fs::Permissions::from_mode(perm)).map_err(io("setting the mode of", path))?;
    Ok(Outcome::Created)
}

/// Whether two trees hold the same names, contents and modes.
fn same_tree(a: &Path, b: &Path) -> Result<bool, InstallError> {
    let list = |dir: &Path| -> Result<Vec<(std::ffi::OsString, fs::FileType)>, InstallError> {
        let mut v = Vec::new();
        for e in fs::read_dir(dir).map_err(io("listing", dir))? {
            let e = e.map_err(io("listing", dir))?;
            v.push((e.file_name(), e.file_type().map_err(io("listing", dir))?));
        }
        v.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(v)
    };
    let (la, lb) = (list(a)?, list(b)?);
    if la.len() != lb.len() {
        return Ok(false);
    }
    for ((na, ta), (nb, tb)) in la.iter().zip(&lb) {
        let (pa, pb) = (a.join(na), b.join(nb));
        let same = na == nb
            && mode(&pa) == mode(&pb)
            && match (ta.is_dir(), tb.is_dir()) {
                (true, true) => same_tree(&pa, &pb)?,
                (false, false) => ta.is_file() && tb.is_file() && same_content(&pa, &pb)?,
                _ => false,
            };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), InstallError> {
    fs::create_dir(dst).map_err(io("creating", dst))?;
    for e in fs::read_dir(src).map_err(io("listing", src))? {
        let e = e.map_err(io("listing", src))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let kind = e.file_type().map_err(io("listing", src))?;
        if kind.is_dir() {
            copy_tree(&from, &to)?;
        } else if kind.is_file() {
            // fs::copy keeps the mode: a sample stays executable
            fs::copy(&from, &to).map_err(io("copying to", &to))?;
        }
        // symlinks and special files are not part of a catalogue: skipped
    }
    let perm = fs::metadata(src).map_err(io("reading", src))?.permissions();
    fs::set_permissions(dst, perm).map_err(io("setting the mode of", dst))
}

/// Copies the tree `src` to `dst`, replacing a different one whole.
pub fn install_tree(src: &Path, dst: &Path) -> Result<Outcome, InstallError> {
    let existed = dst.is_dir();
    if existed && same_tree(src, dst)? {
        return Ok(Outcome::AlreadyInstalled);
    }
    make_parent(dst)?;
    let tmp = temporary(dst);
    let _ = fs::remove_dir_all(&tmp);
    if let Err(e) = copy_tree(src, &tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if existed {
        fs::remove_dir_all(dst).map_err(io("removing the old", dst))?;
    }
    fs::rename(&tmp, dst).map_err(io("renaming into place", dst))?;
    Ok(if existed { Outcome::Updated } else { Outcome::Created })
}

/// Removes the file `path` if present.
pub fn remove_file(path: &Path) -> Result<Outcome, InstallError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(Outcome::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Outcome::AlreadyAbsent),
        Err(source) => Err(InstallError::Io { what: "removing", path: path.into(), source }),
    }
}

/// Removes the tree `path` if present.
pub fn remove_tree(path: &Path) -> Result<Outcome, InstallError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(Outcome::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Outcome::AlreadyAbsent),
        Err(source) => Err(InstallError::Io { what: "removing", path: path.into(), source }),
    }
}

/// Removes the directory `path` if it exists and is empty (ours, emptied).
pub fn remove_empty_dir(path: &Path) -> Result<(), InstallError> {
    let empty = fs::read_dir(path).map(|mut entries| entries.next().is_none()).unwrap_or(false);
    if empty {
        fs::remove_dir(path).map_err(io("removing", path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_written_once_then_reported_installed_and_a_mode_change_is_repaired() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/f");
        assert_eq!(write_file(&p, b"x", 0o644).unwrap(), Outcome::Created);
        assert_eq!(write_file(&p, b"x", 0o644).unwrap(), Outcome::AlreadyInstalled);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(write_file(&p, b"x", 0o644).unwrap(), Outcome::Updated);
        assert_eq!(mode(&p), Some(0o644));
        assert_eq!(write_file(&p, b"y", 0o644).unwrap(), Outcome::Updated);
        assert_eq!(fs::read(&p).unwrap(), b"y");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_tree_is_replaced_when_one_file_differs() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("s1")).unwrap();
        fs::write(src.join("s1/sample.sh"), "echo 1").unwrap();
        fs::set_permissions(src.join("s1/sample.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let dst = d.path().join("share/scenarios");
        assert_eq!(install_tree(&src, &dst).unwrap(), Outcome::Created);
        assert_eq!(mode(&dst.join("s1/sample.sh")), Some(0o755));
        assert_eq!(install_tree(&src, &dst).unwrap(), Outcome::AlreadyInstalled);
        fs::write(src.join("s1/sample.sh"), "echo 2").unwrap();
        assert_eq!(install_tree(&src, &dst).unwrap(), Outcome::Updated);
        assert_eq!(fs::read_to_string(dst.join("s1/sample.sh")).unwrap(), "echo 2");
        fs::write(dst.join("extra"), "").unwrap();
        assert_eq!(install_tree(&src, &dst).unwrap(), Outcome::Updated, "an extra file differs too");
        assert!(!dst.join("extra").exists());
        assert_eq!(remove_tree(&dst).unwrap(), Outcome::Removed);
        assert_eq!(remove_tree(&dst).unwrap(), Outcome::AlreadyAbsent);
    }
}

//! `GET /tasks/report/<id>/all`: the task's folder as a bzip2 tarball, as
//! Cuckoo serves it: `reports/report.json`, `binary` (the sample),
//! `files/...` (dropped files), `kunai.jsonl.gz`; folders have their own
//! entries (misp-modules' cuckooimport resolves paths through them).

use std::path::Path;

/// What goes in, in this order; others (temporary files) stay out.
const TOP: &[&str] = &["reports", "binary", "files", "kunai.jsonl.gz"];

/// The tarball of `task_dir`.
pub fn tar_bz2(task_dir: &Path) -> std::io::Result<Vec<u8>> {
    let enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    for name in TOP {
        let path = task_dir.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            add_dir(&mut tar, &path, Path::new(name))?;
        } else if meta.is_file() {
            tar.append_path_with_name(&path, name)?;
        }
    }
    tar.into_inner()?.finish()
}

fn add_dir<W: std::io::Write>(tar: &mut tar::Builder<W>, dir: &Path, name: &Path) -> std::io::Result<()> {
    tar.append_dir(name, dir)?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ty = e.file_type()?;
        let inner = name.join(e.file_name());
        if ty.is_dir() {
            add_dir(tar, &e.path(), &inner)?;
        } else if ty.is_file() {
            tar.append_path_with_name(e.path(), &inner)?;
        }
        // symlinks a sample made are not followed out of the folder
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn holds_the_report_the_sample_and_the_dropped_files_with_folder_entries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("reports")).unwrap();
        std::fs::create_dir_all(d.join("files/sub")).unwrap();
        std::fs::write(d.join("reports/report.json"), b"{}").unwrap();
        std::fs::write(d.join("binary"), b"sample").unwrap();
        std::fs::write(d.join("files/sub/stage2"), b"x").unwrap();
        std::fs::write(d.join("job.tmp"), b"not served").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join("files/link")).unwrap();
        let bytes = tar_bz2(d).unwrap();
        let mut ar = tar::Archive::new(bzip2::read::BzDecoder::new(&bytes[..]));
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name == "binary" {
                let mut s = String::new();
                e.read_to_string(&mut s).unwrap();
                assert_eq!(s, "sample");
            }
            names.push(name);
        }
        assert_eq!(names, ["reports", "reports/report.json", "binary", "files", "files/sub", "files/sub/stage2"]);
    }
}

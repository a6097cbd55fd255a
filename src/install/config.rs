//! `/etc/ioclab/appliance.toml` as `ioclab install` writes it: every key
//! documented, and a checksum of what was written, so `ioclab uninstall`
//! can tell an untouched file (removed) from an edited one (kept).

use std::net::SocketAddr;
use std::path::Path;

use ioclab_agent::hashes::Sha256;
use ioclab_web::config::ApplianceConfig;
use sha2::Digest;

use super::{files, InstallError, Layout, Outcome};

/// The line that carries the checksum of everything after it.
const CHECKSUM: &str = "# ioclab-install-sha256: ";

/// The configuration of a fresh install: the installed catalogue, the data
/// directory, and `listen` when given.
pub fn initial(layout: &Layout, listen: Option<SocketAddr>) -> ApplianceConfig {
    let mut c = ApplianceConfig { data: layout.data.clone(), scenarios: layout.scenarios(), ..Default::default() };
    if let Some(l) = listen {
        c.listen = l;
    }
    c
}

fn checksum(body: &str) -> String {
    Sha256(sha2::Sha256::digest(body.as_bytes()).into()).to_string()
}

/// The file's text for `config`.
pub fn text(config: &ApplianceConfig) -> String {
    let body = config.documented();
    format!(
        "# The appliance's configuration (`ioclab serve --config {path}`), written by\n\
         # `ioclab install`: edit it freely. `ioclab install` never overwrites this file;\n\
         # `ioclab uninstall` removes it only while unchanged (or with --purge).\n\
         {CHECKSUM}{}\n{body}",
        checksum(&body),
        path = super::CONFIG_PATH,
    )
}

/// Whether `text` is exactly what `ioclab install` wrote (its checksum holds).
pub fn unchanged(text: &str) -> bool {
    let Some(start) = text.find(CHECKSUM) else { return false };
    let rest = &text[start + CHECKSUM.len()..];
    let Some((sum, body)) = rest.split_once('\n') else { return false };
    text[..start].lines().all(|l| l.starts_with('#')) && sum == checksum(body)
}

/// Writes the file if absent; an existing one, edited or not, is kept.
pub fn install(path: &Path, config: &ApplianceConfig) -> Result<Outcome, InstallError> {
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|source| InstallError::Io {
            what: "reading",
            path: path.into(),
            source,
        })?;
        return Ok(if unchanged(&text) { Outcome::AlreadyInstalled } else { Outcome::KeptEdited });
    }
    files::write_file(path, text(config).as_bytes(), 0o644)
}

/// Removes the file if unchanged, or always with `purge`.
pub fn uninstall(path: &Path, purge: bool) -> Result<Outcome, InstallError> {
    if !purge {
        match std::fs::read_to_string(path) {
            Ok(text) if !unchanged(&text) => return Ok(Outcome::KeptEdited),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::AlreadyAbsent),
            Err(source) => return Err(InstallError::Io { what: "reading", path: path.into(), source }),
        }
    }
    files::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_file_reads_back_and_any_edit_is_noticed() {
        let l = Layout::new("/".into(), "/usr/local".into(), "/var/lib/ioclab".into()).unwrap();
        let c = initial(&l, Some("0.0.0.0:8000".parse().unwrap()));
        assert_eq!(c.scenarios, Path::new("/usr/local/share/ioclab/scenarios"));
        let t = text(&c);
        assert_eq!(ApplianceConfig::parse(&t, Path::new("appliance.toml")).unwrap(), c);
        assert!(unchanged(&t));
        assert!(!unchanged(&t.replace("0.0.0.0:8000", "0.0.0.0:8080")));
        assert!(!unchanged(&format!("{t}replay_speed = 2.0\n")));
        assert!(!unchanged(&format!("listen = \"127.0.0.1:1\"\n{t}")), "a key added above the checksum");
        assert!(!unchanged("listen = \"127.0.0.1:1\"\n"));
    }

    #[test]
    fn an_edited_file_survives_install_and_uninstall_but_not_purge() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("etc/ioclab/appliance.toml");
        let c = ApplianceConfig::default();
        assert_eq!(install(&p, &c).unwrap(), Outcome::Created);
        assert_eq!(install(&p, &c).unwrap(), Outcome::AlreadyInstalled);
        std::fs::write(&p, std::fs::read_to_string(&p).unwrap() + "replay_speed = 2.0\n").unwrap();
        assert_eq!(install(&p, &c).unwrap(), Outcome::KeptEdited);
        assert!(std::fs::read_to_string(&p).unwrap().ends_with("replay_speed = 2.0\n"), "not overwritten");
        assert_eq!(uninstall(&p, false).unwrap(), Outcome::KeptEdited);
        assert_eq!(uninstall(&p, true).unwrap(), Outcome::Removed);
        assert_eq!(uninstall(&p, true).unwrap(), Outcome::AlreadyAbsent);
        assert_eq!(uninstall(&p, false).unwrap(), Outcome::AlreadyAbsent);
    }
}

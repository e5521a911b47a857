//! The secrets a backup holds besides the store: DKIM keys, `newsletter.key`, the ACME
//! state and the config file in use, each with its mode and owner.
//!
//! Without them a restored server stops signing mail, and every unsubscribe and tracking
//! link in newsletters already sent stops working. They are always copied, never linked:
//! a key may be rewritten in place (an ACME renewal) and must keep its own mode, which a
//! shared inode would make the backup's business.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::fsutil::{self, CopyError};
use super::manifest::{CONFIG_DIR, Secret, Sum};
use super::{BackupError, Result};

/// What in a data directory, besides the store, the server cannot do without: the DKIM
/// signing keys (`dkim/<domain>/<selector>.pem`), the key of every newsletter link and
/// VERP address, and the ACME account key and certificates. A backup copies whichever
/// exist, whole.
pub const IN_DATA_DIR: [&str; 3] = ["dkim", "newsletter.key", "acme"];

/// How deep a secret directory may go: a symbolic-link loop or a runaway tree is refused
/// rather than followed forever.
const MAX_DEPTH: usize = 16;

/// The secrets copied into a backup, their lines for `SHA256SUMS`, and what was skipped.
#[derive(Default)]
pub struct Collected {
    pub secrets: Vec<Secret>,
    pub sums: Vec<Sum>,
    pub bytes: u64,
    /// Things found but not backed up (a symbolic link to a directory, a socket...).
    pub skipped: Vec<String>,
}

/// Copies every secret of `data_dir`, and the config file `config` if given, into the
/// partial backup `partial`. An unreadable secret fails the backup: a backup without the
/// DKIM key would restore a server that cannot sign.
pub fn collect(data_dir: &Path, config: Option<&Path>, partial: &Path) -> Result<Collected> {
    let mut out = Collected::default();
    let mut buf = vec![0u8; fsutil::BUFFER];
    for name in IN_DATA_DIR {
        let from = data_dir.join(name);
        match fs::symlink_metadata(&from) {
            Ok(_) => add(&from, name, partial, None, 0, &mut buf, &mut out)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::io(&from)(e)),
        }
    }
    if let Some(config) = config {
        let origin = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
        let name = origin.file_name().map_or_else(
            || "tegami.toml".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let dir = partial.join(CONFIG_DIR);
        fsutil::create_private_dir(&dir)?;
        let rel = format!("{CONFIG_DIR}/{name}");
        add(
            &origin,
            &rel,
            partial,
            Some(origin.display().to_string()),
            0,
            &mut buf,
            &mut out,
        )?;
    }
    Ok(out)
}

/// Adds `from` (a file or a directory, walked) as `rel` in the backup.
fn add(
    from: &Path,
    rel: &str,
    partial: &Path,
    origin: Option<String>,
    depth: usize,
    buf: &mut [u8],
    out: &mut Collected,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(BackupError::Refused(format!(
            "{} is more than {MAX_DEPTH} directories deep; is there a symbolic-link loop?",
            from.display()
        )));
    }
    // A symbolic link to a file is backed up as the file it names (an operator may link a
    // key in from elsewhere); the restored copy is a plain file with the target's mode.
    let meta = fs::metadata(from).map_err(BackupError::io(from))?;
    let to = partial.join(rel);
    let entry = |file| Secret {
        path: rel.to_string(),
        file,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        origin: origin.clone(),
    };
    if meta.is_file() {
        let (sha256, bytes) = match fsutil::copy_hashed(from, &to, Some(0o600), buf) {
            Ok(done) => done,
            Err(CopyError::Source(e)) => {
                let _ = crate::io::remove_file(&to);
                return Err(BackupError::Refused(format!(
                    "cannot read {}: {e}; a backup must hold every key (run the backup as the \
                     server's user or as root)",
                    from.display()
                )));
            }
            Err(CopyError::Destination(e)) => return Err(BackupError::io(&to)(e)),
        };
        out.sums.push(Sum {
            sha256: sha256.clone(),
            path: rel.to_string(),
        });
        out.bytes += bytes;
        out.secrets.push(entry(Some((sha256, bytes))));
    } else if meta.is_dir() {
        if fs::symlink_metadata(from).is_ok_and(|m| m.file_type().is_symlink()) {
            out.skipped.push(format!(
                "{rel}: a symbolic link to a directory (back up what it names yourself)"
            ));
            return Ok(());
        }
        fsutil::create_private_dir(&to)?;
        out.secrets.push(entry(None));
        let mut names: Vec<String> = fs::read_dir(from)
            .map_err(BackupError::io(from))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<_>>()
            .map_err(BackupError::io(from))?;
        names.sort();
        for name in names {
            let child = from.join(&name);
            let child_rel = format!("{rel}/{name}");
            if !super::manifest::safe_path(&child_rel) || child_rel.contains('\n') {
                out.skipped
                    .push(format!("{child_rel:?}: a name a backup cannot list"));
                continue;
            }
            match fs::metadata(&child) {
                Ok(m) if m.is_file() || m.is_dir() => {
                    add(&child, &child_rel, partial, None, depth + 1, buf, out)?
                }
                Ok(_) => out
                    .skipped
                    .push(format!("{child_rel}: not a file nor a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => out
                    .skipped
                    .push(format!("{child_rel}: a dangling symbolic link")),
                Err(e) => return Err(BackupError::io(&child)(e)),
            }
        }
    } else {
        out.skipped
            .push(format!("{rel}: not a file nor a directory"));
    }
    Ok(())
}

//! Restoring a backup as the data directory: only with the server stopped (its lock says
//! so), only a backup that verifies, over an existing store only when forced; the owner the
//! files get, and the config file the backup holds put back or set beside for comparison.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use gate::Clock;
use store::backup::{self as stored, RestoreOptions, RestoreReport};

use super::{first_problems, from_backup, from_backup_in, log_line, verify_path};
use crate::config::BackupConfig;
use crate::error::{Error, IoContext, Result};
use crate::progress::{Reporter, Unit, for_store};

/// The owner to give the restored files: `UID[:GID]`, numbers (a group defaults to the
/// user's number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl FromStr for Owner {
    type Err = Error;

    fn from_str(text: &str) -> Result<Owner> {
        let (uid, gid) = text.split_once(':').unwrap_or((text, text));
        match (uid.parse(), gid.parse()) {
            (Ok(uid), Ok(gid)) => Ok(Owner { uid, gid }),
            _ => Err(Error::invalid(format!(
                "--owner {text:?} is not UID[:GID] (numbers, as in 4242:4242)"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// A backup id (in `dir`) or the path of a backup directory.
    pub backup: String,
    /// Replace the store already in the data directory (it is kept beside it).
    pub force: bool,
    /// Root only: the owner to give the restored files (default: the one the backup
    /// recorded).
    pub owner: Option<Owner>,
    /// Where to look up a backup id; None: the configured backup directory.
    pub dir: Option<PathBuf>,
    /// Also put the config file the backup holds back where it was read from.
    pub restore_config: bool,
}

/// How the config file a backup holds compares with the one at its origin now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    Same,
    Differs,
    Missing,
}

/// What became of the config file a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// Put back at `origin`; a different file found there was kept as `kept`.
    PutBack {
        origin: String,
        kept: Option<PathBuf>,
    },
    /// Restored only as `copy` in the data directory, for the operator to compare.
    Beside {
        origin: String,
        copy: PathBuf,
        now: Compared,
    },
    /// Putting it back was asked for, but the backup holds none.
    NoneInBackup,
}

#[derive(Debug, Clone)]
pub struct Restored {
    /// The backup directory restored from.
    pub backup: PathBuf,
    pub report: RestoreReport,
    /// The owner the backup recorded, when the restored files could not be given it (the
    /// restore did not run as root).
    pub owner_not_restored: Option<(u32, u32)>,
    /// None when the backup holds no config file and none was asked for.
    pub config_file: Option<ConfigFile>,
    /// Secrets the backup lacks that were kept from the data directory it replaced.
    pub secrets_kept: Vec<String>,
    /// The schema version the server migrates the restored store to when it starts, when
    /// the backup's is older.
    pub migrates_to: Option<i64>,
}

/// Restores a backup as the data directory `data`. It refuses, changing nothing, while a
/// server runs on `data`, over a store unless `force`, and from a backup that does not
/// verify (and logs that). The previous data directory is kept beside the new one.
pub fn restore(
    data: &Path,
    settings: &BackupConfig,
    clock: &Clock,
    request: &RestoreRequest,
    progress: &Reporter,
) -> Result<Restored> {
    let root = request.dir.clone().unwrap_or_else(|| settings.root(data));
    let path = stored::resolve(&root, &request.backup).map_err(from_backup)?;

    // The data directory's lock, held to the end: no server may start on the directory
    // being replaced (nor on the new one: the store holds that lock too).
    let _lock = lock_data_dir(data)?;
    let has_store = std::fs::metadata(data.join("tegami.db")).is_ok_and(|m| m.len() > 0);
    if has_store && !request.force {
        return Err(Error::conflict(format!(
            "{} holds a store; restore replaces it (the current data is kept beside it as {}.before-restore-TIME); add --force to go ahead",
            data.display(),
            data.display()
        )));
    }

    let verified = verify_path(&path, progress)?;
    if !verified.is_ok() {
        log_line(
            &data.join("log"),
            clock,
            &format!(
                "restore from {} refused: the backup is damaged: {}",
                path.display(),
                first_problems(&verified)
            ),
        );
        return Err(Error::failed(format!(
            "backup {} is damaged: {}; nothing was changed in {}; restore another backup \
             (`tegami backup list`)",
            verified.id(),
            first_problems(&verified),
            data.display()
        )));
    }
    let Some(manifest) = verified.manifest else {
        return Err(Error::failed(format!(
            "{} verified without a manifest",
            path.display()
        )));
    };
    let recorded = (manifest.owner_uid, manifest.owner_gid);
    let euid = rustix::process::geteuid().as_raw();
    let owner = match (euid, request.owner) {
        (0, given) => Some(given.map_or(recorded, |o| (o.uid, o.gid))),
        (_, Some(_)) => {
            return Err(Error::conflict(
                "--owner needs root: only root can give files to another user",
            ));
        }
        (_, None) => None,
    };
    let options = RestoreOptions {
        owner,
        now_unix: clock.now().timestamp().as_second(),
        progress: Some(for_store(progress)),
    };
    progress.phase("restoring", Unit::Bytes, None);
    let result = stored::restore(&path, data, &options);
    progress.finish();
    let report = result.map_err(|e| {
        from_backup_in(
            format_args!(
                "the restore of {} failed; {} was left as it was",
                path.display(),
                data.display()
            ),
            e,
        )
    })?;
    let m = &report.manifest;
    let config_file = match m
        .secrets
        .iter()
        .flatten()
        .find_map(|s| Some((&s.path, s.origin.as_ref()?)))
    {
        Some((rel, origin)) => {
            let copy = report.data_dir.join(rel);
            Some(if request.restore_config {
                ConfigFile::PutBack {
                    origin: origin.clone(),
                    kept: put_config_back(&copy, Path::new(origin), clock)?,
                }
            } else {
                let now = match std::fs::read(origin) {
                    Ok(now) if std::fs::read(&copy).is_ok_and(|c| c == now) => Compared::Same,
                    Ok(_) => Compared::Differs,
                    Err(_) => Compared::Missing,
                };
                ConfigFile::Beside {
                    origin: origin.clone(),
                    copy,
                    now,
                }
            })
        }
        None if request.restore_config => Some(ConfigFile::NoneInBackup),
        None => None,
    };
    log_line(
        &report.data_dir.join("log"),
        clock,
        &format!(
            "restore of backup {} from {} finished in {:.1} s; previous data: {}",
            m.id,
            path.display(),
            report.seconds,
            report
                .previous
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string())
        ),
    );
    if let Some((uid, gid)) = owner {
        // The line above may have created log/ as root; the service must write there.
        for path in [
            report.data_dir.join("log"),
            report.data_dir.join("log/backup.log"),
        ] {
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.uid() == 0 && uid != 0) {
                let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
            }
        }
    }
    let secrets_kept = report
        .carried
        .iter()
        .filter(|c| stored::SECRETS.contains(&c.as_str()))
        .cloned()
        .collect();
    let migrates_to =
        (report.manifest.schema_version < store::SCHEMA_VERSION).then_some(store::SCHEMA_VERSION);
    Ok(Restored {
        backup: path,
        owner_not_restored: (owner.is_none() && recorded != report.owner).then_some(recorded),
        report,
        config_file,
        secrets_kept,
        migrates_to,
    })
}

/// Puts the restored config file back where it was read from, keeping a different file
/// found there as `PATH.before-restore-TIME`. Returns that name when it kept one.
fn put_config_back(copy: &Path, origin: &Path, clock: &Clock) -> Result<Option<PathBuf>> {
    let content = std::fs::read(copy).io_context(|| format!("cannot read {}", copy.display()))?;
    let meta = std::fs::metadata(copy).io_context(|| copy.display())?;
    let kept = match std::fs::read(origin) {
        Ok(now) if now == content => return Ok(None),
        Ok(_) => {
            let mut name = origin.as_os_str().to_owned();
            name.push(format!(
                ".before-restore-{}",
                stored::compact_utc(clock.now().timestamp().as_second())
            ));
            let kept = PathBuf::from(name);
            std::fs::rename(origin, &kept)
                .io_context(|| format!("cannot keep {} aside", origin.display()))?;
            Some(kept)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).io_context(|| format!("cannot read {}", origin.display()));
        }
    };
    if let Some(parent) = origin.parent() {
        std::fs::create_dir_all(parent)
            .io_context(|| format!("cannot create {}", parent.display()))?;
    }
    // Written by a temporary name and renamed, with the restored copy's mode and owner, so
    // the file is never seen half written nor, for a moment, readable by anyone else.
    let mut tmp = origin.as_os_str().to_owned();
    tmp.push(".restoring");
    let tmp = PathBuf::from(tmp);
    let cannot_write = || format!("cannot write {}", tmp.display());
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .io_context(cannot_write)?;
        file.write_all(&content).io_context(cannot_write)?;
        file.sync_all().io_context(cannot_write)?;
    }
    let _ = std::os::unix::fs::lchown(&tmp, Some(meta.uid()), Some(meta.gid()));
    std::fs::set_permissions(&tmp, meta.permissions()).io_context(cannot_write)?;
    std::fs::rename(&tmp, origin)
        .io_context(|| format!("cannot put the config file back at {}", origin.display()))?;
    Ok(kept)
}

/// The lock `serve` holds: if a server has it, it is running, and the restore stops here.
fn lock_data_dir(data: &Path) -> Result<Option<File>> {
    if !data.is_dir() {
        return Ok(None);
    }
    let path = data.join("tegami.lock");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .io_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            Err(Error::conflict(format!(
                "the server is running on {}{} (it holds {}); restore replaces the whole data \
                 directory and needs the server stopped: stop it (for example `systemctl stop \
                 tegami` or SIGTERM), run the restore, then start it again; nothing was changed",
                data.display(),
                match pid.trim() {
                    "" => String::new(),
                    pid => format!(" as pid {pid}"),
                },
                path.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).io_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_numbers() {
        assert_eq!(
            "4242".parse::<Owner>().unwrap(),
            Owner {
                uid: 4242,
                gid: 4242
            }
        );
        assert_eq!(
            "4242:100".parse::<Owner>().unwrap(),
            Owner {
                uid: 4242,
                gid: 100
            }
        );
        assert!(matches!("tegami".parse::<Owner>(), Err(Error::Invalid(_))));
    }
}

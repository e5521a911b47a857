//! Verifying a backup: every checksum, and databases (the store's and each archive's) that
//! open and pass SQLite's integrity check, and every secret the manifest lists present with
//! the checksum it recorded. Every problem names the file it is in.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use super::fsutil;
use super::manifest::{
    self, ARCHIVE_DATABASE, ARCHIVES, DAMAGED, DATABASE, MANIFEST, Manifest, SUMS, Sum, Verified,
};
use super::{BackupError, Progress, Result};
use crate::BlobId;

/// One thing wrong with a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, relative to the backup directory.
    pub file: String,
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.problem)
    }
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub path: PathBuf,
    pub manifest: Option<Manifest>,
    /// Files whose checksum was compared, and their bytes.
    pub files: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
    /// What is worth knowing but not wrong (mail that was already damaged when it was
    /// taken).
    pub notes: Vec<String>,
    pub seconds: f64,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The id: from the manifest, else the directory's name.
    pub fn id(&self) -> String {
        self.manifest.as_ref().map_or_else(
            || {
                self.path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            },
            |m| m.id.clone(),
        )
    }
}

/// Checks the backup in `dir` completely and records the outcome in `verified.toml`.
/// Damage is reported in the report; only a directory that cannot be read at all is an
/// error.
pub fn verify(dir: &Path, progress: Option<&Progress>) -> Result<VerifyReport> {
    let started = Instant::now();
    if !dir.is_dir() {
        return Err(BackupError::NotABackup {
            path: dir.to_path_buf(),
            reason: "no such directory".into(),
        });
    }
    let (mut files, mut bytes, mut notes) = (0, 0, Vec::new());
    let mut problems = Vec::new();
    let mut problem = |file: &str, problem: String| {
        problems.push(Problem {
            file: file.into(),
            problem,
        })
    };
    let manifest = match manifest::read(dir) {
        Ok(manifest) => Some(manifest),
        Err(e) => {
            let what = e
                .strip_prefix(&format!("{MANIFEST}: "))
                .unwrap_or(&e)
                .to_string();
            problem(MANIFEST, what);
            None
        }
    };
    let sums = match fs::read(dir.join(SUMS)) {
        Ok(bytes) => {
            if let Some(m) = &manifest
                && hex::encode(Sha256::digest(&bytes)) != m.sums_sha256
            {
                problem(
                    SUMS,
                    format!(
                        "does not match the checksum in {MANIFEST} ({} bytes; cut short or changed)",
                        bytes.len()
                    ),
                );
            }
            match manifest::parse_sums(&String::from_utf8_lossy(&bytes)) {
                Ok(sums) => sums,
                Err(e) => {
                    problem(SUMS, e);
                    Vec::new()
                }
            }
        }
        Err(e) => {
            problem(SUMS, describe(&e));
            Vec::new()
        }
    };
    if let Some(m) = &manifest
        && sums.len() as u64 != m.files
        && !sums.is_empty()
    {
        problem(
            SUMS,
            format!("lists {} files, the manifest {}", sums.len(), m.files),
        );
    }

    let total: u64 = manifest
        .as_ref()
        .map_or(0, |m| m.bytes)
        .max(sums.len() as u64);
    let done = AtomicU64::new(0);
    let outcomes = fsutil::parallel(&sums, |sum, buf| {
        let path = dir.join(&sum.path);
        let outcome = fsutil::hash_file(&path, buf);
        let size = outcome.as_ref().map_or(0, |(_, size)| *size);
        let so_far = done.fetch_add(size, Ordering::Relaxed) + size;
        if let Some(progress) = progress {
            progress(so_far.min(total), total);
        }
        Ok(outcome)
    })?;
    let mut database_intact = false;
    let mut archives_intact = Vec::new();
    let mut listed_blobs = HashSet::new();
    for (sum, outcome) in sums.iter().zip(outcomes) {
        match outcome {
            Ok((hash, size)) => {
                files += 1;
                bytes += size;
                if hash != sum.sha256 {
                    problem(
                        &sum.path,
                        format!(
                            "content does not match its SHA-256 ({size} bytes; damaged or cut short)"
                        ),
                    );
                } else if sum.path == DATABASE {
                    database_intact = true;
                } else if is_archive_database(&sum.path) {
                    archives_intact.push(&sum.path);
                }
            }
            Err(e) => problem(&sum.path, describe(&e)),
        }
        if let Some(id) = sum.path.strip_prefix("blobs/").and_then(blob_of_path) {
            listed_blobs.insert(id);
        }
    }
    let listed = |name: &str| sums.iter().any(|s: &Sum| s.path == name);
    if !sums.is_empty() && !listed(DATABASE) {
        problem(DATABASE, format!("not listed in {SUMS}"));
    }
    for archive in manifest.iter().flat_map(|m| m.archives.iter().flatten()) {
        let path = format!("{ARCHIVES}/{}/{ARCHIVE_DATABASE}", archive.id);
        if !sums.is_empty() && !listed(&path) {
            problem(&path, format!("not listed in {SUMS}"));
        }
    }

    match manifest.as_ref().map(|m| m.secrets.as_ref()) {
        Some(Some(secrets)) => {
            let listed: std::collections::HashMap<&str, &str> = sums
                .iter()
                .map(|s| (s.path.as_str(), s.sha256.as_str()))
                .collect();
            for secret in secrets {
                let Some((sha256, _)) = &secret.file else {
                    if !dir.join(&secret.path).is_dir() {
                        problem(
                            &secret.path,
                            "missing (a directory the manifest lists)".into(),
                        );
                    }
                    continue;
                };
                match listed.get(secret.path.as_str()) {
                    None if !sums.is_empty() => {
                        problem(&secret.path, format!("not listed in {SUMS}"))
                    }
                    Some(listed) if listed != sha256 => problem(
                        &secret.path,
                        format!("its checksum in {MANIFEST} differs from the one in {SUMS}"),
                    ),
                    _ => {}
                }
            }
        }
        Some(None) => notes.push(
            "taken before backups held secrets: it has no DKIM key, newsletter.key, ACME state \
             or config file; a restore keeps those of the data directory it replaces"
                .into(),
        ),
        None => {}
    }

    let damaged = read_damaged(dir);
    if !damaged.is_empty() {
        notes.push(format!(
            "{} blobs were already missing or damaged in the live store when this backup was \
             taken (listed in {DAMAGED}); their messages are restored without a body",
            damaged.len()
        ));
    }
    let archive_damage = fs::read_to_string(dir.join(DAMAGED))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with(&format!("{ARCHIVES}/")))
        .count();
    if archive_damage > 0 {
        notes.push(format!(
            "{archive_damage} archive blobs were already missing or damaged when this backup \
             was taken (listed in {DAMAGED}); the backup does not hold them"
        ));
    }
    if database_intact {
        match database_problems(
            &dir.join(DATABASE),
            manifest.as_ref(),
            &listed_blobs,
            &damaged,
        ) {
            Ok(found) => {
                for p in found {
                    problem(DATABASE, p);
                }
            }
            Err(e) => problem(DATABASE, format!("cannot be opened: {e}")),
        }
    }
    for path in archives_intact {
        match open_read_only(&dir.join(path)).and_then(|conn| integrity_problems(&conn)) {
            Ok(found) => {
                for p in found {
                    problem(path, p);
                }
            }
            Err(e) => problem(path, format!("cannot be opened: {e}")),
        }
    }

    let report = VerifyReport {
        path: dir.to_path_buf(),
        manifest,
        files,
        bytes,
        problems,
        notes,
        seconds: started.elapsed().as_secs_f64(),
    };
    manifest::write_verified(
        dir,
        &Verified {
            at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            ok: report.is_ok(),
            problem: report.problems.first().map(ToString::to_string),
        },
    );
    Ok(report)
}

fn describe(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        "missing".into()
    } else {
        format!("cannot be read: {e}")
    }
}

/// True for `archive/<id>/archive.db`.
fn is_archive_database(path: &str) -> bool {
    path.strip_prefix(ARCHIVES)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_suffix(ARCHIVE_DATABASE))
        .and_then(|p| p.strip_suffix('/'))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Read-only, and snapshots are in rollback-journal mode: opening one writes nothing, so a
/// backup on read-only media verifies too.
fn open_read_only(path: &Path) -> Result<Connection, rusqlite::Error> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// What SQLite's integrity check finds, one line per problem.
fn integrity_problems(conn: &Connection) -> Result<Vec<String>, rusqlite::Error> {
    let mut problems = Vec::new();
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let line = row?;
        if line != "ok" {
            problems.push(format!("integrity check: {line}"));
        }
    }
    Ok(problems)
}

/// `ab/<hash>` to the blob's id.
fn blob_of_path(rel: &str) -> Option<BlobId> {
    BlobId::from_hex(rel.rsplit('/').next()?)
}

/// The blobs `damaged.txt` names.
pub(super) fn read_damaged(dir: &Path) -> HashSet<BlobId> {
    fs::read_to_string(dir.join(DAMAGED))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| BlobId::from_hex(line.split(' ').next()?))
        .collect()
}

/// What is wrong inside the database: SQLite's integrity and foreign-key checks, the
/// schema version against the manifest, and referenced blobs the backup does not hold.
fn database_problems(
    path: &Path,
    manifest: Option<&Manifest>,
    listed: &HashSet<BlobId>,
    damaged: &HashSet<BlobId>,
) -> Result<Vec<String>, rusqlite::Error> {
    let conn = open_read_only(path)?;
    let mut problems = integrity_problems(&conn)?;
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
        problems.push(format!("a row of table {} breaks a reference", row?));
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if let Some(m) = manifest
        && m.schema_version != version
    {
        problems.push(format!(
            "schema version {version}, the manifest says {}",
            m.schema_version
        ));
    }
    if !problems.is_empty() {
        return Ok(problems);
    }
    let mut missing = 0u64;
    let mut example = None;
    let mut stmt = conn.prepare("SELECT hash FROM blobs UNION SELECT blob_hash FROM messages")?;
    for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
        let Some(id) = BlobId::from_slice(&row?) else {
            continue;
        };
        if !listed.contains(&id) && !damaged.contains(&id) {
            missing += 1;
            example.get_or_insert(id);
        }
    }
    if let Some(id) = example {
        problems.push(format!(
            "references {missing} blobs the backup does not hold (blobs/{} among them)",
            fsutil::blob_rel(&id.to_string())
        ));
    }
    Ok(problems)
}

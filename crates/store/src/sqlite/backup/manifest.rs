//! `manifest.toml`, `SHA256SUMS` and `verified.toml`: how a backup describes itself.
//!
//! The manifest is a flat TOML document (any TOML reader can read it) that this module
//! writes and reads by hand, so the store needs no serialisation library. It ends with
//! `complete = true`: a manifest cut short is refused, never taken for a smaller backup.
//! It records the SHA-256 of `SHA256SUMS`, and `SHA256SUMS` the SHA-256 of every other file,
//! so one damaged byte anywhere is found, and `sha256sum -c SHA256SUMS` checks a backup
//! without tegami.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use super::fsutil;

/// The layout version this build writes and reads.
pub const FORMAT: u32 = 1;
pub const MANIFEST: &str = "manifest.toml";
pub const SUMS: &str = "SHA256SUMS";
pub const DAMAGED: &str = "damaged.txt";
pub const VERIFIED: &str = "verified.toml";
pub const DATABASE: &str = "tegami.db";
/// The archives' directory, in a data directory and in a backup: `archive/<id>/`.
pub const ARCHIVES: &str = "archive";
pub const ARCHIVE_DATABASE: &str = "archive.db";
/// Where the config file in use goes, in a backup and in a restored data directory.
pub const CONFIG_DIR: &str = "config";

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Scheduled,
    /// Taken by the store itself before it migrated the schema; retention leaves it alone.
    PreMigration,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
            Trigger::PreMigration => "pre-migration",
        }
    }

    fn parse(text: &str) -> Option<Trigger> {
        match text {
            "manual" => Some(Trigger::Manual),
            "scheduled" => Some(Trigger::Scheduled),
            "pre-migration" => Some(Trigger::PreMigration),
            _ => None,
        }
    }
}

/// What `manifest.toml` says.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub trigger: Trigger,
    pub tegami_version: String,
    pub schema_version: i64,
    /// Seconds since the epoch when the snapshot was taken.
    pub created_unix: i64,
    /// The data directory it was taken from, and on which machine.
    pub source: String,
    pub host: String,
    /// Owner and modes of the data directory (`dir_mode`) and of its database file
    /// (`file_mode`), restored by `restore`.
    pub owner_uid: u32,
    pub owner_gid: u32,
    pub dir_mode: u32,
    pub file_mode: u32,
    pub accounts: u64,
    pub messages: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub database_bytes: u64,
    /// Files listed in `SHA256SUMS`, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// How the blobs (of the live store and of the archives) got here: hard links (from an earlier backup or the live store) cost
    /// no space; copies are what this backup added to the disk.
    pub blobs_linked: u64,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    /// Blobs the snapshot references that were missing or damaged in the live store, and
    /// archive blobs that could not be read intact.
    pub damaged: u64,
    /// How many snapshots it took (more than one when mail was deleted while it ran).
    pub snapshots: u32,
    /// The archives (`archive/<id>/`) the backup holds, in id order. None for a backup
    /// taken before backups held archives: its restore keeps the archives of the data
    /// directory it replaces.
    pub archives: Option<Vec<Archive>>,
    /// How the blobs were checked when they went in. None for a backup taken before
    /// backups checked what they link: a later backup trusts none of its blobs.
    pub checked: Option<BlobsChecked>,
    /// The keys and state the server needs besides the store (DKIM keys,
    /// `newsletter.key`, the ACME state) and the config file in use, with their modes and
    /// owners. None for a backup taken before backups held them: its restore keeps those
    /// of the data directory it replaces.
    pub secrets: Option<Vec<Secret>>,
    pub seconds: f64,
    pub sums_sha256: String,
}

/// How the blobs of a backup (the live store's and the archives') were checked against
/// their names when the backup was taken. Every blob is one or the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobsChecked {
    /// Read whole and hashed by this backup.
    pub hashed: u64,
    /// Linked from the previous backup, which had checked them, unchanged since (their
    /// modification time is older than that backup's `since_unix`).
    pub trusted: u64,
    /// When (the real time, whatever clock the backup was stamped with) this backup began
    /// to check blobs: a blob file of it last modified before then still has the bytes
    /// that were checked.
    pub since_unix: i64,
}

/// One file or directory a backup keeps besides the store: a key, ACME state, the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Relative path, the same in the backup and in a restored data directory.
    pub path: String,
    /// `Some((sha256, bytes))` for a file, None for a directory.
    pub file: Option<(String, u64)>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// For the config file: the path it was read from.
    pub origin: Option<String>,
}

/// One archive in a backup: `archive/<id>/archive.db` and its blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub id: String,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub database_bytes: u64,
}

impl Manifest {
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# A tegami backup. SHA256SUMS holds the checksum of every file here; \
             `tegami backup verify` checks them all.\n",
        );
        let mut s = |key: &str, value: &str| {
            let _ = writeln!(out, "{key} = {}", quote(value));
        };
        s("kind", "tegami-backup");
        s("id", &self.id);
        s("trigger", self.trigger.label());
        s("tegami_version", &self.tegami_version);
        s("created", &super::rfc3339_utc(self.created_unix));
        s("source", &self.source);
        s("host", &self.host);
        s("dir_mode", &format!("{:04o}", self.dir_mode));
        s("file_mode", &format!("{:04o}", self.file_mode));
        s("sums_sha256", &self.sums_sha256);
        let mut n = |key: &str, value: i128| {
            let _ = writeln!(out, "{key} = {value}");
        };
        n("format", self.format.into());
        n("schema_version", self.schema_version.into());
        n("created_unix", self.created_unix.into());
        n("owner_uid", self.owner_uid.into());
        n("owner_gid", self.owner_gid.into());
        n("accounts", self.accounts.into());
        n("messages", self.messages.into());
        n("blobs", self.blobs.into());
        n("blob_bytes", self.blob_bytes.into());
        n("database_bytes", self.database_bytes.into());
        n("files", self.files.into());
        n("bytes", self.bytes.into());
        n("blobs_linked", self.blobs_linked.into());
        n("blobs_copied", self.blobs_copied.into());
        n("bytes_copied", self.bytes_copied.into());
        n("damaged", self.damaged.into());
        n("snapshots", self.snapshots.into());
        if let Some(archives) = &self.archives {
            // Dotted keys (`archive.1.blobs`) keep the file flat for `parse_flat` and are
            // still TOML tables to any other reader.
            n("archives", archives.len() as i128);
            for a in archives {
                n(&format!("archive.{}.blobs", a.id), a.blobs.into());
                n(&format!("archive.{}.blob_bytes", a.id), a.blob_bytes.into());
                n(
                    &format!("archive.{}.database_bytes", a.id),
                    a.database_bytes.into(),
                );
            }
        }
        if let Some(checked) = &self.checked {
            n("blobs_hashed", checked.hashed.into());
            n("blobs_trusted", checked.trusted.into());
            n("blobs_checked_since_unix", checked.since_unix.into());
        }
        if let Some(secrets) = &self.secrets {
            n("secrets", secrets.len() as i128);
            for (i, secret) in secrets.iter().enumerate() {
                let key = |name: &str| format!("secret.{}.{name}", i + 1);
                let _ = writeln!(out, "{} = {}", key("path"), quote(&secret.path));
                let _ = writeln!(out, "{} = \"{:04o}\"", key("mode"), secret.mode);
                let _ = writeln!(out, "{} = {}", key("uid"), secret.uid);
                let _ = writeln!(out, "{} = {}", key("gid"), secret.gid);
                if let Some((sha256, bytes)) = &secret.file {
                    let _ = writeln!(out, "{} = {}", key("sha256"), quote(sha256));
                    let _ = writeln!(out, "{} = {bytes}", key("bytes"));
                }
                if let Some(origin) = &secret.origin {
                    let _ = writeln!(out, "{} = {}", key("origin"), quote(origin));
                }
            }
        }
        let _ = writeln!(out, "seconds = {:.3}", self.seconds);
        out.push_str("complete = true\n");
        out
    }

    pub fn parse(text: &str) -> Result<Manifest, String> {
        let values = parse_flat(text)?;
        if values.get("complete").map(String::as_str) != Some("true") {
            return Err(format!(
                "{MANIFEST} is incomplete (it does not end with `complete = true`)"
            ));
        }
        let get = |key: &str| -> Result<&str, String> {
            values
                .get(key)
                .map(String::as_str)
                .ok_or_else(|| format!("{MANIFEST} has no `{key}`"))
        };
        let num = |key: &str| -> Result<i128, String> {
            get(key)?
                .parse()
                .map_err(|_| format!("{MANIFEST}: `{key}` is not a number"))
        };
        let unsigned = |key: &str| -> Result<u64, String> {
            u64::try_from(num(key)?).map_err(|_| format!("{MANIFEST}: `{key}` is negative"))
        };
        let mode = |key: &str| -> Result<u32, String> {
            u32::from_str_radix(get(key)?, 8)
                .map_err(|_| format!("{MANIFEST}: `{key}` is not an octal mode"))
        };
        if get("kind")? != "tegami-backup" {
            return Err(format!("{MANIFEST} does not describe a tegami backup"));
        }
        let format = unsigned("format")? as u32;
        if format > FORMAT {
            return Err(format!(
                "backup format {format} is newer than this tegami understands ({FORMAT}); \
                 use the tegami release that made it, or a newer one"
            ));
        }
        Ok(Manifest {
            format,
            id: get("id")?.to_string(),
            trigger: Trigger::parse(get("trigger")?)
                .ok_or_else(|| format!("{MANIFEST}: unknown trigger"))?,
            tegami_version: get("tegami_version")?.to_string(),
            schema_version: num("schema_version")? as i64,
            created_unix: num("created_unix")? as i64,
            source: get("source")?.to_string(),
            host: get("host")?.to_string(),
            owner_uid: unsigned("owner_uid")? as u32,
            owner_gid: unsigned("owner_gid")? as u32,
            dir_mode: mode("dir_mode")?,
            file_mode: mode("file_mode")?,
            accounts: unsigned("accounts")?,
            messages: unsigned("messages")?,
            blobs: unsigned("blobs")?,
            blob_bytes: unsigned("blob_bytes")?,
            database_bytes: unsigned("database_bytes")?,
            files: unsigned("files")?,
            bytes: unsigned("bytes")?,
            blobs_linked: unsigned("blobs_linked")?,
            blobs_copied: unsigned("blobs_copied")?,
            bytes_copied: unsigned("bytes_copied")?,
            damaged: unsigned("damaged")?,
            snapshots: unsigned("snapshots")? as u32,
            archives: match values.get("archives") {
                None => None,
                Some(_) => Some(parse_archives(&values, unsigned("archives")?, &unsigned)?),
            },
            checked: match values.get("blobs_hashed") {
                None => None,
                Some(_) => Some(BlobsChecked {
                    hashed: unsigned("blobs_hashed")?,
                    trusted: unsigned("blobs_trusted")?,
                    since_unix: num("blobs_checked_since_unix")? as i64,
                }),
            },
            secrets: match values.get("secrets") {
                None => None,
                Some(_) => Some(parse_secrets(&values, unsigned("secrets")?)?),
            },
            seconds: get("seconds")?
                .parse()
                .map_err(|_| format!("{MANIFEST}: `seconds` is not a number"))?,
            sums_sha256: get("sums_sha256")?.to_string(),
        })
    }
}

/// The `archive.<id>.*` keys, in id order; `count` is what `archives` says.
fn parse_archives(
    values: &HashMap<String, String>,
    count: u64,
    unsigned: &dyn Fn(&str) -> Result<u64, String>,
) -> Result<Vec<Archive>, String> {
    let mut ids: Vec<&str> = values
        .keys()
        .filter_map(|k| k.strip_prefix("archive.")?.strip_suffix(".blobs"))
        .collect();
    ids.sort_by_key(|id| (id.len(), *id));
    if ids.len() as u64 != count {
        return Err(format!(
            "{MANIFEST}: `archives` is {count}, but {} archives are described",
            ids.len()
        ));
    }
    ids.into_iter()
        .map(|id| {
            Ok(Archive {
                id: id.to_string(),
                blobs: unsigned(&format!("archive.{id}.blobs"))?,
                blob_bytes: unsigned(&format!("archive.{id}.blob_bytes"))?,
                database_bytes: unsigned(&format!("archive.{id}.database_bytes"))?,
            })
        })
        .collect()
}

/// The `secret.<n>.*` keys, `n` from 1 to `count`. Paths are checked as `SHA256SUMS`
/// paths are: a manifest cannot make a restore write outside the data directory.
fn parse_secrets(values: &HashMap<String, String>, count: u64) -> Result<Vec<Secret>, String> {
    (1..=count)
        .map(|n| {
            let get = |name: &str| -> Result<&str, String> {
                values
                    .get(&format!("secret.{n}.{name}"))
                    .map(String::as_str)
                    .ok_or_else(|| format!("{MANIFEST} has no `secret.{n}.{name}`"))
            };
            let number = |name: &str| -> Result<u64, String> {
                get(name)?
                    .parse()
                    .map_err(|_| format!("{MANIFEST}: `secret.{n}.{name}` is not a number"))
            };
            let path = get("path")?.to_string();
            if !safe_path(&path) {
                return Err(format!(
                    "{MANIFEST}: `secret.{n}.path` {path:?} leaves the backup"
                ));
            }
            let file = match values.get(&format!("secret.{n}.sha256")) {
                None => None,
                Some(hash) if valid_hash(hash) => {
                    Some((hash.to_ascii_lowercase(), number("bytes")?))
                }
                Some(_) => return Err(format!("{MANIFEST}: `secret.{n}.sha256` is not a SHA-256")),
            };
            Ok(Secret {
                path,
                file,
                mode: u32::from_str_radix(get("mode")?, 8)
                    .map_err(|_| format!("{MANIFEST}: `secret.{n}.mode` is not an octal mode"))?,
                uid: u32::try_from(number("uid")?)
                    .map_err(|_| format!("{MANIFEST}: `secret.{n}.uid` is too large"))?,
                gid: u32::try_from(number("gid")?)
                    .map_err(|_| format!("{MANIFEST}: `secret.{n}.gid` is too large"))?,
                origin: values.get(&format!("secret.{n}.origin")).cloned(),
            })
        })
        .collect()
}

fn valid_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A relative path that stays below the directory it is joined to.
pub fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| part != ".." && part != "." && !part.is_empty())
}

/// Reads `manifest.toml` of the backup in `dir`.
pub fn read(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| format!("{MANIFEST}: {e}"))?;
    Manifest::parse(&text)
}

/// What the last `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub at_unix: i64,
    pub ok: bool,
    /// The first problem found, when not ok.
    pub problem: Option<String>,
}

impl Verified {
    fn to_toml(&self) -> String {
        let mut out = format!(
            "# The last `tegami backup verify` of this backup.\nverified_unix = {}\nverified = {}\nok = {}\n",
            self.at_unix,
            quote(&super::rfc3339_utc(self.at_unix)),
            self.ok
        );
        if let Some(problem) = &self.problem {
            let _ = writeln!(out, "problem = {}", quote(problem));
        }
        out
    }
}

pub fn read_verified(dir: &Path) -> Option<Verified> {
    let text = fs::read_to_string(dir.join(VERIFIED)).ok()?;
    let values = parse_flat(&text).ok()?;
    Some(Verified {
        at_unix: values.get("verified_unix")?.parse().ok()?,
        ok: values.get("ok")? == "true",
        problem: values.get("problem").cloned(),
    })
}

/// Records a verification; a backup on read-only media simply keeps no record.
pub fn write_verified(dir: &Path, verified: &Verified) {
    if let Err(e) = fsutil::write_durably(&dir.join(VERIFIED), verified.to_toml().as_bytes()) {
        tracing::debug!(error = %e, dir = %dir.display(), "cannot record the verification");
    }
}

/// One line of `SHA256SUMS`: the checksum and the path relative to the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    pub sha256: String,
    pub path: String,
}

pub fn format_sums(sums: &[Sum]) -> String {
    let mut out = String::with_capacity(sums.len() * 120);
    for sum in sums {
        // Two spaces: "text mode" in sha256sum's format, which is what it prints by default.
        let _ = writeln!(out, "{}  {}", sum.sha256, sum.path);
    }
    out
}

pub fn parse_sums(text: &str) -> Result<Vec<Sum>, String> {
    let mut sums = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = || format!("{SUMS} line {} is malformed: {line:?}", n + 1);
        let (hash, path) = line.split_once("  ").ok_or_else(bad)?;
        if !valid_hash(hash) || !safe_path(path) {
            return Err(bad());
        }
        sums.push(Sum {
            sha256: hash.to_ascii_lowercase(),
            path: path.to_string(),
        });
    }
    Ok(sums)
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads `key = value` lines (strings unquoted, other values as written); enough TOML for
/// the files this module writes.
fn parse_flat(text: &str) -> Result<HashMap<String, String>, String> {
    let mut values = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("not a `key = value` line: {line:?}"))?;
        let value = value.trim();
        let value = if let Some(inner) = value.strip_prefix('"') {
            unquote(inner).ok_or_else(|| format!("unterminated string: {line:?}"))?
        } else {
            value.to_string()
        };
        values.insert(key.trim().to_string(), value);
    }
    Ok(values)
}

fn unquote(inner: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            id: "20261123T140000Z".into(),
            trigger: Trigger::Scheduled,
            tegami_version: "0.1.0".into(),
            schema_version: 2,
            created_unix: 1_795_442_400,
            source: "/var/lib/tegami \"data\"\\x".into(),
            host: "mx1".into(),
            owner_uid: 4242,
            owner_gid: 4243,
            dir_mode: 0o750,
            file_mode: 0o600,
            accounts: 3,
            messages: 1234,
            blobs: 1200,
            blob_bytes: 5 << 30,
            database_bytes: 1 << 20,
            files: 1201,
            bytes: (5 << 30) + (1 << 20),
            blobs_linked: 1000,
            blobs_copied: 200,
            bytes_copied: 1 << 28,
            damaged: 0,
            snapshots: 1,
            archives: Some(vec![
                Archive {
                    id: "2".into(),
                    blobs: 7,
                    blob_bytes: 7000,
                    database_bytes: 4096,
                },
                Archive {
                    id: "10".into(),
                    blobs: 0,
                    blob_bytes: 0,
                    database_bytes: 8192,
                },
            ]),
            checked: Some(BlobsChecked {
                hashed: 200,
                trusted: 1000,
                since_unix: 1_795_442_399,
            }),
            secrets: Some(vec![
                Secret {
                    path: "dkim".into(),
                    file: None,
                    mode: 0o755,
                    uid: 4242,
                    gid: 4243,
                    origin: None,
                },
                Secret {
                    path: "dkim/example.com/sel.pem".into(),
                    file: Some(("cd".repeat(32), 1704)),
                    mode: 0o600,
                    uid: 4242,
                    gid: 4243,
                    origin: None,
                },
                Secret {
                    path: "config/tegami.toml".into(),
                    file: Some(("ef".repeat(32), 99)),
                    mode: 0o640,
                    uid: 0,
                    gid: 4243,
                    origin: Some("/etc/tegami/tegami \"main\".toml".into()),
                },
            ]),
            seconds: 1.25,
            sums_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let manifest = sample();
        let text = manifest.to_toml();
        assert!(
            text.contains("created = \"2026-11-23T14:00:00Z\""),
            "{text}"
        );
        assert!(text.contains("dir_mode = \"0750\""), "{text}");
        assert_eq!(Manifest::parse(&text).unwrap(), manifest);
    }

    #[test]
    fn a_manifest_from_before_archives_and_secrets_still_reads() {
        let mut old = sample();
        old.archives = None;
        old.checked = None;
        old.secrets = None;
        let text = old.to_toml();
        assert!(!text.contains("archive"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("blobs_hashed"), "{text}");
        assert_eq!(Manifest::parse(&text).unwrap(), old);
        let none = Manifest {
            archives: Some(Vec::new()),
            ..sample()
        };
        assert_eq!(Manifest::parse(&none.to_toml()).unwrap(), none);
    }

    #[test]
    fn a_manifest_cannot_send_a_secret_outside_the_data_directory() {
        for evil in ["/etc/shadow", "../x", "dkim/../../x", "./x", ""] {
            let mut m = sample();
            m.secrets.as_mut().unwrap()[1].path = evil.into();
            let err = Manifest::parse(&m.to_toml()).unwrap_err();
            assert!(err.contains("secret.2.path"), "{evil}: {err}");
        }
    }

    #[test]
    fn a_manifest_cut_short_is_refused() {
        let text = sample().to_toml();
        let cut = &text[..text.len() - "complete = true\n".len()];
        let err = Manifest::parse(cut).unwrap_err();
        assert!(err.contains("incomplete"), "{err}");
        let err = Manifest::parse(&text[..text.len() / 2]).unwrap_err();
        assert!(
            err.contains("incomplete")
                || err.contains("unterminated")
                || err.contains("not a `key = value` line"),
            "{err}"
        );
    }

    #[test]
    fn sums_refuse_paths_that_leave_the_backup() {
        let hash = "0".repeat(64);
        let sums = vec![
            Sum {
                sha256: hash.clone(),
                path: "tegami.db".into(),
            },
            Sum {
                sha256: hash.clone(),
                path: "blobs/00/00/x".into(),
            },
        ];
        assert_eq!(parse_sums(&format_sums(&sums)).unwrap(), sums);
        for evil in ["/etc/passwd", "../x", "blobs//x", "a/../../b"] {
            assert!(
                parse_sums(&format!("{hash}  {evil}\n")).is_err(),
                "{evil} accepted"
            );
        }
        assert!(parse_sums("nothex  tegami.db\n").is_err());
    }

    #[test]
    fn a_verification_record_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let record = Verified {
            at_unix: 1_795_442_400,
            ok: false,
            problem: Some("blobs/ab/x: content does not match".into()),
        };
        write_verified(dir.path(), &record);
        assert_eq!(read_verified(dir.path()), Some(record));
    }
}

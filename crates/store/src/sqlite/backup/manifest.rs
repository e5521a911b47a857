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
    pub seconds: f64,
    pub sums_sha256: String,
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
        let valid_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        let safe_path = !path.is_empty()
            && !path.starts_with('/')
            && path.split('/').all(|part| part != ".." && !part.is_empty());
        if !valid_hash || !safe_path {
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
    fn a_manifest_from_before_archives_still_reads() {
        let mut old = sample();
        old.archives = None;
        let text = old.to_toml();
        assert!(!text.contains("archive"), "{text}");
        assert_eq!(Manifest::parse(&text).unwrap(), old);
        let none = Manifest {
            archives: Some(Vec::new()),
            ..sample()
        };
        assert_eq!(Manifest::parse(&none.to_toml()).unwrap(), none);
    }

    #[test]
    fn a_manifest_cut_short_is_refused() {
        let text = sample().to_toml();
        let cut = &text[..text.len() - "complete = true\n".len()];
        let err = Manifest::parse(cut).unwrap_err();
        assert!(err.contains("incomplete"), "{err}");
        let err = Manifest::parse(&text[..text.len() / 2]).unwrap_err();
        assert!(
            err.contains("incomplete") || err.contains("unterminated"),
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

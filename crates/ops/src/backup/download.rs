//! A backup as one tar file (POSIX ustar, with pax records for what ustar cannot hold), laid
//! out so that any byte range can be served without building the archive: a member's
//! header is computed from its path and metadata alone, so where every byte lies follows
//! from the file sizes. A face streams it with Content-Length and Range (a browser shows the
//! progress and can resume) while holding one read buffer, never the archive.
//!
//! The archive holds the backup's directory `<id>/` with every file and directory in it,
//! depth first in byte order of the names, so two walks of an unchanged backup give the
//! same bytes. `verified.toml` is left out: it records a check made on this machine (not
//! part of the backup's checksums), and a verify during a download would otherwise change
//! the bytes under a resumed one. Unpacked, the directory is a backup `tegami restore`
//! takes by its path.
//!
//! The pure part ([`header`], [`cut`], [`requested`]) is what the tests pin down; the walk
//! and the reading are [`open`] and [`Download::write_range`].

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use store::backup::{self as stored, EntryState};

use crate::config::BackupConfig;
use crate::error::{Error, IoContext, Result};

/// Tar's unit: headers and each file's data take whole blocks.
pub const BLOCK: u64 = 512;
/// Two zero blocks end an archive.
pub const TRAILER: u64 = 2 * BLOCK;
/// Left out of the archive (see the module's doc).
const NOT_ARCHIVED: &str = "verified.toml";
/// What one read takes from a file: the only buffer a download holds.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
}

/// One file or directory of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The path in the archive, `/`-separated, without a trailing slash.
    pub path: String,
    pub kind: Kind,
    /// The file's bytes (0 for a directory).
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
}

/// Whole blocks for `size` bytes.
pub fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// The header blocks of a member: a pax extended header first when a value does not fit
/// ustar's fields (a path longer than its 255 bytes, a file of 8 GiB or more, a large uid),
/// then the ustar header.
pub fn header(m: &Member) -> Vec<u8> {
    let name = match m.kind {
        Kind::File => m.path.clone(),
        Kind::Directory => format!("{}/", m.path),
    };
    let mut records = Vec::new();
    let split = split_name(&name);
    if split.is_none() {
        records.push(("path", name.clone()));
    }
    const ID_MAX: u64 = 0o7777777;
    const SIZE_MAX: u64 = 0o77777777777;
    if m.size > SIZE_MAX {
        records.push(("size", m.size.to_string()));
    }
    if m.uid > ID_MAX {
        records.push(("uid", m.uid.to_string()));
    }
    if m.gid > ID_MAX {
        records.push(("gid", m.gid.to_string()));
    }
    let mtime = u64::try_from(m.mtime).ok().filter(|&t| t <= SIZE_MAX);
    if mtime.is_none() {
        records.push(("mtime", m.mtime.to_string()));
    }
    let mut out = Vec::with_capacity(BLOCK as usize);
    if !records.is_empty() {
        let data: Vec<u8> = records
            .iter()
            .flat_map(|(key, value)| pax_record(key, value).into_bytes())
            .collect();
        out.extend_from_slice(&ustar(
            ("", "././@PaxHeader"),
            b'x',
            data.len() as u64,
            0o644,
            0,
            0,
            0,
        ));
        out.extend_from_slice(&data);
        out.resize(
            out.len() + (padded(data.len() as u64) as usize - data.len()),
            0,
        );
    }
    // What does not fit goes in the fields as far as it does (the pax record rules).
    let fallback = tail(&name, 100);
    let (prefix, short) = split.unwrap_or(("", fallback));
    out.extend_from_slice(&ustar(
        (prefix, short),
        match m.kind {
            Kind::File => b'0',
            Kind::Directory => b'5',
        },
        m.size.min(SIZE_MAX),
        m.mode & 0o7777,
        m.uid.min(ID_MAX),
        m.gid.min(ID_MAX),
        mtime.unwrap_or(0),
    ));
    out
}

/// The bytes one member takes in the archive: its header blocks and its data blocks.
pub fn span(header_len: u64, size: u64) -> u64 {
    header_len + padded(size)
}

/// One ustar header block.
fn ustar(
    (prefix, name): (&str, &str),
    kind: u8,
    size: u64,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], uid);
    octal(&mut h[116..124], gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is the sum of the header's bytes with its own field read as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// Zero-padded octal digits and a NUL filling `field`; callers keep `value` in range.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Splits a name into ustar's prefix (155 bytes) and name (100 bytes) at a slash, when it
/// can be.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    // A directory's trailing slash stays with its last component.
    let body = name.strip_suffix('/').unwrap_or(name);
    body.match_indices('/')
        .map(|(at, _)| (&name[..at], &name[at + 1..]))
        .find(|(prefix, rest)| prefix.len() <= 155 && rest.len() <= 100 && !rest.is_empty())
}

/// The last `max` bytes of `text` or fewer, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut at = text.len().saturating_sub(max);
    while !text.is_char_boundary(at) {
        at += 1;
    }
    &text[at..]
}

/// One pax record, "LEN key=value\n", LEN counting the whole record and its own digits.
fn pax_record(key: &str, value: &str) -> String {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + rest.to_string().len();
    if len.to_string().len() + rest != len {
        len += 1;
    }
    format!("{len} {key}={value}\n")
}

// ---------------------------------------------------------------------------------------
// Where bytes lie

/// The part of one member that falls in a wanted range: which of its header bytes, which
/// of its file's bytes and how many padding zeros, in that order (the range is contiguous).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub header: Range<u64>,
    pub data: Range<u64>,
    pub zeros: u64,
}

/// What of a member starting at `start` (header of `header_len` bytes, file of `size`)
/// lies in `want`; None when nothing does.
pub fn cut(start: u64, header_len: u64, size: u64, want: &Range<u64>) -> Option<Cut> {
    let end = start + span(header_len, size);
    if want.end <= start || want.start >= end || want.start >= want.end {
        return None;
    }
    let part = |from: u64, to: u64| -> Range<u64> {
        let (a, b) = (from.max(want.start), to.min(want.end));
        if a < b { a - from..b - from } else { 0..0 }
    };
    let data_start = start + header_len;
    let pad_start = data_start + size;
    let zeros = part(pad_start, end);
    Some(Cut {
        header: part(start, data_start),
        data: part(data_start, pad_start),
        zeros: zeros.end - zeros.start,
    })
}

/// What a request asks for, by its Range and If-Range headers (RFC 9110 §14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// The whole archive (no range, one this does not serve, or a resume of something
    /// that has changed since).
    Whole,
    Part(Range<u64>),
    /// 416: the range starts beyond the end.
    Unsatisfiable,
}

/// Reads a Range header against an archive of `total` bytes whose ETag is `etag`. Only one
/// range is served; several, or a malformed header, get the whole archive, as the RFC lets
/// a server answer. An If-Range naming another version gets the whole archive too, so a
/// resumed download never splices two versions.
pub fn requested(range: Option<&str>, if_range: Option<&str>, etag: &str, total: u64) -> Requested {
    let Some(range) = range else {
        return Requested::Whole;
    };
    if if_range.is_some_and(|v| v.trim() != etag) {
        return Requested::Whole;
    }
    let Some((unit, spec)) = range.trim().split_once('=') else {
        return Requested::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Requested::Whole;
    };
    let number = |text: &str| -> Option<u64> {
        let text = text.trim();
        (!text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // "-N": the last N bytes.
        (true, false) => match number(last) {
            Some(0) => Requested::Unsatisfiable,
            Some(_) if total == 0 => Requested::Unsatisfiable,
            Some(n) => Requested::Part(total.saturating_sub(n)..total),
            None => Requested::Whole,
        },
        // "A-": from A to the end.
        (false, true) => match number(first) {
            Some(a) if a >= total => Requested::Unsatisfiable,
            Some(a) => Requested::Part(a..total),
            None => Requested::Whole,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= total {
                    Requested::Unsatisfiable
                } else {
                    Requested::Part(a..b.saturating_add(1).min(total))
                }
            }
            _ => Requested::Whole,
        },
        (true, true) => Requested::Whole,
    }
}

/// FNV-1a, 64 bits: the archive's version for its ETag, over every header (paths, sizes,
/// modes, owners, times) and the length. Not a security measure: it only has to change when
/// the bytes would.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The backup's files

/// The members of a backup directory in archive order, read as the walk goes: the memory it
/// holds is the names of one directory per level (the largest is a blob directory, about a
/// 256th of the messages), never the whole list.
struct Walk {
    stack: Vec<(PathBuf, String, std::vec::IntoIter<String>)>,
    first: Option<Member>,
}

impl Walk {
    fn new(dir: &Path, top: &str) -> Result<Walk> {
        let meta =
            fs::symlink_metadata(dir).io_context(|| format!("cannot read {}", dir.display()))?;
        let names = sorted_names(dir, true)?;
        Ok(Walk {
            first: Some(member(top.to_string(), &meta)),
            stack: vec![(dir.to_path_buf(), top.to_string(), names.into_iter())],
        })
    }

    fn next(&mut self) -> Result<Option<Member>> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        loop {
            let Some((dir, prefix, names)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(name) = names.next() else {
                self.stack.pop();
                continue;
            };
            let path = dir.join(&name);
            let in_archive = format!("{prefix}/{name}");
            let meta = fs::symlink_metadata(&path)
                .io_context(|| format!("cannot read {}", path.display()))?;
            if meta.is_dir() {
                let names = sorted_names(&path, false)?;
                self.stack
                    .push((path.clone(), in_archive.clone(), names.into_iter()));
            } else if !meta.is_file() {
                return Err(Error::failed(format!(
                    "{} is neither a file nor a directory; a backup holds only those",
                    path.display()
                )));
            }
            return Ok(Some(member(in_archive, &meta)));
        }
    }
}

fn member(path: String, meta: &fs::Metadata) -> Member {
    let dir = meta.is_dir();
    Member {
        path,
        kind: if dir { Kind::Directory } else { Kind::File },
        size: if dir { 0 } else { meta.len() },
        mode: meta.mode(),
        uid: u64::from(meta.uid()),
        gid: u64::from(meta.gid()),
        mtime: meta.mtime(),
    }
}

/// The entries of a directory in byte order; at the top, without what is not archived.
fn sorted_names(dir: &Path, top: bool) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).io_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.io_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().into_string().map_err(|name| {
            Error::failed(format!(
                "{} has a name that is not UTF-8 ({name:?}); it cannot go into the archive",
                dir.display()
            ))
        })?;
        if !(top && name == NOT_ARCHIVED) {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// A backup ready to be downloaded: its size and version, measured by one walk.
#[derive(Debug, Clone)]
pub struct Download {
    pub id: String,
    pub dir: PathBuf,
    /// The archive's length in bytes.
    pub total: u64,
    /// Its version, quoted as an HTTP ETag.
    pub etag: String,
}

/// Measures the download of backup `id` of the configured backup directory (only a finished
/// backup there: an id is a name, never a path).
pub fn open(data: &Path, settings: &BackupConfig, id: &str) -> Result<Download> {
    super::check_id(id)?;
    let root = settings.root(data);
    let entries = stored::list(&root).map_err(|e| {
        Error::failed(format!(
            "cannot list the backups in {}: {e}",
            root.display()
        ))
    })?;
    let Some(entry) = entries.into_iter().find(|e| e.id == id) else {
        return Err(Error::not_found(format!(
            "no backup {id} in {} (`tegami backup list` shows them)",
            root.display()
        )));
    };
    if !matches!(entry.state, EntryState::Complete { .. }) {
        return Err(Error::conflict(format!(
            "backup {id} is not a finished backup (interrupted, or its manifest cannot be read)"
        )));
    }
    let mut walk = Walk::new(&entry.path, id)?;
    let mut total = TRAILER;
    let mut version = Fnv::new();
    while let Some(m) = walk.next()? {
        let h = header(&m);
        version.feed(&h);
        total += span(h.len() as u64, m.size);
    }
    version.feed(&total.to_le_bytes());
    Ok(Download {
        etag: format!("\"{id}-{total:x}-{:016x}\"", version.0),
        id: id.to_string(),
        dir: entry.path,
        total,
    })
}

impl Download {
    /// The name a browser saves it as.
    pub fn file_name(&self) -> String {
        format!("tegami-backup-{}.tar", self.id)
    }

    /// Writes the bytes `want` of the archive to `out`, in pieces of at most 64 KiB, walking
    /// the backup again and opening only the files the range touches. Stops with an error
    /// when a file turns out shorter than its header says or the archive's length changed
    /// (the backup changed meanwhile: a prune removed it), and when `out` fails (the
    /// client went away).
    pub fn write_range(
        &self,
        want: Range<u64>,
        out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<()> {
        let gone = |e: io::Error| Error::Io {
            context: "the download was cut off".into(),
            source: e,
        };
        let changed = || {
            Error::failed(format!(
                "backup {} changed while it was downloaded ({}); download it again",
                self.id,
                self.dir.display()
            ))
        };
        let want = want.start..want.end.min(self.total);
        let mut walk = Walk::new(&self.dir, &self.id)?;
        let mut at = 0u64;
        let mut buf = vec![0u8; CHUNK];
        while at < want.end {
            let Some(m) = walk.next()? else {
                break;
            };
            let h = header(&m);
            let start = at;
            at += span(h.len() as u64, m.size);
            let Some(cut) = cut(start, h.len() as u64, m.size, &want) else {
                continue;
            };
            out(&h[cut.header.start as usize..cut.header.end as usize]).map_err(gone)?;
            if cut.data.end > cut.data.start {
                let path = self
                    .dir
                    .join(m.path.split_once('/').map_or("", |(_, rest)| rest));
                let mut file =
                    File::open(&path).io_context(|| format!("cannot open {}", path.display()))?;
                file.seek(SeekFrom::Start(cut.data.start))
                    .io_context(|| format!("cannot read {}", path.display()))?;
                let mut left = cut.data.end - cut.data.start;
                while left > 0 {
                    let n = (left as usize).min(CHUNK);
                    let read = file
                        .read(&mut buf[..n])
                        .io_context(|| format!("cannot read {}", path.display()))?;
                    if read == 0 {
                        return Err(changed());
                    }
                    out(&buf[..read]).map_err(gone)?;
                    left -= read as u64;
                }
            }
            zeros(cut.zeros, out).map_err(gone)?;
        }
        if at > self.total - TRAILER || (at < self.total - TRAILER && want.end > at) {
            return Err(changed());
        }
        // The trailer's part of the range.
        let trailer = at..self.total;
        let (a, b) = (trailer.start.max(want.start), trailer.end.min(want.end));
        if a < b {
            zeros(b - a, out).map_err(gone)?;
        }
        Ok(())
    }
}

fn zeros(mut n: u64, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    const ZEROS: [u8; 1024] = [0; 1024];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64);
        out(&ZEROS[..k as usize])?;
        n -= k;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Member {
        Member {
            path: path.into(),
            kind: Kind::File,
            size,
            mode: 0o100600,
            uid: 1000,
            gid: 1000,
            mtime: 1_795_442_400,
        }
    }

    fn field(h: &[u8], at: Range<usize>) -> String {
        String::from_utf8(h[at].iter().take_while(|&&b| b != 0).copied().collect()).unwrap()
    }

    fn octal_field(h: &[u8], at: Range<usize>) -> u64 {
        u64::from_str_radix(field(h, at).trim(), 8).unwrap()
    }

    fn checksum_ok(h: &[u8]) -> bool {
        let mut copy = h[..512].to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|&b| u64::from(b)).sum();
        octal_field(h, 148..155) == sum
    }

    #[test]
    fn a_short_file_has_one_ustar_header() {
        let h = header(&file("20261207T064100Z/tegami.db", 1234));
        assert_eq!(h.len(), 512);
        assert_eq!(field(&h, 0..100), "20261207T064100Z/tegami.db");
        assert_eq!(octal_field(&h, 100..108), 0o600, "permission bits only");
        assert_eq!(octal_field(&h, 108..116), 1000);
        assert_eq!(octal_field(&h, 124..136), 1234);
        assert_eq!(octal_field(&h, 136..148), 1_795_442_400);
        assert_eq!(h[156], b'0');
        assert_eq!(&h[257..265], b"ustar\x0000");
        assert!(checksum_ok(&h));
    }

    #[test]
    fn a_directory_ends_in_a_slash_and_has_no_data() {
        let mut m = file("id/blobs", 0);
        m.kind = Kind::Directory;
        m.mode = 0o40700;
        let h = header(&m);
        assert_eq!(field(&h, 0..100), "id/blobs/");
        assert_eq!(h[156], b'5');
        assert!(checksum_ok(&h));
        assert_eq!(span(h.len() as u64, m.size), 512);
    }

    #[test]
    fn a_blob_path_is_split_into_prefix_and_name() {
        let hash = "ab".repeat(32);
        let path = format!("20261207T064100Z/archive/12/blobs/ab/{hash}-and-a-longer-tail-xx");
        assert!(path.len() > 100);
        let h = header(&file(&path, 1));
        assert_eq!(h.len(), 512, "no pax header needed");
        let (prefix, name) = (field(&h, 345..500), field(&h, 0..100));
        assert_eq!(format!("{prefix}/{name}"), path);
        assert!(checksum_ok(&h));
    }

    /// The pax records of an extended header, as a reader sees them.
    fn pax(h: &[u8]) -> Vec<(String, String)> {
        assert_eq!(h[156], b'x');
        let len = octal_field(h, 124..136) as usize;
        let text = std::str::from_utf8(&h[512..512 + len]).unwrap();
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (n, _) = rest.split_once(' ').unwrap();
            let n: usize = n.parse().unwrap();
            let record = &rest[..n];
            assert!(record.ends_with('\n'), "{record:?} is {n} bytes long");
            let (_, kv) = record[..n - 1].split_once(' ').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            out.push((k.to_string(), v.to_string()));
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn what_ustar_cannot_hold_goes_in_pax_records() {
        let long = format!("id/config/{}.toml", "設定".repeat(60));
        let mut m = file(&long, 9 << 30);
        m.uid = 5_000_000;
        let h = header(&m);
        assert_eq!(
            h.len(),
            512 * 3,
            "pax header, its data block, the ustar header"
        );
        assert!(checksum_ok(&h));
        assert_eq!(
            pax(&h),
            [
                ("path".to_string(), long.clone()),
                ("size".to_string(), (9u64 << 30).to_string()),
                ("uid".to_string(), "5000000".to_string()),
            ]
        );
        let ustar = &h[1024..];
        assert!(checksum_ok(ustar));
        assert_eq!(ustar[156], b'0');
        assert!(
            std::str::from_utf8(&ustar[..100]).is_ok(),
            "cut at a character boundary"
        );
    }

    #[test]
    fn a_pax_record_counts_its_own_length() {
        for n in 0..2000 {
            let value = "x".repeat(n);
            let record = pax_record("path", &value);
            let (len, _) = record.split_once(' ').unwrap();
            assert_eq!(
                len.parse::<usize>().unwrap(),
                record.len(),
                "value of {n} bytes"
            );
        }
    }

    /// The archive built the plain way, for the layout to be compared with.
    fn whole(members: &[(Member, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (m, data) in members {
            out.extend(header(m));
            out.extend(data);
            out.resize(
                out.len() + (padded(data.len() as u64) - data.len() as u64) as usize,
                0,
            );
        }
        out.resize(out.len() + TRAILER as usize, 0);
        out
    }

    /// Assembles a range from the cuts alone.
    fn assembled(members: &[(Member, Vec<u8>)], want: Range<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        for (m, data) in members {
            let h = header(m);
            if let Some(c) = cut(at, h.len() as u64, m.size, &want) {
                out.extend(&h[c.header.start as usize..c.header.end as usize]);
                out.extend(&data[c.data.start as usize..c.data.end as usize]);
                out.resize(out.len() + c.zeros as usize, 0);
            }
            at += span(h.len() as u64, m.size);
        }
        let (a, b) = (at.max(want.start), (at + TRAILER).min(want.end));
        if a < b {
            out.resize(out.len() + (b - a) as usize, 0);
        }
        out
    }

    #[test]
    fn every_range_is_the_same_bytes_as_the_archive_built_whole() {
        let members: Vec<(Member, Vec<u8>)> = [0usize, 1, 511, 512, 513, 1500]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let data: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
                (file(&format!("id/f{i}"), n as u64), data)
            })
            .collect();
        let all = whole(&members);
        let total = all.len() as u64;
        let mut ranges = vec![0..total, 0..1, total - 1..total];
        for a in (0..total).step_by(97) {
            for len in [1, 2, 100, 511, 512, 513, 4000] {
                ranges.push(a..(a + len).min(total));
            }
        }
        for r in ranges {
            assert_eq!(
                assembled(&members, r.clone()),
                all[r.start as usize..r.end as usize],
                "range {r:?}"
            );
        }
    }

    #[test]
    fn range_headers_are_read_as_rfc_9110_says() {
        let tag = "\"a\"";
        let r = |range: &str| requested(Some(range), None, tag, 1000);
        assert_eq!(requested(None, None, tag, 1000), Requested::Whole);
        assert_eq!(r("bytes=0-499"), Requested::Part(0..500));
        assert_eq!(r("bytes=500-"), Requested::Part(500..1000));
        assert_eq!(r("bytes=900-5000"), Requested::Part(900..1000));
        assert_eq!(r("bytes=-100"), Requested::Part(900..1000));
        assert_eq!(r("bytes=-5000"), Requested::Part(0..1000));
        assert_eq!(r("bytes=1000-"), Requested::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Requested::Unsatisfiable);
        assert_eq!(r("bytes=5-4"), Requested::Whole, "invalid: ignored");
        assert_eq!(r("bytes=0-1,5-6"), Requested::Whole, "several: the whole");
        assert_eq!(r("items=0-1"), Requested::Whole);
        assert_eq!(r("bytes=99999999999999999999-"), Requested::Whole);
        assert_eq!(
            requested(Some("bytes=10-"), Some(tag), tag, 1000),
            Requested::Part(10..1000)
        );
        assert_eq!(
            requested(Some("bytes=10-"), Some("\"b\""), tag, 1000),
            Requested::Whole,
            "a resume of another version starts over"
        );
    }

    fn backup_dir() -> (tempfile::TempDir, PathBuf, BackupConfig) {
        let data = tempfile::tempdir().unwrap();
        let settings = BackupConfig {
            at: None,
            dir: None,
            keep_daily: 7,
            keep_weekly: 4,
            verify: true,
            config_file: None,
        };
        let root = settings.root(data.path());
        let id = "20261207T064100Z";
        super::super::tests::plant(&root, id, 1_795_442_400, stored::Trigger::Manual);
        let dir = root.join(id);
        fs::create_dir_all(dir.join("blobs/ab")).unwrap();
        fs::create_dir_all(dir.join("dkim")).unwrap();
        fs::write(dir.join("blobs/ab/one"), vec![7u8; 70_000]).unwrap();
        fs::write(dir.join("blobs/ab/two"), b"two").unwrap();
        fs::write(dir.join("SHA256SUMS"), b"").unwrap();
        fs::write(dir.join("verified.toml"), b"ok = true\n").unwrap();
        (data, dir, settings)
    }

    fn read(d: &Download, want: Range<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        d.write_range(want, &mut |b| {
            assert!(b.len() <= CHUNK);
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_backup_downloads_whole_and_in_any_range_alike() {
        let (data, dir, settings) = backup_dir();
        let d = open(data.path(), &settings, "20261207T064100Z").unwrap();
        let all = read(&d, 0..d.total);
        assert_eq!(all.len() as u64, d.total);
        // The members in order, from the headers themselves.
        let mut names = Vec::new();
        let mut at = 0usize;
        while all[at] != 0 {
            let name = field(&all, at..at + 100);
            let size = octal_field(&all, at + 124..at + 136) as usize;
            if name.ends_with("blobs/ab/one") {
                assert_eq!(&all[at + 512..at + 512 + size], &vec![7u8; 70_000][..]);
            }
            names.push(name);
            at += 512 + padded(size as u64) as usize;
        }
        assert_eq!(
            names,
            [
                "20261207T064100Z/",
                "20261207T064100Z/SHA256SUMS",
                "20261207T064100Z/blobs/",
                "20261207T064100Z/blobs/ab/",
                "20261207T064100Z/blobs/ab/one",
                "20261207T064100Z/blobs/ab/two",
                "20261207T064100Z/dkim/",
                "20261207T064100Z/manifest.toml",
            ],
            "depth first in byte order, without verified.toml"
        );
        assert_eq!(all.len() - at, TRAILER as usize);
        for r in [
            0..1,
            100..70_000,
            1000..d.total,
            d.total - 3..d.total,
            512..513,
        ] {
            assert_eq!(
                read(&d, r.clone()),
                all[r.start as usize..r.end as usize],
                "{r:?}"
            );
        }
        // A verify meanwhile changes nothing; a file cut short is found.
        fs::write(dir.join("verified.toml"), b"ok = false\n").unwrap();
        assert_eq!(open(data.path(), &settings, &d.id).unwrap().etag, d.etag);
        fs::write(dir.join("blobs/ab/one"), b"short").unwrap();
        let e = d.write_range(0..d.total, &mut |_| Ok(())).unwrap_err();
        assert!(
            e.to_string().contains("changed while it was downloaded"),
            "{e}"
        );
        assert_ne!(open(data.path(), &settings, &d.id).unwrap().etag, d.etag);
    }

    #[test]
    fn only_a_backup_of_the_backup_directory_is_offered() {
        let (data, _dir, settings) = backup_dir();
        for id in ["../data", "", ".hidden", "a/b"] {
            assert!(
                matches!(open(data.path(), &settings, id), Err(Error::Invalid(_))),
                "{id}"
            );
        }
        assert!(matches!(
            open(data.path(), &settings, "20200101T000000Z"),
            Err(Error::NotFound(_))
        ));
    }
}

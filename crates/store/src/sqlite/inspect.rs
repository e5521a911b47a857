//! Looking at a store's SQLite files without opening them: their sizes, and the schema
//! version read from the bytes of the file header and the write-ahead log.
//!
//! `tegami doctor` needs both on a data directory it must not change: opening the store
//! would recover after a crash, migrate the schema and create files, and SQLite itself
//! writes to the WAL index even to read. So nothing here opens a connection; it reads the
//! files as SQLite's file format (https://sqlite.org/fileformat.html) describes them, the
//! same whether the server is down or running.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// The files SQLite keeps for the store, by their names in the data directory.
const DATABASE: &str = "tegami.db";
const WAL: &str = "tegami.db-wal";
const SHM: &str = "tegami.db-shm";

/// The sizes of the store's database files, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Files {
    pub database: u64,
    /// The write-ahead log: 0 when there is none (after a clean stop).
    pub wal: u64,
    /// The WAL index shared by the processes reading the store: 0 when there is none.
    pub shm: u64,
}

/// The sizes of the database and its companions in `data`. The error is the database
/// file's own (`NotFound` before the store was first opened).
pub fn files(data: &Path) -> io::Result<Files> {
    let size = |name: &str| std::fs::metadata(data.join(name)).map(|m| m.len());
    Ok(Files {
        database: size(DATABASE)?,
        wal: size(WAL).unwrap_or(0),
        shm: size(SHM).unwrap_or(0),
    })
}

/// The schema version a store's files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaFound {
    pub version: i64,
    /// Read from a committed page 1 in the write-ahead log, which a running server may not
    /// have checkpointed into the database file yet.
    pub from_wal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// A file could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The database file is not one SQLite (or tegami) can open; the message reads after
    /// the file's name ("is truncated: ...").
    #[error("{0}")]
    Format(String),
}

/// SQLite's `user_version`, where tegami keeps its schema version: from the newest committed
/// copy of page 1 in the write-ahead log if there is one, else from the database file's
/// header.
pub fn schema_version(data: &Path) -> Result<SchemaFound, InspectError> {
    read_schema_version(&data.join(DATABASE), &data.join(WAL))
}

fn read_schema_version(db: &Path, wal: &Path) -> Result<SchemaFound, InspectError> {
    let found = |header: &[u8], from_wal| {
        db_header_version(header)
            .map(|version| SchemaFound { version, from_wal })
            .map_err(InspectError::Format)
    };
    if let Ok(file) = File::open(wal)
        && let Some(page1) = wal_page1_header(BufReader::new(file))?
    {
        return found(&page1, true);
    }
    let mut header = Vec::with_capacity(100);
    File::open(db).and_then(|f| f.take(100).read_to_end(&mut header))?;
    found(&header, false)
}

/// The user version in a SQLite file header (https://sqlite.org/fileformat.html, 1.3):
/// a big-endian 32-bit integer at offset 60. An empty file is an empty database: version 0.
fn db_header_version(header: &[u8]) -> Result<i64, String> {
    if header.is_empty() {
        return Ok(0);
    }
    if header.len() < 100 {
        return Err(format!(
            "is truncated: {} bytes, shorter than a SQLite header",
            header.len()
        ));
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err("is not a SQLite database (its header is wrong)".into());
    }
    Ok(i32::from_be_bytes([header[60], header[61], header[62], header[63]]) as i64)
}

const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// SQLite's WAL checksum (https://sqlite.org/fileformat.html, 4.1), continued from `sum`.
fn wal_checksum(data: &[u8], big_endian: bool, (mut s0, mut s1): (u32, u32)) -> (u32, u32) {
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    for pair in data.chunks_exact(8) {
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// The first 100 bytes of the newest committed copy of page 1 in a write-ahead log. Frames
/// count only while their salts match the log header and the checksum chain holds, as
/// SQLite itself decides on recovery; a page 1 not followed by a commit frame is ignored.
fn wal_page1_header(mut wal: impl Read) -> io::Result<Option<[u8; 100]>> {
    let mut header = [0u8; WAL_HEADER];
    if !read_full(&mut wal, &mut header)? {
        return Ok(None);
    }
    let magic = be32(&header[0..4]);
    let page_size = be32(&header[8..12]) as usize;
    if magic & !1 != WAL_MAGIC
        || !page_size.is_power_of_two()
        || !(512..=65536).contains(&page_size)
    {
        return Ok(None);
    }
    let big_endian = magic & 1 == 1;
    let mut sum = wal_checksum(&header[..24], big_endian, (0, 0));
    if sum != (be32(&header[24..28]), be32(&header[28..32])) {
        return Ok(None);
    }
    let mut frame = vec![0u8; FRAME_HEADER + page_size];
    let (mut pending, mut committed) = (None, None);
    while read_full(&mut wal, &mut frame)? {
        if frame[8..16] != header[16..24] {
            break;
        }
        sum = wal_checksum(&frame[..8], big_endian, sum);
        sum = wal_checksum(&frame[FRAME_HEADER..], big_endian, sum);
        if sum != (be32(&frame[16..20]), be32(&frame[20..24])) {
            break;
        }
        if be32(&frame[0..4]) == 1 {
            let mut page1 = [0u8; 100];
            page1.copy_from_slice(&frame[FRAME_HEADER..FRAME_HEADER + 100]);
            pending = Some(page1);
        }
        if be32(&frame[4..8]) != 0 && pending.is_some() {
            committed = pending.take();
        }
    }
    Ok(committed)
}

/// Fills `buf`; false at the end of the input (a partial last piece counts as the end).
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match input.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn header(user_version: i32) -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        h[60..64].copy_from_slice(&user_version.to_be_bytes());
        h
    }

    fn found(version: i64, from_wal: bool) -> SchemaFound {
        SchemaFound { version, from_wal }
    }

    #[test]
    fn the_sqlite_header_gives_the_user_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = header(7);
        file.resize(4096, 0);
        fs::write(dir.path().join(DATABASE), &file).unwrap();
        assert_eq!(schema_version(dir.path()).unwrap(), found(7, false));

        assert_eq!(
            db_header_version(&[]).unwrap(),
            0,
            "an empty file is an empty database"
        );
        assert!(
            db_header_version(&header(1)[..50])
                .unwrap_err()
                .contains("truncated")
        );
        let mut wrong = header(1);
        wrong[0] = b'X';
        assert!(
            db_header_version(&wrong)
                .unwrap_err()
                .contains("not a SQLite database")
        );
        fs::write(dir.path().join(DATABASE), &wrong).unwrap();
        assert!(matches!(
            schema_version(dir.path()),
            Err(InspectError::Format(_))
        ));
        let absent = dir.path().join("absent");
        assert!(matches!(schema_version(&absent), Err(InspectError::Io(_))));
    }

    #[test]
    fn the_files_are_measured_and_a_missing_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = files(dir.path()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        fs::write(dir.path().join(DATABASE), [0u8; 300]).unwrap();
        fs::write(dir.path().join(WAL), [0u8; 20]).unwrap();
        assert_eq!(
            files(dir.path()).unwrap(),
            Files {
                database: 300,
                wal: 20,
                shm: 0
            }
        );
    }

    /// A write-ahead log built by hand: (page number, commit, user version in page 1).
    fn wal(frames: &[(u32, bool, i32)], salt: [u8; 8], frame_salt: [u8; 8]) -> Vec<u8> {
        let page_size = 512usize;
        let mut out = Vec::new();
        out.extend_from_slice(&(WAL_MAGIC | 1).to_be_bytes());
        out.extend_from_slice(&3_007_000u32.to_be_bytes());
        out.extend_from_slice(&(page_size as u32).to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&salt);
        let mut sum = wal_checksum(&out, true, (0, 0));
        out.extend_from_slice(&sum.0.to_be_bytes());
        out.extend_from_slice(&sum.1.to_be_bytes());
        for &(page, commit, version) in frames {
            let mut head = Vec::new();
            head.extend_from_slice(&page.to_be_bytes());
            head.extend_from_slice(&(if commit { 3u32 } else { 0 }).to_be_bytes());
            let mut data = if page == 1 {
                header(version)
            } else {
                vec![0xAB; 100]
            };
            data.resize(page_size, 0);
            sum = wal_checksum(&head, true, sum);
            sum = wal_checksum(&data, true, sum);
            head.extend_from_slice(&frame_salt);
            head.extend_from_slice(&sum.0.to_be_bytes());
            head.extend_from_slice(&sum.1.to_be_bytes());
            out.extend_from_slice(&head);
            out.extend_from_slice(&data);
        }
        out
    }

    fn version_in(wal: &[u8]) -> Option<i64> {
        wal_page1_header(wal)
            .unwrap()
            .map(|h| db_header_version(&h).unwrap())
    }

    #[test]
    fn the_wal_gives_the_newest_committed_page_one() {
        let salt = *b"saltsalt";
        assert_eq!(
            version_in(&wal(&[(1, false, 2), (2, true, 0)], salt, salt)),
            Some(2)
        );
        // A later committed transaction that leaves page 1 alone keeps the earlier copy.
        assert_eq!(
            version_in(&wal(&[(1, true, 2), (3, true, 0)], salt, salt)),
            Some(2)
        );
        // Page 1 written but never committed does not count.
        assert_eq!(
            version_in(&wal(&[(1, true, 2), (1, false, 3)], salt, salt)),
            Some(2)
        );
        assert_eq!(version_in(&wal(&[(1, false, 3)], salt, salt)), None);
        // Frames of an earlier generation of the log (other salts) do not count.
        assert_eq!(version_in(&wal(&[(1, true, 3)], salt, *b"oldsalt!")), None);
        // A torn frame breaks the checksum chain.
        let mut torn = wal(&[(1, true, 2), (1, true, 3)], salt, salt);
        let last = torn.len() - 1;
        torn[last] ^= 1;
        assert_eq!(version_in(&torn), Some(2));
        assert_eq!(version_in(b"not a wal"), None);

        // With a log beside it, the log wins over the file's stale header.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(DATABASE), header(1)).unwrap();
        fs::write(dir.path().join(WAL), wal(&[(1, true, 4)], salt, salt)).unwrap();
        assert_eq!(schema_version(dir.path()).unwrap(), found(4, true));
    }
}

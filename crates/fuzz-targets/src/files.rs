//! `tegami import`: mbox files and Maildir message files, names and keyword files, as
//! whoever made them wrote them (crates/mailfile).

use std::io::BufReader;

use mailfile::maildir;
use mailfile::mbox::{Item, Reader, write_message};

/// Reads the input as an mbox, as `import mbox` does (with small limits, so that split
/// lines and oversized messages are reached).
///
/// Asserts: the items do not depend on how much the reader buffers at once; they come in
/// file order within the file; every message has CRLF line ends only, no NUL and no more
/// than the size limit; and the messages written back out as mboxrd (what `export mbox`
/// writes) read back as exactly the same messages, with nothing skipped.
pub fn mbox(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let read = |capacity: usize, input: &[u8]| -> Vec<Item> {
        let mut reader = Reader::new(BufReader::with_capacity(capacity, input));
        reader.max_line = [40, 200, 1000, 1 << 20][usize::from(seed & 3)];
        reader.max_message = [300, 5000, 1 << 30, 1 << 30][usize::from((seed >> 2) & 3)];
        let max_message = reader.max_message;
        let items: Vec<Item> = reader
            .map(|item| item.expect("reading bytes in memory"))
            .collect();
        for item in &items {
            if let Item::Message(m) = item {
                assert!(m.bytes.len() <= max_message);
            }
        }
        items
    };
    let items = read(1 << 16, input);
    let small = read(usize::from(seed >> 4) + 1, input);
    assert_eq!(items, small, "the items depend on the read buffer's size");

    let mut last = 0;
    let mut messages = Vec::new();
    for item in &items {
        let (offset, end) = match item {
            Item::Message(m) => {
                assert!(!m.bytes.contains(&0), "a NUL left in a message");
                assert_crlf(&m.bytes);
                messages.push(m);
                (m.offset, m.end)
            }
            Item::Skipped { offset, end, .. } => (*offset, *end),
        };
        assert!(last <= offset && offset <= end, "{item:?} after {last}");
        assert!(end <= input.len() as u64, "{item:?} past the end");
        last = offset;
    }

    let mut exported = Vec::new();
    for m in &messages {
        write_message(&mut exported, &m.bytes, m.internal_date.unwrap_or(0)).expect("a Vec");
    }
    let mut reader = Reader::new(BufReader::new(&exported[..]));
    reader.max_line = usize::MAX;
    let again: Vec<Item> = reader
        .map(|item| item.expect("reading bytes in memory"))
        .collect();
    assert_eq!(again.len(), messages.len(), "{again:?}");
    for (m, back) in messages.iter().zip(&again) {
        let Item::Message(back) = back else {
            panic!("exported message read back as {back:?}");
        };
        assert_eq!(
            String::from_utf8_lossy(&back.bytes),
            String::from_utf8_lossy(&m.bytes),
            "a message changed on its way through export and import"
        );
        assert_eq!(back.flags, m.flags);
    }
}

fn assert_crlf(bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}");
        }
    }
}

/// A Maildir message file, its file name, its folder's name and its `dovecot-keywords`,
/// as `import maildir` reads them. The input holds the name, the folder and the keyword
/// file separated by NULs, then the message, which may hold NULs of its own.
///
/// Asserts: a message read has no NUL, the NULs counted are those removed, and its line
/// ends are CRLF already; every mailbox name survives a trip through its folder name
/// (`export maildir` then `import maildir`); a file's flags and keywords survive a trip
/// through the `:2,` info that export writes.
pub fn maildir(data: &[u8]) {
    let mut fields = data.splitn(4, |&b| b == 0);
    let name = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let folder = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let keyword_file = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let raw = fields.next().unwrap_or_default();

    if let Some((bytes, nuls)) = maildir::message(raw) {
        assert_eq!(nuls, raw.iter().filter(|&&b| b == 0).count());
        assert!(!bytes.contains(&0));
        assert_crlf(&bytes);
        assert_eq!(maildir::to_crlf(&bytes), bytes);
    }

    let mailbox = maildir::mailbox_for(&folder);
    for mailbox in [&*mailbox, &*folder] {
        if let Some(f) = maildir::folder_for(mailbox) {
            assert!(f.starts_with('.'));
            assert_eq!(maildir::mailbox_for(&f[1..]), mailbox, "folder {f}");
        }
    }

    let keywords = maildir::keywords(&keyword_file);
    let (flags, words) = maildir::maildir_flags(&name, &keywords);
    // The keyword names by letter, as export numbers them; a letter without a keyword
    // gets a name no keyword can have (names are trimmed).
    let letters: Vec<String> = (0..26u8)
        .map(|i| {
            keywords
                .iter()
                .find(|(c, _)| *c == (b'a' + i) as char)
                .map_or_else(|| format!("unused {i} "), |(_, k)| k.clone())
        })
        .collect();
    let info = maildir::maildir_info(flags, &words, &letters);
    let back = maildir::maildir_flags(&format!("1.2_x.tegami:2,{info}"), &keywords);
    assert_eq!(back, (flags, words), "info {info}");
}

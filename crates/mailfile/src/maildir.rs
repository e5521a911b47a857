//! Maildir and Maildir++ as import and export read and write them: folder names, the
//! flag letters of a file name's `:2,` info, Dovecot's keyword letters, and a message
//! file's bytes. Reading directories and files is the caller's part.
//!
//! Maildir++ folder names: the root is INBOX and `A/B` is `.A.B`, so a "." inside a name
//! level cannot be written as itself. Both directions use the convention of Dovecot's
//! listescape plugin: "." is written `\2e` and `\` is written `\5c`, and import decodes any
//! `\XX` (two hex digits) back to its byte.

use store::Flags;

/// The mailbox of a Maildir++ folder (its name without the leading "."): "." separates
/// levels and `\XX` is the byte with that hex value, as Dovecot's listescape writes it.
pub fn mailbox_for(folder: &str) -> String {
    folder
        .split('.')
        .map(|level| {
            let bytes = level.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
                match (bytes[i], hex) {
                    (b'\\', Some(b)) => {
                        out.push(b);
                        i += 3;
                    }
                    (b, _) => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The Maildir++ folder of a mailbox, relative to the root: `None` for INBOX (the root
/// itself), else `.A.B` for `A/B`, with "." and `\` inside a level escaped as `\2e` and
/// `\5c` so that [`mailbox_for`] gives the name back.
pub fn folder_for(mailbox: &str) -> Option<String> {
    if mailbox == "INBOX" {
        return None;
    }
    let mut folder = String::with_capacity(mailbox.len() + 1);
    for c in mailbox.chars() {
        match c {
            '/' => folder.push('.'),
            '.' => folder.push_str("\\2e"),
            '\\' => folder.push_str("\\5c"),
            c => folder.push(c),
        }
    }
    Some(format!(".{folder}"))
}

/// Dovecot's `dovecot-keywords`: line `N name` gives the letter `a` + N.
pub fn keywords(text: &str) -> Vec<(char, String)> {
    text.lines()
        .filter_map(|line| {
            let (n, name) = line.split_once(' ')?;
            let n: u8 = n.parse().ok()?;
            (n < 26).then(|| ((b'a' + n) as char, name.trim().to_string()))
        })
        .collect()
}

/// System flags and keywords from a file name's `:2,` info.
pub fn maildir_flags(name: &str, keywords: &[(char, String)]) -> (Flags, Vec<String>) {
    let mut flags = 0;
    let mut words = Vec::new();
    if let Some((_, info)) = name.rsplit_once(":2,") {
        for c in info.chars() {
            flags |= match c {
                'S' => Flags::SEEN,
                'R' => Flags::ANSWERED,
                'F' => Flags::FLAGGED,
                'T' => Flags::DELETED,
                'D' => Flags::DRAFT,
                _ => 0,
            };
            if let Some((_, word)) = keywords.iter().find(|(k, _)| *k == c) {
                words.push(word.clone());
            }
        }
    }
    words.sort();
    words.dedup();
    (Flags(flags), words)
}

/// The `:2,` info of a message: the system flag letters and the letters of its keywords
/// (`letters[i]` is the letter `a` + i), in ASCII order as Maildir wants. Keywords without
/// a letter are left out; the caller reports them.
pub fn maildir_info(flags: Flags, keywords: &[String], letters: &[String]) -> String {
    let mut info: Vec<char> = [
        (Flags::DRAFT, 'D'),
        (Flags::FLAGGED, 'F'),
        (Flags::ANSWERED, 'R'),
        (Flags::SEEN, 'S'),
        (Flags::DELETED, 'T'),
    ]
    .into_iter()
    .filter(|(bit, _)| flags.0 & bit != 0)
    .map(|(_, c)| c)
    .collect();
    info.extend(
        keywords
            .iter()
            .filter_map(|k| letters.iter().position(|l| l == k))
            .map(|i| (b'a' + i as u8) as char),
    );
    info.sort_unstable();
    info.dedup();
    info.into_iter().collect()
}

/// LF or mixed line ends become CRLF, as SMTP delivers messages.
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// A Maildir message file's bytes as import stores them: NUL bytes removed (a power cut
/// leaves runs of them) and line ends made CRLF, with the number of NULs removed. `None`
/// when the first line has no colon: such a file has no header, so it is not a message.
pub fn message(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let nuls = raw.iter().filter(|&&b| b == 0).count();
    let cleaned: Vec<u8> = raw.iter().copied().filter(|&b| b != 0).collect();
    if !cleaned
        .split(|&b| b == b'\n')
        .next()
        .is_some_and(|l| l.contains(&b':'))
    {
        return None;
    }
    Some((to_crlf(&cleaned), nuls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_info_maps_to_flags_and_keywords() {
        let keywords = vec![('a', "$Forwarded".to_string())];
        let (flags, words) = maildir_flags("123.abc.host:2,FRSTa", &keywords);
        assert_eq!(
            flags.0,
            Flags::FLAGGED | Flags::ANSWERED | Flags::SEEN | Flags::DELETED
        );
        assert_eq!(words, vec!["$Forwarded".to_string()]);
        assert_eq!(maildir_flags("123.abc.host", &keywords).0.0, 0);
    }

    fn check_folder(mailbox: &str, folder: Option<&str>) {
        assert_eq!(
            folder_for(mailbox).as_deref(),
            folder,
            "folder of {mailbox}"
        );
        if let Some(f) = folder {
            assert_eq!(mailbox_for(&f[1..]), mailbox, "mailbox of {f}");
        }
    }

    #[test]
    fn folder_names_round_trip() {
        check_folder("INBOX", None);
        check_folder("Sent", Some(".Sent"));
        check_folder("Lists/rust", Some(".Lists.rust"));
        check_folder("INBOX/sub", Some(".INBOX.sub"));
        check_folder("v1.2/notes.txt", Some(".v1\\2e2.notes\\2etxt"));
        check_folder(".hidden", Some(".\\2ehidden"));
        check_folder("a\\2e", Some(".a\\5c2e"));
        check_folder("Größe/日本", Some(".Größe.日本"));
    }

    #[test]
    fn foreign_folder_names_read_as_written() {
        // Names that Dovecot or Courier wrote without escapes, and stray backslashes.
        assert_eq!(mailbox_for("Lists.rust"), "Lists/rust");
        assert_eq!(mailbox_for("a\\b\\"), "a\\b\\");
        assert_eq!(mailbox_for("x\\2"), "x\\2");
        assert_eq!(mailbox_for("x\\+1"), "x\\+1");
    }

    fn check_info(flags: u32, keywords: &[&str], letters: &[&str], info: &str) {
        let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        let letters: Vec<String> = letters.iter().map(|k| k.to_string()).collect();
        assert_eq!(maildir_info(Flags(flags), &keywords, &letters), info);
        let table: Vec<(char, String)> = letters
            .iter()
            .enumerate()
            .map(|(i, k)| ((b'a' + i as u8) as char, k.clone()))
            .collect();
        let (back, words) = maildir_flags(&format!("1.2_ab.tegami:2,{info}"), &table);
        assert_eq!(back.0, flags, "flags of {info}");
        assert_eq!(words, keywords, "keywords of {info}");
    }

    #[test]
    fn flag_letters_round_trip() {
        check_info(0, &[], &[], "");
        check_info(Flags::SEEN, &[], &[], "S");
        check_info(
            Flags::SEEN | Flags::ANSWERED | Flags::FLAGGED | Flags::DELETED | Flags::DRAFT,
            &[],
            &[],
            "DFRST",
        );
        check_info(
            Flags::SEEN | Flags::FLAGGED,
            &["$Forwarded", "Work"],
            &["$Forwarded", "$Junk", "Work"],
            "FSac",
        );
        check_info(0, &["$Junk"], &["$Forwarded", "$Junk"], "b");
    }

    #[test]
    fn keywords_without_a_letter_are_left_out() {
        let kw = vec!["Later".to_string()];
        assert_eq!(maildir_info(Flags(Flags::SEEN), &kw, &[]), "S");
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }
}

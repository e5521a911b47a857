//! SEARCH arguments: ESEARCH return options (RFC 4731), CHARSET and the search keys of
//! RFC 3501 section 6.4.4.

use crate::command::{CommandBody, Flag, SearchKey, SearchReturn};

use super::cursor::{Cursor, PResult, fail, text};

/// `SEARCH [RETURN (opts)] [CHARSET name] key key ...`; `uid` for UID SEARCH.
pub(super) fn search(c: &mut Cursor, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let mut ret = SearchReturn::Plain;
    if c.eat_word(b"RETURN ") {
        ret = return_options(c)?;
        c.sp()?;
    }
    let mut charset = None;
    if c.eat_word(b"CHARSET ") {
        charset = Some(text(c.astring()?)?);
        c.sp()?;
    }
    // Strings in a charset tegami does not know cannot be checked as UTF-8; the session
    // answers NO [BADCHARSET] before looking at them, so they only need to parse.
    let lossy = charset.as_deref().is_some_and(|cs| {
        !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII")
    });
    let mut keys = vec![key(c, lossy)?];
    while !c.at_eol() {
        c.sp()?;
        keys.push(key(c, lossy)?);
    }
    let criteria = if keys.len() == 1 {
        keys.remove(0)
    } else {
        SearchKey::And(keys)
    };
    Ok(CommandBody::Search {
        uid,
        charset,
        criteria,
        ret,
    })
}

/// `(MIN MAX COUNT ALL SAVE)`, any subset; empty means ALL.
fn return_options(c: &mut Cursor) -> PResult<SearchReturn> {
    let (mut min, mut max, mut count, mut all, mut save) = (false, false, false, false, false);
    c.expect(b'(', "Expected ( after RETURN")?;
    if !c.eat(b')') {
        loop {
            match c.atom()?.to_ascii_uppercase().as_slice() {
                b"MIN" => min = true,
                b"MAX" => max = true,
                b"COUNT" => count = true,
                b"ALL" => all = true,
                b"SAVE" => save = true,
                _ => return fail("Unsupported SEARCH return option"),
            }
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected a space or ) in RETURN options")?;
        }
    }
    Ok(SearchReturn::Esearch {
        min,
        max,
        count,
        all,
        save,
    })
}

/// One search key, recursing for parentheses, NOT and OR.
fn key(c: &mut Cursor, lossy: bool) -> PResult<SearchKey> {
    c.descend()?;
    let key = key_inner(c, lossy);
    c.ascend();
    key
}

fn key_inner(c: &mut Cursor, lossy: bool) -> PResult<SearchKey> {
    match c.peek() {
        Some(b'(') => {
            c.eat(b'(');
            let mut keys = vec![key(c, lossy)?];
            while !c.eat(b')') {
                c.expect(b' ', "Expected a space or ) in search keys")?;
                keys.push(key(c, lossy)?);
            }
            return Ok(if keys.len() == 1 {
                keys.remove(0)
            } else {
                SearchKey::And(keys)
            });
        }
        Some(b'0'..=b'9' | b'*' | b'$') => return Ok(SearchKey::SequenceSet(c.sequence_set()?)),
        _ => {}
    }
    use SearchKey as K;
    let name = c.atom()?.to_ascii_uppercase();
    Ok(match name.as_slice() {
        b"ALL" => K::All,
        b"ANSWERED" => K::Flag(Flag::Answered),
        b"DELETED" => K::Flag(Flag::Deleted),
        b"DRAFT" => K::Flag(Flag::Draft),
        b"FLAGGED" => K::Flag(Flag::Flagged),
        b"SEEN" => K::Flag(Flag::Seen),
        b"RECENT" => K::Flag(Flag::Recent),
        b"UNANSWERED" => K::NotFlag(Flag::Answered),
        b"UNDELETED" => K::NotFlag(Flag::Deleted),
        b"UNDRAFT" => K::NotFlag(Flag::Draft),
        b"UNFLAGGED" => K::NotFlag(Flag::Flagged),
        b"UNSEEN" => K::NotFlag(Flag::Seen),
        b"NEW" => K::New,
        b"OLD" => K::Old,
        b"KEYWORD" => {
            c.sp()?;
            K::Flag(Flag::Keyword(c.keyword()?))
        }
        b"UNKEYWORD" => {
            c.sp()?;
            K::NotFlag(Flag::Keyword(c.keyword()?))
        }
        b"BEFORE" => K::Before(date(c)?),
        b"ON" => K::On(date(c)?),
        b"SINCE" => K::Since(date(c)?),
        b"SENTBEFORE" => K::SentBefore(date(c)?),
        b"SENTON" => K::SentOn(date(c)?),
        b"SENTSINCE" => K::SentSince(date(c)?),
        b"LARGER" => {
            c.sp()?;
            K::Larger(c.number()?)
        }
        b"SMALLER" => {
            c.sp()?;
            K::Smaller(c.number()?)
        }
        b"FROM" => K::Header("From".into(), string(c, lossy)?),
        b"TO" => K::Header("To".into(), string(c, lossy)?),
        b"CC" => K::Header("Cc".into(), string(c, lossy)?),
        b"BCC" => K::Header("Bcc".into(), string(c, lossy)?),
        b"SUBJECT" => K::Header("Subject".into(), string(c, lossy)?),
        b"HEADER" => {
            let field = string(c, lossy)?;
            if field.is_empty() || !field.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return fail("Invalid header field name");
            }
            K::Header(field, string(c, lossy)?)
        }
        b"BODY" => K::Body(string(c, lossy)?),
        b"MODSEQ" => {
            c.sp()?;
            // `MODSEQ "/flags/\\seen" all 620`: the entry name and type come first.
            if c.peek() == Some(b'"') {
                c.string()?;
                c.sp()?;
                match c.atom()?.to_ascii_uppercase().as_slice() {
                    b"PRIV" | b"SHARED" | b"ALL" => {}
                    _ => return fail("Expected priv, shared or all"),
                }
                c.sp()?;
            }
            K::ModSeq(c.mod_sequence()?)
        }
        b"TEXT" => K::Text(string(c, lossy)?),
        b"UID" => {
            c.sp()?;
            K::Uid(c.sequence_set()?)
        }
        b"NOT" => {
            c.sp()?;
            K::Not(Box::new(key(c, lossy)?))
        }
        b"OR" => {
            c.sp()?;
            let a = key(c, lossy)?;
            c.sp()?;
            let b = key(c, lossy)?;
            K::Or(Box::new(a), Box::new(b))
        }
        _ => return fail("Unknown search key"),
    })
}

/// A space and a date.
fn date(c: &mut Cursor) -> PResult<i32> {
    c.sp()?;
    c.date()
}

/// A space and an astring as text.
fn string(c: &mut Cursor, lossy: bool) -> PResult<String> {
    c.sp()?;
    let bytes = c.astring()?;
    if lossy {
        return Ok(String::from_utf8_lossy(&bytes).replace('\0', "\u{fffd}"));
    }
    text(bytes)
}

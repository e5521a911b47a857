//! FETCH arguments: data items, macros, body sections and partial ranges.

use crate::command::{CommandBody, FetchItem, Section, SectionText};

use super::cursor::{Cursor, PResult, fail, text};

/// `FETCH set (items) [(CHANGEDSINCE n [VANISHED])]` or with a single item or macro;
/// `uid` for UID FETCH.
pub(super) fn fetch(c: &mut Cursor, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let items = if c.eat(b'(') {
        let mut items = vec![item(c)?];
        while !c.eat(b')') {
            c.expect(b' ', "Expected a space or ) in FETCH items")?;
            items.push(item(c)?);
        }
        items
    } else {
        let word = c.word()?.to_ascii_uppercase();
        match macro_items(&word) {
            Some(items) => items,
            None => vec![item_named(c, &word)?],
        }
    };
    let (mut changed_since, mut vanished) = (None, false);
    if c.eat(b' ') {
        c.expect(b'(', "Expected ( before FETCH modifiers")?;
        loop {
            match c.atom()?.to_ascii_uppercase().as_slice() {
                b"CHANGEDSINCE" => {
                    c.sp()?;
                    changed_since = Some(c.mod_sequence()?);
                }
                b"VANISHED" if uid => vanished = true,
                b"VANISHED" => return fail("VANISHED needs UID FETCH"),
                _ => return fail("Unsupported FETCH modifier"),
            }
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected a space or ) in FETCH modifiers")?;
        }
        if vanished && changed_since.is_none() {
            return fail("VANISHED needs CHANGEDSINCE");
        }
    }
    Ok(CommandBody::Fetch {
        uid,
        set,
        items,
        changed_since,
        vanished,
    })
}

/// Expands ALL, FAST and FULL, which RFC 3501 allows only on their own.
fn macro_items(word: &[u8]) -> Option<Vec<FetchItem>> {
    use FetchItem::*;
    Some(match word {
        b"ALL" => vec![Flags, InternalDate, Rfc822Size, Envelope],
        b"FAST" => vec![Flags, InternalDate, Rfc822Size],
        b"FULL" => vec![Flags, InternalDate, Rfc822Size, Envelope, Body],
        _ => return None,
    })
}

fn item(c: &mut Cursor) -> PResult<FetchItem> {
    let word = c.word()?.to_ascii_uppercase();
    item_named(c, &word)
}

/// The item whose name (upper case) was just read, with its section and partial range.
fn item_named(c: &mut Cursor, word: &[u8]) -> PResult<FetchItem> {
    Ok(match word {
        b"FLAGS" => FetchItem::Flags,
        b"MODSEQ" => FetchItem::ModSeq,
        b"UID" => FetchItem::Uid,
        b"INTERNALDATE" => FetchItem::InternalDate,
        b"RFC822.SIZE" => FetchItem::Rfc822Size,
        b"ENVELOPE" => FetchItem::Envelope,
        b"BODYSTRUCTURE" => FetchItem::BodyStructure,
        b"RFC822" => FetchItem::Rfc822,
        b"RFC822.HEADER" => FetchItem::Rfc822Header,
        b"RFC822.TEXT" => FetchItem::Rfc822Text,
        b"BODY" if c.peek() != Some(b'[') => FetchItem::Body,
        b"BODY" | b"BODY.PEEK" => {
            let section = section(c)?;
            let partial = partial(c)?;
            FetchItem::BodySection {
                peek: word == b"BODY.PEEK",
                section,
                partial,
            }
        }
        b"BINARY" | b"BINARY.PEEK" => {
            let part = binary_section(c)?;
            let partial = partial(c)?;
            FetchItem::Binary {
                peek: word == b"BINARY.PEEK",
                part,
                partial,
            }
        }
        b"BINARY.SIZE" => FetchItem::BinarySize {
            part: binary_section(c)?,
        },
        b"ALL" | b"FAST" | b"FULL" => return fail("FETCH macros cannot be combined"),
        _ => return fail("Unknown FETCH item"),
    })
}

/// `[part.part.TEXT]`, `[HEADER.FIELDS (names)]`, `[]`, ...
fn section(c: &mut Cursor) -> PResult<Section> {
    c.expect(b'[', "Expected [ after BODY.PEEK")?;
    let mut part = Vec::new();
    let mut text = None;
    while c.peek().is_some_and(|b| b.is_ascii_digit()) {
        part.push(c.nz_number()?);
        if !c.eat(b'.') {
            break;
        }
        if !c.peek().is_some_and(|b| b.is_ascii_digit()) {
            text = Some(section_text(c, true)?);
            break;
        }
    }
    if part.is_empty() && c.peek() != Some(b']') {
        text = Some(section_text(c, false)?);
    }
    c.expect(b']', "Expected ] to end the section")?;
    Ok(Section { part, text })
}

/// `[1.2.3]` or `[]` after BINARY (RFC 3516's section-binary): part numbers only.
fn binary_section(c: &mut Cursor) -> PResult<Vec<u32>> {
    c.expect(b'[', "Expected [ after BINARY")?;
    let mut part = Vec::new();
    if !c.eat(b']') {
        loop {
            if !c.peek().is_some_and(|b| b.is_ascii_digit()) {
                return fail("BINARY takes part numbers only, as in BINARY[1.2]");
            }
            part.push(c.nz_number()?);
            if c.eat(b']') {
                break;
            }
            c.expect(b'.', "Expected . or ] in BINARY's part numbers")?;
        }
    }
    Ok(part)
}

/// HEADER, HEADER.FIELDS[.NOT] (names), TEXT, or MIME (only after a part number).
fn section_text(c: &mut Cursor, after_part: bool) -> PResult<SectionText> {
    Ok(match c.word()?.to_ascii_uppercase().as_slice() {
        b"HEADER" => SectionText::Header,
        b"TEXT" => SectionText::Text,
        b"MIME" if after_part => SectionText::Mime,
        b"HEADER.FIELDS" => SectionText::HeaderFields(header_list(c)?),
        b"HEADER.FIELDS.NOT" => SectionText::HeaderFieldsNot(header_list(c)?),
        _ => return fail("Invalid body section"),
    })
}

/// ` (name name ...)`: header field names, upper-cased.
fn header_list(c: &mut Cursor) -> PResult<Vec<String>> {
    c.sp()?;
    c.expect(b'(', "Expected ( before header field names")?;
    let mut names = Vec::new();
    loop {
        let name = text(c.astring()?)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return fail("Invalid header field name");
        }
        names.push(name.to_ascii_uppercase());
        if c.eat(b')') {
            return Ok(names);
        }
        c.expect(b' ', "Expected a space or ) in header field names")?;
    }
}

/// `<origin.length>` after a section, if present.
fn partial(c: &mut Cursor) -> PResult<Option<(u32, u32)>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let origin = c.number()?;
    c.expect(b'.', "Expected . in partial range")?;
    let length = c.nz_number()?;
    c.expect(b'>', "Expected > to end the partial range")?;
    Ok(Some((origin, length)))
}

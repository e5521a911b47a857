//! The command grammar above the lexical layer: the tag, the command name, and the
//! arguments of every command except FETCH and SEARCH (which have their own modules).

use crate::command::{
    Command, CommandBody, Flag, ListReturn, ListSelect, Qresync, SequenceSet, StatusItem, StoreOp,
};

use super::cursor::{Cursor, Fail, PResult, fail, is_base64, leading_tag, text};
use super::{ErrorKind, ParseError, fetch, search};

/// Parses one complete command (lines and literal data, ending with the final line
/// ending). APPEND's message is moved out of `frame` rather than copied.
pub(super) fn parse_frame(mut frame: Vec<u8>, utf8: bool) -> Result<Command, ParseError> {
    let (result, message) = {
        let mut c = Cursor::new(&frame);
        c.utf8 = utf8;
        (command(&mut c), c.message.take())
    };
    let mut command = result?;
    if let (CommandBody::Append { message: m, .. }, Some(range)) = (&mut command.body, message) {
        frame.truncate(range.end);
        frame.drain(..range.start);
        *m = frame;
    }
    Ok(command)
}

/// Checks the part of a command that precedes a synchronizing literal, so that the client
/// is not asked to send data for a command that is already known to be wrong.
pub(super) fn check_prefix(frame: &[u8], utf8: bool) -> Result<(), ParseError> {
    let mut c = Cursor::new(frame);
    c.utf8 = utf8;
    match command(&mut c) {
        Err(_) if c.hit_end => Ok(()),
        Err(error) => Err(error),
        // A prefix that ends in a literal announcement cannot be a whole command.
        Ok(_) => Ok(()),
    }
}

/// True when the command being assembled is an APPEND, whose literals have their own limit.
pub(super) fn is_append(frame: &[u8]) -> bool {
    let Some(tag) = leading_tag(frame) else {
        return false;
    };
    frame
        .get(tag.len() + 1..tag.len() + 8)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"APPEND "))
}

fn command(c: &mut Cursor) -> Result<Command, ParseError> {
    let tag = match c.tag() {
        Ok(tag) => String::from_utf8_lossy(tag).into_owned(),
        Err(Fail(reason)) => {
            return Err(ParseError::new(
                None,
                ErrorKind::Syntax(reason.into_owned()),
            ));
        }
    };
    let syntax = |tag: &str, Fail(reason)| {
        ParseError::new(Some(tag.to_owned()), ErrorKind::Syntax(reason.into_owned()))
    };
    if let Err(e) = c.sp() {
        return Err(syntax(&tag, e));
    }
    let name = match c.atom() {
        Ok(name) => name.to_ascii_uppercase(),
        Err(_) => return Err(syntax(&tag, Fail("Missing command".into()))),
    };
    match body(c, &name) {
        Ok(Some(body)) => match c.end() {
            Ok(()) => Ok(Command { tag, body }),
            Err(e) => Err(syntax(&tag, e)),
        },
        Ok(None) => Err(ParseError::new(
            Some(tag),
            ErrorKind::UnknownCommand(printable(&name)),
        )),
        Err(e) => Err(syntax(&tag, e)),
    }
}

/// A command name made safe to echo: printable ASCII, at most 16 characters.
fn printable(name: &[u8]) -> String {
    name.iter()
        .take(16)
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

/// Parses the arguments of the command `name` (upper case); `None` for an unknown name.
fn body(c: &mut Cursor, name: &[u8]) -> PResult<Option<CommandBody>> {
    let body = match name {
        b"CAPABILITY" => CommandBody::Capability,
        b"NOOP" => CommandBody::Noop,
        b"LOGOUT" => CommandBody::Logout,
        b"STARTTLS" => CommandBody::StartTls,
        b"NAMESPACE" => CommandBody::Namespace,
        b"IDLE" => CommandBody::Idle,
        b"CHECK" => CommandBody::Check,
        b"CLOSE" => CommandBody::Close,
        b"UNSELECT" => CommandBody::Unselect,
        b"EXPUNGE" => CommandBody::Expunge,
        b"ENABLE" => enable(c)?,
        b"ID" => id(c)?,
        b"LOGIN" => {
            c.sp()?;
            let user = text(c.astring()?)?;
            c.sp()?;
            let password = text(c.astring()?)?;
            CommandBody::Login { user, password }
        }
        b"AUTHENTICATE" => authenticate(c)?,
        b"SELECT" => {
            let mailbox = mailbox_arg(c)?;
            let (condstore, qresync) = select_params(c)?;
            CommandBody::Select {
                mailbox,
                condstore,
                qresync,
            }
        }
        b"EXAMINE" => {
            let mailbox = mailbox_arg(c)?;
            let (condstore, qresync) = select_params(c)?;
            CommandBody::Examine {
                mailbox,
                condstore,
                qresync,
            }
        }
        b"CREATE" => create(c)?,
        b"DELETE" => CommandBody::Delete {
            mailbox: mailbox_arg(c)?,
        },
        b"RENAME" => {
            let from = mailbox_arg(c)?;
            let to = mailbox_arg(c)?;
            CommandBody::Rename { from, to }
        }
        b"GETQUOTA" => {
            c.sp()?;
            CommandBody::GetQuota {
                root: text(c.astring()?)?,
            }
        }
        b"GETQUOTAROOT" => CommandBody::GetQuotaRoot {
            mailbox: mailbox_arg(c)?,
        },
        b"SETQUOTA" => set_quota(c)?,
        b"SUBSCRIBE" => CommandBody::Subscribe {
            mailbox: mailbox_arg(c)?,
        },
        b"UNSUBSCRIBE" => CommandBody::Unsubscribe {
            mailbox: mailbox_arg(c)?,
        },
        b"LIST" => list(c)?,
        b"LSUB" => {
            c.sp()?;
            let reference = c.list_mailbox()?;
            c.sp()?;
            let pattern = c.list_mailbox()?;
            CommandBody::Lsub { reference, pattern }
        }
        b"STATUS" => status(c)?,
        b"APPEND" => append(c)?,
        b"SEARCH" => search::search(c, false)?,
        b"FETCH" => fetch::fetch(c, false)?,
        b"STORE" => store(c, false)?,
        b"COPY" => {
            let (set, mailbox) = set_and_mailbox(c)?;
            CommandBody::Copy {
                uid: false,
                set,
                mailbox,
            }
        }
        b"MOVE" => {
            let (set, mailbox) = set_and_mailbox(c)?;
            CommandBody::Move {
                uid: false,
                set,
                mailbox,
            }
        }
        b"UID" => uid(c)?,
        _ => return Ok(None),
    };
    Ok(Some(body))
}

/// `SETQUOTA root (resource limit ...)` (RFC 9208), at most [`MAX_OPTIONS`] pairs.
fn set_quota(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    let root = text(c.astring()?)?;
    c.sp()?;
    c.expect(b'(', "Expected ( before SETQUOTA limits")?;
    let mut limits = Vec::new();
    if !c.eat(b')') {
        loop {
            if limits.len() == MAX_OPTIONS {
                return fail(format!("At most {MAX_OPTIONS} SETQUOTA limits"));
            }
            let resource = String::from_utf8_lossy(c.atom()?).to_ascii_uppercase();
            c.sp()?;
            limits.push((resource, c.mod_sequence()?));
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected a space or ) in SETQUOTA limits")?;
        }
    }
    Ok(CommandBody::SetQuota { root, limits })
}

/// A space and a mailbox name.
fn mailbox_arg(c: &mut Cursor) -> PResult<String> {
    c.sp()?;
    c.mailbox()
}

/// SELECT/EXAMINE parameters (RFC 4466 syntax): `(CONDSTORE)` and
/// `(QRESYNC (uidvalidity modseq [known-uids [(seq-set uid-set)]]))` (RFC 7162).
fn select_params(c: &mut Cursor) -> PResult<(bool, Option<Qresync>)> {
    let (mut condstore, mut qresync) = (false, None);
    if c.at_eol() {
        return Ok((condstore, qresync));
    }
    c.sp()?;
    c.expect(b'(', "Expected ( before SELECT parameters")?;
    loop {
        match c.atom()?.to_ascii_uppercase().as_slice() {
            b"CONDSTORE" => condstore = true,
            b"QRESYNC" => {
                c.sp()?;
                qresync = Some(qresync_param(c)?);
            }
            _ => return fail("Unsupported SELECT parameter"),
        }
        if c.eat(b')') {
            return Ok((condstore, qresync));
        }
        c.expect(b' ', "Expected a space or ) in SELECT parameters")?;
    }
}

fn qresync_param(c: &mut Cursor) -> PResult<Qresync> {
    c.expect(b'(', "Expected ( after QRESYNC")?;
    let uid_validity = c.nz_number()?;
    c.sp()?;
    let modseq = c.mod_sequence()?;
    if modseq == 0 {
        return fail("A QRESYNC mod-sequence starts at 1");
    }
    let mut known_uids = None;
    let mut seq_match = None;
    if c.eat(b' ') {
        if c.peek() != Some(b'(') {
            known_uids = Some(known_set(c)?);
            c.eat(b' ');
        }
        if c.eat(b'(') {
            let seqs = known_set(c)?;
            c.sp()?;
            let uids = known_set(c)?;
            c.expect(b')', "Expected ) after the QRESYNC sequence match data")?;
            seq_match = Some((seqs, uids));
        }
    }
    c.expect(b')', "Expected ) to end the QRESYNC parameter")?;
    Ok(Qresync {
        uid_validity,
        modseq,
        known_uids,
        seq_match,
    })
}

fn enable(c: &mut Cursor) -> PResult<CommandBody> {
    let mut caps = Vec::new();
    loop {
        c.sp()?;
        caps.push(String::from_utf8_lossy(c.atom()?).into_owned());
        if c.at_eol() {
            return Ok(CommandBody::Enable(caps));
        }
    }
}

/// `ID NIL` or `ID ("name" "value" ...)` (RFC 2971).
fn id(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    if c.eat_word(b"NIL") {
        return Ok(CommandBody::Id(None));
    }
    c.expect(b'(', "Expected ( or NIL")?;
    let mut fields = Vec::new();
    if c.eat(b')') {
        return Ok(CommandBody::Id(Some(fields)));
    }
    loop {
        let name = text(c.string()?)?;
        c.sp()?;
        let value = c.nstring()?.map(text).transpose()?;
        fields.push((name, value));
        if c.eat(b')') {
            return Ok(CommandBody::Id(Some(fields)));
        }
        c.expect(b' ', "Expected a space or ) in ID list")?;
    }
}

/// `AUTHENTICATE mechanism [initial-response]` (RFC 4959).
fn authenticate(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    let mechanism = String::from_utf8_lossy(c.atom()?).to_ascii_uppercase();
    let initial = if c.at_eol() {
        None
    } else {
        c.sp()?;
        let response = c.atom()?;
        if !is_base64(response) {
            return fail("Invalid base64 in initial response");
        }
        Some(String::from_utf8_lossy(response).into_owned())
    };
    Ok(CommandBody::Authenticate { mechanism, initial })
}

/// `CREATE mailbox [(USE (\Sent ...))]` (RFC 6154).
fn create(c: &mut Cursor) -> PResult<CommandBody> {
    let mailbox = mailbox_arg(c)?;
    let mut special_use = Vec::new();
    if !c.at_eol() {
        c.sp()?;
        c.expect(b'(', "Expected ( for CREATE parameters")?;
        loop {
            if !c.eat_word(b"USE") {
                return fail("Unsupported CREATE parameter");
            }
            c.sp()?;
            c.expect(b'(', "Expected ( after USE")?;
            if !c.eat(b')') {
                loop {
                    special_use.push(use_attr(c)?);
                    if c.eat(b')') {
                        break;
                    }
                    c.expect(b' ', "Expected a space or ) in USE list")?;
                }
            }
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected a space or ) in CREATE parameters")?;
        }
    }
    Ok(CommandBody::Create {
        mailbox,
        special_use,
    })
}

/// A special-use attribute; the ones RFC 6154 defines are spelled canonically, others are
/// kept as sent so the session can answer `NO [USEATTR]`.
fn use_attr(c: &mut Cursor) -> PResult<String> {
    const KNOWN: [&str; 7] = [
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
    ];
    c.expect(b'\\', "Expected a special-use attribute")?;
    let name = String::from_utf8_lossy(c.atom()?).into_owned();
    let attr = format!("\\{name}");
    Ok(KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(&attr))
        .map_or(attr, |k| (*k).to_owned()))
}

/// The most patterns one LIST may give (RFC 5258 sets no limit); clients send a handful.
const MAX_LIST_PATTERNS: usize = 32;

/// The most atoms an option list may hold. Each option means something once, so a longer
/// list only makes the server work.
const MAX_OPTIONS: usize = 16;

/// `LIST [(select-opts)] reference (pattern | (pattern ...)) [RETURN (return-opts)]`
/// (RFC 5258, with RFC 6154's SPECIAL-USE and RFC 5819's STATUS).
fn list(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    let mut select = ListSelect::default();
    if c.peek() == Some(b'(') {
        options(c, |_, option| {
            match option {
                b"SUBSCRIBED" => select.subscribed = true,
                b"SPECIAL-USE" => select.special_use = true,
                b"RECURSIVEMATCH" => select.recursive_match = true,
                // tegami has no remote mailboxes, so asking for them changes nothing.
                b"REMOTE" => {}
                _ => return fail("Unsupported LIST selection option"),
            }
            Ok(())
        })?;
        if select.recursive_match && !(select.subscribed || select.special_use) {
            // RFC 5258 §3.1: it only qualifies another option.
            return fail("RECURSIVEMATCH needs another selection option");
        }
        c.sp()?;
    }
    let reference = c.list_mailbox()?;
    c.sp()?;
    let mut patterns = Vec::new();
    if c.eat(b'(') {
        loop {
            if patterns.len() == MAX_LIST_PATTERNS {
                return fail(format!("At most {MAX_LIST_PATTERNS} LIST patterns"));
            }
            patterns.push(c.list_mailbox()?);
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected a space or ) in LIST patterns")?;
        }
    } else {
        patterns.push(c.list_mailbox()?);
    }
    let mut ret = ListReturn {
        // RFC 5258 §3.1: the SUBSCRIBED selection option implies the return option.
        subscribed: select.subscribed,
        ..ListReturn::default()
    };
    if !c.at_eol() {
        c.sp()?;
        if !c.eat_word(b"RETURN") {
            return fail("Expected RETURN");
        }
        c.sp()?;
        options(c, |c, option| {
            match option {
                b"SUBSCRIBED" => ret.subscribed = true,
                b"SPECIAL-USE" => ret.special_use = true,
                // Child information is always returned (RFC 5258 §4 allows it), so the
                // option needs no handling.
                b"CHILDREN" => {}
                b"STATUS" => {
                    c.sp()?;
                    ret.status = Some(status_items(c)?);
                }
                _ => return fail("Unsupported LIST return option"),
            }
            Ok(())
        })?;
    }
    Ok(CommandBody::List {
        reference,
        patterns,
        select,
        ret,
    })
}

/// A parenthesised, possibly empty list of at most [`MAX_OPTIONS`] option atoms, each
/// passed upper-cased to `each`, which may read the option's own arguments.
fn options(c: &mut Cursor, mut each: impl FnMut(&mut Cursor, &[u8]) -> PResult<()>) -> PResult<()> {
    c.expect(b'(', "Expected (")?;
    if c.eat(b')') {
        return Ok(());
    }
    for _ in 0..MAX_OPTIONS {
        let option = c.atom()?.to_ascii_uppercase();
        each(c, &option)?;
        if c.eat(b')') {
            return Ok(());
        }
        c.expect(b' ', "Expected a space or )")?;
    }
    fail(format!("At most {MAX_OPTIONS} options"))
}

fn status(c: &mut Cursor) -> PResult<CommandBody> {
    let mailbox = mailbox_arg(c)?;
    c.sp()?;
    let items = status_items(c)?;
    Ok(CommandBody::Status { mailbox, items })
}

/// `(item ...)` of STATUS, also LIST's `RETURN (STATUS (...))`. At least one item; a
/// repeated item is answered once per mention, as the client asked.
fn status_items(c: &mut Cursor) -> PResult<Vec<StatusItem>> {
    c.expect(b'(', "Expected ( before STATUS items")?;
    let mut items = Vec::new();
    loop {
        if items.len() == MAX_OPTIONS {
            return fail(format!("At most {MAX_OPTIONS} STATUS items"));
        }
        let item = match c.atom()?.to_ascii_uppercase().as_slice() {
            b"MESSAGES" => StatusItem::Messages,
            b"RECENT" => StatusItem::Recent,
            b"UIDNEXT" => StatusItem::UidNext,
            b"UIDVALIDITY" => StatusItem::UidValidity,
            b"UNSEEN" => StatusItem::Unseen,
            b"HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            b"DELETED" => StatusItem::Deleted,
            b"DELETED-STORAGE" => StatusItem::DeletedStorage,
            b"SIZE" => StatusItem::Size,
            _ => return fail("Unknown STATUS item"),
        };
        items.push(item);
        if c.eat(b')') {
            return Ok(items);
        }
        c.expect(b' ', "Expected a space or ) in STATUS items")?;
    }
}

/// `APPEND mailbox [(flags)] ["date-time"] literal`.
fn append(c: &mut Cursor) -> PResult<CommandBody> {
    let mailbox = mailbox_arg(c)?;
    c.sp()?;
    let mut flags = Vec::new();
    if c.peek() == Some(b'(') {
        flags = storable(c.flag_list()?)?;
        c.sp()?;
    }
    let mut date = None;
    if c.peek() == Some(b'"') {
        date = Some(c.date_time()?);
        c.sp()?;
    }
    match c.peek() {
        Some(b'{') => c.message = Some(c.literal()?),
        // RFC 6855 4: a message with UTF-8 in its header fields, after ENABLE UTF8=ACCEPT.
        Some(b'U' | b'u') if c.utf8 => {
            if !c.eat_word(b"UTF8 (") {
                return fail("Expected the message as a literal, or UTF8 (~{size})");
            }
            c.message = Some(c.literal8()?);
            c.expect(b')', "Expected ) after the UTF8 message")?;
        }
        Some(b'U' | b'u') => return fail("UTF8 APPEND data needs ENABLE UTF8=ACCEPT first"),
        // RFC 3516 §4.4 (and RFC 9051): a message whose parts may be binary.
        Some(b'~') => c.message = Some(c.literal8()?),
        _ => return fail("Expected the message as a literal"),
    }
    Ok(CommandBody::Append {
        mailbox,
        flags,
        date,
        message: Vec::new(),
    })
}

/// A set QRESYNC names: `$` means a search result of the selected mailbox (RFC 5182),
/// and SELECT has none to mean.
fn known_set(c: &mut Cursor) -> PResult<SequenceSet> {
    let set = c.sequence_set()?;
    if set.is_saved() {
        return fail("$ names a saved search result, which SELECT has none of");
    }
    Ok(set)
}

/// Refuses `\Recent`, which only the server sets.
fn storable(flags: Vec<Flag>) -> PResult<Vec<Flag>> {
    if flags.contains(&Flag::Recent) {
        return fail("\\Recent cannot be set by clients");
    }
    Ok(flags)
}

/// `STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] (flags)` or with the flags
/// unparenthesised.
fn store(c: &mut Cursor, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let set = c.sequence_set()?;
    c.sp()?;
    let mut unchanged_since = None;
    if c.eat(b'(') {
        if !c.eat_word(b"UNCHANGEDSINCE ") {
            return fail("Unsupported STORE modifier");
        }
        unchanged_since = Some(c.mod_sequence()?);
        c.expect(b')', "Expected ) after UNCHANGEDSINCE")?;
        c.sp()?;
    }
    let (op, silent) = match c.word()?.to_ascii_uppercase().as_slice() {
        b"FLAGS" => (StoreOp::Replace, false),
        b"FLAGS.SILENT" => (StoreOp::Replace, true),
        b"+FLAGS" => (StoreOp::Add, false),
        b"+FLAGS.SILENT" => (StoreOp::Add, true),
        b"-FLAGS" => (StoreOp::Remove, false),
        b"-FLAGS.SILENT" => (StoreOp::Remove, true),
        _ => return fail("Expected FLAGS, +FLAGS or -FLAGS"),
    };
    c.sp()?;
    let flags = if c.peek() == Some(b'(') {
        c.flag_list()?
    } else {
        let mut flags = vec![c.flag()?];
        while !c.at_eol() {
            c.sp()?;
            flags.push(c.flag()?);
        }
        flags
    };
    Ok(CommandBody::Store {
        uid,
        set,
        op,
        silent,
        flags: storable(flags)?,
        unchanged_since,
    })
}

/// A space, a sequence set, a space and a mailbox: COPY and MOVE.
fn set_and_mailbox(c: &mut Cursor) -> PResult<(crate::command::SequenceSet, String)> {
    c.sp()?;
    let set = c.sequence_set()?;
    let mailbox = mailbox_arg(c)?;
    Ok((set, mailbox))
}

fn uid(c: &mut Cursor) -> PResult<CommandBody> {
    c.sp()?;
    Ok(match c.atom()?.to_ascii_uppercase().as_slice() {
        b"FETCH" => fetch::fetch(c, true)?,
        b"SEARCH" => search::search(c, true)?,
        b"STORE" => store(c, true)?,
        b"COPY" => {
            let (set, mailbox) = set_and_mailbox(c)?;
            CommandBody::Copy {
                uid: true,
                set,
                mailbox,
            }
        }
        b"MOVE" => {
            let (set, mailbox) = set_and_mailbox(c)?;
            CommandBody::Move {
                uid: true,
                set,
                mailbox,
            }
        }
        b"EXPUNGE" => {
            c.sp()?;
            CommandBody::UidExpunge(c.sequence_set()?)
        }
        _ => return fail("Unknown UID command"),
    })
}

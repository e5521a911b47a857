//! The IMAP command AST: what a client asked for, already parsed and validated.
//!
//! Mailbox names here are decoded from modified UTF-7 into UTF-8; "INBOX" in any case is
//! folded to "INBOX". Sequence sets keep `*` symbolic because its value depends on the
//! selected mailbox at the moment the command runs.

/// One end of a sequence-set range: a number, or `*` (the largest number in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNum {
    Value(u32),
    Star,
}

/// A sequence set such as `1:4,7,9:*`, as ranges with inclusive ends in the order given
/// (a range may be written high to low; `4:1` means `1:4`).
///
/// `$` (RFC 5182 SEARCHRES: the result the last `SEARCH RETURN (SAVE)` kept) parses as the
/// set with no ranges, which nothing else can be written as. The session puts the saved
/// messages in its place before running the command ([`SequenceSet::is_saved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSet(pub Vec<(SeqNum, SeqNum)>);

impl SequenceSet {
    /// `$`, the saved search result.
    pub fn saved() -> SequenceSet {
        SequenceSet(Vec::new())
    }

    pub fn is_saved(&self) -> bool {
        self.0.is_empty()
    }
}

/// System flags and keywords as the client wrote them. `\Recent` cannot be stored and is
/// refused by the parser in STORE/APPEND flag lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// `\Recent`, allowed only in SEARCH-like contexts.
    Recent,
    /// A keyword (atom), e.g. `$Forwarded` or `NonJunk`.
    Keyword(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    // Any state.
    Capability,
    Noop,
    Logout,
    /// ENABLE (RFC 5161): the capability names as given.
    Enable(Vec<String>),
    Id(Option<Vec<(String, Option<String>)>>),

    // Not authenticated.
    StartTls,
    Login {
        user: String,
        password: String,
    },
    /// AUTHENTICATE mechanism [initial-response] (RFC 4959 SASL-IR). The initial response
    /// is still base64 text as sent ("=" means an empty response).
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },

    // Authenticated.
    /// SELECT, with RFC 7162's CONDSTORE or QRESYNC parameter when given.
    Select {
        mailbox: String,
        condstore: bool,
        qresync: Option<Qresync>,
    },
    Examine {
        mailbox: String,
        condstore: bool,
        qresync: Option<Qresync>,
    },
    Create {
        mailbox: String,
        special_use: Vec<String>,
    },
    Delete {
        mailbox: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Subscribe {
        mailbox: String,
    },
    Unsubscribe {
        mailbox: String,
    },
    /// LIST reference pattern(s), plus the RFC 5258 selection and return options (with
    /// RFC 6154's SPECIAL-USE and RFC 5819's STATUS) when given. A plain LIST has one
    /// pattern and default options.
    List {
        reference: String,
        patterns: Vec<String>,
        select: ListSelect,
        ret: ListReturn,
    },
    Lsub {
        reference: String,
        pattern: String,
    },
    Namespace,
    /// GETQUOTA root (RFC 9208).
    GetQuota {
        root: String,
    },
    /// GETQUOTAROOT mailbox.
    GetQuotaRoot {
        mailbox: String,
    },
    /// SETQUOTA root (resource limit ...): read so that it can be refused, since limits
    /// are the administrator's to set.
    SetQuota {
        root: String,
        limits: Vec<(String, u64)>,
    },
    Status {
        mailbox: String,
        items: Vec<StatusItem>,
    },
    /// APPEND: the literal's bytes are the message.
    Append {
        mailbox: String,
        flags: Vec<Flag>,
        date: Option<DateTime>,
        message: Vec<u8>,
    },
    Idle,

    // Selected.
    Check,
    Close,
    Unselect,
    Expunge,
    /// UID EXPUNGE (UIDPLUS).
    UidExpunge(SequenceSet),
    Search {
        uid: bool,
        charset: Option<String>,
        criteria: SearchKey,
        ret: SearchReturn,
    },
    /// FETCH, with RFC 7162's modifiers: `(CHANGEDSINCE n)` answers only messages whose
    /// mod-sequence is above n; `VANISHED` (UID FETCH only) adds the UIDs expunged since.
    Fetch {
        uid: bool,
        set: SequenceSet,
        items: Vec<FetchItem>,
        changed_since: Option<u64>,
        vanished: bool,
    },
    /// STORE, with RFC 7162's `(UNCHANGEDSINCE n)`.
    Store {
        uid: bool,
        set: SequenceSet,
        op: StoreOp,
        silent: bool,
        flags: Vec<Flag>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: String,
    },
}

/// APPEND's date-time: the moment, and the zone it was written in (minutes east of UTC),
/// which INTERNALDATE gives back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub seconds: i64,
    pub zone_minutes: i16,
}

/// SELECT's `(QRESYNC (uidvalidity modseq [known-uids [(seq-match uid-match)]]))`
/// (RFC 7162 §3.2.5): what the client remembers of the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    pub uid_validity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// Message numbers and the UIDs the client had at them, pairwise.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// LIST selection options (RFC 5258 §3.1, RFC 6154 §5.2). REMOTE is accepted and has no
/// field: tegami has no remote mailboxes, so asking for them changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListSelect {
    /// Only subscribed names, existing or not.
    pub subscribed: bool,
    /// Only mailboxes with a special-use attribute.
    pub special_use: bool,
    /// Also list a matching parent whose descendants satisfy the other options, with
    /// CHILDINFO saying which. The parser refuses it alone, as RFC 5258 requires.
    pub recursive_match: bool,
}

/// LIST return options (RFC 5258 §3.2, RFC 6154 §5.1, RFC 5819). CHILDREN is accepted and
/// has no field: \HasChildren and \HasNoChildren are always returned, which RFC 5258
/// allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListReturn {
    /// \Subscribed on subscribed names (implied by the SUBSCRIBED selection option).
    pub subscribed: bool,
    pub special_use: bool,
    /// STATUS (items): an untagged STATUS after each listed selectable mailbox.
    pub status: Option<Vec<StatusItem>>,
}

/// SEARCH RETURN options (ESEARCH, RFC 4731) if given; `Plain` is the RFC 3501 form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SearchReturn {
    #[default]
    Plain,
    /// RETURN (MIN MAX COUNT ALL SAVE) subset as requested; empty means ALL.
    Esearch {
        min: bool,
        max: bool,
        count: bool,
        all: bool,
        /// RFC 5182: keep the result for `$`. Alone, it asks for no ESEARCH response.
        save: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    /// RFC 7162.
    HighestModSeq,
    /// RFC 9051: messages flagged \Deleted.
    Deleted,
    /// RFC 9208: their size, which an EXPUNGE would give back to the quota.
    DeletedStorage,
    /// RFC 8438 (and RFC 9051): the size of every message in the mailbox, in octets.
    Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Replace,
    Add,
    Remove,
}

/// A FETCH data item. Macros (ALL, FAST, FULL) are expanded by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Flags,
    /// MODSEQ (RFC 7162).
    ModSeq,
    Uid,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// BODY (no section): the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    /// RFC822 = BODY[] (sets \Seen), RFC822.HEADER = BODY.PEEK[HEADER],
    /// RFC822.TEXT = BODY[TEXT] (sets \Seen). Kept apart because the response names them so.
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// BODY[section]<partial> or BODY.PEEK[...].
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
    /// BINARY[part]<partial> or BINARY.PEEK[...] (RFC 3516): a part with its
    /// Content-Transfer-Encoding undone; an empty part path is the whole message.
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    /// BINARY.SIZE[part]: the size BINARY[part] would have.
    BinarySize {
        part: Vec<u32>,
    },
}

/// A body section: a part path (`1.2.3`, empty for the whole message) and what of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// HEADER.FIELDS (names, upper-cased as sent, compared case-insensitively).
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// MIME: the part's own MIME header (only with a non-empty part path).
    Mime,
}

/// A SEARCH criterion. A list of keys is an implicit AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    SequenceSet(SequenceSet),
    Uid(SequenceSet),
    /// Flag keys: ANSWERED, DELETED, DRAFT, FLAGGED, SEEN, RECENT, KEYWORD x.
    Flag(Flag),
    /// UNANSWERED, UNDELETED, ... UNKEYWORD x.
    NotFlag(Flag),
    /// NEW = RECENT UNSEEN; OLD = NOT RECENT.
    New,
    Old,
    /// Dates are days since the Unix epoch (UTC calendar dates, as RFC 3501 compares them
    /// ignoring time and zone).
    Before(i32),
    On(i32),
    Since(i32),
    SentBefore(i32),
    SentOn(i32),
    SentSince(i32),
    Larger(u32),
    Smaller(u32),
    /// Header field name (as sent) and the substring; FROM/TO/CC/BCC/SUBJECT become Header.
    Header(String, String),
    Body(String),
    Text(String),
    /// MODSEQ n (RFC 7162): a mod-sequence of at least n. The optional entry name and
    /// type are parsed and ignored: flags have no mod-sequence of their own here.
    ModSeq(u64),
}

//! One IMAP connection through its states: not authenticated, authenticated, selected.
//!
//! Commands are read and parsed by `imap-proto`; each runs to completion and is answered
//! before the next is read, so the replies to pipelined commands stay in order. Every
//! store call runs on a blocking thread. After each command in the selected state the view
//! is refreshed, so changes made elsewhere (SMTP, POP3, other sessions) reach the client as
//! untagged responses at the next command, and at once during IDLE.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use imap_proto::response::{self, Esearch};
use imap_proto::{
    AuthResponse, Command, CommandBody, CommandReader, FetchItem, Flag, Limits, ListReturn,
    ListSelect, Parsed, Qresync, SearchKey, SearchReturn, SequenceSet, StatusItem, StoreOp,
};
use net::{Admission, Connection, Read, Shutdown, Wire};
use store::{AccountId, FlagOp, Flags, MailAccess, MailboxInfo, StoreError};
use tracing::{Instrument, debug, info, warn};

use crate::fetch::{self, Target};
use crate::list;
use crate::search::{self, Bounds, Candidate};
use crate::selected::{Selected, in_ranges, merge_ranges, push_flag_change, set_ranges};
use crate::{AccountSlot, ImapServer};

const READ_CHUNK: usize = 64 * 1024;

/// Output is written to the socket whenever this much has piled up during a long FETCH.
const FLUSH_AT: usize = 256 * 1024;

/// Messages read and encoded per blocking task during FETCH and SEARCH, at most...
const BATCH: usize = 64;

/// ...and at most this many bytes of them (one larger message still goes alone).
const BATCH_BYTES: u64 = 256 * 1024;

enum State {
    NotAuthenticated,
    Authenticated(Account),
    Selected(Account, Selected),
}

struct Account {
    id: AccountId,
    _slot: AccountSlot,
}

enum Flow {
    Continue,
    Close,
}

/// Why a command could not be done: the tagged NO with its response code.
struct No {
    code: &'static str,
    text: String,
}

impl No {
    fn new(code: &'static str, text: impl Into<String>) -> No {
        No {
            code,
            text: text.into(),
        }
    }
}

impl From<StoreError> for No {
    fn from(e: StoreError) -> No {
        let code = match &e {
            StoreError::NotFound { .. } => "NONEXISTENT",
            StoreError::AlreadyExists { .. } => "ALREADYEXISTS",
            StoreError::Invalid(_) | StoreError::ReadOnly(_) => "CANNOT",
            StoreError::OverQuota { .. } => "OVERQUOTA",
            e if e.is_transient() => "UNAVAILABLE",
            _ => "SERVERBUG",
        };
        if code == "SERVERBUG" || code == "UNAVAILABLE" {
            warn!(error = %e, "store error");
        }
        No::new(code, e.to_string())
    }
}

impl No {
    /// A protocol error rather than a refusal: answered BAD and counted against the client.
    fn bad(text: impl Into<String>) -> No {
        No::new("BAD", text)
    }
}

/// A command done: the tagged OK's text and, for some, a response code with its data.
struct Done {
    code: Option<String>,
    text: String,
}

fn done(text: &str) -> Done {
    Done {
        code: None,
        text: text.into(),
    }
}

type Outcome = Result<Done, No>;

struct Session {
    server: Arc<ImapServer>,
    wire: Wire,
    peer: SocketAddr,
    shutdown: Shutdown,
    reader: CommandReader,
    state: State,
    errors: usize,
    admission: Admission,
    /// When the session began: it must log in within `login_timeout` of it.
    connected: Instant,
    /// The command under way (its line, its literals): when its first byte came, and how
    /// many bytes have come since, for its deadline.
    command_started: Option<(Instant, usize)>,
    /// RFC 7162: the client used a CONDSTORE-enabling command (or ENABLE CONDSTORE), so
    /// FETCH responses about flag changes carry MODSEQ from then on.
    condstore: bool,
    /// ENABLE QRESYNC was given: expunges are told as VANISHED, SELECT takes QRESYNC.
    qresync: bool,
    /// ENABLE UTF8=ACCEPT or IMAP4rev2 was given (RFC 6855, RFC 9051): mailbox names go
    /// both ways as UTF-8, not modified UTF-7.
    names: response::Names,
    /// ENABLE UTF8=ACCEPT itself was given: SEARCH takes no CHARSET (RFC 6855 3).
    utf8_accept: bool,
    /// ENABLE IMAP4rev2 was given (RFC 9051): no \Recent and no RECENT, SEARCH answers
    /// ESEARCH, SELECT names the mailbox in a LIST response.
    rev2: bool,
}

pub async fn run(conn: Connection, server: Arc<ImapServer>) {
    let _counted = crate::SESSIONS.enter();
    let span = tracing::info_span!("imap", peer = %conn.peer);
    async move {
        debug!("connected");
        let mut session = Session {
            reader: CommandReader::new(Limits {
                max_line: server.config.max_line_length,
                max_append: server.config.max_message_size,
                ..Limits::default()
            }),
            server,
            wire: Wire::new(conn.stream),
            peer: conn.peer,
            shutdown: conn.shutdown,
            state: State::NotAuthenticated,
            errors: 0,
            admission: conn.admission,
            connected: Instant::now(),
            command_started: None,
            condstore: false,
            qresync: false,
            names: response::Names::Utf7,
            utf8_accept: false,
            rev2: false,
        };
        if let Err(e) = session.serve().await {
            debug!(error = %e, "connection ended with an error");
        }
        debug!("disconnected");
    }
    .instrument(span)
    .await
}

/// Blocking store work, off the connection threads.
async fn blocking<T, F>(store: &Arc<dyn MailAccess>, work: F) -> Result<T, No>
where
    T: Send + 'static,
    F: FnOnce(&dyn MailAccess) -> store::Result<T> + Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || work(store.as_ref())).await {
        Ok(result) => result.map_err(No::from),
        Err(e) => {
            warn!(error = %e, "store task failed");
            Err(No::new("SERVERBUG", "internal error"))
        }
    }
}

impl Session {
    fn store(&self) -> &Arc<dyn MailAccess> {
        &self.server.store
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        if self.closed_for_maintenance() {
            return self.wire.flush().await;
        }
        let greeting = format!(
            "* OK [CAPABILITY {}] {} IMAP4rev1 server (tegami) ready\r\n",
            self.capabilities(),
            self.server.config.hostname
        );
        self.wire.output.extend_from_slice(greeting.as_bytes());
        loop {
            match self.reader.parse(&mut self.wire.input) {
                Ok(Parsed::Command(command)) => {
                    self.command_started = None;
                    // Usage statistics: counted in memory by the store, flushed by the server.
                    // Replies are written in one batch after the command, so the output's
                    // growth is what the command sent.
                    let started = std::time::Instant::now();
                    let before = self.wire.output.len();
                    let flow = self.handle(command).await?;
                    if let State::Authenticated(account) | State::Selected(account, _) = &self.state
                    {
                        self.server.store.record_usage(
                            account.id,
                            store::Usage {
                                commands: 1,
                                busy_micros: started.elapsed().as_micros() as u64,
                                bytes_out: self.wire.output.len().saturating_sub(before) as u64,
                                ..store::Usage::default()
                            },
                        );
                    }
                    if let Flow::Close = flow {
                        return self.wire.flush().await;
                    }
                }
                Ok(Parsed::NeedContinuation) => {
                    response::continuation(&mut self.wire.output, "Ready for literal data");
                    if !self.read_more().await? {
                        return Ok(());
                    }
                }
                Ok(Parsed::NeedMore) => {
                    self.wire.flush().await?;
                    // A command half received (an APPEND's literal on its way) is the
                    // command in flight: it finishes before the session closes.
                    let between_commands = !self.reader.in_progress();
                    if between_commands && self.shutdown.is_shutting_down() {
                        self.bye("server shutting down, try again later");
                        return self.wire.flush().await;
                    }
                    if between_commands && self.closed_for_maintenance() {
                        return self.wire.flush().await;
                    }
                    if !self.read_more().await? {
                        return Ok(());
                    }
                }
                Err(e) => {
                    debug!(error = %e, "rejected a command");
                    e.write_response(&mut self.wire.output);
                    if e.must_close() {
                        return self.wire.flush().await;
                    }
                    if let Flow::Close = self.error() {
                        return self.wire.flush().await;
                    }
                }
            }
        }
    }

    /// Waits for input; false when the connection is over (closed, timed out).
    async fn read_more(&mut self) -> std::io::Result<bool> {
        self.wire.flush().await?;
        let mut shutdown = self.shutdown.clone();
        let server = self.server.clone();
        // Shutdown and maintenance interrupt only the wait between commands.
        let wakeable = !self.reader.in_progress();
        let wake = async move {
            if !wakeable {
                return std::future::pending().await;
            }
            tokio::select! {
                _ = shutdown.requested() => {}
                _ = server.gate.maintenance_started() => {}
            }
        };
        let timeout = self.next_wait();
        let before = self.wire.input.len();
        match self.wire.read_more(READ_CHUNK, timeout, wake).await? {
            Read::Data => {
                if let Some((_, bytes)) = &mut self.command_started {
                    *bytes += self.wire.input.len().saturating_sub(before);
                }
                Ok(true)
            }
            Read::Woken => Ok(true),
            Read::Closed => Ok(false),
            Read::TimedOut => {
                self.bye("autologout: idle for too long");
                self.wire.flush().await?;
                Ok(false)
            }
        }
    }

    /// How long the next read may wait: the idle timeout (shorter before login, and ending at
    /// the login deadline), cut short by the deadline of a command under way (its line and
    /// literals must arrive at a minimum average rate), so a client trickling bytes cannot
    /// hold a command open for ever.
    fn next_wait(&mut self) -> Duration {
        let config = &self.server.config;
        let now = Instant::now();
        let idle = match self.state {
            State::NotAuthenticated => config
                .command_timeout
                .min((self.connected + config.login_timeout).saturating_duration_since(now)),
            _ => config.command_timeout,
        };
        let under_way = self.reader.in_progress() || !self.wire.input.is_empty();
        if !under_way {
            self.command_started = None;
            return idle;
        }
        let (started, bytes) = *self
            .command_started
            .get_or_insert((now, self.wire.input.len()));
        let grace = config.command_timeout.min(config.login_timeout);
        net::pace::next_wait(idle, Some(net::pace::deadline(started, grace, bytes)), now)
    }

    /// Reads the client's answer to an AUTHENTICATE challenge. None when the connection
    /// ended or the line was not base64 (already answered).
    async fn read_auth_response(&mut self, tag: &str) -> std::io::Result<Option<AuthResponse>> {
        loop {
            match self.reader.parse_auth_response(&mut self.wire.input) {
                Ok(Some(response)) => return Ok(Some(response)),
                Ok(None) => {
                    if !self.read_more().await? || self.shutdown.is_shutting_down() {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    self.tagged(tag, "BAD", None, &e.to_string());
                    return Ok(None);
                }
            }
        }
    }

    fn bye(&mut self, text: &str) {
        self.wire
            .output
            .extend_from_slice(format!("* BYE [UNAVAILABLE] {text}\r\n").as_bytes());
    }

    /// Writes the maintenance BYE and returns true when maintenance is in force.
    fn closed_for_maintenance(&mut self) -> bool {
        match self.server.gate.maintenance() {
            Some(maintenance) => {
                self.bye(&maintenance.reply_text());
                true
            }
            None => false,
        }
    }

    fn tagged(&mut self, tag: &str, status: &str, code: Option<&str>, text: &str) {
        let out = &mut self.wire.output;
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.as_bytes());
        if let Some(code) = code {
            out.extend_from_slice(format!(" [{code}]").as_bytes());
        }
        out.push(b' ');
        // A reply text never carries a line break, whatever an error message contains.
        out.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }

    fn error(&mut self) -> Flow {
        self.errors += 1;
        if self.errors >= self.server.config.max_errors {
            self.wire
                .output
                .extend_from_slice(b"* BYE too many errors, closing connection\r\n");
            return Flow::Close;
        }
        Flow::Continue
    }

    fn capabilities(&self) -> String {
        let mut caps = vec![
            "IMAP4rev1",
            "IMAP4rev2",
            "LITERAL+",
            "SASL-IR",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "ESEARCH",
            "SEARCHRES",
            "BINARY",
            "STATUS=SIZE",
            "CHILDREN",
            "CONDSTORE",
            "QRESYNC",
            "UTF8=ACCEPT",
            "QUOTA",
            "QUOTA=RES-STORAGE",
        ];
        if matches!(self.state, State::NotAuthenticated) {
            if self.server.config.tls.is_some() && !self.wire.stream.is_tls() {
                caps.push("STARTTLS");
            }
            if self.plaintext_refused() {
                caps.push("LOGINDISABLED");
            } else {
                caps.push("AUTH=PLAIN");
            }
        }
        caps.join(" ")
    }

    /// Once TLS is available, passwords travel in clear only over loopback or when the
    /// config allows it. Without a certificate there is no other way, so it is allowed.
    fn plaintext_refused(&self) -> bool {
        let config = &self.server.config;
        let local = config.trust_loopback && self.peer.ip().to_canonical().is_loopback();
        config.tls.is_some() && !config.allow_plaintext_auth && !self.wire.stream.is_tls() && !local
    }

    fn account(&self) -> Option<&Account> {
        match &self.state {
            State::NotAuthenticated => None,
            State::Authenticated(a) | State::Selected(a, _) => Some(a),
        }
    }

    async fn handle(&mut self, command: Command) -> std::io::Result<Flow> {
        let Command { tag, body } = command;
        let authenticated = self.account().is_some();
        let selected = matches!(self.state, State::Selected(..));
        // RFC 3501 §7.4.1: no EXPUNGE while answering a FETCH, STORE or SEARCH that names
        // messages by number, or the client's numbers would shift under it.
        let expunge_allowed = !matches!(
            body,
            CommandBody::Fetch { uid: false, .. }
                | CommandBody::Store { uid: false, .. }
                | CommandBody::Search { uid: false, .. }
        );
        let outcome = match body {
            CommandBody::Capability => {
                let caps = format!("* CAPABILITY {}\r\n", self.capabilities());
                self.wire.output.extend_from_slice(caps.as_bytes());
                Ok(done("CAPABILITY completed"))
            }
            CommandBody::Noop => Ok(done("NOOP completed")),
            CommandBody::Logout => {
                self.wire
                    .output
                    .extend_from_slice(b"* BYE tegami IMAP server logging out\r\n");
                self.tagged(&tag, "OK", None, "LOGOUT completed");
                return Ok(Flow::Close);
            }
            CommandBody::Id(_) => {
                let id = format!(
                    "* ID (\"name\" \"tegami\" \"version\" \"{}\")\r\n",
                    env!("CARGO_PKG_VERSION")
                );
                self.wire.output.extend_from_slice(id.as_bytes());
                Ok(done("ID completed"))
            }
            CommandBody::Enable(names) if authenticated => {
                // CONDSTORE, QRESYNC (which implies CONDSTORE, RFC 7162 §3.2.3),
                // UTF8=ACCEPT and IMAP4rev2 are what is offered that needs enabling; others
                // are not named back.
                let mut enabled = Vec::new();
                for name in names {
                    if name.eq_ignore_ascii_case("CONDSTORE") && !self.condstore {
                        self.condstore = true;
                        enabled.push("CONDSTORE");
                    } else if name.eq_ignore_ascii_case("QRESYNC") && !self.qresync {
                        self.qresync = true;
                        self.condstore = true;
                        enabled.push("QRESYNC");
                    } else if name.eq_ignore_ascii_case("UTF8=ACCEPT") && !self.utf8_accept {
                        self.utf8_accept = true;
                        self.names = response::Names::Utf8;
                        self.reader.set_utf8();
                        enabled.push("UTF8=ACCEPT");
                    } else if name.eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 {
                        // RFC 9051 names mailboxes in UTF-8 too.
                        self.rev2 = true;
                        self.names = response::Names::Utf8;
                        self.reader.set_utf8();
                        enabled.push("IMAP4rev2");
                    }
                }
                if let State::Selected(_, view) = &mut self.state {
                    view.condstore = self.condstore;
                    view.qresync = self.qresync;
                    view.rev2 = self.rev2;
                }
                let mut line = b"* ENABLED".to_vec();
                for name in enabled {
                    line.push(b' ');
                    line.extend_from_slice(name.as_bytes());
                }
                line.extend_from_slice(b"\r\n");
                self.wire.output.extend_from_slice(&line);
                Ok(done("ENABLE completed"))
            }
            CommandBody::StartTls if !authenticated => return self.start_tls(&tag).await,
            CommandBody::Login { user, password } if !authenticated => {
                return self.login(&tag, user, password).await;
            }
            CommandBody::Authenticate { mechanism, initial } if !authenticated => {
                return self.authenticate(&tag, &mechanism, initial).await;
            }
            CommandBody::Idle if authenticated => return self.idle(&tag).await,
            body if authenticated && !is_selected_command(&body) => {
                self.authenticated_command(body).await
            }
            body if selected && is_selected_command(&body) => {
                self.selected_command(&tag, body).await
            }
            body => {
                let text = match (&self.state, is_selected_command(&body)) {
                    (State::NotAuthenticated, _) => "log in first (LOGIN or AUTHENTICATE)",
                    (_, true) => "no mailbox selected (SELECT or EXAMINE first)",
                    _ => "not allowed in this state",
                };
                self.tagged(&tag, "BAD", None, text);
                return Ok(self.error());
            }
        };
        // Whatever happened elsewhere meanwhile reaches the client before the tagged reply.
        if let State::Selected(_, view) = &mut self.state {
            let store = self.server.store.clone();
            if let Err(e) = view
                .refresh(&store, &mut self.wire.output, expunge_allowed)
                .await
            {
                if matches!(e, StoreError::NotFound { .. }) {
                    // Deleted under us (another session or the CLI): back to authenticated.
                    self.deselect();
                    self.wire
                        .output
                        .extend_from_slice(b"* OK [CLOSED] the mailbox no longer exists\r\n");
                } else {
                    warn!(error = %e, "cannot refresh the selected mailbox");
                }
            }
        }
        match outcome {
            Ok(Done { code, text }) => self.tagged(&tag, "OK", code.as_deref(), &text),
            Err(No { code: "BAD", text }) => {
                self.tagged(&tag, "BAD", None, &text);
                return Ok(self.error());
            }
            Err(No { code, text }) => self.tagged(&tag, "NO", Some(code), &text),
        }
        Ok(Flow::Continue)
    }

    fn deselect(&mut self) {
        let state = std::mem::replace(&mut self.state, State::NotAuthenticated);
        self.state = match state {
            State::Selected(account, _) | State::Authenticated(account) => {
                State::Authenticated(account)
            }
            State::NotAuthenticated => State::NotAuthenticated,
        };
    }

    // -- Not authenticated --------------------------------------------------------------

    async fn start_tls(&mut self, tag: &str) -> std::io::Result<Flow> {
        let Some(tls) = self.server.config.tls.clone() else {
            self.tagged(tag, "BAD", None, "STARTTLS is not available");
            return Ok(self.error());
        };
        if self.wire.stream.is_tls() {
            self.tagged(tag, "BAD", None, "TLS is already active");
            return Ok(self.error());
        }
        self.tagged(tag, "OK", None, "Begin TLS negotiation now");
        self.wire.flush().await?;
        // Commands pipelined behind STARTTLS came in plain text and must not be obeyed.
        self.wire.input.clear();
        self.reader.reset();
        match self.wire.stream.start_tls(tls).await {
            Ok(()) => Ok(Flow::Continue),
            Err(e) => {
                debug!(error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
        }
    }

    async fn login(&mut self, tag: &str, user: String, password: String) -> std::io::Result<Flow> {
        if self.plaintext_refused() {
            self.tagged(tag, "NO", Some("PRIVACYREQUIRED"), "use STARTTLS first");
            return Ok(Flow::Continue);
        }
        self.check_password(tag, user, password).await
    }

    async fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &str,
        initial: Option<String>,
    ) -> std::io::Result<Flow> {
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            self.tagged(
                tag,
                "NO",
                Some("CANNOT"),
                "only AUTHENTICATE PLAIN is offered",
            );
            return Ok(Flow::Continue);
        }
        if self.plaintext_refused() {
            self.tagged(tag, "NO", Some("PRIVACYREQUIRED"), "use STARTTLS first");
            return Ok(Flow::Continue);
        }
        let response = match initial {
            Some(text) => text,
            None => {
                response::continuation(&mut self.wire.output, "");
                match self.read_auth_response(tag).await? {
                    Some(AuthResponse::Data(text)) => text,
                    Some(AuthResponse::Cancel) => {
                        self.tagged(tag, "BAD", None, "authentication cancelled");
                        return Ok(Flow::Continue);
                    }
                    None => return Ok(self.error()),
                }
            }
        };
        let response = response.trim();
        let decoded = if response == "=" {
            Ok(Vec::new())
        } else {
            base64::engine::general_purpose::STANDARD.decode(response)
        };
        let credentials = decoded.ok().and_then(|bytes| {
            let mut fields = bytes.split(|&b| b == 0);
            let (authz, authc, password) = (fields.next()?, fields.next()?, fields.next()?);
            let authc = String::from_utf8(authc.to_vec()).ok()?;
            // Acting for someone else (a different authorization identity) is not offered.
            if !authz.is_empty() && authz != authc.as_bytes() {
                return None;
            }
            Some((authc, String::from_utf8(password.to_vec()).ok()?))
        });
        match credentials {
            Some((user, password)) => self.check_password(tag, user, password).await,
            None => {
                self.tagged(tag, "BAD", None, "malformed PLAIN response");
                Ok(self.error())
            }
        }
    }

    async fn check_password(
        &mut self,
        tag: &str,
        user: String,
        password: String,
    ) -> std::io::Result<Flow> {
        let who = user.clone();
        let server = self.server.clone();
        // Attempts from one address take turns, each failure's delay served before the next.
        let Ok(attempt) = server.throttle.attempt(self.peer.ip(), &user).await else {
            self.tagged(
                tag,
                "NO",
                Some("UNAVAILABLE"),
                "too many login attempts from your address are waiting; try again later",
            );
            return Ok(Flow::Close);
        };
        let checked = blocking(self.store(), move |s| s.authenticate(&who, &password)).await;
        let id = match checked {
            Ok(Some(id)) => {
                attempt.succeeded();
                id
            }
            Ok(None) => {
                let delay = attempt.record_failure();
                info!(user = %user, delay_secs = delay.as_secs(), "failed login");
                tokio::time::sleep(delay).await;
                drop(attempt);
                self.tagged(
                    tag,
                    "NO",
                    Some("AUTHENTICATIONFAILED"),
                    "invalid user name or password",
                );
                return Ok(self.error());
            }
            Err(No { text, .. }) => {
                self.tagged(tag, "NO", Some("UNAVAILABLE"), &text);
                return Ok(Flow::Continue);
            }
        };
        let Some(slot) = self.server.enter(id) else {
            self.tagged(
                tag,
                "NO",
                Some("LIMIT"),
                "too many connections for this account",
            );
            return Ok(Flow::Continue);
        };
        info!(user = %user, "logged in");
        self.admission.logged_in();
        self.state = State::Authenticated(Account { id, _slot: slot });
        let caps = format!("CAPABILITY {}", self.capabilities());
        self.tagged(tag, "OK", Some(&caps), "logged in");
        Ok(Flow::Continue)
    }

    // -- Authenticated --------------------------------------------------------------------

    async fn authenticated_command(&mut self, body: CommandBody) -> Outcome {
        let account = self.account().map(|a| a.id).expect("authenticated");
        let store = self.server.store.clone();
        match body {
            CommandBody::Select {
                mailbox,
                condstore,
                qresync,
            } => {
                self.select(account, mailbox, false, condstore, qresync)
                    .await
            }
            CommandBody::Examine {
                mailbox,
                condstore,
                qresync,
            } => {
                self.select(account, mailbox, true, condstore, qresync)
                    .await
            }
            CommandBody::Create {
                mailbox,
                special_use,
            } => {
                self.writable()?;
                let role = special_use_role(&special_use)?;
                let name = mailbox.trim_end_matches('/').to_string();
                if name.eq_ignore_ascii_case("INBOX") {
                    return Err(No::new("ALREADYEXISTS", "INBOX always exists"));
                }
                let holder = blocking(&store, move |s| {
                    let existing = s.mailboxes(account)?;
                    // Told apart from a name already taken, for its response code; the
                    // store checks the role again inside its write.
                    if let Some(holder) = existing
                        .iter()
                        .find(|m| role.is_some_and(|r| m.special_use == Some(r)))
                    {
                        return Ok(Some(holder.name.clone()));
                    }
                    let existing: Vec<String> = existing.into_iter().map(|m| m.name).collect();
                    // Missing superior levels are created too (RFC 3501 §6.3.3).
                    let levels: Vec<&str> = name.split('/').collect();
                    for depth in 1..levels.len() {
                        let parent = levels[..depth].join("/");
                        if !parent.is_empty() && !existing.contains(&parent) {
                            s.create_mailbox(account, &parent)?;
                        }
                    }
                    match role {
                        Some(role) => s.create_special_use_mailbox(account, &name, role)?,
                        None => s.create_mailbox(account, &name)?,
                    };
                    Ok(None)
                })
                .await?;
                if let Some(holder) = holder {
                    // RFC 6154 §3: a use that cannot be given is refused with USEATTR.
                    return Err(No::new(
                        "USEATTR",
                        format!("{holder} already has that special use"),
                    ));
                }
                Ok(done("CREATE completed"))
            }
            CommandBody::Delete { mailbox } => {
                self.writable()?;
                if mailbox == "INBOX" {
                    return Err(No::new("CANNOT", "INBOX cannot be deleted"));
                }
                blocking(&store, move |s| s.delete_mailbox(account, &mailbox)).await?;
                Ok(done("DELETE completed"))
            }
            CommandBody::Rename { from, to } => {
                self.writable()?;
                blocking(&store, move |s| s.rename_mailbox(account, &from, &to)).await?;
                Ok(done("RENAME completed"))
            }
            CommandBody::Subscribe { mailbox } => {
                blocking(&store, move |s| s.set_subscribed(account, &mailbox, true)).await?;
                Ok(done("SUBSCRIBE completed"))
            }
            CommandBody::Unsubscribe { mailbox } => {
                blocking(&store, move |s| s.set_subscribed(account, &mailbox, false)).await?;
                Ok(done("UNSUBSCRIBE completed"))
            }
            CommandBody::List {
                reference,
                patterns,
                select,
                ret,
            } => self.list(account, reference, patterns, select, ret).await,
            CommandBody::Lsub { reference, pattern } => {
                let subscribed = blocking(&store, move |s| s.subscriptions(account)).await?;
                let pattern = format!("{reference}{pattern}");
                // RFC 3501 6.3.9: when a "%" stops above a subscribed mailbox, its parent
                // is listed with \Noselect unless the parent is subscribed itself.
                let mut parents = std::collections::BTreeSet::new();
                for name in &subscribed {
                    if list::pattern_matches(&pattern, name) {
                        response::lsub(
                            &mut self.wire.output,
                            &[],
                            Some(list::DELIMITER),
                            name,
                            self.names,
                        );
                        continue;
                    }
                    for (at, _) in name.match_indices(list::DELIMITER) {
                        let parent = &name[..at];
                        if list::pattern_matches(&pattern, parent)
                            && !subscribed.iter().any(|s| s == parent)
                        {
                            parents.insert(parent.to_string());
                        }
                    }
                }
                for parent in parents {
                    response::lsub(
                        &mut self.wire.output,
                        &["\\Noselect"],
                        Some(list::DELIMITER),
                        &parent,
                        self.names,
                    );
                }
                Ok(done("LSUB completed"))
            }
            CommandBody::Namespace => {
                self.wire
                    .output
                    .extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
                Ok(done("NAMESPACE completed"))
            }
            // RFC 9208: one quota root, "", holds every mailbox of the account.
            CommandBody::GetQuotaRoot { mailbox } => {
                let name = mailbox.clone();
                let quota = blocking(&store, move |s| {
                    s.mailbox(account, &name)?;
                    s.quota(account)
                })
                .await?;
                response::quota_root(&mut self.wire.output, &mailbox, &[""], self.names);
                push_quota(&mut self.wire.output, &quota);
                Ok(done("GETQUOTAROOT completed"))
            }
            CommandBody::GetQuota { root } => {
                if !root.is_empty() {
                    return Err(No::new(
                        "NONEXISTENT",
                        format!("no quota root \"{root}\"; the account's is \"\""),
                    ));
                }
                let quota = blocking(&store, move |s| s.quota(account)).await?;
                push_quota(&mut self.wire.output, &quota);
                Ok(done("GETQUOTA completed"))
            }
            CommandBody::SetQuota { .. } => Err(No::new(
                "NOPERM",
                "quotas are set by the administrator (tegami account quota)",
            )),
            CommandBody::Status { mailbox, items } => {
                if items.contains(&StatusItem::HighestModSeq) {
                    // A CONDSTORE-enabling command (RFC 7162 §3.1).
                    self.condstore = true;
                }
                let name = mailbox.clone();
                let sized = items.contains(&StatusItem::Size);
                let (info, counts, size) = blocking(&store, move |s| {
                    let info = s.mailbox(account, &name)?;
                    let counts = s.mailbox_counts(info.id)?;
                    let size = if sized { s.mailbox_size(info.id)? } else { 0 };
                    Ok((info, counts, size))
                })
                .await?;
                let names = self.names;
                push_status(
                    &mut self.wire.output,
                    &mailbox,
                    &items,
                    &info,
                    &counts,
                    size,
                    names,
                );
                Ok(done("STATUS completed"))
            }
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                if !self.server.gate.disk().accepts_mail() {
                    return Err(No::new(
                        "UNAVAILABLE",
                        "insufficient disk space on the server, try again later",
                    ));
                }
                let (bits, keywords) = split_flags(&flags);
                let name = mailbox.clone();
                let (info, delivered) = blocking(&store, move |s| {
                    let info = s.mailbox(account, &name)?;
                    let delivered = s.append_in_zone(
                        info.id,
                        &message,
                        bits,
                        &keywords,
                        date.map(|d| d.seconds),
                        date.map_or(0, |d| d.zone_minutes),
                    )?;
                    Ok((info, delivered))
                })
                .await
                .map_err(|no| {
                    if no.code == "NONEXISTENT" {
                        No::new("TRYCREATE", format!("no mailbox named {mailbox}"))
                    } else {
                        no
                    }
                })?;
                Ok(Done {
                    code: Some(format!("APPENDUID {} {}", info.uid_validity, delivered.uid)),
                    text: "APPEND completed".into(),
                })
            }
            other => Err(No::bad(format!("unexpected command {other:?}"))),
        }
    }

    /// Refuses writes when the disk is nearly full.
    fn writable(&self) -> Result<(), No> {
        if self.server.gate.disk().accepts_writes() {
            Ok(())
        } else {
            Err(No::new(
                "UNAVAILABLE",
                "disk space on the server is critically low, try again later",
            ))
        }
    }

    /// LIST in all its RFC 5258 forms; with RETURN (STATUS ...) each listed mailbox that
    /// can be selected is followed by its STATUS (RFC 5819).
    async fn list(
        &mut self,
        account: AccountId,
        reference: String,
        patterns: Vec<String>,
        select: ListSelect,
        ret: ListReturn,
    ) -> Outcome {
        if patterns.iter().any(String::is_empty) {
            // The hierarchy delimiter and root (RFC 3501 §6.3.8).
            response::list(
                &mut self.wire.output,
                &["\\Noselect"],
                Some(list::DELIMITER),
                "",
                self.names,
            );
        }
        let patterns: Vec<String> = patterns.into_iter().filter(|p| !p.is_empty()).collect();
        if patterns.is_empty() {
            return Ok(done("LIST completed"));
        }
        let needs_subscriptions = select.subscribed || ret.subscribed;
        let (mailboxes, subscriptions) = blocking(self.store(), move |s| {
            let subscriptions = if needs_subscriptions {
                s.subscriptions(account)?
            } else {
                Vec::new()
            };
            Ok((s.mailboxes(account)?, subscriptions))
        })
        .await?;
        let listed = list::select(
            &list::entries(&mailboxes, &subscriptions),
            &reference,
            &patterns,
            select,
        );
        let names = self.names;
        let Some(items) = ret.status.clone() else {
            let out = &mut self.wire.output;
            for line in &listed {
                push_list(out, line, &ret, names);
            }
            return Ok(done("LIST completed"));
        };
        if items.contains(&StatusItem::HighestModSeq) {
            // As STATUS (HIGHESTMODSEQ) is, a CONDSTORE-enabling command (RFC 7162 §3.1).
            self.condstore = true;
        }
        let selectable: Vec<String> = listed
            .iter()
            .filter(|l| l.entry.kind == list::Kind::Mailbox)
            .map(|l| l.entry.name.clone())
            .collect();
        let sized = items.contains(&StatusItem::Size);
        let statuses = blocking(self.store(), move |s| {
            let mut statuses = std::collections::HashMap::new();
            for name in selectable {
                // A mailbox deleted since it was listed gets no STATUS, which RFC 5819 §2
                // allows for any mailbox the server cannot report on.
                match s.mailbox(account, &name) {
                    Ok(info) => {
                        let counts = s.mailbox_counts(info.id)?;
                        let size = if sized { s.mailbox_size(info.id)? } else { 0 };
                        statuses.insert(name, (info, counts, size));
                    }
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(statuses)
        })
        .await?;
        let out = &mut self.wire.output;
        for line in &listed {
            push_list(out, line, &ret, names);
            if let Some((info, counts, size)) = statuses.get(&line.entry.name) {
                push_status(out, &line.entry.name, &items, info, counts, *size, names);
            }
        }
        Ok(done("LIST completed"))
    }

    async fn select(
        &mut self,
        account: AccountId,
        mailbox: String,
        read_only: bool,
        condstore: bool,
        qresync: Option<Qresync>,
    ) -> Outcome {
        if qresync.is_some() && !self.qresync {
            return Err(No::bad("QRESYNC must be enabled first (ENABLE QRESYNC)"));
        }
        if condstore {
            self.condstore = true;
        }
        // Selecting, even a mailbox that does not exist, leaves the previous one; a QRESYNC
        // or IMAP4rev2 client is told where the old mailbox's responses end (RFC 7162
        // §3.2.11, RFC 9051 §7.1).
        if (self.qresync || self.rev2) && matches!(self.state, State::Selected(..)) {
            self.wire
                .output
                .extend_from_slice(b"* OK [CLOSED] previous mailbox closed\r\n");
        }
        self.deselect();
        let changes = self.server.changes.clone();
        let name = mailbox.clone();
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let rev2 = self.rev2;
        let (info, messages, recent_from, counts) = blocking(self.store(), move |s| {
            let info = s.mailbox(account, &name)?;
            // An archive's mailbox is read-only whichever command opened it; IMAP4rev2 has
            // no \Recent to claim.
            let read_only = read_only || info.read_only;
            let recent_from = if read_only || rev2 {
                None
            } else {
                Some(s.claim_recent(info.id)?)
            };
            let messages = s.messages(info.id)?;
            let counts = s.mailbox_counts(info.id)?;
            Ok((info, messages, recent_from, counts))
        })
        .await?;
        let read_only = read_only || info.read_only;
        let watch = changes.watch(info.id);
        let mut view = Selected::new(info, read_only, messages, recent_from, watch);
        view.condstore = self.condstore;
        view.qresync = self.qresync;
        view.rev2 = rev2;
        let out = &mut self.wire.output;
        out.extend_from_slice(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n");
        out.extend_from_slice(if read_only {
            b"* OK [PERMANENTFLAGS ()] read-only, no flags can be changed\r\n".as_slice()
        } else {
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags allowed\r\n"
        });
        let recent = if read_only {
            counts.recent
        } else {
            view.recent.len() as u32
        };
        out.extend_from_slice(format!("* {} EXISTS\r\n", view.exists()).as_bytes());
        if rev2 {
            // RFC 9051 §6.3.2: the mailbox's name as the server spells it, in place of
            // RECENT and UNSEEN, which IMAP4rev2 dropped.
            response::list(out, &[], Some(list::DELIMITER), &view.info.name, self.names);
        } else {
            out.extend_from_slice(format!("* {recent} RECENT\r\n").as_bytes());
        }
        if let Some(first) = view
            .messages
            .iter()
            .position(|e| e.meta.flags.0 & Flags::SEEN == 0)
            .filter(|_| !rev2)
        {
            out.extend_from_slice(
                format!("* OK [UNSEEN {}] first unseen message\r\n", first + 1).as_bytes(),
            );
        }
        out.extend_from_slice(
            format!(
                "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] predicted next UID\r\n",
                view.info.uid_validity, view.info.uid_next
            )
            .as_bytes(),
        );
        // Every mailbox keeps mod-sequences, so HIGHESTMODSEQ is always told (RFC 7162
        // §3.1.2.1), whether or not the client enabled CONDSTORE.
        out.extend_from_slice(
            format!(
                "* OK [HIGHESTMODSEQ {}] highest mod-sequence\r\n",
                view.highest_modseq()
            )
            .as_bytes(),
        );
        if let Some(q) = qresync.filter(|q| q.uid_validity == view.info.uid_validity) {
            self.resync(&mut view, q).await?;
        }
        let account = match std::mem::replace(&mut self.state, State::NotAuthenticated) {
            State::Authenticated(account) => account,
            _ => unreachable!("deselect left the session authenticated"),
        };
        self.state = State::Selected(account, view);
        let code = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        Ok(Done {
            code: Some(code.into()),
            text: format!("{verb} completed"),
        })
    }

    /// QRESYNC's answer to a returning client (RFC 7162 §3.2.5): what vanished since its
    /// mod-sequence, among the UIDs it knows, then the flags of what changed.
    async fn resync(&mut self, view: &mut Selected, q: Qresync) -> Result<(), No> {
        let mailbox = view.info.id;
        let since = q.modseq;
        let expunged = blocking(self.store(), move |s| s.expunged_since(mailbox, since)).await?;
        let last_uid = view.info.uid_next.saturating_sub(1);
        let known = q.known_uids.as_ref().map(|set| set_ranges(set, last_uid));
        let vanished = vanished_answer(view, expunged, known.as_deref(), last_uid);
        response::vanished(&mut self.wire.output, true, &vanished);
        for (index, entry) in view.messages.iter().enumerate() {
            let meta = &entry.meta;
            if meta.modseq > since && known.as_deref().is_none_or(|k| in_ranges(k, meta.uid)) {
                let recent = view.is_recent(meta.uid);
                push_flag_change(&mut self.wire.output, index + 1, meta, recent, true);
            }
        }
        Ok(())
    }

    // -- Selected -------------------------------------------------------------------------

    async fn selected_command(&mut self, tag: &str, mut body: CommandBody) -> Outcome {
        let store = self.server.store.clone();
        let moving = matches!(body, CommandBody::Move { .. });
        let State::Selected(_, view) = &mut self.state else {
            unreachable!("checked by handle")
        };
        put_saved(&mut body, view);
        match body {
            CommandBody::Check => Ok(done("CHECK completed (everything is already on disk)")),
            CommandBody::Close | CommandBody::Unselect => {
                if matches!(body, CommandBody::Close) && !view.read_only {
                    // CLOSE expunges without EXPUNGE responses (RFC 3501 §6.4.2).
                    let mailbox = view.info.id;
                    if self.server.gate.disk().accepts_writes() {
                        blocking(&store, move |s| s.expunge_deleted(mailbox, None)).await?;
                    }
                }
                let verb = if matches!(body, CommandBody::Close) {
                    "CLOSE completed"
                } else {
                    "UNSELECT completed"
                };
                self.deselect();
                Ok(done(verb))
            }
            CommandBody::Expunge | CommandBody::UidExpunge(_) => {
                if view.read_only {
                    return Err(No::new(
                        "READ-ONLY",
                        "the mailbox is read-only (opened with EXAMINE, or an archive)",
                    ));
                }
                let uids = match &body {
                    CommandBody::UidExpunge(set) => Some(uids_of(view, set, true)?),
                    _ => None,
                };
                writable(&self.server)?;
                let mailbox = view.info.id;
                let removed =
                    blocking(&store, move |s| s.expunge_deleted(mailbox, uids.as_deref())).await?;
                view.expunged_here(&removed, &mut self.wire.output);
                Ok(done("EXPUNGE completed"))
            }
            CommandBody::Search {
                uid,
                charset,
                criteria,
                ret,
            } => {
                let save = matches!(ret, SearchReturn::Esearch { save: true, .. });
                if save {
                    // RFC 5182 §2.1: a SEARCH (SAVE) that fails leaves `$` empty.
                    view.saved.clear();
                }
                // RFC 6855 3: after ENABLE UTF8=ACCEPT every string is UTF-8, and a charset
                // label would contradict that.
                if charset.is_some() && self.utf8_accept {
                    return Err(No::bad(
                        "SEARCH takes no CHARSET after ENABLE UTF8=ACCEPT (RFC 6855)",
                    ));
                }
                if let Some(charset) = &charset
                    && !["UTF-8", "US-ASCII"]
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case(charset))
                {
                    return Err(No::new(
                        "BADCHARSET (UTF-8 US-ASCII)",
                        "unsupported charset",
                    ));
                }
                if !uid {
                    view.refresh(&store, &mut self.wire.output, false)
                        .await
                        .map_err(No::from)?;
                }
                let found = run_search(&store, view, &criteria, uid).await?;
                // RFC 7162 §3.1.5: a search by MODSEQ tells the highest mod-sequence found.
                let modseq = search::uses_modseq(&criteria).then(|| {
                    self.condstore = true;
                    view.condstore = true;
                    found
                        .iter()
                        .filter_map(|&n| {
                            let index = if uid {
                                view.messages
                                    .binary_search_by_key(&n, |e| e.meta.uid)
                                    .ok()?
                            } else {
                                n as usize - 1
                            };
                            view.messages.get(index).map(|e| e.meta.modseq)
                        })
                        .max()
                        .unwrap_or(0)
                });
                if save {
                    view.saved = saved_uids(view, &ret, &found, uid);
                }
                // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 §7.3.4).
                let ret = match ret {
                    SearchReturn::Plain if self.rev2 => SearchReturn::Esearch {
                        min: false,
                        max: false,
                        count: false,
                        all: true,
                        save: false,
                    },
                    ret => ret,
                };
                push_search(&mut self.wire.output, tag, uid, &ret, &found, modseq);
                Ok(done("SEARCH completed"))
            }
            CommandBody::Fetch {
                uid,
                set,
                items,
                changed_since,
                vanished,
            } => {
                if vanished && !self.qresync {
                    return Err(No::bad("VANISHED needs QRESYNC enabled first"));
                }
                let mut picked = view.resolve(&set, uid).map_err(No::bad)?;
                let mut items = items;
                if uid && !items.contains(&FetchItem::Uid) {
                    items.insert(0, FetchItem::Uid);
                }
                // CHANGEDSINCE and MODSEQ enable CONDSTORE (RFC 7162 §3.1); CHANGEDSINCE
                // answers only what changed after it, each with its MODSEQ (§3.1.4.1).
                if changed_since.is_some() || items.contains(&FetchItem::ModSeq) {
                    self.condstore = true;
                    view.condstore = true;
                }
                if self.condstore && fetch::sets_seen(&items) && !items.contains(&FetchItem::ModSeq)
                {
                    // \Seen set by the fetch is a flag change, told with its mod-sequence.
                    items.push(FetchItem::ModSeq);
                }
                if let Some(since) = changed_since {
                    if !items.contains(&FetchItem::ModSeq) {
                        items.push(FetchItem::ModSeq);
                    }
                    picked.retain(|&i| view.messages[i].meta.modseq > since);
                    if vanished {
                        let mailbox = view.info.id;
                        let expunged =
                            blocking(&store, move |s| s.expunged_since(mailbox, since)).await?;
                        let last_uid = view.info.uid_next.saturating_sub(1);
                        let asked = set_ranges(&set, last_uid);
                        let gone = vanished_answer(view, expunged, Some(&asked), last_uid);
                        response::vanished(&mut self.wire.output, true, &gone);
                    }
                }
                let missing = run_fetch(
                    &store,
                    &self.server,
                    view,
                    &mut self.wire,
                    &picked,
                    &items,
                    uid,
                )
                .await?;
                if missing > 0 {
                    return Ok(Done {
                        code: Some("EXPUNGEISSUED".into()),
                        text: "FETCH completed; some messages were expunged meanwhile".into(),
                    });
                }
                Ok(done("FETCH completed"))
            }
            CommandBody::Store {
                uid,
                set,
                op,
                silent,
                flags,
                unchanged_since,
            } => {
                if unchanged_since.is_some() {
                    self.condstore = true;
                    view.condstore = true;
                }
                let condstore = self.condstore;
                if view.read_only {
                    return Err(No::new(
                        "READ-ONLY",
                        "the mailbox is read-only (opened with EXAMINE, or an archive)",
                    ));
                }
                writable(&self.server)?;
                let picked = view.resolve(&set, uid).map_err(No::bad)?;
                let uids: Vec<u32> = picked
                    .iter()
                    .filter(|&&i| !view.messages[i].expunged)
                    .map(|&i| view.messages[i].meta.uid)
                    .collect();
                let (bits, keywords) = split_flags(&flags);
                let op = match op {
                    StoreOp::Replace => FlagOp::Replace,
                    StoreOp::Add => FlagOp::Add,
                    StoreOp::Remove => FlagOp::Remove,
                };
                let mailbox = view.info.id;
                let update = blocking(&store, move |s| {
                    s.store_flags(mailbox, &uids, op, bits, &keywords, unchanged_since)
                })
                .await?;
                for state in update.states {
                    let Ok(index) = view
                        .messages
                        .binary_search_by_key(&state.uid, |e| e.meta.uid)
                    else {
                        continue;
                    };
                    let entry = &mut view.messages[index];
                    let changed = entry.meta.modseq != state.modseq;
                    entry.meta.flags = state.flags;
                    entry.meta.keywords = state.keywords;
                    entry.meta.modseq = state.modseq;
                    let out = &mut self.wire.output;
                    if !silent {
                        out.extend_from_slice(format!("* {} FETCH (", index + 1).as_bytes());
                        if uid {
                            out.extend_from_slice(format!("UID {} ", state.uid).as_bytes());
                        }
                        out.extend_from_slice(b"FLAGS ");
                        let recent = view.is_recent(state.uid);
                        fetch::push_flags(out, &view.messages[index].meta, recent);
                        if condstore {
                            out.extend_from_slice(format!(" MODSEQ ({})", state.modseq).as_bytes());
                        }
                        out.extend_from_slice(b")\r\n");
                    } else if condstore && changed {
                        // RFC 7162 §3.1.3: even .SILENT tells a CONDSTORE client the new
                        // mod-sequence of what it changed.
                        out.extend_from_slice(format!("* {} FETCH (", index + 1).as_bytes());
                        if uid {
                            out.extend_from_slice(format!("UID {} ", state.uid).as_bytes());
                        }
                        out.extend_from_slice(format!("MODSEQ ({}))\r\n", state.modseq).as_bytes());
                    }
                }
                // What was refused, by UID or by number as the command named them.
                let mut modified: Vec<u32> = if uid {
                    update.modified
                } else {
                    update
                        .modified
                        .iter()
                        .filter_map(|&u| {
                            view.messages.binary_search_by_key(&u, |e| e.meta.uid).ok()
                        })
                        .map(|i| i as u32 + 1)
                        .collect()
                };
                modified.sort_unstable();
                if !uid {
                    view.refresh(&store, &mut self.wire.output, false)
                        .await
                        .map_err(No::from)?;
                }
                if !modified.is_empty() {
                    let mut code = b"MODIFIED ".to_vec();
                    response::push_uid_set(&mut code, &modified);
                    return Ok(Done {
                        code: Some(String::from_utf8(code).expect("digits and punctuation")),
                        text: "Conditional STORE failed for some messages".into(),
                    });
                }
                Ok(done("STORE completed"))
            }
            CommandBody::Copy { uid, set, mailbox } | CommandBody::Move { uid, set, mailbox } => {
                if moving && view.read_only {
                    return Err(No::new(
                        "READ-ONLY",
                        "the mailbox is read-only (opened with EXAMINE, or an archive)",
                    ));
                }
                if !self.server.gate.disk().accepts_mail() {
                    return Err(No::new(
                        "UNAVAILABLE",
                        "insufficient disk space on the server, try again later",
                    ));
                }
                let uids = uids_of(view, &set, uid)?;
                let account = view.info.account;
                let from = view.info.id;
                let copied = blocking(&store, move |s| {
                    let to = match s.mailbox(account, &mailbox) {
                        Ok(to) => to,
                        Err(StoreError::NotFound { .. }) => {
                            return Err(StoreError::Invalid(format!("TRYCREATE:{mailbox}")));
                        }
                        Err(e) => return Err(e),
                    };
                    if moving {
                        s.move_messages(from, &uids, to.id)
                    } else {
                        s.copy_messages(from, &uids, to.id)
                    }
                })
                .await
                .map_err(|no| match no.text.strip_prefix("TRYCREATE:") {
                    Some(name) => No::new("TRYCREATE", format!("no mailbox named {name}")),
                    None => no,
                })?;
                if copied.uids.is_empty() {
                    return Ok(done(if moving {
                        "MOVE completed"
                    } else {
                        "COPY completed"
                    }));
                }
                let src: Vec<u32> = copied.uids.iter().map(|p| p.0).collect();
                let dst: Vec<u32> = copied.uids.iter().map(|p| p.1).collect();
                let mut code = format!("COPYUID {} ", copied.uid_validity).into_bytes();
                response::push_uid_set(&mut code, &src);
                code.push(b' ');
                response::push_uid_set(&mut code, &dst);
                let code = String::from_utf8(code).expect("digits and punctuation");
                if moving {
                    // RFC 6851: COPYUID goes untagged, before the EXPUNGEs.
                    self.wire
                        .output
                        .extend_from_slice(format!("* OK [{code}] moved\r\n").as_bytes());
                    view.expunged_here(&src, &mut self.wire.output);
                    return Ok(done("MOVE completed"));
                }
                Ok(Done {
                    code: Some(code),
                    text: "COPY completed".into(),
                })
            }
            other => Err(No::bad(format!("unexpected command {other:?}"))),
        }
    }

    // -- IDLE -----------------------------------------------------------------------------

    /// RFC 2177: report changes as they happen until the client says DONE.
    async fn idle(&mut self, tag: &str) -> std::io::Result<Flow> {
        response::continuation(&mut self.wire.output, "idling");
        let store = self.server.store.clone();
        let deadline = tokio::time::Instant::now() + self.server.config.idle_timeout;
        loop {
            match self.reader.parse_idle_done(&mut self.wire.input) {
                Ok(true) => {
                    self.tagged(tag, "OK", None, "IDLE terminated");
                    return Ok(Flow::Continue);
                }
                Ok(false) => {}
                Err(e) => {
                    self.tagged(tag, "BAD", None, &e.to_string());
                    return Ok(self.error());
                }
            }
            self.wire.flush().await?;
            if self.shutdown.is_shutting_down() {
                self.bye("server shutting down, try again later");
                return Ok(Flow::Close);
            }
            if self.closed_for_maintenance() {
                return Ok(Flow::Close);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                self.bye("IDLE lasted too long; reconnect and IDLE again");
                return Ok(Flow::Close);
            }
            let mut shutdown = self.shutdown.clone();
            let server = self.server.clone();
            let mut changes = match &self.state {
                State::Selected(_, view) => Some(view.changes.clone()),
                _ => None,
            };
            let wake = async move {
                let changed = async {
                    match changes.as_mut() {
                        Some(rx) => {
                            let _ = rx.changed().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = shutdown.requested() => {}
                    _ = server.gate.maintenance_started() => {}
                    _ = changed => {}
                }
            };
            match self
                .wire
                .read_more(READ_CHUNK, deadline - now, wake)
                .await?
            {
                Read::Data => {}
                Read::Closed => return Ok(Flow::Close),
                Read::TimedOut => {}
                Read::Woken => {
                    if let State::Selected(_, view) = &mut self.state
                        && let Err(e) = view.refresh(&store, &mut self.wire.output, true).await
                    {
                        warn!(error = %e, "cannot refresh the selected mailbox during IDLE");
                    }
                }
            }
        }
    }
}

/// The role CREATE's `(USE (...))` asks for, if any. The store keeps one role per mailbox
/// and only the roles it gives every account (\All and \Flagged would be virtual
/// mailboxes, which tegami does not have), so anything else is refused with USEATTR, as
/// RFC 6154 §3 asks of a use the server cannot give.
fn special_use_role(uses: &[String]) -> Result<Option<store::SpecialUse>, No> {
    match uses {
        [] => Ok(None),
        [attribute] => store::SpecialUse::ALL
            .into_iter()
            .find(|role| role.attribute() == attribute)
            .map(Some)
            .ok_or_else(|| No::new("USEATTR", format!("{attribute} is not supported"))),
        _ => Err(No::new("USEATTR", "a mailbox takes one special use here")),
    }
}

fn push_list(out: &mut Vec<u8>, line: &list::Listed, ret: &ListReturn, names: response::Names) {
    response::list_child_info(
        out,
        &line.attributes(ret),
        Some(list::DELIMITER),
        &line.entry.name,
        &line.child_info,
        names,
    );
}

/// `* STATUS mailbox (...)`, for STATUS and for LIST-STATUS alike.
/// `size` is the mailbox's octets, read only when `items` ask for SIZE.
fn push_status(
    out: &mut Vec<u8>,
    mailbox: &str,
    items: &[StatusItem],
    info: &MailboxInfo,
    counts: &store::MailboxCounts,
    size: u64,
    names: response::Names,
) {
    let values: Vec<(StatusItem, u64)> = items
        .iter()
        .map(|&item| {
            let value = match item {
                StatusItem::Messages => counts.messages.into(),
                StatusItem::Recent => counts.recent.into(),
                StatusItem::UidNext => info.uid_next.into(),
                StatusItem::UidValidity => info.uid_validity.into(),
                StatusItem::Unseen => counts.unseen.into(),
                StatusItem::HighestModSeq => info.modseq,
                StatusItem::Deleted => counts.deleted.into(),
                StatusItem::DeletedStorage => counts.deleted_bytes.div_ceil(1024),
                StatusItem::Size => size,
            };
            (item, value)
        })
        .collect();
    response::status(out, mailbox, &values, names);
}

/// `* QUOTA "" (STORAGE used limit)` in units of 1024 bytes (RFC 9208), rounded up so that
/// a nearly full account never reads as having room; `()` for an account without a limit.
fn push_quota(out: &mut Vec<u8>, quota: &store::Quota) {
    let kib = |bytes: u64| bytes.div_ceil(1024);
    match quota.limit {
        Some(limit) => response::quota(out, "", &[("STORAGE", kib(quota.used), limit / 1024)]),
        None => response::quota(out, "", &[]),
    }
}

fn writable(server: &ImapServer) -> Result<(), No> {
    if server.gate.disk().accepts_writes() {
        Ok(())
    } else {
        Err(No::new(
            "UNAVAILABLE",
            "disk space on the server is critically low, try again later",
        ))
    }
}

fn is_selected_command(body: &CommandBody) -> bool {
    matches!(
        body,
        CommandBody::Check
            | CommandBody::Close
            | CommandBody::Unselect
            | CommandBody::Expunge
            | CommandBody::UidExpunge(_)
            | CommandBody::Search { .. }
            | CommandBody::Fetch { .. }
            | CommandBody::Store { .. }
            | CommandBody::Copy { .. }
            | CommandBody::Move { .. }
    )
}

fn uids_of(view: &Selected, set: &SequenceSet, uid: bool) -> Result<Vec<u32>, No> {
    let picked = view.resolve(set, uid).map_err(No::bad)?;
    Ok(picked
        .into_iter()
        .filter(|&i| !view.messages[i].expunged)
        .map(|i| view.messages[i].meta.uid)
        .collect())
}

/// The UIDs to name in VANISHED (EARLIER): the store's remembered expunges, within `known`
/// when given; when the store forgot some (`None`), every UID within `known` (or up to
/// `last_uid`) that the mailbox does not hold, as RFC 7162 §3.2.5.2 allows.
fn vanished_answer(
    view: &Selected,
    expunged: Option<Vec<(u32, u32)>>,
    known: Option<&[(u32, u32)]>,
    last_uid: u32,
) -> Vec<(u32, u32)> {
    let whole = [(1, last_uid)];
    let within = match known {
        Some(known) => known,
        None if last_uid == 0 => &[][..],
        None => &whole[..],
    };
    let mut answer = Vec::new();
    match expunged {
        Some(ranges) => {
            for (first, last) in ranges {
                for &(a, b) in within {
                    let (lo, hi) = (first.max(a), last.min(b));
                    if lo <= hi {
                        answer.push((lo, hi));
                    }
                }
            }
            answer.sort_unstable();
        }
        None => {
            let present: Vec<u32> = view.messages.iter().map(|e| e.meta.uid).collect();
            for &(a, b) in within {
                // u64, so that the UID after u32::MAX is no UID rather than a wrap.
                let mut next = u64::from(a.max(1));
                let start = present.partition_point(|&u| u < a);
                for &uid in present[start..].iter().take_while(|&&u| u <= b) {
                    if u64::from(uid) > next {
                        answer.push((next as u32, uid - 1));
                    }
                    next = u64::from(uid) + 1;
                }
                if next <= u64::from(b) {
                    answer.push((next as u32, b));
                }
            }
        }
    }
    merge_ranges(answer)
}

fn split_flags(flags: &[Flag]) -> (Flags, Vec<String>) {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for flag in flags {
        match flag {
            Flag::Seen => bits |= Flags::SEEN,
            Flag::Answered => bits |= Flags::ANSWERED,
            Flag::Flagged => bits |= Flags::FLAGGED,
            Flag::Deleted => bits |= Flags::DELETED,
            Flag::Draft => bits |= Flags::DRAFT,
            Flag::Recent => {}
            Flag::Keyword(k) => keywords.push(k.clone()),
        }
    }
    keywords.sort();
    keywords.dedup();
    (Flags(bits), keywords)
}

/// Runs FETCH over the picked messages, a batch per blocking task, writing as it goes.
/// Returns how many picked messages were already expunged and so not answered.
async fn run_fetch(
    store: &Arc<dyn MailAccess>,
    server: &ImapServer,
    view: &mut Selected,
    wire: &mut Wire,
    picked: &[usize],
    items: &[FetchItem],
    uid: bool,
) -> Result<usize, No> {
    let mut seen_changed = std::collections::HashSet::new();
    if fetch::sets_seen(items) && !view.read_only && server.gate.disk().accepts_writes() {
        let unseen: Vec<u32> = picked
            .iter()
            .map(|&i| &view.messages[i])
            .filter(|e| !e.expunged && e.meta.flags.0 & Flags::SEEN == 0)
            .map(|e| e.meta.uid)
            .collect();
        if !unseen.is_empty() {
            let mailbox = view.info.id;
            let states = blocking(store, move |s| {
                s.update_flags(mailbox, &unseen, FlagOp::Add, Flags(Flags::SEEN), &[])
            })
            .await?;
            for state in states {
                if let Some(entry) = view.messages.iter_mut().find(|e| e.meta.uid == state.uid) {
                    entry.meta.flags = state.flags;
                    entry.meta.keywords = state.keywords;
                    entry.meta.modseq = state.modseq;
                    seen_changed.insert(state.uid);
                }
            }
        }
    }
    let needs_body = fetch::needs_body(items);
    let targets: Vec<Target> = picked
        .iter()
        .filter(|&&i| !view.messages[i].expunged)
        .map(|&i| {
            let meta = view.messages[i].meta.clone();
            Target {
                seq: i as u32 + 1,
                recent: view.is_recent(meta.uid),
                flags_changed: seen_changed.contains(&meta.uid),
                meta,
            }
        })
        .collect();
    let missing = picked.len() - targets.len();
    let items: Arc<[FetchItem]> = items.into();
    let mut unreadable = Vec::new();
    let mut binary_failed = None;
    let mut pending = targets.into_iter().peekable();
    while pending.peek().is_some() {
        // A batch ends at BATCH messages or BATCH_BYTES of them, whichever comes first, so
        // the buffer stays small enough for the allocator to reuse rather than map anew.
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(target) = pending.next_if(|t| {
            batch.is_empty() || (batch.len() < BATCH && bytes + t.meta.size <= BATCH_BYTES)
        }) {
            bytes += target.meta.size;
            batch.push(target);
        }
        let items = items.clone();
        // The responses are written straight into the connection's output buffer, which
        // travels to the blocking thread and back: no copy, no fresh buffer per batch.
        let out = std::mem::take(&mut wire.output);
        let (out, failed, binary) = blocking(store, move |s| {
            let mut out = out;
            out.reserve(bytes as usize + batch.len() * 128);
            let mut failed = Vec::new();
            let mut binary = None;
            for target in &batch {
                let raw = if needs_body {
                    match s.read_blob(&target.meta.blob) {
                        Ok(raw) => Some(raw),
                        Err(e) => {
                            failed.push((target.meta.uid, e));
                            continue;
                        }
                    }
                } else {
                    None
                };
                if let Some(failure) =
                    fetch::fetch_one(target, &items, uid, raw.as_deref(), &mut out)
                {
                    binary = Some(failure);
                }
            }
            Ok((out, failed, binary))
        })
        .await?;
        wire.output = out;
        binary_failed = binary_failed.or(binary);
        unreadable.extend(failed);
        if wire.output.len() >= FLUSH_AT {
            wire.flush()
                .await
                .map_err(|e| No::new("UNAVAILABLE", e.to_string()))?;
            // One very large message must not pin its size for the rest of the session.
            if wire.output.capacity() > 4 * FLUSH_AT {
                wire.output.shrink_to(FLUSH_AT);
            }
        }
    }
    let expunged = if unreadable.is_empty() {
        0
    } else {
        vanished_or_damaged(store, view.info.id, unreadable).await?
    };
    match binary_failed {
        Some(imap_mime::BinaryError::UnknownEncoding(encoding)) => {
            return Err(No::new(
                "UNKNOWN-CTE",
                format!(
                    "cannot decode Content-Transfer-Encoding {encoding:?}; fetch BODY[] instead"
                ),
            ));
        }
        Some(imap_mime::BinaryError::Undecodable(encoding)) => {
            return Err(No::new(
                "PARSE",
                format!("a part's {encoding} does not decode; fetch BODY[] for it as sent"),
            ));
        }
        None => {}
    }
    Ok(missing + expunged)
}

/// Sorts the messages whose bodies could not be read. Another session (or the archive
/// run) may have expunged one this session still shows, and its body went with it: that
/// is RFC 2180's expunged message, counted and returned. One still stored is damage, the
/// error.
async fn vanished_or_damaged(
    store: &Arc<dyn MailAccess>,
    mailbox: store::MailboxId,
    unreadable: Vec<(u32, StoreError)>,
) -> Result<usize, No> {
    let present: std::collections::HashSet<u32> = blocking(store, move |s| s.messages(mailbox))
        .await?
        .iter()
        .map(|m| m.uid)
        .collect();
    let (damaged, expunged): (Vec<_>, Vec<_>) = unreadable
        .into_iter()
        .partition(|(uid, _)| present.contains(uid));
    for (uid, e) in &damaged {
        warn!(mailbox = mailbox.0, uid, error = %e, "cannot read a stored message");
    }
    if !damaged.is_empty() {
        return Err(No::new(
            "SERVERBUG",
            format!(
                "{} messages could not be read; the operator should run `tegami check`",
                damaged.len()
            ),
        ));
    }
    Ok(expunged.len())
}

/// Numbers (or UIDs) of the messages matching, ascending.
async fn run_search(
    store: &Arc<dyn MailAccess>,
    view: &Selected,
    criteria: &SearchKey,
    uid: bool,
) -> Result<Vec<u32>, No> {
    let bounds = Bounds {
        max_seq: view.exists(),
        max_uid: view.messages.last().map_or(0, |e| e.meta.uid),
    };
    let mut criteria = criteria.clone();
    search::prepare_sets(&mut criteria, bounds);
    let mailbox = view.info.id;
    // The full-text index narrows the messages to read; each one it names is still
    // verified below, and a failing index only means a full scan. It is asked first, so
    // that only the messages it names are copied out of the view: copying all of them took
    // 10 ms of a search in 100,000 messages that the index answers in under 2.
    let narrowed = match search::text_query(&criteria) {
        Some(query) => {
            blocking(store, move |s| match s.text_candidates(mailbox, &query) {
                Ok(found) => Ok(found),
                Err(e) => {
                    warn!(error = %e, "full-text index unusable; scanning");
                    Ok(None)
                }
            })
            .await?
        }
        None => None,
    };
    let candidates: Vec<(u32, store::MessageMeta, bool)> = view
        .messages
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            !e.expunged
                && narrowed
                    .as_ref()
                    .is_none_or(|n| n.may_match(e.meta.uid, &e.meta.blob))
        })
        .map(|(i, e)| (i as u32 + 1, e.meta.clone(), view.is_recent(e.meta.uid)))
        .collect();
    blocking(store, move |s| {
        let needs_body = search::needs_body(&criteria);
        let mut found = Vec::new();
        for (seq, meta, recent) in &candidates {
            let candidate = Candidate {
                seq: *seq,
                meta,
                recent: *recent,
            };
            let hit = if needs_body {
                // An unreadable message cannot match a text key; FETCH reports it.
                let raw = s.read_blob(&meta.blob).ok();
                let parsed = raw.as_deref().map(imap_mime::Message::parse);
                search::matches(&criteria, &candidate, parsed.as_ref())
            } else {
                search::matches(&criteria, &candidate, None)
            };
            if hit {
                found.push(if uid { meta.uid } else { *seq });
            }
        }
        Ok(found)
    })
    .await
}

/// What `SEARCH RETURN (SAVE ...)` keeps for `$`, as UIDs (RFC 5182 §2.1): the minimum
/// and/or maximum when SAVE comes with MIN or MAX and neither ALL nor COUNT, else every
/// match. `found` holds numbers, or UIDs for UID SEARCH, ascending.
fn saved_uids(view: &Selected, ret: &SearchReturn, found: &[u32], uid: bool) -> Vec<u32> {
    let picked: Vec<u32> = match *ret {
        SearchReturn::Esearch {
            min,
            max,
            count: false,
            all: false,
            ..
        } if min || max => {
            let mut ends = Vec::new();
            ends.extend(found.first().filter(|_| min));
            ends.extend(found.last().filter(|_| max && (!min || found.len() > 1)));
            ends
        }
        _ => found.to_vec(),
    };
    if uid {
        return picked;
    }
    picked
        .iter()
        .filter_map(|&n| view.messages.get(n as usize - 1).map(|e| e.meta.uid))
        .collect()
}

/// Puts the saved search result where the command says `$` (RFC 5182): as UIDs where a
/// UID is meant, else as the numbers those messages have now.
fn put_saved(body: &mut CommandBody, view: &Selected) {
    let fill = |set: &mut SequenceSet, uid: bool| {
        if set.is_saved() {
            *set = view.saved_set(uid);
        }
    };
    match body {
        CommandBody::Fetch { uid, set, .. }
        | CommandBody::Store { uid, set, .. }
        | CommandBody::Copy { uid, set, .. }
        | CommandBody::Move { uid, set, .. } => fill(set, *uid),
        CommandBody::UidExpunge(set) => fill(set, true),
        CommandBody::Search { criteria, .. } => {
            let mut keys = vec![criteria];
            while let Some(key) = keys.pop() {
                match key {
                    SearchKey::SequenceSet(set) => fill(set, false),
                    SearchKey::Uid(set) => fill(set, true),
                    SearchKey::And(list) => keys.extend(list.iter_mut()),
                    SearchKey::Or(a, b) => keys.extend([&mut **a, &mut **b]),
                    SearchKey::Not(k) => keys.push(&mut **k),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn push_search(
    out: &mut Vec<u8>,
    tag: &str,
    uid: bool,
    ret: &SearchReturn,
    found: &[u32],
    modseq: Option<u64>,
) {
    match *ret {
        SearchReturn::Plain => response::search_modseq(out, found, modseq),
        // SAVE alone asks for nothing back (RFC 5182 §2.1).
        SearchReturn::Esearch {
            min: false,
            max: false,
            count: false,
            all: false,
            save: true,
        } => {}
        SearchReturn::Esearch {
            min,
            max,
            count,
            all,
            ..
        } => {
            // RETURN () means ALL (RFC 4731 §3.1).
            let all = all || !(min || max || count);
            let result = Esearch {
                min: found.first().copied().filter(|_| min),
                max: found.last().copied().filter(|_| max),
                count: count.then_some(found.len() as u32),
                all: all.then_some(found),
                modseq: modseq.filter(|_| !found.is_empty()),
            };
            response::esearch(out, tag, uid, &result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_proto::SeqNum;

    #[test]
    fn vanished_answers_from_memory_or_by_comparing_uids() {
        let info = MailboxInfo {
            id: store::MailboxId(1),
            account: AccountId(1),
            name: "INBOX".into(),
            uid_validity: 1,
            uid_next: 21,
            special_use: None,
            modseq: 9,
            read_only: false,
        };
        let meta = |uid: u32| store::MessageMeta {
            id: store::MessageId(uid.into()),
            uid,
            internal_date: 0,
            internal_zone: 0,
            modseq: 1,
            size: 1,
            flags: Flags::default(),
            keywords: Vec::new(),
            blob: store::BlobId([0; 32]),
        };
        let (_, rx) = tokio::sync::watch::channel(0);
        let view = Selected::new(info, false, [2, 5, 6, 20].map(meta).to_vec(), None, rx);
        let v = |n| SeqNum::Value(n);
        let known = set_ranges(&SequenceSet(vec![(v(9), v(1)), (v(15), SeqNum::Star)]), 20);
        assert_eq!(known, [(1, 9), (15, 20)]);
        assert!(in_ranges(&known, 9) && in_ranges(&known, 15) && !in_ranges(&known, 12));
        // Remembered expunges, cut to what the client knows.
        assert_eq!(
            vanished_answer(&view, Some(vec![(3, 4), (7, 16)]), Some(&known), 20),
            [(3, 4), (7, 9), (15, 16)]
        );
        // Forgotten: every UID the client knows that is not here.
        assert_eq!(
            vanished_answer(&view, None, Some(&known), 20),
            [(1, 1), (3, 4), (7, 9), (15, 19)]
        );
        assert_eq!(
            vanished_answer(&view, None, None, 20),
            [(1, 1), (3, 4), (7, 19)]
        );
        assert_eq!(vanished_answer(&view, None, None, 0), []);
    }
}

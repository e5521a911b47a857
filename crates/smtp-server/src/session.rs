//! One SMTP session: reads commands, answers them, and hands complete messages to the store.
//!
//! Replies to pipelined commands are collected and written together when the client's
//! input runs dry, so a pipelining client costs one write per batch, not one per command.
//! The reply 250 to DATA is written only after the store says the message is on disk.
//!
//! The same session serves the MX listener (mail for local domains from anyone) and the
//! submission listener (`SmtpConfig::submission`: clients log in with AUTH, may send only as
//! their own addresses, and may relay).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gate::Gate;
use std::net::SocketAddr;

use net::{Admission, Connection, Read, Shutdown, Wire};
use smtp_proto::{
    Command, CommandError, CommandReader, DataDecoder, DataOutcome, EnhancedCode, ForwardPath,
    PathRole, ReadError, Reply, ReversePath,
};
use store::{AccountId, Outbound, Resolution, Room, Store, StoreError};
use tracing::{Instrument, debug, info, warn};

use crate::sasl::{self, SaslError};
use crate::trace::Trace;
use crate::{SmtpConfig, inbound};

const READ_CHUNK: usize = 64 * 1024;

fn reply(code: u16, enhanced: (u8, u16, u16), text: &str) -> Reply {
    Reply::new(
        code,
        Some(EnhancedCode(enhanced.0, enhanced.1, enhanced.2)),
        text,
    )
}

/// The envelope being built between MAIL and the end of DATA.
/// The reply for a recipient whose mailbox (or one behind its alias) has no room for the
/// declared size: 452 4.2.2 while it may yet have room (the sender retries), 552 5.2.2 when
/// the message alone is bigger than the limit (RFC 3463).
fn quota_refusal(address: &str, room: Room, declared: u64) -> Reply {
    if room == Room::TooLarge {
        info!(recipient = %address, size = declared, "message larger than the recipient's quota refused");
        reply(
            552,
            (5, 2, 2),
            &format!("Message too large for the storage quota of <{address}>"),
        )
    } else {
        info!(recipient = %address, "recipient over its storage quota; deferred");
        reply(
            452,
            (4, 2, 2),
            &format!("Mailbox <{address}> is full, try again later"),
        )
    }
}

struct Envelope {
    from: ReversePath,
    smtputf8: bool,
    recipients: Vec<String>,
    accounts: Vec<AccountId>,
    /// Recipients outside our domains, for the outbound queue: forward targets of local
    /// aliases, and on submission any remote address.
    remote: Vec<String>,
    /// On submission, the addresses the logged-in account may send as (lower case), for
    /// the check of the From header after DATA.
    senders: Vec<String>,
    /// Recipients the bounce sink claimed.
    bounces: Vec<String>,
    /// Free space claimed for the size the client declared (SIZE=), held until the
    /// message is stored or dropped.
    room: Option<gate::Reservation>,
    /// The size the client declared (SIZE=), 0 when it did not: what each local
    /// recipient's quota must have room for at RCPT.
    declared: u64,
}

/// The account a submission client logged in as.
struct Login {
    account: AccountId,
    name: String,
}

struct Session {
    config: Arc<SmtpConfig>,
    store: Arc<dyn Store>,
    gate: Arc<Gate>,
    wire: Wire,
    peer: SocketAddr,
    shutdown: Shutdown,
    reader: CommandReader,
    /// The name the client gave in EHLO/HELO, and whether it spoke ESMTP.
    helo: Option<(String, bool)>,
    envelope: Option<Envelope>,
    login: Option<Login>,
    errors: usize,
    admission: Admission,
    /// When the session began: the first command (on submission: the login) is due
    /// within `login_timeout` of it.
    connected: Instant,
    /// Whether a command has come yet.
    spoke: bool,
    /// When the first byte of the command line still incomplete arrived.
    line_started: Option<Instant>,
}

enum Flow {
    Continue,
    Close,
}

#[derive(Clone, Copy)]
enum Phase {
    Commands,
    /// Inside DATA, with the message's deadline.
    Data(Instant),
}

/// Runs a session to its end. Errors end only this connection.
pub async fn run(
    conn: Connection,
    config: Arc<SmtpConfig>,
    store: Arc<dyn Store>,
    gate: Arc<Gate>,
) {
    let _counted = crate::SESSIONS.enter();
    let span = match config.submission {
        Some(_) => tracing::info_span!("submission", peer = %conn.peer),
        None => tracing::info_span!("smtp", peer = %conn.peer),
    };
    async move {
        debug!("connected");
        let mut session = Session {
            reader: CommandReader::new(config.max_line_length),
            config,
            store,
            gate,
            wire: Wire::new(conn.stream),
            peer: conn.peer,
            shutdown: conn.shutdown,
            helo: None,
            envelope: None,
            login: None,
            errors: 0,
            admission: conn.admission,
            connected: Instant::now(),
            spoke: false,
            line_started: None,
        };
        if let Err(e) = session.serve().await {
            debug!(error = %e, "connection ended with an error");
        }
        debug!("disconnected");
    }
    .instrument(span)
    .await
}

impl Session {
    async fn serve(&mut self) -> std::io::Result<()> {
        if let Some(closed) = self.closed_for_maintenance() {
            self.send(closed);
            return self.wire.flush().await;
        }
        let greeting = reply(
            220,
            (2, 0, 0),
            &format!("{} ESMTP tegami ready", self.config.hostname),
        );
        self.send(greeting);
        loop {
            let command = match self.reader.parse(&mut self.wire.input) {
                Ok(command) => {
                    self.line_started = None;
                    self.spoke = true;
                    command
                }
                Err(ReadError::NeedMore) => {
                    self.wire.flush().await?;
                    if self.shutdown.is_shutting_down() {
                        self.send(reply(
                            421,
                            (4, 3, 2),
                            "Server shutting down, try again later",
                        ));
                        return self.wire.flush().await;
                    }
                    if let Some(closed) = self.closed_for_maintenance() {
                        self.send(closed);
                        return self.wire.flush().await;
                    }
                    if !self.read_more(Phase::Commands).await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => {
                    if let Some(r) = e.reply() {
                        self.send(r);
                    }
                    if let Flow::Close = self.error() {
                        return self.wire.flush().await;
                    }
                    continue;
                }
            };
            if let Flow::Close = self.handle(command).await? {
                return self.wire.flush().await;
            }
        }
    }

    /// Reads more input; false when the client closed the connection or was too slow.
    /// Between commands (`phase` is `Commands`) a shutdown or the start of maintenance wakes
    /// it at once, so the session can say goodbye; inside DATA the message may finish.
    async fn read_more(&mut self, phase: Phase) -> std::io::Result<bool> {
        let now = Instant::now();
        let timeout = match phase {
            Phase::Commands => self.command_wait(now),
            Phase::Data(deadline) => {
                net::pace::next_wait(self.config.data_timeout, Some(deadline), now)
            }
        };
        let mut shutdown = self.shutdown.clone();
        let gate = self.gate.clone();
        let wake = async move {
            match phase {
                Phase::Commands => tokio::select! {
                    _ = shutdown.requested() => {}
                    _ = gate.maintenance_started() => {}
                },
                Phase::Data(_) => std::future::pending().await,
            }
        };
        match self.wire.read_more(READ_CHUNK, timeout, wake).await? {
            Read::Data | Read::Woken => Ok(true),
            Read::Closed => Ok(false),
            Read::TimedOut => {
                self.send(reply(
                    421,
                    (4, 4, 2),
                    "Timeout exceeded, closing connection",
                ));
                self.wire.flush().await?;
                Ok(false)
            }
        }
    }

    /// How long to wait for command input: the command timeout, or before the first command
    /// (on submission, before login) what is left of the login timeout; and a line under
    /// way must arrive whole within the shorter of the two (a byte a second does not keep
    /// it open).
    fn command_wait(&mut self, now: Instant) -> Duration {
        let config = &self.config;
        let before_login = match config.submission {
            Some(_) => self.login.is_none(),
            None => !self.spoke,
        };
        let idle = if before_login {
            config
                .command_timeout
                .min((self.connected + config.login_timeout).saturating_duration_since(now))
        } else {
            config.command_timeout
        };
        let line = net::pace::line_deadline(
            &mut self.line_started,
            self.wire.input.len(),
            config.command_timeout.min(config.login_timeout),
            now,
        );
        net::pace::next_wait(idle, line, now)
    }

    /// Claims free space for a message of `size` bytes; the 452 that defers it when the
    /// volume has no room above the hard floor for it and every message being written.
    fn reserve(&self, size: u64) -> Result<gate::Reservation, Reply> {
        self.gate.reserve(size).map_err(|e| {
            info!(size, reason = %e, "message deferred: no room reserved for it");
            reply(
                452,
                (4, 3, 1),
                "Insufficient system storage, try again later",
            )
        })
    }

    /// The reply that turns a client away while maintenance is in force: 421 defers the mail,
    /// so the sending server retries later and nothing bounces.
    fn closed_for_maintenance(&self) -> Option<Reply> {
        let maintenance = self.gate.maintenance()?;
        let text = format!("{} {}", self.config.hostname, maintenance.reply_text());
        Some(reply(421, (4, 3, 2), &text))
    }

    /// Deferral while the disk guard holds back new mail; `None` when there is room.
    fn no_room(&self) -> Option<Reply> {
        (!self.gate.disk().accepts_mail()).then(|| {
            reply(
                452,
                (4, 3, 1),
                "Insufficient system storage, try again later",
            )
        })
    }

    fn send(&mut self, reply: Reply) {
        crate::REJECTS.count(&reply);
        reply.write_to(&mut self.wire.output);
    }

    /// Counts a protocol error; a client that keeps erring is cut off.
    fn error(&mut self) -> Flow {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            warn!(errors = self.errors, "too many protocol errors; closing");
            self.send(reply(421, (4, 7, 0), "Too many errors, closing connection"));
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn handle(&mut self, command: Command) -> std::io::Result<Flow> {
        match command {
            Command::Ehlo { domain } => self.hello(domain, true),
            Command::Helo { domain } => self.hello(domain, false),
            Command::Mail { from, params } => {
                if self.helo.is_none() {
                    self.send(reply(503, (5, 5, 1), "Send EHLO or HELO first"));
                    return Ok(self.error());
                }
                if self.envelope.is_some() {
                    self.send(reply(
                        503,
                        (5, 5, 1),
                        "Sender already given; RSET to start over",
                    ));
                    return Ok(self.error());
                }
                if self.config.submission.is_some() && self.login.is_none() {
                    self.send(reply(530, (5, 7, 0), "Authentication required"));
                    return Ok(Flow::Continue);
                }
                if let Some(deferred) = self.no_room() {
                    self.send(deferred);
                    return Ok(Flow::Continue);
                }
                if let Some(size) = params.size
                    && size > self.config.max_message_size
                {
                    let text = format!(
                        "Message size exceeds the limit of {} bytes",
                        self.config.max_message_size
                    );
                    self.send(reply(552, (5, 3, 4), &text));
                    return Ok(Flow::Continue);
                }
                let room = match params.size.map(|size| self.reserve(size)) {
                    None => None,
                    Some(Ok(room)) => Some(room),
                    Some(Err(deferred)) => {
                        self.send(deferred);
                        return Ok(Flow::Continue);
                    }
                };
                let senders = match self.submission_sender(&from).await {
                    Ok(senders) => senders,
                    Err(refused) => {
                        self.send(refused);
                        return Ok(Flow::Continue);
                    }
                };
                self.envelope = Some(Envelope {
                    from,
                    smtputf8: params.smtputf8,
                    recipients: Vec::new(),
                    accounts: Vec::new(),
                    remote: Vec::new(),
                    senders,
                    bounces: Vec::new(),
                    room,
                    declared: params.size.unwrap_or(0),
                });
                self.send(reply(250, (2, 1, 0), "Sender OK"));
            }
            Command::Rcpt { to } => return self.recipient(to).await,
            Command::Data => return self.data().await,
            Command::Rset => {
                self.envelope = None;
                self.send(reply(250, (2, 0, 0), "Reset OK"));
            }
            Command::Noop => self.send(reply(250, (2, 0, 0), "OK")),
            Command::Quit => {
                self.send(reply(
                    221,
                    (2, 0, 0),
                    &format!("{} closing connection", self.config.hostname),
                ));
                return Ok(Flow::Close);
            }
            Command::Vrfy { .. } => self.send(reply(
                252,
                (2, 5, 0),
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn { .. } => self.send(reply(502, (5, 5, 1), "EXPN is not available")),
            Command::Help { .. } => self.send(Reply::multiline(
                214,
                Some(EnhancedCode(2, 0, 0)),
                vec![
                    "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS"
                        .to_string(),
                    "See RFC 5321 for details".to_string(),
                ],
            )),
            Command::StartTls => return self.start_tls().await,
            Command::Auth {
                mechanism,
                initial_response,
            } if self.config.submission.is_some() => {
                return self.auth(&mechanism, initial_response).await;
            }
            Command::Auth { .. } => {
                self.send(reply(
                    502,
                    (5, 5, 1),
                    "AUTH is offered on the submission port only",
                ));
                return Ok(self.error());
            }
            // Commands added to the parser later are refused until a session handles them.
            #[allow(unreachable_patterns)]
            _ => {
                self.send(reply(502, (5, 5, 1), "Command not implemented"));
                return Ok(self.error());
            }
        }
        Ok(Flow::Continue)
    }

    fn hello(&mut self, domain: String, esmtp: bool) {
        self.envelope = None;
        if !esmtp {
            let text = format!("{} greets {domain}", self.config.hostname);
            self.helo = Some((domain, false));
            self.send(reply(250, (2, 0, 0), &text));
            return;
        }
        let mut lines = vec![format!("{} greets {domain}", self.config.hostname)];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.config.max_message_size));
        lines.push("8BITMIME".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("SMTPUTF8".into());
        if self.config.tls.is_some() && !self.wire.stream.is_tls() {
            lines.push("STARTTLS".into());
        }
        if self.config.submission.is_some() && self.auth_allowed() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("HELP".into());
        self.helo = Some((domain, true));
        // The EHLO reply carries no enhanced code: it lists keywords, not a status.
        self.send(Reply::multiline(250, None, lines));
    }

    async fn recipient(&mut self, to: ForwardPath) -> std::io::Result<Flow> {
        let Some(envelope) = &self.envelope else {
            self.send(reply(503, (5, 5, 1), "Send MAIL first"));
            return Ok(self.error());
        };
        if envelope.recipients.len() >= self.config.max_recipients {
            self.send(reply(452, (4, 5, 3), "Too many recipients"));
            return Ok(Flow::Continue);
        }
        if !envelope.smtputf8 && !to.is_ascii() {
            self.send(CommandError::NonAsciiAddress(PathRole::Recipient).reply());
            return Ok(self.error());
        }
        let address = match &to {
            ForwardPath::Path(address) => address.to_string(),
            ForwardPath::Postmaster => match self.postmaster().await {
                Some(address) => address,
                None => {
                    self.send(reply(550, (5, 1, 1), "No postmaster here"));
                    return Ok(Flow::Continue);
                }
            },
        };
        if let Some(sink) = &self.config.bounces
            && self.login.is_none()
            && sink.claims(&address)
        {
            let envelope = self.envelope.as_mut().expect("checked above");
            envelope.recipients.push(address.clone());
            envelope.bounces.push(address);
            self.send(reply(250, (2, 1, 5), "Recipient OK"));
            return Ok(Flow::Continue);
        }
        let store = self.store.clone();
        let lookup = address.clone();
        let declared = self.envelope.as_ref().map_or(0, |e| e.declared);
        let resolution = tokio::task::spawn_blocking(move || {
            let resolution = store.resolve(&lookup)?;
            // The local accounts' room for the declared size, in the same trip. A failed
            // look lets the recipient in: the store checks again as it writes.
            let room = match &resolution {
                Resolution::Local(accounts) | Resolution::Forward { accounts, .. } => store
                    .quota_room(accounts, declared)
                    .ok()
                    .flatten()
                    .map(|(_, room)| room),
                _ => None,
            };
            Ok::<_, StoreError>((resolution, room))
        })
        .await;
        let relay = self.login.is_some();
        match resolution {
            Ok(Ok((_, Some(room)))) => self.send(quota_refusal(&address, room, declared)),
            Ok(Ok((Resolution::Local(accounts), None))) => {
                self.add_recipient(address, accounts, Vec::new());
                self.send(reply(250, (2, 1, 5), "Recipient OK"));
            }
            // An alias forwarding elsewhere: the remote targets go through the queue with
            // the original envelope sender (no SRS), on either listener.
            Ok(Ok((Resolution::Forward { accounts, remote }, None))) => {
                self.add_recipient(address, accounts, remote);
                self.send(reply(250, (2, 1, 5), "Recipient OK"));
            }
            Ok(Ok((Resolution::NotLocal, _))) if relay => {
                let remote = vec![address.clone()];
                self.add_recipient(address, Vec::new(), remote);
                self.send(reply(250, (2, 1, 5), "Recipient OK; will relay"));
            }
            Ok(Ok((Resolution::UnknownUser, _))) => {
                self.send(reply(
                    550,
                    (5, 1, 1),
                    &format!("No such user here: <{address}>"),
                ));
            }
            Ok(Ok((Resolution::NotLocal, _))) => {
                info!(recipient = %address, "relay attempt refused");
                self.send(reply(
                    550,
                    (5, 7, 1),
                    "Relaying denied: this server accepts mail only for its own domains",
                ));
            }
            Ok(Err(e)) => {
                warn!(error = %e, "recipient lookup failed");
                self.send(reply(
                    451,
                    (4, 3, 0),
                    "Temporary lookup failure, try again later",
                ));
            }
            Err(e) => {
                warn!(error = %e, "recipient lookup task failed");
                self.send(reply(
                    451,
                    (4, 3, 0),
                    "Temporary lookup failure, try again later",
                ));
            }
        }
        Ok(Flow::Continue)
    }

    /// RFC 5321 requires <Postmaster> without a domain to reach someone: the postmaster of
    /// the first local domain.
    async fn postmaster(&self) -> Option<String> {
        let store = self.store.clone();
        let domains = tokio::task::spawn_blocking(move || store.domains())
            .await
            .ok()?
            .ok()?;
        domains.first().map(|d| format!("postmaster@{d}"))
    }

    async fn data(&mut self) -> std::io::Result<Flow> {
        let ready = match &self.envelope {
            None => Err(reply(503, (5, 5, 1), "Send MAIL first")),
            Some(e) if e.recipients.is_empty() => Err(reply(554, (5, 5, 1), "No valid recipients")),
            Some(_) => Ok(()),
        };
        if let Err(r) = ready {
            self.send(r);
            return Ok(self.error());
        }
        if let Some(deferred) = self.no_room() {
            self.envelope = None;
            self.send(deferred);
            return Ok(Flow::Continue);
        }
        self.send(reply(
            354,
            (2, 0, 0),
            "Start mail input; end with <CRLF>.<CRLF>",
        ));
        self.wire.flush().await?;

        let mut decoder = DataDecoder::new(self.config.max_message_size);
        let mut content = Vec::new();
        let started = Instant::now();
        let mut received = 0;
        let outcome = loop {
            let before = self.wire.input.len();
            let decoded = decoder.decode(&mut self.wire.input, &mut content);
            received += before - self.wire.input.len();
            if let Some(outcome) = decoded {
                break outcome;
            }
            // The whole message is due by a deadline that grows with what has arrived, so
            // a sender trickling bytes cannot hold the session for ever.
            let deadline = net::pace::deadline(started, self.config.data_timeout, received);
            if !self.read_more(Phase::Data(deadline)).await? {
                // The client vanished or stalled mid-message: nothing was acknowledged.
                return Ok(Flow::Close);
            }
        };
        let mut envelope = self.envelope.take().expect("checked above");
        match outcome {
            DataOutcome::Complete => {}
            other => {
                if let Some(r) = other.reply() {
                    self.send(r);
                }
                return Ok(Flow::Continue);
            }
        }
        // The disk may have filled while the message was arriving.
        if let Some(deferred) = self.no_room() {
            self.send(deferred);
            return Ok(Flow::Continue);
        }
        // Room for what came (trace headers included), unless the declared size already
        // holds enough; held until the store has answered.
        let size = content.len() as u64 + 1024;
        if envelope
            .room
            .as_ref()
            .is_none_or(|r| r.bytes() < gate::room::cost(size))
        {
            envelope.room = None;
            match self.reserve(size) {
                Ok(room) => envelope.room = Some(room),
                Err(deferred) => {
                    self.send(deferred);
                    return Ok(Flow::Continue);
                }
            }
        }
        let r = self.deliver(envelope, content).await;
        self.send(r);
        Ok(Flow::Continue)
    }

    async fn deliver(&mut self, envelope: Envelope, content: Vec<u8>) -> Reply {
        let id = format!("{:016x}", rand::random::<u64>());
        let (helo, esmtp) = self.helo.clone().unwrap_or_default();
        let return_path = match &envelope.from {
            ReversePath::Null => String::new(),
            ReversePath::Path(address) => address.to_string(),
        };
        let mut added = Vec::new();
        let mut auth_results = None;
        if self.login.is_some() {
            match self.submitted_headers(&envelope, &content, &id) {
                Ok(headers) => added = headers,
                Err(refused) => return refused,
            }
        } else if let Some(checks) = self.inbound_checks() {
            let verdict = inbound::check(
                checks,
                &self.config.hostname,
                self.peer.ip(),
                &helo,
                &return_path,
                &content,
            )
            .await;
            if verdict.reject {
                info!(id, from = %return_path, "message refused by the sender domain's DMARC policy");
                return reply(
                    550,
                    (5, 7, 1),
                    "Message refused: it fails the DMARC policy of the sender's domain",
                );
            }
            auth_results = Some(verdict.header);
        }
        // RFC 3848: the A says the client authenticated, the S that it used TLS.
        let authenticated = if self.login.is_some() { "A" } else { "" };
        let protocol = match (envelope.smtputf8, esmtp, self.wire.stream.is_tls()) {
            (true, _, true) => "UTF8SMTPS",
            (true, _, false) => "UTF8SMTP",
            (false, true, true) => "ESMTPS",
            (false, true, false) => "ESMTP",
            (false, false, _) if self.login.is_some() => "ESMTP",
            (false, false, _) => "SMTP",
        };
        let protocol = format!("{protocol}{authenticated}");
        let mut message = Vec::with_capacity(content.len() + 512);
        Trace {
            return_path: &return_path,
            auth_results: auth_results.as_deref(),
            helo: &helo,
            peer: self.peer.ip(),
            hostname: &self.config.hostname,
            protocol: &protocol,
            id: &id,
            single_recipient: (envelope.recipients.len() == 1)
                .then(|| envelope.recipients[0].as_str()),
            date: jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC),
        }
        .write(&mut message);
        message.extend_from_slice(&added);
        message.extend_from_slice(&content);
        drop(content);

        let size = message.len();
        let message = match self.to_bounce_sink(&envelope.bounces, message).await {
            Ok(message) => message,
            Err(refused) => return refused,
        };
        if envelope.accounts.is_empty() && envelope.remote.is_empty() {
            info!(id, from = %return_path, bounces = envelope.bounces.len(), size, "message taken by the bounce handler");
            return reply(250, (2, 0, 0), &format!("Message accepted, id {id}"));
        }
        let store = self.store.clone();
        let accounts = envelope.accounts;
        let outbound = (!envelope.remote.is_empty()).then(|| Outbound {
            sender: return_path.clone(),
            recipients: envelope.remote,
            account: self.login.as_ref().map(|l| l.account),
        });
        let stored = tokio::task::spawn_blocking(move || match outbound {
            // Mail for local accounts only takes the plain delivery path.
            None => store.deliver(&message, &accounts).map(|d| (d.len(), None)),
            Some(outbound) => store
                .accept(&message, &accounts, Some(&outbound))
                .map(|a| (a.delivered.len(), a.queued)),
        })
        .await;
        match stored {
            Ok(Ok((delivered, queued))) => {
                info!(id, from = %return_path, recipients = delivered, queued = ?queued, size, "message stored");
                if queued.is_some()
                    && let Some(queue) = &self.config.queue
                {
                    queue.notify_one();
                }
                reply(250, (2, 0, 0), &format!("Message accepted, id {id}"))
            }
            // A recipient filled up between RCPT and the end of DATA: nothing was stored.
            Ok(Err(StoreError::OverQuota { address, .. })) => {
                info!(id, recipient = %address, "message deferred: a recipient is over its storage quota");
                reply(
                    452,
                    (4, 2, 2),
                    &format!("Mailbox <{address}> is full, try again later"),
                )
            }
            Ok(Err(e)) => {
                warn!(id, error = %e, "could not store message");
                reply(
                    451,
                    (4, 3, 0),
                    "Could not store the message, try again later",
                )
            }
            Err(e) => {
                warn!(id, error = %e, "delivery task failed");
                reply(
                    451,
                    (4, 3, 0),
                    "Could not store the message, try again later",
                )
            }
        }
    }

    /// Hands the message to the bounce sink once per claimed recipient, on a blocking
    /// thread; gives the message back for the other recipients.
    async fn to_bounce_sink(&self, claimed: &[String], message: Vec<u8>) -> Result<Vec<u8>, Reply> {
        let Some(sink) = self.config.bounces.clone() else {
            return Ok(message);
        };
        if claimed.is_empty() {
            return Ok(message);
        }
        let claimed = claimed.to_vec();
        let taken = tokio::task::spawn_blocking(move || {
            for recipient in &claimed {
                sink.accept(recipient, &message)?;
            }
            Ok::<_, String>(message)
        })
        .await;
        match taken {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(e)) => {
                warn!(error = %e, "the bounce handler could not take a message");
                Err(reply(
                    451,
                    (4, 3, 0),
                    "Could not store the message, try again later",
                ))
            }
            Err(e) => {
                warn!(error = %e, "bounce handler task failed");
                Err(reply(
                    451,
                    (4, 3, 0),
                    "Could not store the message, try again later",
                ))
            }
        }
    }

    /// The checks to run on this session's mail: on the MX listener, for peers that are
    /// other servers.
    fn inbound_checks(&self) -> Option<&crate::InboundChecks> {
        let checks = self.config.inbound.as_ref()?;
        (self.config.submission.is_none()
            && (checks.check_loopback || !self.peer.ip().is_loopback()))
        .then_some(checks)
    }

    /// Checks a submitted message's From header against the logged-in account and returns
    /// the headers a submission server adds (RFC 6409 section 8): Message-ID and Date when
    /// missing, and From (the envelope sender) when the client left it out.
    fn submitted_headers(
        &self,
        envelope: &Envelope,
        content: &[u8],
        id: &str,
    ) -> Result<Vec<u8>, Reply> {
        let parsed = mail_auth::AuthenticatedMessage::parse(content);
        let has_from = parsed.as_ref().is_some_and(|m| {
            m.raw_parsed_headers()
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(b"From"))
        });
        let froms = parsed.as_ref().map(|m| m.froms()).unwrap_or_default();
        if has_from && froms.is_empty() {
            return Err(reply(
                550,
                (5, 7, 1),
                "The From header names no address this account may send as",
            ));
        }
        if let Some(stranger) = froms
            .iter()
            .find(|address| !may_send_as(&envelope.senders, address))
        {
            info!(from = %stranger, "From header refused: not the account's address");
            return Err(reply(
                550,
                (5, 7, 1),
                &format!("This account may not send as <{stranger}> (From header)"),
            ));
        }
        let mut added = Vec::new();
        if !has_from && let ReversePath::Path(address) = &envelope.from {
            added.extend_from_slice(format!("From: <{address}>\r\n").as_bytes());
        }
        if !parsed.as_ref().is_some_and(|m| m.has_date_header()) {
            let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
            if let Ok(date) = jiff::fmt::rfc2822::to_string(&now) {
                added.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
            }
        }
        if !parsed.as_ref().is_some_and(|m| m.has_message_id_header()) {
            added.extend_from_slice(
                format!("Message-ID: <{id}@{}>\r\n", self.config.hostname).as_bytes(),
            );
        }
        Ok(added)
    }

    /// On submission, checks MAIL FROM against the addresses the account may send as and
    /// returns them; on the MX listener, accepts any sender.
    async fn submission_sender(&self, from: &ReversePath) -> Result<Vec<String>, Reply> {
        let Some(login) = &self.login else {
            return Ok(Vec::new());
        };
        let ReversePath::Path(address) = from else {
            return Err(reply(
                553,
                (5, 7, 1),
                "The null sender is not accepted for submission",
            ));
        };
        let store = self.store.clone();
        let account = login.account;
        let senders =
            match tokio::task::spawn_blocking(move || store.sender_addresses(account)).await {
                Ok(Ok(senders)) => senders,
                Ok(Err(e)) => {
                    warn!(error = %e, "sender address lookup failed");
                    return Err(reply(
                        451,
                        (4, 3, 0),
                        "Temporary lookup failure, try again later",
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "sender address lookup task failed");
                    return Err(reply(
                        451,
                        (4, 3, 0),
                        "Temporary lookup failure, try again later",
                    ));
                }
            };
        let address = address.to_string();
        if !may_send_as(&senders, &address) {
            info!(account = %login.name, from = %address, "envelope sender refused: not the account's address");
            return Err(reply(
                553,
                (5, 7, 1),
                &format!(
                    "Sender address <{address}> does not belong to {}",
                    login.name
                ),
            ));
        }
        Ok(senders)
    }

    fn add_recipient(&mut self, address: String, accounts: Vec<AccountId>, remote: Vec<String>) {
        let envelope = self.envelope.as_mut().expect("checked by the caller");
        envelope.recipients.push(address);
        for account in accounts {
            if !envelope.accounts.contains(&account) {
                envelope.accounts.push(account);
            }
        }
        for target in remote {
            if !envelope
                .remote
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&target))
            {
                envelope.remote.push(target);
            }
        }
    }

    /// Whether AUTH may be used now: inside TLS, from a loopback peer, or when the policy
    /// does not insist on TLS.
    fn auth_allowed(&self) -> bool {
        let require_tls = self.config.submission.is_some_and(|p| p.require_tls);
        !require_tls
            || self.wire.stream.is_tls()
            || (self.config.trust_loopback && self.peer.ip().to_canonical().is_loopback())
    }

    /// RFC 4954 AUTH with PLAIN or LOGIN, on the submission listener.
    async fn auth(
        &mut self,
        mechanism: &str,
        initial_response: Option<String>,
    ) -> std::io::Result<Flow> {
        if self.helo.is_none() {
            self.send(reply(503, (5, 5, 1), "Send EHLO first"));
            return Ok(self.error());
        }
        if self.login.is_some() {
            self.send(reply(503, (5, 5, 1), "Already authenticated"));
            return Ok(self.error());
        }
        if self.envelope.is_some() {
            self.send(reply(
                503,
                (5, 5, 1),
                "AUTH is not allowed during a mail transaction",
            ));
            return Ok(self.error());
        }
        if !self.auth_allowed() {
            self.send(reply(
                538,
                (5, 7, 11),
                "Encryption required for requested authentication mechanism",
            ));
            return Ok(Flow::Continue);
        }
        let credentials = match mechanism {
            "PLAIN" => {
                let response = match initial_response {
                    Some(response) => sasl::decode(&response),
                    None => match self.challenge("").await? {
                        Some(line) => sasl::decode(&line),
                        None => return Ok(Flow::Close),
                    },
                };
                response.and_then(|r| sasl::plain(&r))
            }
            "LOGIN" => {
                let user = match initial_response {
                    Some(response) => sasl::decode(&response),
                    None => match self.challenge(&sasl::encode("Username:")).await? {
                        Some(line) => sasl::decode(&line),
                        None => return Ok(Flow::Close),
                    },
                }
                .and_then(sasl::login_field);
                match user {
                    Ok(user) => match self.challenge(&sasl::encode("Password:")).await? {
                        Some(line) => sasl::decode(&line)
                            .and_then(sasl::login_field)
                            .map(|password| (user, password)),
                        None => return Ok(Flow::Close),
                    },
                    Err(e) => Err(e),
                }
            }
            _ => {
                self.send(reply(
                    504,
                    (5, 5, 4),
                    "Unrecognized authentication mechanism; use PLAIN or LOGIN",
                ));
                return Ok(self.error());
            }
        };
        let (user, password) = match credentials {
            Ok(credentials) => credentials,
            Err(SaslError::Cancelled) => {
                self.send(reply(501, (5, 0, 0), "Authentication cancelled"));
                return Ok(self.error());
            }
            Err(SaslError::Malformed) => {
                self.send(reply(501, (5, 5, 2), "Malformed authentication response"));
                return Ok(self.error());
            }
        };
        let store = self.store.clone();
        let name = user.clone();
        let throttle = self.config.throttle.clone();
        // Attempts from one address take turns, each failure's delay served before the next.
        let attempt = match &throttle {
            Some(throttle) => match throttle.attempt(self.peer.ip(), &user).await {
                Ok(attempt) => Some(attempt),
                Err(busy) => {
                    self.send(reply(421, (4, 7, 0), &format!("{busy}; closing")));
                    return Ok(Flow::Close);
                }
            },
            None => None,
        };
        let checked =
            tokio::task::spawn_blocking(move || store.authenticate(&name, &password)).await;
        match checked {
            Ok(Ok(Some(account))) => {
                if let Some(attempt) = attempt {
                    attempt.succeeded();
                }
                self.admission.logged_in();
                info!(account = %user, "authenticated");
                self.login = Some(Login {
                    account,
                    name: user,
                });
                self.send(reply(235, (2, 7, 0), "Authentication successful"));
                Ok(Flow::Continue)
            }
            Ok(Ok(None)) => {
                let delay = attempt
                    .as_ref()
                    .map(|a| a.record_failure())
                    .unwrap_or_default();
                info!(user = %user, delay_secs = delay.as_secs(), "failed login");
                // Whatever the client pipelined meanwhile waits; the delay is the point.
                self.wire.flush().await?;
                tokio::time::sleep(delay).await;
                drop(attempt);
                self.send(reply(535, (5, 7, 8), "Authentication credentials invalid"));
                Ok(self.error())
            }
            Ok(Err(e)) => {
                warn!(error = %e, "authentication lookup failed");
                self.send(reply(454, (4, 7, 0), "Temporary authentication failure"));
                Ok(Flow::Continue)
            }
            Err(e) => {
                warn!(error = %e, "authentication task failed");
                self.send(reply(454, (4, 7, 0), "Temporary authentication failure"));
                Ok(Flow::Continue)
            }
        }
    }

    /// Sends a `334` challenge and reads the client's one-line answer; `None` when the
    /// client went away or was too slow.
    async fn challenge(&mut self, text: &str) -> std::io::Result<Option<String>> {
        self.send(Reply::new(334, None, text));
        self.wire.flush().await?;
        loop {
            if let Some(end) = self.wire.input.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.wire.input.drain(..=end).collect();
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.wire.input.len() > self.config.max_line_length {
                self.wire.input.clear();
                // Too long for any credentials we accept; the answer is discarded.
                return Ok(Some(String::from("!")));
            }
            if !self.read_more(Phase::Commands).await? {
                return Ok(None);
            }
            if self.shutdown.is_shutting_down() {
                return Ok(None);
            }
        }
    }

    async fn start_tls(&mut self) -> std::io::Result<Flow> {
        let Some(tls) = self.config.tls.clone() else {
            self.send(reply(502, (5, 5, 1), "STARTTLS is not available"));
            return Ok(self.error());
        };
        if self.wire.stream.is_tls() {
            self.send(reply(503, (5, 5, 1), "TLS is already active"));
            return Ok(self.error());
        }
        self.send(reply(220, (2, 0, 0), "Ready to start TLS"));
        self.wire.flush().await?;
        // Anything pipelined behind STARTTLS was sent in plain text and must not be trusted
        // as if it came over TLS (the command injection of CVE-2011-0411).
        self.wire.input.clear();
        match self.wire.stream.start_tls(tls).await {
            Ok(()) => {
                self.helo = None;
                self.envelope = None;
                self.login = None;
                Ok(Flow::Continue)
            }
            Err(e) => {
                debug!(error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
        }
    }
}

/// Whether `address` is one of `senders` (lower case), or a subaddress `user+tag@domain`
/// of one.
fn may_send_as(senders: &[String], address: &str) -> bool {
    let address = address.to_lowercase();
    if senders.contains(&address) {
        return true;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    match local.split_once('+') {
        Some((user, _)) if !user.is_empty() => senders.contains(&format!("{user}@{domain}")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_and_subaddresses() {
        let senders = vec!["alice@x.test".to_string(), "sales@x.test".to_string()];
        let check = |address: &str, expect: bool| {
            assert_eq!(may_send_as(&senders, address), expect, "{address}");
        };
        check("alice@x.test", true);
        check("Alice@X.Test", true);
        check("alice+news@x.test", true);
        check("sales+2026@x.test", true);
        check("bob@x.test", false);
        check("alice@y.test", false);
        check("+alice@x.test", false);
        check("alice", false);
    }
}

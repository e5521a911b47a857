//! One POP3 session through its three states: AUTHORIZATION, TRANSACTION and UPDATE.
//!
//! Deletions are only marks until QUIT; then the UPDATE state removes them all in one
//! store transaction. A connection that drops without QUIT removes nothing.

use std::collections::VecDeque;
use std::sync::Arc;

use std::net::SocketAddr;
use std::time::Instant;

use net::{Admission, Connection, Read, Shutdown, Wire};
use pop3_proto::{Command, CommandReader, ReadError, ResponseCode};
use store::{AccountId, MailAccess, MailboxInfo, MessageMeta};
use tracing::{Instrument, debug, info, warn};

use crate::{MaildropLock, Pop3Server};

const READ_CHUNK: usize = 16 * 1024;

enum State {
    Authorization { user: Option<String> },
    Transaction(Maildrop),
}

/// The maildrop as it was when the session opened it, plus this session's deletion marks.
struct Maildrop {
    mailbox: MailboxInfo,
    messages: Vec<MessageMeta>,
    deleted: Vec<bool>,
    /// Messages read ahead of the client's RETR, by number: clients fetch in order, and one
    /// trip to a blocking thread for several messages costs less than one for each.
    read_ahead: VecDeque<(u32, Vec<u8>)>,
    _lock: MaildropLock,
}

/// Read-ahead stops after this many messages or bytes, whichever comes first.
const READ_AHEAD_MESSAGES: usize = 16;
const READ_AHEAD_BYTES: u64 = 256 * 1024;

impl Maildrop {
    /// The message numbered `n` (1-based) unless it does not exist or is marked deleted.
    fn get(&self, n: u32) -> Result<&MessageMeta, String> {
        let index = (n as usize)
            .checked_sub(1)
            .filter(|&i| i < self.messages.len());
        match index {
            None => Err(format!("no such message: {n}")),
            Some(i) if self.deleted[i] => Err(format!("message {n} is already deleted")),
            Some(i) => Ok(&self.messages[i]),
        }
    }

    fn live(&self) -> impl Iterator<Item = (u32, &MessageMeta)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
            .map(|(i, m)| (i as u32 + 1, m))
    }

    fn unique_id(&self, message: &MessageMeta) -> String {
        format!("{}.{}", self.mailbox.uid_validity, message.uid)
    }
}

struct Session {
    server: Arc<Pop3Server>,
    wire: Wire,
    peer: SocketAddr,
    shutdown: Shutdown,
    reader: CommandReader,
    state: State,
    errors: usize,
    admission: Admission,
    /// When the session began: it must log in within `login_timeout` of it.
    connected: Instant,
    /// When the first byte of the command line still incomplete arrived.
    line_started: Option<Instant>,
}

enum Flow {
    Continue,
    Close,
}

pub async fn run(conn: Connection, server: Arc<Pop3Server>) {
    let _counted = crate::SESSIONS.enter();
    let span = tracing::info_span!("pop3", peer = %conn.peer);
    async move {
        debug!("connected");
        let mut session = Session {
            reader: CommandReader::new(server.config.max_line_length),
            server,
            wire: Wire::new(conn.stream),
            peer: conn.peer,
            shutdown: conn.shutdown,
            state: State::Authorization { user: None },
            errors: 0,
            admission: conn.admission,
            connected: Instant::now(),
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
    fn store(&self) -> Arc<dyn MailAccess> {
        self.server.store.clone()
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        if self.closed_for_maintenance() {
            return self.wire.flush().await;
        }
        pop3_proto::ok(
            &format!("{} POP3 server (tegami) ready", self.server.config.hostname),
            &mut self.wire.output,
        );
        loop {
            let command = match self.reader.parse(&mut self.wire.input) {
                Ok(command) => {
                    self.line_started = None;
                    command
                }
                Err(ReadError::NeedMore) => {
                    self.wire.flush().await?;
                    if self.shutdown.is_shutting_down() {
                        // Leaving without UPDATE keeps every message, as RFC 1939 prescribes
                        // for a session that ends without QUIT.
                        pop3_proto::err(
                            Some(ResponseCode::SysTemp),
                            "server shutting down, try again later",
                            &mut self.wire.output,
                        );
                        return self.wire.flush().await;
                    }
                    // Closing without UPDATE: deletions marked in this session are not applied.
                    if self.closed_for_maintenance() {
                        return self.wire.flush().await;
                    }
                    if !self.read_more().await? {
                        return Ok(());
                    }
                    continue;
                }
                Err(ReadError::LineTooLong) => {
                    pop3_proto::err(None, "line too long", &mut self.wire.output);
                    if let Flow::Close = self.error() {
                        return self.wire.flush().await;
                    }
                    continue;
                }
                Err(ReadError::Command(e)) => {
                    pop3_proto::err(None, &e.to_string(), &mut self.wire.output);
                    if let Flow::Close = self.error() {
                        return self.wire.flush().await;
                    }
                    continue;
                }
                #[allow(unreachable_patterns)]
                Err(_) => {
                    pop3_proto::err(None, "invalid command", &mut self.wire.output);
                    if let Flow::Close = self.error() {
                        return self.wire.flush().await;
                    }
                    continue;
                }
            };
            // Usage statistics, counted in memory by the store and flushed by the server.
            // Replies are written in one batch after the command, so the output's growth
            // is what the command sent.
            let started = std::time::Instant::now();
            let retr = matches!(command, Command::Retr(_));
            let before = self.wire.output.len();
            let account = match &self.state {
                State::Transaction(drop) => Some(drop.mailbox.account),
                State::Authorization { .. } => None,
            };
            let flow = self.handle(command).await?;
            if let Some(account) = account {
                let sent = self.wire.output.len().saturating_sub(before) as u64;
                let ok = self.wire.output.get(before..before + 3) == Some(b"+OK".as_slice());
                self.server.store.record_usage(
                    account,
                    store::Usage {
                        commands: 1,
                        busy_micros: started.elapsed().as_micros() as u64,
                        messages_out: u64::from(retr && ok),
                        bytes_out: sent,
                        ..store::Usage::default()
                    },
                );
            }
            if let Flow::Close = flow {
                return self.wire.flush().await;
            }
        }
    }

    async fn read_more(&mut self) -> std::io::Result<bool> {
        let mut shutdown = self.shutdown.clone();
        let server = self.server.clone();
        let wake = async move {
            tokio::select! {
                _ = shutdown.requested() => {}
                _ = server.gate.maintenance_started() => {}
            }
        };
        let timeout = self.next_wait();
        Ok(
            match self.wire.read_more(READ_CHUNK, timeout, wake).await? {
                Read::Data | Read::Woken => true,
                // A timeout is RFC 1939's autologout: close without entering UPDATE.
                Read::Closed | Read::TimedOut => false,
            },
        )
    }

    /// How long the next read may wait: the idle timeout (shorter before login, and ending
    /// at the login deadline), cut short by the deadline of a command line under way, so a
    /// client sending a byte now and then cannot keep a line open for ever.
    fn next_wait(&mut self) -> std::time::Duration {
        let config = &self.server.config;
        let now = Instant::now();
        let idle = match self.state {
            State::Authorization { .. } => config
                .command_timeout
                .min((self.connected + config.login_timeout).saturating_duration_since(now)),
            State::Transaction(_) => config.command_timeout,
        };
        let line = net::pace::line_deadline(
            &mut self.line_started,
            self.wire.input.len(),
            config.command_timeout.min(config.login_timeout),
            now,
        );
        net::pace::next_wait(idle, line, now)
    }

    /// Once TLS is available, passwords travel in clear only from a local peer or when the
    /// config allows it (RFC 2595 section 2.1). Without a certificate there is no other way.
    fn plaintext_refused(&self) -> bool {
        let config = &self.server.config;
        let local = config.trust_loopback && self.peer.ip().to_canonical().is_loopback();
        config.tls.is_some() && !config.allow_plaintext_auth && !self.wire.stream.is_tls() && !local
    }

    /// The refusal of a password sent in clear, with the way out.
    fn refuse_plaintext(&mut self) -> Flow {
        pop3_proto::err(
            Some(ResponseCode::Auth),
            "passwords are not accepted over an unencrypted connection; use STLS first (or POP3 over TLS)",
            &mut self.wire.output,
        );
        self.error()
    }

    /// Writes the maintenance reply and returns true when maintenance is in force.
    fn closed_for_maintenance(&mut self) -> bool {
        match self.server.gate.maintenance() {
            Some(maintenance) => {
                pop3_proto::err(
                    Some(ResponseCode::SysTemp),
                    &maintenance.reply_text(),
                    &mut self.wire.output,
                );
                true
            }
            None => false,
        }
    }

    fn error(&mut self) -> Flow {
        self.errors += 1;
        if self.errors >= self.server.config.max_errors {
            pop3_proto::err(
                None,
                "too many errors, closing connection",
                &mut self.wire.output,
            );
            return Flow::Close;
        }
        Flow::Continue
    }

    fn reject(&mut self, text: &str) -> Flow {
        pop3_proto::err(None, text, &mut self.wire.output);
        self.error()
    }

    async fn handle(&mut self, command: Command) -> std::io::Result<Flow> {
        let plaintext_refused = self.plaintext_refused();
        match (&mut self.state, command) {
            (_, Command::Capa) => {
                let in_auth = matches!(self.state, State::Authorization { .. });
                let stls =
                    in_auth && self.server.config.tls.is_some() && !self.wire.stream.is_tls();
                // RFC 2595: USER is not offered while it would be refused.
                let user = !(in_auth && plaintext_refused);
                let caps = pop3_proto::capabilities(stls, user, &[]);
                pop3_proto::multiline(
                    "Capability list follows",
                    caps.iter().map(String::as_str),
                    &mut self.wire.output,
                );
            }
            (_, Command::Noop) => pop3_proto::ok("", &mut self.wire.output),
            (State::Authorization { .. }, Command::Quit) => {
                pop3_proto::ok("tegami POP3 server signing off", &mut self.wire.output);
                return Ok(Flow::Close);
            }
            (State::Authorization { .. }, Command::User(_) | Command::Pass(_))
                if plaintext_refused =>
            {
                return Ok(self.refuse_plaintext());
            }
            (State::Authorization { user }, Command::User(name)) => {
                *user = Some(name);
                pop3_proto::ok("send PASS", &mut self.wire.output);
            }
            (State::Authorization { user }, Command::Pass(password)) => {
                let Some(name) = user.take() else {
                    return Ok(self.reject("send USER first"));
                };
                return self.login(name, password).await;
            }
            (State::Authorization { .. }, Command::Stls) => return self.start_tls().await,
            (State::Authorization { .. }, Command::Auth { .. }) => {
                return Ok(self.reject("SASL is not offered here; use USER and PASS"));
            }
            (State::Transaction(_), Command::Quit) => return self.update().await,
            (State::Transaction(drop), command) => {
                if let Some(flow) =
                    transaction(drop, command, &mut self.wire.output, &self.server).await
                {
                    return Ok(flow);
                }
            }
            (State::Authorization { .. }, _) => {
                return Ok(self.reject("not allowed before login (use USER and PASS)"));
            }
        }
        Ok(Flow::Continue)
    }

    async fn login(&mut self, name: String, password: String) -> std::io::Result<Flow> {
        let store = self.store();
        let who = name.clone();
        let server = self.server.clone();
        // Attempts from one address take turns, each failure's delay served before the next.
        let Ok(attempt) = server.throttle.attempt(self.peer.ip(), &name).await else {
            pop3_proto::err(
                Some(ResponseCode::SysTemp),
                "too many login attempts from your address are waiting; try again later",
                &mut self.wire.output,
            );
            return Ok(Flow::Close);
        };
        let checked =
            tokio::task::spawn_blocking(move || store.authenticate(&who, &password)).await;
        let account = match checked {
            Ok(Ok(Some(account))) => {
                attempt.succeeded();
                account
            }
            Ok(Ok(None)) => {
                let delay = attempt.record_failure();
                info!(user = %name, delay_secs = delay.as_secs(), "failed login");
                tokio::time::sleep(delay).await;
                drop(attempt);
                pop3_proto::err(
                    Some(ResponseCode::Auth),
                    "invalid user name or password",
                    &mut self.wire.output,
                );
                return Ok(self.error());
            }
            Ok(Err(e)) => {
                warn!(error = %e, "authentication failed with a store error");
                pop3_proto::err(
                    Some(ResponseCode::SysTemp),
                    "temporary failure, try again later",
                    &mut self.wire.output,
                );
                return Ok(Flow::Continue);
            }
            Err(e) => {
                warn!(error = %e, "authentication task failed");
                pop3_proto::err(
                    Some(ResponseCode::SysTemp),
                    "temporary failure, try again later",
                    &mut self.wire.output,
                );
                return Ok(Flow::Continue);
            }
        };
        let Some(lock) = self.server.lock_maildrop(account) else {
            pop3_proto::err(
                Some(ResponseCode::InUse),
                "maildrop already locked by another session",
                &mut self.wire.output,
            );
            return Ok(Flow::Continue);
        };
        match open_maildrop(self.store(), account).await {
            Ok((mailbox, messages)) => {
                let size: u64 = messages.iter().map(|m| m.size).sum();
                let text = format!("maildrop has {} messages ({size} octets)", messages.len());
                info!(user = %name, messages = messages.len(), "logged in");
                self.admission.logged_in();
                self.state = State::Transaction(Maildrop {
                    read_ahead: VecDeque::new(),
                    deleted: vec![false; messages.len()],
                    mailbox,
                    messages,
                    _lock: lock,
                });
                pop3_proto::ok(&text, &mut self.wire.output);
            }
            Err(e) => {
                warn!(error = %e, "cannot open maildrop");
                pop3_proto::err(
                    Some(ResponseCode::SysTemp),
                    "cannot open the maildrop, try again later",
                    &mut self.wire.output,
                );
            }
        }
        Ok(Flow::Continue)
    }

    /// The UPDATE state: every marked message goes in one atomic store transaction.
    async fn update(&mut self) -> std::io::Result<Flow> {
        let State::Transaction(drop) =
            std::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            unreachable!("update is only reached from the transaction state");
        };
        let doomed: Vec<_> = drop
            .messages
            .iter()
            .zip(&drop.deleted)
            .filter(|(_, d)| **d)
            .map(|(m, _)| m.id)
            .collect();
        let count = doomed.len();
        if count > 0 && !self.server.gate.disk().accepts_writes() {
            warn!(count, "disk space critical: deletions not committed");
            pop3_proto::err(
                Some(ResponseCode::SysTemp),
                "disk space is critically low; deletions were not committed, try again later",
                &mut self.wire.output,
            );
            return Ok(Flow::Close);
        }
        if count > 0 {
            let store = self.store();
            let mailbox = drop.mailbox.id;
            let removed =
                tokio::task::spawn_blocking(move || store.expunge(mailbox, &doomed)).await;
            if !matches!(removed, Ok(Ok(()))) {
                warn!(?removed, "could not remove deleted messages");
                pop3_proto::err(
                    Some(ResponseCode::SysTemp),
                    "some deleted messages not removed",
                    &mut self.wire.output,
                );
                return Ok(Flow::Close);
            }
        }
        pop3_proto::ok(
            &format!("tegami POP3 server signing off ({count} messages deleted)"),
            &mut self.wire.output,
        );
        Ok(Flow::Close)
    }

    async fn start_tls(&mut self) -> std::io::Result<Flow> {
        let Some(tls) = self.server.config.tls.clone() else {
            return Ok(self.reject("STLS is not available"));
        };
        if self.wire.stream.is_tls() {
            return Ok(self.reject("TLS is already active"));
        }
        pop3_proto::ok("Begin TLS negotiation", &mut self.wire.output);
        self.wire.flush().await?;
        // Commands pipelined behind STLS came in plain text and must not be obeyed.
        self.wire.input.clear();
        self.reader.reset();
        match self.wire.stream.start_tls(tls).await {
            Ok(()) => {
                self.state = State::Authorization { user: None };
                Ok(Flow::Continue)
            }
            Err(e) => {
                debug!(error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
        }
    }
}

async fn open_maildrop(
    store: Arc<dyn MailAccess>,
    account: AccountId,
) -> store::Result<(MailboxInfo, Vec<MessageMeta>)> {
    tokio::task::spawn_blocking(move || {
        let mailbox = store.mailbox(account, "INBOX")?;
        let messages = store.messages(mailbox.id)?;
        Ok((mailbox, messages))
    })
    .await
    .map_err(|_| store::StoreError::WriterGone)?
}

/// Message `n`'s bytes: from the read-ahead, or read on a blocking thread together with the
/// next few live messages.
async fn read_message(
    drop: &mut Maildrop,
    n: u32,
    server: &Arc<Pop3Server>,
) -> Result<store::Result<Vec<u8>>, tokio::task::JoinError> {
    while let Some((m, _)) = drop.read_ahead.front()
        && *m < n
    {
        drop.read_ahead.pop_front();
    }
    if let Some((m, _)) = drop.read_ahead.front()
        && *m == n
    {
        let (_, bytes) = drop.read_ahead.pop_front().expect("just looked");
        return Ok(Ok(bytes));
    }
    drop.read_ahead.clear();
    // This message, then the live ones after it while the budget lasts.
    let mut wanted = Vec::new();
    let mut bytes = 0;
    for (number, meta) in drop.live().skip_while(|(number, _)| *number < n) {
        if !wanted.is_empty()
            && (wanted.len() >= READ_AHEAD_MESSAGES || bytes + meta.size > READ_AHEAD_BYTES)
        {
            break;
        }
        bytes += meta.size;
        wanted.push((number, meta.blob));
    }
    let store = server.store.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut read = Vec::with_capacity(wanted.len());
        for (i, (number, blob)) in wanted.into_iter().enumerate() {
            match store.read_blob(&blob) {
                Ok(bytes) => read.push((number, bytes)),
                // The asked-for message's error is the answer; a later one is simply not
                // read ahead and gets its own try.
                Err(e) if i == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(read)
    })
    .await?;
    Ok(read.map(|read| {
        drop.read_ahead.extend(read);
        drop.read_ahead
            .pop_front()
            .expect("the asked-for message was read")
            .1
    }))
}

/// Commands of the TRANSACTION state. Returns a flow only when the session must change course.
async fn transaction(
    drop: &mut Maildrop,
    command: Command,
    out: &mut Vec<u8>,
    server: &Arc<Pop3Server>,
) -> Option<Flow> {
    match command {
        Command::Stat => {
            let (count, size) = drop
                .live()
                .fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size));
            pop3_proto::ok(&format!("{count} {size}"), out);
        }
        Command::List(None) => {
            let lines: Vec<String> = drop
                .live()
                .map(|(n, m)| format!("{n} {}", m.size))
                .collect();
            pop3_proto::multiline(
                "scan listing follows",
                lines.iter().map(String::as_str),
                out,
            );
        }
        Command::List(Some(n)) => match drop.get(n) {
            Ok(m) => pop3_proto::ok(&format!("{n} {}", m.size), out),
            Err(e) => pop3_proto::err(None, &e, out),
        },
        Command::Uidl(None) => {
            let lines: Vec<String> = drop
                .live()
                .map(|(n, m)| format!("{n} {}", drop.unique_id(m)))
                .collect();
            pop3_proto::multiline(
                "unique-id listing follows",
                lines.iter().map(String::as_str),
                out,
            );
        }
        Command::Uidl(Some(n)) => match drop.get(n) {
            Ok(m) => pop3_proto::ok(&format!("{n} {}", drop.unique_id(m)), out),
            Err(e) => pop3_proto::err(None, &e, out),
        },
        Command::Dele(n) => match drop.get(n) {
            Ok(_) => {
                drop.deleted[n as usize - 1] = true;
                pop3_proto::ok(&format!("message {n} deleted"), out);
            }
            Err(e) => pop3_proto::err(None, &e, out),
        },
        Command::Rset => {
            drop.deleted.iter_mut().for_each(|d| *d = false);
            pop3_proto::ok(
                &format!("maildrop has {} messages", drop.messages.len()),
                out,
            );
        }
        Command::Retr(n) | Command::Top { msg: n, .. } => {
            let top = match command {
                Command::Top { lines, .. } => Some(lines),
                _ => None,
            };
            let message = match drop.get(n) {
                Ok(m) => m.clone(),
                Err(e) => {
                    pop3_proto::err(None, &e, out);
                    return None;
                }
            };
            match read_message(drop, n, server).await {
                Ok(Ok(bytes)) => {
                    pop3_proto::ok(&format!("{} octets", message.size), out);
                    match top {
                        Some(lines) => pop3_proto::write_top(&bytes, lines, out),
                        None => pop3_proto::write_message(&bytes, out),
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, uid = message.uid, "cannot read message");
                    pop3_proto::err(
                        Some(ResponseCode::SysTemp),
                        "cannot read this message now",
                        out,
                    );
                }
                Err(e) => {
                    warn!(error = %e, "read task failed");
                    pop3_proto::err(
                        Some(ResponseCode::SysTemp),
                        "cannot read this message now",
                        out,
                    );
                }
            }
        }
        Command::User(_) | Command::Pass(_) | Command::Stls | Command::Auth { .. } => {
            pop3_proto::err(None, "already logged in", out);
        }
        _ => pop3_proto::err(None, "command not valid here", out),
    }
    None
}

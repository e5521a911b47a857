//! Submission and forwarding end to end: a real store in a temporary directory, a session
//! on a real loopback socket, and a raw client speaking SMTP to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::prelude::*;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use net::{Connection, ShutdownTrigger, Stream};
use smtp_server::{SmtpConfig, SubmissionPolicy};
use store::{AccountId, SqliteStore, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

struct Server {
    addr: SocketAddr,
    store: Arc<SqliteStore>,
    alice: AccountId,
    queue: Arc<Notify>,
    _trigger: ShutdownTrigger,
    _dir: tempfile::TempDir,
}

/// How the listener under test is set up.
#[derive(Clone, Copy)]
struct Setup {
    submission: Option<SubmissionPolicy>,
    /// The peer address the session is told about, instead of the real loopback one.
    peer: Option<&'static str>,
}

const SUBMISSION: Setup = Setup {
    submission: Some(SubmissionPolicy { require_tls: true }),
    peer: None,
};
const MX: Setup = Setup {
    submission: None,
    peer: None,
};

async fn start(setup: Setup) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    store.add_domain("x.test").unwrap();
    let alice = store.add_account("alice@x.test", "secret").unwrap();
    store.add_account("bob@x.test", "hunter2").unwrap();
    store
        .add_alias("sales@x.test", &["alice@x.test".to_string()])
        .unwrap();
    store
        .add_alias(
            "fwd@x.test",
            &["alice@x.test".to_string(), "far@remote.test".to_string()],
        )
        .unwrap();
    let queue = Arc::new(Notify::new());
    let mut config = SmtpConfig::new("mx.x.test");
    config.submission = setup.submission;
    config.throttle = Some(Arc::new(net::LoginThrottle::default()));
    config.queue = Some(queue.clone());
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let trigger = ShutdownTrigger::new();
    let shutdown = trigger.subscribe();
    let session_store: Arc<dyn Store> = store.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, real_peer)) = listener.accept().await else {
                return;
            };
            let peer = setup.peer.map_or(real_peer, |p| p.parse().unwrap());
            let conn = Connection {
                stream: Stream::Plain(tcp),
                peer,
                local: addr,
                shutdown: shutdown.clone(),
                admission: Default::default(),
            };
            tokio::spawn(smtp_server::run(
                conn,
                config.clone(),
                session_store.clone(),
                gate::Gate::open(),
            ));
        }
    });
    Server {
        addr,
        store,
        alice,
        queue,
        _trigger: trigger,
        _dir: dir,
    }
}

struct Client {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Client {
    async fn connect(server: &Server) -> Client {
        let (read, writer) = TcpStream::connect(server.addr).await.unwrap().into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
        };
        let greeting = client.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        client
    }

    /// Reads one whole reply, every line of it.
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(n > 0, "connection closed; so far: {all}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// Sends a command and checks the reply's code.
    async fn expect(&mut self, line: &str, code: &str) -> String {
        let reply = self.cmd(line).await;
        assert!(reply.starts_with(code), "{line} -> {reply}");
        reply
    }

    async fn login(&mut self, user: &str, password: &str) {
        self.expect("EHLO client.test", "250").await;
        let plain = STANDARD.encode(format!("\0{user}\0{password}"));
        self.expect(&format!("AUTH PLAIN {plain}"), "235").await;
    }

    async fn data(&mut self, message: &str) -> String {
        self.expect("DATA", "354").await;
        let body = message.replace('\n', "\r\n");
        self.writer.write_all(body.as_bytes()).await.unwrap();
        self.writer.write_all(b"\r\n.\r\n").await.unwrap();
        self.reply().await
    }
}

fn inbox(store: &SqliteStore, account: AccountId) -> Vec<String> {
    let inbox = store.mailbox(account, "INBOX").unwrap();
    store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| String::from_utf8(store.read_blob(&m.blob).unwrap()).unwrap())
        .collect()
}

const MESSAGE: &str = "From: Alice <alice@x.test>\nTo: someone\nSubject: hi\nDate: Mon, 23 Nov 2026 12:00:00 +0000\nMessage-ID: <m1@x.test>\n\nHello.";

#[tokio::test]
async fn auth_plain_and_login_succeed() {
    let server = start(SUBMISSION).await;
    let mut c = Client::connect(&server).await;
    let ehlo = c.expect("EHLO client.test", "250").await;
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    c.expect("AUTH PLAIN", "334").await;
    c.expect(&STANDARD.encode("\0alice@x.test\0secret"), "235")
        .await;
    c.expect("AUTH PLAIN", "503 5.5.1").await;

    let mut c = Client::connect(&server).await;
    c.expect("EHLO client.test", "250").await;
    let username = c.expect("AUTH LOGIN", "334 ").await;
    assert_eq!(username.trim_end(), "334 VXNlcm5hbWU6");
    c.expect(&STANDARD.encode("alice@x.test"), "334 UGFzc3dvcmQ6")
        .await;
    c.expect(&STANDARD.encode("secret"), "235 2.7.0").await;
    c.expect("MAIL FROM:<alice@x.test>", "250").await;
}

#[tokio::test]
async fn auth_failures_are_refused_and_slowed() {
    let server = start(SUBMISSION).await;
    let mut c = Client::connect(&server).await;
    c.expect("EHLO client.test", "250").await;
    let started = Instant::now();
    let plain = STANDARD.encode("\0alice@x.test\0wrong");
    c.expect(&format!("AUTH PLAIN {plain}"), "535 5.7.8").await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    c.expect("AUTH LOGIN", "334").await;
    c.expect("*", "501").await;
    c.expect("AUTH PLAIN", "334").await;
    c.expect("*", "501").await;
    c.expect("AUTH PLAIN !!!", "501").await;
    c.expect("AUTH CRAM-MD5", "504").await;
    c.expect("MAIL FROM:<alice@x.test>", "530 5.7.0").await;
}

#[tokio::test]
async fn mail_before_auth_is_refused() {
    let server = start(SUBMISSION).await;
    let mut c = Client::connect(&server).await;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<alice@x.test>", "530 5.7.0").await;
    c.expect("RCPT TO:<bob@x.test>", "503").await;
}

#[tokio::test]
async fn auth_needs_tls_from_a_remote_peer() {
    let server = start(Setup {
        peer: Some("192.0.2.7:40000"),
        ..SUBMISSION
    })
    .await;
    let mut c = Client::connect(&server).await;
    let ehlo = c.expect("EHLO client.test", "250").await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    let plain = STANDARD.encode("\0alice@x.test\0secret");
    c.expect(&format!("AUTH PLAIN {plain}"), "538 5.7.11").await;

    // Without require_tls the same peer may log in in clear.
    let server = start(Setup {
        peer: Some("192.0.2.7:40000"),
        submission: Some(SubmissionPolicy { require_tls: false }),
    })
    .await;
    let mut c = Client::connect(&server).await;
    c.login("alice@x.test", "secret").await;
}

#[tokio::test]
async fn spoofed_envelope_sender_is_refused() {
    let server = start(SUBMISSION).await;
    let mut c = Client::connect(&server).await;
    c.login("alice@x.test", "secret").await;
    c.expect("MAIL FROM:<bob@x.test>", "553 5.7.1").await;
    c.expect("MAIL FROM:<alice@other.test>", "553 5.7.1").await;
    c.expect("MAIL FROM:<>", "553 5.7.1").await;
    c.expect("MAIL FROM:<Alice+news@X.test>", "250").await;
    c.expect("RSET", "250").await;
    c.expect("MAIL FROM:<sales@x.test>", "250").await;
}

#[tokio::test]
async fn spoofed_from_header_is_refused_and_nothing_stored() {
    let server = start(SUBMISSION).await;
    let mut c = Client::connect(&server).await;
    c.login("alice@x.test", "secret").await;
    c.expect("MAIL FROM:<alice@x.test>", "250").await;
    c.expect("RCPT TO:<alice@x.test>", "250").await;
    c.expect("RCPT TO:<far@remote.test>", "250").await;
    let reply = c
        .data("From: Bob <bob@x.test>\nSubject: not me\n\nHi.")
        .await;
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    c.expect("MAIL FROM:<alice@x.test>", "250").await;
    c.expect("RCPT TO:<alice@x.test>", "250").await;
    let reply = c
        .data("From: alice@x.test, mallory@evil.test\nSubject: two\n\nHi.")
        .await;
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(inbox(&server.store, server.alice).is_empty());
    assert!(server.store.queue_list().unwrap().is_empty());
}

#[tokio::test]
async fn local_delivery_through_submission_adds_headers() {
    let server = start(SUBMISSION).await;
    let mut c = Client::connect(&server).await;
    c.login("alice@x.test", "secret").await;
    c.expect("MAIL FROM:<alice@x.test>", "250").await;
    c.expect("RCPT TO:<bob@x.test>", "250").await;
    c.expect("RCPT TO:<alice@x.test>", "250").await;
    let reply = c
        .data("From: Sales <sales@x.test>\nSubject: no date\n\nHi.")
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    let messages = inbox(&server.store, server.alice);
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert!(message.contains("with ESMTPA id"), "{message}");
    assert!(message.contains("\r\nMessage-ID: <"), "{message}");
    assert!(message.contains("\r\nDate: "), "{message}");
    assert!(server.store.queue_list().unwrap().is_empty());

    // A message with its own Date and Message-ID keeps them, unduplicated.
    c.expect("MAIL FROM:<alice@x.test>", "250").await;
    c.expect("RCPT TO:<alice@x.test>", "250").await;
    let reply = c.data(MESSAGE).await;
    assert!(reply.starts_with("250"), "{reply}");
    let messages = inbox(&server.store, server.alice);
    let message = &messages[1];
    assert_eq!(message.matches("Message-ID:").count(), 1, "{message}");
    assert_eq!(message.matches("Date:").count(), 1, "{message}");
}

#[tokio::test]
async fn relay_after_auth_is_queued() {
    let server = start(SUBMISSION).await;
    let mut c = Client::connect(&server).await;
    c.login("alice@x.test", "secret").await;
    c.expect("MAIL FROM:<alice+list@x.test>", "250").await;
    c.expect("RCPT TO:<far@remote.test>", "250").await;
    c.expect("RCPT TO:<Other@Elsewhere.test>", "250").await;
    c.expect("RCPT TO:<bob@x.test>", "250").await;
    c.expect("RCPT TO:<nobody@x.test>", "550 5.1.1").await;
    let reply = c.data(MESSAGE).await;
    assert!(reply.starts_with("250"), "{reply}");
    tokio::time::timeout(Duration::from_secs(30), server.queue.notified())
        .await
        .expect("the queue is woken");
    let queued = server.store.queue_list().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].sender, "alice+list@x.test");
    assert_eq!(queued[0].account, Some(server.alice));
    let mut recipients: Vec<_> = queued[0]
        .recipients
        .iter()
        .map(|r| r.address.to_lowercase())
        .collect();
    recipients.sort();
    assert_eq!(recipients, ["far@remote.test", "other@elsewhere.test"]);
    let body = String::from_utf8(server.store.queue_body(queued[0].id).unwrap()).unwrap();
    assert!(body.contains("with ESMTPA id"), "{body}");
    let bob = server
        .store
        .authenticate("bob@x.test", "hunter2")
        .unwrap()
        .unwrap();
    assert_eq!(inbox(&server.store, bob).len(), 1);
}

#[tokio::test]
async fn mx_refuses_relay_and_auth() {
    let server = start(MX).await;
    let mut c = Client::connect(&server).await;
    let ehlo = c.expect("EHLO client.test", "250").await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    let plain = STANDARD.encode("\0alice@x.test\0secret");
    c.expect(&format!("AUTH PLAIN {plain}"), "502").await;
    c.expect("MAIL FROM:<someone@remote.test>", "250").await;
    c.expect("RCPT TO:<far@remote.test>", "550 5.7.1").await;
    c.expect("RCPT TO:<alice@x.test>", "250").await;
    let reply = c.data(MESSAGE).await;
    assert!(reply.starts_with("250"), "{reply}");
    assert!(server.store.queue_list().unwrap().is_empty());
    let messages = inbox(&server.store, server.alice);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("with ESMTP id"), "{}", messages[0]);
}

#[tokio::test]
async fn mx_alias_forwarding_is_queued_with_the_original_sender() {
    let server = start(MX).await;
    let mut c = Client::connect(&server).await;
    c.expect("EHLO client.test", "250").await;
    c.expect("MAIL FROM:<someone@remote.test>", "250").await;
    c.expect("RCPT TO:<fwd@x.test>", "250").await;
    let reply = c
        .data("From: someone@remote.test\nSubject: fwd\n\nHi.")
        .await;
    assert!(reply.starts_with("250"), "{reply}");
    tokio::time::timeout(Duration::from_secs(30), server.queue.notified())
        .await
        .expect("the queue is woken");
    let queued = server.store.queue_list().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].sender, "someone@remote.test");
    assert_eq!(queued[0].account, None);
    let recipients: Vec<_> = queued[0].recipients.iter().map(|r| &r.address).collect();
    assert_eq!(recipients, ["far@remote.test"]);
    assert_eq!(inbox(&server.store, server.alice).len(), 1);
}

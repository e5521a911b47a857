//! Inbound SPF, DKIM and DMARC checks on the MX listener, with DNS answers from a small
//! UDP server in the test, so no network is needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::prelude::*;

use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::proto::op::{Message, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::TXT;
use mail_auth::hickory_resolver::proto::rr::{RData, Record, RecordType};
use net::{Connection, ShutdownTrigger, Stream};
use smtp_server::{DmarcPolicy, InboundChecks, SmtpConfig};
use store::{AccountId, SqliteStore, Store};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Answers TXT queries from a fixed table; every other name does not exist.
async fn dns_server(records: HashMap<&'static str, &'static str>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut answer = Message::response(query.id(), query.op_code());
            answer.set_recursion_desired(query.recursion_desired());
            answer.set_recursion_available(true);
            answer.set_authoritative(true);
            let mut found = false;
            for q in query.queries() {
                answer.add_query(q.clone());
                let name = q.name().to_ascii().trim_end_matches('.').to_lowercase();
                if let Some(text) = records.get(name.as_str()) {
                    found = true;
                    if q.query_type() == RecordType::TXT {
                        answer.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::TXT(TXT::new(vec![text.to_string()])),
                        ));
                    }
                }
            }
            if !found {
                answer.set_response_code(ResponseCode::NXDomain);
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

struct Server {
    addr: SocketAddr,
    store: Arc<SqliteStore>,
    alice: AccountId,
    _trigger: ShutdownTrigger,
    _dir: tempfile::TempDir,
}

/// An MX listener whose sessions believe the client is `peer`.
async fn start(policy: DmarcPolicy, peer: &'static str) -> Server {
    let dns = dns_server(HashMap::from([
        ("good.test", "v=spf1 ip4:192.0.2.7 -all"),
        ("_dmarc.good.test", "v=DMARC1; p=reject"),
        ("bad.test", "v=spf1 -all"),
        ("_dmarc.bad.test", "v=DMARC1; p=reject"),
        ("lax.test", "v=spf1 -all"),
        ("_dmarc.lax.test", "v=DMARC1; p=none"),
    ]))
    .await;
    let mut opts = ResolverOpts::default();
    // Generous: a lookup that times out turns SPF and DMARC into temperror, and the
    // loopback DNS server shares a loaded machine with the other tests.
    opts.timeout = Duration::from_secs(10);
    opts.attempts = 2;
    let resolver = MessageAuthenticator::new(
        ResolverConfig::from_parts(
            None,
            vec![],
            NameServerConfigGroup::from_ips_clear(&[dns.ip()], dns.port(), true),
        ),
        opts,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    store.add_domain("x.test").unwrap();
    let alice = store.add_account("alice@x.test", "secret").unwrap();
    let mut config = SmtpConfig::new("mx.x.test");
    config.inbound = Some(InboundChecks {
        dns: Arc::new(resolver),
        policy,
        check_loopback: false,
    });
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let trigger = ShutdownTrigger::new();
    let shutdown = trigger.subscribe();
    let session_store: Arc<dyn Store> = store.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let conn = Connection {
                stream: Stream::Plain(tcp),
                peer: peer.parse().unwrap(),
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
        _trigger: trigger,
        _dir: dir,
    }
}

/// Sends one message from `sender` with `From: sender` and returns the final reply.
async fn send(server: &Server, sender: &str) -> String {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut reply = String::new();
    let script = [
        "EHLO sender.example".to_string(),
        format!("MAIL FROM:<{sender}>"),
        "RCPT TO:<alice@x.test>".to_string(),
        "DATA".to_string(),
        format!("From: <{sender}>\r\nSubject: checks\r\n\r\nHello.\r\n."),
    ];
    // Greeting, then one reply per step.
    for step in std::iter::once(None).chain(script.iter().map(Some)) {
        if let Some(line) = step {
            write
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .unwrap();
        }
        loop {
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(20), read.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            assert!(!line.is_empty(), "connection closed");
            if line.as_bytes().get(3) != Some(&b'-') {
                reply = line;
                break;
            }
        }
        assert!(
            reply.starts_with('2') || reply.starts_with('3') || step == script.last(),
            "{step:?} -> {reply}"
        );
    }
    reply
}

fn inbox(server: &Server) -> Vec<String> {
    let inbox = server.store.mailbox(server.alice, "INBOX").unwrap();
    server
        .store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| String::from_utf8(server.store.read_blob(&m.blob).unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn results_are_recorded_above_the_received_header() {
    let server = start(DmarcPolicy::Record, "192.0.2.7:25000").await;
    let reply = send(&server, "news@good.test").await;
    assert!(reply.starts_with("250"), "{reply}");
    let reply = send(&server, "spoof@bad.test").await;
    assert!(reply.starts_with("250"), "record only: {reply}");
    let messages = inbox(&server);
    assert_eq!(messages.len(), 2);

    let good = &messages[0];
    let results = good.find("Authentication-Results: mx.x.test;").expect(good);
    assert!(results < good.find("Received:").unwrap(), "{good}");
    assert!(good.contains("spf=pass"), "{good}");
    assert!(good.contains("smtp.mailfrom=news@good.test"), "{good}");
    assert!(good.contains("dkim=none"), "{good}");
    assert!(good.contains("dmarc=pass header.from=good.test"), "{good}");

    let bad = &messages[1];
    assert!(bad.contains("spf=fail"), "{bad}");
    assert!(bad.contains("dkim=none"), "{bad}");
    assert!(bad.contains("dmarc=fail"), "{bad}");
    assert!(bad.contains("header.from=bad.test"), "{bad}");

    let counts = smtp_server::AUTH_RESULTS.counts();
    let count = |method, result| {
        counts
            .iter()
            .find(|(m, r, _)| *m == method && *r == result)
            .unwrap()
            .2
    };
    assert!(count("spf", "pass") >= 1);
    assert!(count("dmarc", "fail") >= 1);
}

#[tokio::test]
async fn enforce_refuses_a_dmarc_reject_failure_only() {
    let server = start(DmarcPolicy::Enforce, "192.0.2.7:25000").await;
    let reply = send(&server, "spoof@bad.test").await;
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(inbox(&server).is_empty());
    // p=none asks for no action even when enforcing.
    let reply = send(&server, "someone@lax.test").await;
    assert!(reply.starts_with("250"), "{reply}");
    let reply = send(&server, "news@good.test").await;
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(inbox(&server).len(), 2);
}

#[tokio::test]
async fn loopback_peers_are_not_checked_by_default() {
    let server = start(DmarcPolicy::Enforce, "127.0.0.1:25000").await;
    let reply = send(&server, "spoof@bad.test").await;
    assert!(reply.starts_with("250"), "{reply}");
    let messages = inbox(&server);
    assert!(
        !messages[0].contains("Authentication-Results"),
        "{}",
        messages[0]
    );
}

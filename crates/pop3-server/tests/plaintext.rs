//! POP3 passwords in clear text from a remote peer (issue 16, finding 1), over a real
//! socket: the session is handed a peer address off loopback, as a remote client has.

use std::net::SocketAddr;
use std::sync::Arc;
use store::prelude::*;

use net::{Connection, ShutdownTrigger, Stream};
use pop3_server::{Pop3Config, Pop3Server};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use store::SqliteStore;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn tls() -> Arc<rustls::ServerConfig> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .unwrap(),
    )
}

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _trigger: ShutdownTrigger,
}

/// A POP3 server on 127.0.0.1:0 whose sessions see `peer` as the client's address.
async fn server(config: Pop3Config, peer: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    store.add_domain("x.test").unwrap();
    store.add_account("alice@x.test", "alice-pw").unwrap();
    let server = Arc::new(Pop3Server::new(
        config,
        store,
        gate::Gate::open(),
        Arc::default(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let trigger = ShutdownTrigger::new();
    let shutdown = trigger.subscribe();
    let peer: SocketAddr = peer.parse().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let conn = Connection {
                stream: Stream::Plain(tcp),
                peer,
                local: addr,
                shutdown: shutdown.clone(),
                admission: Default::default(),
            };
            tokio::spawn(pop3_server::run(conn, server.clone()));
        }
    });
    Server {
        addr,
        _dir: dir,
        _trigger: trigger,
    }
}

struct Client(BufReader<TcpStream>);

impl Client {
    async fn connect(server: &Server) -> Client {
        let mut c = Client(BufReader::new(
            TcpStream::connect(server.addr).await.unwrap(),
        ));
        assert!(c.line().await.starts_with("+OK"));
        c
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        self.0.read_line(&mut line).await.unwrap();
        line.trim_end().to_string()
    }

    async fn cmd(&mut self, cmd: &str) -> String {
        self.0
            .get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    async fn capa(&mut self) -> Vec<String> {
        assert!(self.cmd("CAPA").await.starts_with("+OK"));
        let mut caps = Vec::new();
        loop {
            let line = self.line().await;
            if line == "." {
                return caps;
            }
            caps.push(line);
        }
    }
}

#[tokio::test]
async fn pop3_refuses_plaintext_passwords_from_a_remote_peer_once_tls_is_configured() {
    let config = Pop3Config {
        tls: Some(tls()),
        ..Pop3Config::default()
    };
    let server = server(config, "192.0.2.10:40000").await;
    let mut c = Client::connect(&server).await;
    let caps = c.capa().await;
    assert!(caps.iter().any(|c| c == "STLS"), "{caps:?}");
    assert!(
        !caps.iter().any(|c| c == "USER"),
        "USER offered in clear: {caps:?}"
    );
    let reply = c.cmd("USER alice@x.test").await;
    assert!(
        reply.starts_with("-ERR [AUTH]") && reply.contains("STLS"),
        "{reply}"
    );
    let reply = c.cmd("PASS alice-pw").await;
    assert!(reply.starts_with("-ERR [AUTH]"), "{reply}");
    // Still not logged in.
    assert!(c.cmd("STAT").await.starts_with("-ERR"));
}

#[tokio::test]
async fn plaintext_is_allowed_when_configured_from_loopback_or_without_tls() {
    let with_tls = || Pop3Config {
        tls: Some(tls()),
        ..Pop3Config::default()
    };
    let cases = [
        (
            Pop3Config {
                allow_plaintext_auth: true,
                ..with_tls()
            },
            "192.0.2.10:40000",
        ),
        (with_tls(), "127.0.0.1:40000"),
        (with_tls(), "[::ffff:127.0.0.1]:40000"),
        // Without a certificate there is no other way to log in.
        (Pop3Config::default(), "192.0.2.10:40000"),
    ];
    for (config, peer) in cases {
        let server = server(config, peer).await;
        let mut c = Client::connect(&server).await;
        assert!(c.capa().await.iter().any(|c| c == "USER"), "{peer}");
        assert!(
            c.cmd("USER alice@x.test").await.starts_with("+OK"),
            "{peer}"
        );
        assert!(c.cmd("PASS alice-pw").await.starts_with("+OK"), "{peer}");
    }
    // A loopback peer is remote when loopback is not trusted (a local proxy).
    let server = server(
        Pop3Config {
            trust_loopback: false,
            ..with_tls()
        },
        "127.0.0.1:40000",
    )
    .await;
    let mut c = Client::connect(&server).await;
    assert!(c.cmd("USER alice@x.test").await.starts_with("-ERR [AUTH]"));
}

//! The HTTP client against a loopback server written here: https with a private root,
//! a certificate that does not verify, an answer larger than the bound, and a server that
//! never answers.

use std::sync::Arc;
use std::time::Duration;

use ddns::http::{Call, HttpClient, HttpError};
use ddns::{AddressSource, Family};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn cert() -> (CertificateDer<'static>, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (made.cert.der().clone(), made.signing_key.serialize_der())
}

/// Serves `answer` (a whole HTTP response) to each connection, over TLS when `tls` is given;
/// returns the port and the requests' heads as they arrive.
async fn serve(
    tls: Option<(CertificateDer<'static>, Vec<u8>)>,
    answer: Vec<u8>,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tls.map(|(cert, key)| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let answer = answer.clone();
            let tx = tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                async fn talk<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
                    mut s: S,
                    answer: &[u8],
                    tx: &tokio::sync::mpsc::UnboundedSender<String>,
                ) {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                    let _ = s.write_all(answer).await;
                    let _ = s.shutdown().await;
                }
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(tcp).await {
                            talk(s, &answer, &tx).await;
                        }
                    }
                    None => talk(tcp, &answer, &tx).await,
                }
            });
        }
    });
    (port, rx)
}

fn ok_answer(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn an_https_echo_gives_the_address_when_the_root_is_trusted() {
    let (cert, key) = cert();
    let (port, mut heads) = serve(Some((cert.clone(), key)), ok_answer("203.0.113.44\n")).await;
    let url = format!("https://localhost:{port}/ip");
    let client = HttpClient::new(&[cert], Duration::from_secs(5), 1024).unwrap();
    let ip = ddns::detect::detect(&AddressSource::Url(url.clone()), Family::V4, &client)
        .await
        .unwrap();
    assert_eq!(ip.to_string(), "203.0.113.44");
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("GET /ip HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("host: localhost:{port}\r\n")),
        "{head}"
    );

    // Without the private root the certificate does not verify, and the error says so.
    let strict = HttpClient::new(&[], Duration::from_secs(5), 1024).unwrap();
    let e = strict.send(Call::get(&url)).await.unwrap_err();
    assert!(matches!(e, HttpError::Tls { .. }), "{e}");
}

#[tokio::test]
async fn answers_are_bounded_and_waits_have_deadlines() {
    let big = "x".repeat(5000);
    let (port, _heads) = serve(None, ok_answer(&big)).await;
    let client = HttpClient::new(&[], Duration::from_secs(5), 1024).unwrap();
    let e = client
        .send(Call::get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::TooLarge { max: 1024, .. }), "{e}");

    // A server that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = silent.accept().await.unwrap();
            held.push(s);
        }
    });
    let quick = HttpClient::new(&[], Duration::from_millis(300), 1024).unwrap();
    let started = std::time::Instant::now();
    let e = quick
        .send(Call::get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

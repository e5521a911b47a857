//! The client against a scripted server on 127.0.0.1: each test states the exchange the
//! server expects and what the client must make of the replies.

mod support;

use std::time::{Duration, Instant};

use smtp_client::{
    ClientConfig, ClientError, Connection, Credentials, RcptOutcome, Stage, Timeouts, TlsPolicy,
};
use support::{Step, alone, expect, send, serve, test_cert};

const GREETING: &str = "220 mx.test ESMTP\r\n";

fn config(tls: TlsPolicy) -> ClientConfig {
    let mut config = ClientConfig::new("client.test");
    config.tls = tls;
    config.timeouts = Timeouts::uniform(Duration::from_secs(3));
    config
}

fn ehlo(extensions: &[&str]) -> Vec<Step> {
    let mut lines = vec!["mx.test hello".to_owned()];
    lines.extend(extensions.iter().map(|e| e.to_string()));
    let last = lines.len() - 1;
    let reply: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
        .collect();
    vec![send(GREETING), expect("EHLO client.test"), send(&reply)]
}

fn quit() -> Vec<Step> {
    vec![expect("QUIT"), send("221 2.0.0 bye\r\n")]
}

fn script(parts: &[Vec<Step>]) -> Vec<Step> {
    parts.concat()
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The outcomes as `A 250`, `T 451`, `P 550` for compact comparison.
fn brief(outcomes: &[RcptOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .map(|o| {
            let kind = match o {
                RcptOutcome::Accepted(_) => 'A',
                RcptOutcome::TempFailed(_) => 'T',
                RcptOutcome::PermFailed(_) => 'P',
            };
            format!("{kind} {}", o.reply().code)
        })
        .collect()
}

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\nhello\r\n";

#[tokio::test]
async fn pipelined_transaction_with_a_refused_recipient() {
    let (addr, server) = serve(script(&[
        ehlo(&["PIPELINING", "SIZE 100000", "8BITMIME"]),
        // All four commands arrive before the server says anything.
        vec![
            expect("MAIL FROM:<a@client.test> SIZE=22"),
            expect("RCPT TO:<b@mx.test>"),
            expect("RCPT TO:<nobody@mx.test>"),
            expect("RCPT TO:<c@mx.test>"),
            expect("DATA"),
            send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go on\r\n"),
            Step::Data,
            send("250 2.0.0 queued as 1\r\n"),
        ],
        quit(),
    ]))
    .await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(conn.extensions().pipelining());
    assert!(!conn.is_tls());
    let outcomes = conn
        .send(
            "a@client.test",
            &rcpts(&["b@mx.test", "nobody@mx.test", "c@mx.test"]),
            MESSAGE,
        )
        .await
        .unwrap();
    assert_eq!(brief(&outcomes), ["A 250", "P 550", "A 250"]);
    assert_eq!(outcomes[0].reply().text(), "queued as 1");
    assert_eq!(outcomes[1].reply().enhanced, Some((5, 1, 1).into()));
    conn.quit().await;
    let data = server.await.unwrap().unwrap();
    assert_eq!(data, [b"Subject: hi\r\n\r\nhello\r\n.\r\n".to_vec()]);
}

#[tokio::test]
async fn without_pipelining_each_command_waits_for_its_reply() {
    let (addr, server) = serve(script(&[
        ehlo(&["8BITMIME"]),
        vec![
            alone("MAIL FROM:<a@client.test>"),
            send("250 ok\r\n"),
            alone("RCPT TO:<b@mx.test>"),
            send("250 ok\r\n"),
            alone("RCPT TO:<busy@mx.test>"),
            send("450 4.2.1 try later\r\n"),
            alone("DATA"),
            send("354 go on\r\n"),
            Step::Data,
            send("250 done\r\n"),
        ],
        quit(),
    ]))
    .await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Disabled))
        .await
        .unwrap();
    let outcomes = conn
        .send(
            "a@client.test",
            &rcpts(&["b@mx.test", "busy@mx.test"]),
            MESSAGE,
        )
        .await
        .unwrap();
    assert_eq!(brief(&outcomes), ["A 250", "T 450"]);
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn dot_stuffing_and_line_ends() {
    let (addr, server) = serve(script(&[
        ehlo(&["PIPELINING", "8BITMIME", "SIZE"]),
        vec![
            expect("MAIL FROM:<> SIZE=54 BODY=8BITMIME"),
            expect("RCPT TO:<b@mx.test>"),
            expect("DATA"),
            send("250 ok\r\n250 ok\r\n354 go on\r\n"),
            Step::Data,
            send("250 done\r\n"),
        ],
        quit(),
    ]))
    .await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    // A bounce (null sender) whose body has dot lines, a bare LF, a bare CR, 8-bit text
    // and no final line end.
    let message = "Subject: x\r\n\r\n.hidden\r\n..two\r\n.\r\nbare\nlf\rcr\r\ncafé".as_bytes();
    let outcomes = conn
        .send("", &rcpts(&["b@mx.test"]), message)
        .await
        .unwrap();
    assert_eq!(brief(&outcomes), ["A 250"]);
    conn.quit().await;
    let data = server.await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8(data[0].clone()).unwrap(),
        "Subject: x\r\n\r\n..hidden\r\n...two\r\n..\r\nbare\r\nlf\r\ncr\r\ncafé\r\n.\r\n"
    );
}

#[tokio::test]
async fn refusal_at_mail_fails_every_recipient() {
    let (addr, server) = serve(script(&[
        ehlo(&["PIPELINING"]),
        vec![
            expect("MAIL FROM:<a@client.test>"),
            expect("RCPT TO:<b@mx.test>"),
            expect("RCPT TO:<c@mx.test>"),
            expect("DATA"),
            send("550 5.7.1 not from you\r\n503 5.5.1 MAIL first\r\n503 5.5.1 MAIL first\r\n503 5.5.1 MAIL first\r\n"),
        ],
        quit(),
    ]))
    .await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let outcomes = conn
        .send(
            "a@client.test",
            &rcpts(&["b@mx.test", "c@mx.test"]),
            MESSAGE,
        )
        .await
        .unwrap();
    assert_eq!(brief(&outcomes), ["P 550", "P 550"]);
    assert_eq!(outcomes[1].reply().text(), "not from you");
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn temporary_refusals_at_data_and_reuse_of_the_connection() {
    let (addr, server) = serve(script(&[
        ehlo(&[]),
        // DATA itself refused: the transaction is reset for the next message.
        vec![
            alone("MAIL FROM:<a@client.test>"),
            send("250 ok\r\n"),
            alone("RCPT TO:<b@mx.test>"),
            send("250 ok\r\n"),
            alone("DATA"),
            send("451 4.3.0 not now\r\n"),
            alone("RSET"),
            send("250 reset\r\n"),
        ],
        // The end of data refused.
        vec![
            alone("MAIL FROM:<a@client.test>"),
            send("250 ok\r\n"),
            alone("RCPT TO:<b@mx.test>"),
            send("250 ok\r\n"),
            alone("DATA"),
            send("354 go on\r\n"),
            Step::Data,
            send("452 4.3.1 disk full\r\n"),
        ],
        // An explicit reset, then a refused recipient alone: no DATA, a reset.
        vec![
            alone("RSET"),
            send("250 reset\r\n"),
            alone("MAIL FROM:<a@client.test>"),
            send("250 ok\r\n"),
            alone("RCPT TO:<b@mx.test>"),
            send("550 no\r\n"),
            alone("RSET"),
            send("250 reset\r\n"),
        ],
        quit(),
    ]))
    .await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let b = rcpts(&["b@mx.test"]);
    let outcomes = conn.send("a@client.test", &b, MESSAGE).await.unwrap();
    assert_eq!(brief(&outcomes), ["T 451"]);
    let outcomes = conn.send("a@client.test", &b, MESSAGE).await.unwrap();
    assert_eq!(brief(&outcomes), ["T 452"]);
    conn.reset().await.unwrap();
    let outcomes = conn.send("a@client.test", &b, MESSAGE).await.unwrap();
    assert_eq!(brief(&outcomes), ["P 550"]);
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn messages_the_server_cannot_take_are_refused_before_sending() {
    let (addr, server) = serve(script(&[ehlo(&["SIZE 20"]), quit()])).await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    let b = rcpts(&["b@mx.test"]);
    let err = conn.send("a@client.test", &b, MESSAGE).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::TooLarge {
                size: 22,
                limit: 20
            }
        ),
        "{err}"
    );
    assert!(err.is_permanent());
    // No 8BITMIME: 8-bit content is refused too, and the session stays usable.
    let err = conn
        .send("a@client.test", &b, "é".as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::EightBitUnsupported), "{err}");
    assert!(err.is_permanent());
    // No SMTPUTF8: a UTF-8 sender is refused, a UTF-8 recipient fails alone.
    let err = conn.send("ü@client.test", &b, b"x").await.unwrap_err();
    assert!(matches!(err, ClientError::Utf8Unsupported), "{err}");
    let outcomes = conn
        .send("a@client.test", &rcpts(&["ü@mx.test", "bad address"]), b"x")
        .await
        .unwrap();
    assert_eq!(brief(&outcomes), ["P 553", "P 553"]);
    let err = conn.send("a@b>\r\nRSET", &b, b"x").await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidSender(_)), "{err}");
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn helo_when_ehlo_is_refused() {
    let (addr, server) = serve(vec![
        send(GREETING),
        expect("EHLO client.test"),
        send("502 5.5.1 what is EHLO\r\n"),
        expect("HELO client.test"),
        send("250 mx.test\r\n"),
        alone("MAIL FROM:<a@client.test>"),
        send("250 ok\r\n"),
        alone("RCPT TO:<b@mx.test>"),
        send("250 ok\r\n"),
        alone("DATA"),
        send("354 go on\r\n"),
        Step::Data,
        send("250 done\r\n"),
        expect("QUIT"),
        send("221 bye\r\n"),
    ])
    .await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(!conn.extensions().pipelining() && !conn.extensions().size_offered());
    let outcomes = conn
        .send("a@client.test", &rcpts(&["b@mx.test"]), MESSAGE)
        .await
        .unwrap();
    assert_eq!(brief(&outcomes), ["A 250"]);
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn multi_line_replies_are_joined() {
    let (addr, server) = serve(script(&[
        ehlo(&["PIPELINING", "ENHANCEDSTATUSCODES"]),
        vec![
            expect("MAIL FROM:<a@client.test>"),
            expect("RCPT TO:<b@mx.test>"),
            expect("DATA"),
            send("250 ok\r\n550-5.1.1 The mailbox does not exist.\r\n550-5.1.1 Please check\r\n550 5.1.1 the address.\r\n554 5.5.1 no valid recipients\r\n"),
            expect("RSET"),
            send("250 ok\r\n"),
        ],
        quit(),
    ]))
    .await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(conn.extensions().enhanced_status_codes());
    let outcomes = conn
        .send("a@client.test", &rcpts(&["b@mx.test"]), MESSAGE)
        .await
        .unwrap();
    assert_eq!(brief(&outcomes), ["P 550"]);
    let reply = outcomes[0].reply();
    assert_eq!(reply.lines.len(), 3);
    assert_eq!(
        reply.text(),
        "The mailbox does not exist. Please check the address."
    );
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (addr, server) = serve(vec![Step::Hang]).await;
    let mut config = config(TlsPolicy::Opportunistic);
    config.timeouts = Timeouts::uniform(Duration::from_millis(300));
    let start = Instant::now();
    let err = Connection::connect(addr, "mx.test", &config)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, ClientError::Timeout(Stage::Greeting)),
        "{err}"
    );
    assert!(!err.is_permanent());
    assert!(start.elapsed() < Duration::from_secs(2));
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn silence_after_the_data_leaves_the_connection_unusable() {
    let (addr, server) = serve(script(&[
        ehlo(&["PIPELINING"]),
        vec![
            expect("MAIL FROM:<a@client.test>"),
            expect("RCPT TO:<b@mx.test>"),
            expect("DATA"),
            send("250 ok\r\n250 ok\r\n354 go on\r\n"),
            Step::Data,
            Step::Hang,
        ],
    ]))
    .await;
    let mut config = config(TlsPolicy::Opportunistic);
    config.timeouts.data_end = Duration::from_millis(300);
    let mut conn = Connection::connect(addr, "mx.test", &config).await.unwrap();
    let b = rcpts(&["b@mx.test"]);
    let err = conn.send("a@client.test", &b, MESSAGE).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout(Stage::DataEnd)), "{err}");
    let err = conn.send("a@client.test", &b, MESSAGE).await.unwrap_err();
    assert!(matches!(err, ClientError::Broken), "{err}");
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_overlong_reply_line_is_refused_without_waiting_for_its_end() {
    // 5000 octets and no line end: the client must give up, not buffer on.
    let (addr, server) = serve(vec![send(&format!("220 {}", "a".repeat(5000))), Step::Hang]).await;
    let err = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ClientError::Protocol { stage: Stage::Greeting, detail } if detail.contains("too long")),
        "{err}"
    );
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_reply_with_too_many_lines_is_refused() {
    let ehlo_flood: String = (0..150).map(|i| format!("250-X-EXT{i}\r\n")).collect();
    let (addr, server) = serve(vec![
        send(GREETING),
        expect("EHLO client.test"),
        send(&ehlo_flood),
        Step::Hang,
    ])
    .await;
    let err = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, ClientError::Protocol { stage: Stage::Ehlo, detail } if detail.contains("too many")),
        "{err}"
    );
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_greeting_is_an_error() {
    let (addr, server) = serve(vec![send("554 5.7.1 go away\r\n"), Step::Hang]).await;
    let err = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ClientError::Rejected {
                stage: Stage::Greeting,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_permanent());
    assert_eq!(err.reply().unwrap().code, 554);
    server.await.unwrap().unwrap();
}

fn starttls_script(after: Vec<Step>) -> Vec<Step> {
    script(&[
        ehlo(&["STARTTLS", "PIPELINING"]),
        vec![
            expect("STARTTLS"),
            send("220 2.0.0 ready\r\n"),
            Step::StartTls,
            expect("EHLO client.test"),
            send("250-mx.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"),
        ],
        after,
    ])
}

#[tokio::test]
async fn opportunistic_tls_accepts_a_self_signed_certificate() {
    let (addr, server) = serve(starttls_script(script(&[
        vec![
            expect("MAIL FROM:<a@client.test>"),
            expect("RCPT TO:<b@mx.test>"),
            expect("DATA"),
            send("250 ok\r\n250 ok\r\n354 go on\r\n"),
            Step::Data,
            send("250 done\r\n"),
        ],
        quit(),
    ])))
    .await;
    let mut conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(conn.is_tls());
    // The EHLO inside TLS replaced what was offered before.
    assert!(!conn.extensions().starttls());
    assert_eq!(conn.extensions().auth_mechanisms(), ["PLAIN"]);
    let outcomes = conn
        .send("a@client.test", &rcpts(&["b@mx.test"]), MESSAGE)
        .await
        .unwrap();
    assert_eq!(brief(&outcomes), ["A 250"]);
    conn.quit().await;
    let data = server.await.unwrap().unwrap();
    assert_eq!(data[0], b"Subject: hi\r\n\r\nhello\r\n.\r\n");
}

#[tokio::test]
async fn verified_tls_refuses_a_self_signed_certificate() {
    let (addr, server) = serve(script(&[
        ehlo(&["STARTTLS"]),
        vec![expect("STARTTLS"), send("220 ready\r\n"), Step::StartTls],
    ]))
    .await;
    let err = Connection::connect(addr, "localhost", &config(TlsPolicy::OpportunisticVerified))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::Tls(_)), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert!(!err.is_permanent());
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn required_tls_verifies_against_an_extra_root() {
    let (addr, server) = serve(starttls_script(quit())).await;
    let mut config = config(TlsPolicy::Required);
    config.extra_roots = vec![test_cert().0.clone()];
    let conn = Connection::connect(addr, "localhost", &config)
        .await
        .unwrap();
    assert!(conn.is_tls());
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn required_tls_needs_the_server_to_offer_it() {
    let (addr, server) = serve(script(&[ehlo(&["PIPELINING"]), vec![Step::Hang]])).await;
    let err = Connection::connect(addr, "localhost", &config(TlsPolicy::Required))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::TlsUnavailable(None)), "{err}");
    assert!(!err.is_permanent());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn opportunistic_tls_goes_on_in_plain_text_when_starttls_is_refused() {
    let (addr, server) = serve(script(&[
        ehlo(&["STARTTLS"]),
        vec![expect("STARTTLS"), send("454 4.7.0 TLS not available\r\n")],
        quit(),
    ]))
    .await;
    let conn = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .unwrap();
    assert!(!conn.is_tls());
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn data_injected_after_the_starttls_reply_is_refused() {
    let (addr, server) = serve(script(&[
        ehlo(&["STARTTLS"]),
        vec![
            expect("STARTTLS"),
            send("220 ready\r\n250 injected\r\n"),
            Step::Hang,
        ],
    ]))
    .await;
    let err = Connection::connect(addr, "mx.test", &config(TlsPolicy::Opportunistic))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ClientError::Protocol {
                stage: Stage::StartTls,
                ..
            }
        ),
        "{err}"
    );
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn auth_plain_inside_tls() {
    let (addr, server) = serve(starttls_script(script(&[
        // "\0alice\0secret" in base64.
        vec![
            expect("AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            send("235 2.7.0 ok\r\n"),
        ],
        quit(),
    ])))
    .await;
    let mut config = config(TlsPolicy::Opportunistic);
    config.auth = Some(Credentials {
        username: "alice".into(),
        password: "secret".into(),
    });
    let conn = Connection::connect(addr, "mx.test", &config).await.unwrap();
    conn.quit().await;
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn auth_login_on_loopback_and_a_refused_login() {
    let mut config = config(TlsPolicy::Disabled);
    config.auth = Some(Credentials {
        username: "alice".into(),
        password: "secret".into(),
    });
    let (addr, server) = serve(script(&[
        ehlo(&["AUTH LOGIN"]),
        vec![
            expect("AUTH LOGIN"),
            send("334 VXNlcm5hbWU6\r\n"),
            expect("YWxpY2U="),
            send("334 UGFzc3dvcmQ6\r\n"),
            expect("c2VjcmV0"),
            send("235 ok\r\n"),
        ],
        quit(),
    ]))
    .await;
    let conn = Connection::connect(addr, "mx.test", &config).await.unwrap();
    conn.quit().await;
    server.await.unwrap().unwrap();

    let (addr, server) = serve(script(&[
        ehlo(&["AUTH PLAIN LOGIN"]),
        vec![
            expect("AUTH PLAIN AGFsaWNlAHNlY3JldA=="),
            send("535 5.7.8 bad credentials\r\n"),
        ],
    ]))
    .await;
    let err = Connection::connect(addr, "mx.test", &config)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ClientError::Rejected {
                stage: Stage::Auth,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_permanent());
    server.await.unwrap().unwrap();

    let (addr, server) = serve(script(&[ehlo(&["AUTH CRAM-MD5"]), vec![Step::Hang]])).await;
    let err = Connection::connect(addr, "mx.test", &config)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::Auth(_)), "{err}");
    server.await.unwrap().unwrap();
}

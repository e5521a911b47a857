//! Which records a domain gets, how they are written, and how each compares with answers.

use super::*;

fn setup() -> Setup {
    Setup {
        domain: "Example.COM.".into(),
        mx_host: "mail.example.com".into(),
        client_host: "mail.example.com".into(),
        ipv4: Some("203.0.113.10".parse().unwrap()),
        ipv6: None,
        dkim: Some((
            "tg1._domainkey.example.com".into(),
            "v=DKIM1; k=ed25519; p=AAAABBBB".into(),
        )),
        report_address: "postmaster@example.com".into(),
        mta_sts_mode: MtaStsMode::Testing,
        ports: ClientPorts::default(),
    }
}

fn find<'a>(records: &'a [Record], rtype: RType, name: &str) -> &'a Record {
    records
        .iter()
        .find(|r| r.rtype == rtype && r.name == name)
        .unwrap_or_else(|| panic!("no {rtype:?} record for {name}"))
}

#[test]
fn every_record_the_domain_needs_is_listed_once() {
    let records = records(&setup());
    let lines: Vec<String> = records.iter().map(Record::zone_line).collect();
    let expect = [
        "example.com. IN MX 10 mail.example.com.",
        "mail.example.com. IN A 203.0.113.10",
        "example.com. IN TXT \"v=spf1 mx -all\"",
        "tg1._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p=AAAABBBB\"",
        "_dmarc.example.com. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com\"",
        "mta-sts.example.com. IN CNAME mail.example.com.",
        "_smtp._tls.example.com. IN TXT \"v=TLSRPTv1; rua=mailto:postmaster@example.com\"",
        "_submissions._tcp.example.com. IN SRV 0 1 465 mail.example.com.",
        "_submission._tcp.example.com. IN SRV 0 1 587 mail.example.com.",
        "_imaps._tcp.example.com. IN SRV 0 1 993 mail.example.com.",
        "_imap._tcp.example.com. IN SRV 0 1 143 mail.example.com.",
        "_pop3s._tcp.example.com. IN SRV 0 1 995 mail.example.com.",
        "_pop3._tcp.example.com. IN SRV 0 1 110 mail.example.com.",
        "autoconfig.example.com. IN CNAME mail.example.com.",
        "autodiscover.example.com. IN CNAME mail.example.com.",
    ];
    for line in expect {
        assert_eq!(
            lines.iter().filter(|l| *l == line).count(),
            1,
            "{line} in {lines:#?}"
        );
    }
    // The unknown IPv6 address is a comment with a hint, never a made-up value.
    let aaaa = find(&records, RType::AAAA, "mail.example.com");
    assert!(aaaa.expected.is_none());
    assert!(
        aaaa.zone_line()
            .starts_with("; mail.example.com. IN AAAA ?")
    );
    assert!(aaaa.zone_line().contains("public_ipv6"));
    let mta_sts = find(&records, RType::TXT, "_mta-sts.example.com");
    let id = mta_sts_id(&mta_sts_policy("mail.example.com", MtaStsMode::Testing));
    assert_eq!(
        mta_sts.zone_line(),
        format!("_mta-sts.example.com. IN TXT \"v=STSv1; id={id}\"")
    );
    assert_eq!(records.len(), expect.len() + 2);
}

#[test]
fn a_missing_dkim_key_says_how_to_make_one() {
    let mut s = setup();
    s.dkim = None;
    let records = records(&s);
    let dkim = records.iter().find(|r| r.kind == Kind::Dkim).unwrap();
    assert!(dkim.expected.is_none());
    assert!(dkim.zone_line().contains("tegami domain dkim example.com"));
    let verdict = compare(dkim, &Answer::NoRecords);
    assert_eq!(verdict.status, Status::Missing);
    assert!(verdict.detail.contains("tegami domain dkim example.com"));
}

#[test]
fn a_separate_client_host_gets_its_own_addresses_and_the_srv_targets() {
    let mut s = setup();
    s.client_host = "imap.example.com".into();
    s.ports.pop3 = 0;
    let records = records(&s);
    find(&records, RType::A, "imap.example.com");
    assert_eq!(
        find(&records, RType::SRV, "_imaps._tcp.example.com").zone_line(),
        "_imaps._tcp.example.com. IN SRV 0 1 993 imap.example.com."
    );
    // Port 0: RFC 6186's "not offered".
    assert_eq!(
        find(&records, RType::SRV, "_pop3._tcp.example.com").zone_line(),
        "_pop3._tcp.example.com. IN SRV 0 0 0 ."
    );
}

#[test]
fn the_mta_sts_id_follows_the_policy() {
    let testing = mta_sts_policy("mail.example.com", MtaStsMode::Testing);
    let enforce = mta_sts_policy("mail.example.com", MtaStsMode::Enforce);
    assert_eq!(
        testing,
        "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
    );
    assert_ne!(mta_sts_id(&testing), mta_sts_id(&enforce));
    assert_eq!(mta_sts_id(&testing), mta_sts_id(&testing));
    let id = mta_sts_id(&testing);
    assert!(id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric()));
}

#[test]
fn long_txt_values_are_split_into_strings_of_255() {
    assert_eq!(quoted_strings("v=DKIM1; p=abc"), "\"v=DKIM1; p=abc\"");
    let split = quoted_strings(&"x".repeat(300));
    assert!(split.starts_with("( \"") && split.ends_with("\" )"));
    assert_eq!(split.matches('"').count(), 4);
    assert_eq!(quoted_strings("a\"b"), "\"a\\\"b\"");
}

fn txt(text: &str) -> Value {
    Value::Txt { text: text.into() }
}

/// One comparison: the record of `kind` at `name` against `answer`.
fn check(rtype: RType, name: &str, answer: Answer, expect: Status) {
    let records = records(&setup());
    let record = find(&records, rtype, name);
    let verdict = compare(record, &answer);
    assert_eq!(
        verdict.status,
        expect,
        "{} against {answer:?}: {verdict:?}",
        record.zone_line()
    );
    if expect.is_problem() && expect != Status::Error {
        assert!(!verdict.detail.is_empty(), "{verdict:?} says nothing");
    }
}

fn mx(host: &str) -> Value {
    Value::Mx {
        preference: 20,
        host: host.into(),
    }
}

fn srv(port: u16, target: &str) -> Value {
    Value::Srv {
        priority: 5,
        weight: 0,
        port,
        target: target.into(),
    }
}

#[test]
fn comparisons() {
    use Answer::{Failed, NoRecords, Records};
    use Status::*;
    let d = "example.com";
    check(RType::MX, d, Records(vec![mx("MAIL.example.com")]), Ok);
    check(
        RType::MX,
        d,
        Records(vec![mx("backup.example.net"), mx("mail.example.com")]),
        Ok,
    );
    check(RType::MX, d, Records(vec![mx("mx.other.net")]), Wrong);
    check(RType::MX, d, NoRecords, Missing);
    check(RType::MX, d, Failed("timed out".into()), Error);

    let ip = |s: &str| Value::Ip {
        ip: s.parse().unwrap(),
    };
    check(
        RType::A,
        "mail.example.com",
        Records(vec![ip("203.0.113.10")]),
        Ok,
    );
    check(
        RType::A,
        "mail.example.com",
        Records(vec![ip("198.51.100.1")]),
        Wrong,
    );
    // An address not configured: found is "present", absent is "missing"...
    check(
        RType::AAAA,
        "mail.example.com",
        Records(vec![ip("2001:db8::1")]),
        Present,
    );
    // ... except that an IPv6 address is optional: none published is fine.
    check(RType::AAAA, "mail.example.com", NoRecords, Ok);

    // SPF among other TXT records at the apex; extra mechanisms are fine.
    check(
        RType::TXT,
        d,
        Records(vec![
            txt("google-site-verification=x"),
            txt("v=spf1 mx -all"),
        ]),
        Ok,
    );
    check(
        RType::TXT,
        d,
        Records(vec![txt("v=spf1 mx include:_spf.other.net -all")]),
        Ok,
    );
    check(RType::TXT, d, Records(vec![txt("v=spf1 a ~all")]), Wrong);
    check(
        RType::TXT,
        d,
        Records(vec![txt("v=spf1 mx -all"), txt("v=spf1 a -all")]),
        Wrong,
    );
    check(
        RType::TXT,
        d,
        Records(vec![txt("v=spf10 mx -all")]),
        Missing,
    );
    check(RType::TXT, d, Records(vec![txt("something else")]), Missing);

    let dkim = "tg1._domainkey.example.com";
    check(
        RType::TXT,
        dkim,
        Records(vec![txt("v=DKIM1; k=ed25519; p=AAAA BBBB")]),
        Ok,
    );
    check(
        RType::TXT,
        dkim,
        Records(vec![txt("v=DKIM1; k=ed25519; p=CCCC")]),
        Wrong,
    );
    check(RType::TXT, dkim, NoRecords, Missing);

    let dmarc = "_dmarc.example.com";
    check(
        RType::TXT,
        dmarc,
        Records(vec![txt("v=DMARC1; p=reject")]),
        Ok,
    );
    check(
        RType::TXT,
        dmarc,
        Records(vec![txt(
            "v=DMARC1; p=quarantine; rua=mailto:x@example.com",
        )]),
        Ok,
    );
    check(
        RType::TXT,
        dmarc,
        Records(vec![txt("v=DMARC1; p=none")]),
        Wrong,
    );

    let id = mta_sts_id(&mta_sts_policy("mail.example.com", MtaStsMode::Testing));
    let sts = "_mta-sts.example.com";
    check(
        RType::TXT,
        sts,
        Records(vec![txt(&format!("v=STSv1; id={id}"))]),
        Ok,
    );
    check(
        RType::TXT,
        sts,
        Records(vec![txt("v=STSv1; id=20240101")]),
        Wrong,
    );

    let rpt = "_smtp._tls.example.com";
    check(
        RType::TXT,
        rpt,
        Records(vec![txt("v=TLSRPTv1; rua=mailto:tls@example.com")]),
        Ok,
    );
    check(RType::TXT, rpt, Records(vec![txt("v=TLSRPTv1;")]), Wrong);

    let imaps = "_imaps._tcp.example.com";
    check(
        RType::SRV,
        imaps,
        Records(vec![srv(993, "mail.example.com")]),
        Ok,
    );
    check(
        RType::SRV,
        imaps,
        Records(vec![srv(994, "mail.example.com")]),
        Wrong,
    );
    check(
        RType::SRV,
        imaps,
        Records(vec![srv(993, "other.example.com")]),
        Wrong,
    );
    check(RType::SRV, imaps, NoRecords, Missing);

    // Not offered (pop3 = 0 in this setup): the target "." is what counts.
    let mut s = setup();
    s.ports.pop3 = 0;
    let records = records(&s);
    let pop3 = find(&records, RType::SRV, "_pop3._tcp.example.com");
    assert_eq!(compare(pop3, &Records(vec![srv(1, "")])).status, Ok);
    assert_eq!(
        compare(pop3, &Records(vec![srv(110, "mail.example.com")])).status,
        Wrong
    );

    let cname = |t: &str| Value::Cname { target: t.into() };
    check(
        RType::CNAME,
        "autoconfig.example.com",
        Records(vec![cname("mail.example.com")]),
        Ok,
    );
    check(
        RType::CNAME,
        "autodiscover.example.com",
        Records(vec![cname("www.example.com")]),
        Wrong,
    );
    check(RType::CNAME, "mta-sts.example.com", NoRecords, Missing);
}

#[test]
fn a_dead_resolver_is_an_error_not_a_missing_record() {
    // No network here: a resolver pointed at a closed loopback port fails, and that is an
    // error, never "missing".
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    use mail_auth::hickory_resolver::config::{
        NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
    };
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut opts = ResolverOpts::default();
    opts.timeout = std::time::Duration::from_millis(300);
    opts.attempts = 1;
    let config = ResolverConfig::from_parts(
        None,
        Vec::new(),
        vec![NameServerConfig::new(addr, ProtocolConfig::Udp)],
    );
    let resolver = mail_auth::MessageAuthenticator::new(config, opts).unwrap();
    let answer = runtime.block_on(lookup(&resolver.0, "example.com", RType::MX));
    assert!(matches!(answer, Answer::Failed(_)), "{answer:?}");
}

//! DKIM keys made by `generate_dkim` sign mail that mail-auth's own verifier accepts
//! against the published TXT record.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};
use outbound::{DkimError, DkimKeys, DnsRecord, dkim_record, generate_dkim};

/// TXT answers from memory: what the test "published".
#[derive(Default)]
struct Published(Mutex<HashMap<String, Txt>>);

impl Published {
    fn publish(&self, record: &DnsRecord) {
        let key = DomainKey::parse(record.value.as_bytes()).expect("record parses");
        self.0
            .lock()
            .unwrap()
            .insert(format!("{}.", record.name), Txt::DomainKey(Arc::new(key)));
    }
}

impl ResolverCache<String, Txt> for Published {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        String: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        String: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }
    fn insert(&self, key: String, value: Txt, _: Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

const MESSAGE: &str = "From: Alice <alice@Example.com>\r\nTo: bob@remote.test\r\nSubject: signed\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@example.com>\r\n\r\nHello,\r\nthis is signed.\r\n";

async fn verify(signed: &[u8], published: &Published) -> Vec<DkimResult> {
    let resolver = MessageAuthenticator::new(
        ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
        ResolverOpts::default(),
    )
    .unwrap();
    let message = AuthenticatedMessage::parse(signed).expect("parses");
    resolver
        .verify_dkim(Parameters::new(&message).with_txt_cache(published))
        .await
        .iter()
        .map(|o| o.result().clone())
        .collect()
}

fn sign(keys: &DkimKeys, message: &[u8]) -> Vec<u8> {
    let mut signed = keys.sign(message).expect("a key for the From domain");
    assert!(signed.starts_with(b"DKIM-Signature: "));
    assert!(signed.ends_with(b"\r\n"));
    signed.extend_from_slice(message);
    signed
}

#[tokio::test]
async fn generated_rsa_key_signs_and_verifies_against_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let record = generate_dkim(dir.path(), "example.com", "s1").unwrap();
    assert_eq!(record.name, "s1._domainkey.example.com");
    assert!(
        record.value.starts_with("v=DKIM1; k=rsa; p=MII"),
        "{}",
        record.value
    );
    assert_eq!(
        dkim_record(dir.path(), "example.com").unwrap(),
        Some(record.clone())
    );
    assert_eq!(dkim_record(dir.path(), "other.test").unwrap(), None);

    let pem = std::fs::read_to_string(dir.path().join("example.com/s1.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("example.com/s1.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let keys = DkimKeys::load(dir.path()).unwrap();
    assert_eq!(
        keys.domains(),
        [("example.com".to_owned(), "s1".to_owned())]
    );
    let signed = sign(&keys, MESSAGE.as_bytes());
    let published = Published::default();
    published.publish(&record);
    assert_eq!(verify(&signed, &published).await, [DkimResult::Pass]);

    // A changed body fails: the test can fail.
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("is signed", "is forged");
    let result = verify(tampered.as_bytes(), &published).await;
    assert!(
        matches!(result[..], [DkimResult::Fail(_) | DkimResult::Neutral(_)]),
        "{result:?}"
    );
}

#[test]
fn generate_refuses_to_overwrite_and_odd_names() {
    let dir = tempfile::tempdir().unwrap();
    generate_dkim(dir.path(), "example.com", "s1").unwrap();
    assert!(matches!(
        generate_dkim(dir.path(), "EXAMPLE.com", "s1"),
        Err(DkimError::Exists(_))
    ));
    assert!(matches!(
        generate_dkim(dir.path(), "../etc", "s1"),
        Err(DkimError::Name(_))
    ));
    assert!(matches!(
        generate_dkim(dir.path(), "example.com", "a/b"),
        Err(DkimError::Name(_))
    ));
}

fn write_ed25519(dir: &Path, domain: &str, selector: &str) -> DnsRecord {
    let pair = mail_auth::dkim::generate::DkimKeyPair::generate_ed25519().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pair.private_key());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    std::fs::create_dir_all(dir.join(domain)).unwrap();
    std::fs::write(dir.join(domain).join(format!("{selector}.pem")), pem).unwrap();
    dkim_record(dir, domain).unwrap().unwrap()
}

#[tokio::test]
async fn ed25519_key_and_the_greatest_selector_signs() {
    let dir = tempfile::tempdir().unwrap();
    generate_dkim(dir.path(), "example.com", "a2023").unwrap();
    let record = write_ed25519(dir.path(), "example.com", "b2024");
    assert_eq!(record.name, "b2024._domainkey.example.com");
    assert!(record.value.starts_with("v=DKIM1; k=ed25519; p="));

    let keys = DkimKeys::load(dir.path()).unwrap();
    assert_eq!(
        keys.domains(),
        [("example.com".to_owned(), "b2024".to_owned())]
    );
    let signed = sign(&keys, MESSAGE.as_bytes());
    assert!(String::from_utf8_lossy(&signed).contains("s=b2024"));
    let published = Published::default();
    published.publish(&record);
    assert_eq!(verify(&signed, &published).await, [DkimResult::Pass]);
}

#[test]
fn no_key_no_signature_and_a_bad_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        DkimKeys::load(&dir.path().join("missing"))
            .unwrap()
            .domains()
            .is_empty()
    );
    generate_dkim(dir.path(), "example.com", "s1").unwrap();
    let keys = DkimKeys::load(dir.path()).unwrap();
    assert!(keys.sign(b"From: x@other.test\r\n\r\nbody\r\n").is_none());
    assert!(keys.sign(b"Subject: no from\r\n\r\nbody\r\n").is_none());

    std::fs::create_dir_all(dir.path().join("broken.test")).unwrap();
    std::fs::write(dir.path().join("broken.test/s.pem"), "not a key").unwrap();
    assert!(matches!(
        DkimKeys::load(dir.path()),
        Err(DkimError::Key { .. })
    ));
}

//! Talking to the CA: the HTTPS client (webpki roots plus an optional extra CA), the account
//! (loaded from `account.json` or created there), and one issuance through HTTP-01.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::files::{CertInfo, account_path, parse_cert_file, write_private};
use crate::{AcmeConfig, Challenges, Error};

/// `account.json`: the credentials instant-acme gives back (the account URL and its
/// PKCS#8 key), and the directory they belong to, so a changed `acme.directory` makes a new
/// account instead of presenting the old one to another CA.
#[derive(Serialize, Deserialize)]
struct AccountFile {
    directory: String,
    credentials: AccountCredentials,
}

/// The HTTPS client for the CA: Mozilla's roots, plus the roots in `ca_file` (a private CA,
/// or Pebble's in tests). ring, HTTP/1.1, a connect timeout; the caller bounds the rest.
fn http_client(ca_file: Option<&Path>) -> Result<Box<dyn HttpClient>, Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no certificate in it (acme.ca_file takes PEM)".into()));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::BadCertificate(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client: hyper_util::client::legacy::Client<_, BodyWrapper<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    Ok(Box::new(client))
}

/// The account in `account.json` when it belongs to `config.directory`; otherwise a new
/// account at the CA, saved there (0600) before it is used.
pub async fn load_or_create_account(data: &Path, config: &AcmeConfig) -> Result<Account, Error> {
    let directory = config.directory.clone();
    let ca = |stage| {
        let directory = directory.clone();
        move |source| Error::Ca {
            directory,
            stage,
            source,
        }
    };
    let path = account_path(data);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let file: AccountFile = serde_json::from_slice(&bytes).map_err(|e| Error::BadFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if file.directory == config.directory {
                return Account::builder_with_http(http_client(config.ca_file.as_deref())?)
                    .from_credentials(file.credentials)
                    .await
                    .map_err(ca("loading the account"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(path, e)),
    }
    create_account(data, config).await
}

/// Registers a new account at `config.directory` and saves it in `account.json` (0600),
/// replacing any other, before it is used.
pub async fn create_account(data: &Path, config: &AcmeConfig) -> Result<Account, Error> {
    let path = account_path(data);
    let directory = config.directory.clone();
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let (account, credentials) =
        Account::builder_with_http(http_client(config.ca_file.as_deref())?)
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                config.directory.clone(),
                None,
            )
            .await
            .map_err(|source| Error::Ca {
                directory,
                stage: "creating the account",
                source,
            })?;
    let file = AccountFile {
        directory: config.directory.clone(),
        credentials,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| Error::BadFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_private(&path, &json)?;
    Ok(account)
}

/// A certificate as it goes to disk: chain then key, already checked.
#[derive(Debug)]
pub struct Issued {
    pub pem: String,
    pub info: CertInfo,
}

/// Removes the tokens it was given from the shared map when the issuance ends, however it
/// ends (error, timeout, or a shutdown dropping the future).
struct Tokens<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
}

impl Drop for Tokens<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.challenges.remove(t);
        }
    }
}

/// One certificate for `names`: a new order, HTTP-01 for every pending authorization
/// (answered through `challenges`), a fresh P-256 key and its CSR, the chain. Checks what
/// the CA sent (the key is the one made here, the names are the ones asked for) before
/// returning it; writing it is the caller's business. `poll` bounds each polling phase; the
/// caller bounds the whole.
pub async fn issue(
    account: &Account,
    directory: &str,
    names: &[String],
    challenges: &Challenges,
    poll: Duration,
) -> Result<Issued, Error> {
    let ca = |stage| {
        let directory = directory.to_string();
        move |source| Error::Ca {
            directory,
            stage,
            source,
        }
    };
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(ca("creating the order"))?;
    let mut tokens = Tokens {
        challenges,
        tokens: Vec::new(),
    };
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(ca("fetching an authorization"))?;
            let name = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(Error::Challenge {
                        name,
                        detail: format!("the authorization is {other:?}"),
                    });
                }
            }
            let Some(mut challenge) = authz.challenge(ChallengeType::Http01) else {
                return Err(Error::Challenge {
                    name,
                    detail: "the CA offers no http-01 challenge".into(),
                });
            };
            challenges.insert(&challenge.token, challenge.key_authorization().as_str());
            tokens.tokens.push(challenge.token.clone());
            challenge
                .set_ready()
                .await
                .map_err(ca("answering a challenge"))?;
        }
    }
    let policy = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(poll);
    // An invalid order comes back as the order's problem; the authorization names the
    // host and holds the CA's own words, which is what the operator needs.
    let status = match order.poll_ready(&policy).await {
        Ok(status) => status,
        Err(instant_acme::Error::Api(problem)) => {
            return Err(why_invalid(&mut order)
                .await
                .unwrap_or_else(|| Error::Challenge {
                    name: names.join(", "),
                    detail: problem
                        .detail
                        .clone()
                        .unwrap_or_else(|| problem.to_string()),
                }));
        }
        Err(e) => return Err(ca("waiting for the challenges to be validated")(e)),
    };
    if status != OrderStatus::Ready {
        return Err(why_invalid(&mut order)
            .await
            .unwrap_or_else(|| Error::Order {
                status: format!("{status:?}").to_lowercase(),
            }));
    }
    drop(tokens);

    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(ca("finalizing the order"))?;
    let mut chain = order
        .poll_certificate(&policy)
        .await
        .map_err(ca("downloading the certificate"))?;
    if !chain.ends_with('\n') {
        chain.push('\n');
    }
    let pem = format!("{chain}{}", key.serialize_pem());
    let info = parse_cert_file(pem.as_bytes()).map_err(Error::BadCertificate)?;
    let mut want = names.to_vec();
    want.sort();
    want.dedup();
    let mut have = info.names.clone();
    have.sort();
    have.dedup();
    if want != have {
        return Err(Error::BadCertificate(format!(
            "it names {have:?}, not {want:?}"
        )));
    }
    Ok(Issued { pem, info })
}

/// The CA's own words for a failed validation: the first challenge error it reports.
async fn why_invalid(order: &mut instant_acme::Order) -> Option<Error> {
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        let name = authz.identifier().to_string();
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                return Some(Error::Challenge {
                    name,
                    detail: problem
                        .detail
                        .clone()
                        .unwrap_or_else(|| problem.to_string()),
                });
            }
        }
    }
    None
}

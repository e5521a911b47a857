//! What a connection needs to know before it starts: our name, the TLS policy, the
//! timeouts and, for smart hosts, credentials.

use std::time::Duration;

use rustls::pki_types::CertificateDer;

/// How to treat STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// STARTTLS when offered, any certificate accepted (RFC 7435 opportunistic security):
    /// it protects against eavesdropping, not against an active attacker, which is the
    /// usual state of server-to-server mail without DANE or MTA-STS. When the server
    /// does not offer STARTTLS, or refuses it, the session continues in plain text.
    Opportunistic,
    /// STARTTLS when offered, and then the certificate must verify against the trusted
    /// roots and the server name; a certificate that does not is a (temporary) failure.
    /// A server that offers no STARTTLS is still spoken to in plain text.
    OpportunisticVerified,
    /// STARTTLS must be offered and the certificate must verify; anything else is a
    /// (temporary) failure. For smart hosts and routes configured as secure.
    Required,
    /// Never STARTTLS.
    Disabled,
}

/// Credentials for AUTH, as a smart host wants them.
///
/// They are sent only inside TLS, or to a loopback address, so that a policy mistake
/// cannot put a password on the network in the clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    /// Leaves the password out, so that logging a configuration cannot leak it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// How long to wait at each step. The defaults are RFC 5321 section 4.5.3.2's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connection set-up (the RFC names none; one minute).
    pub connect: Duration,
    /// The 220 greeting: 5 minutes.
    pub greeting: Duration,
    /// EHLO, HELO, STARTTLS (with its handshake), AUTH, RSET and QUIT: 5 minutes.
    pub command: Duration,
    /// The reply to MAIL: 5 minutes.
    pub mail: Duration,
    /// The reply to each RCPT: 5 minutes.
    pub rcpt: Duration,
    /// The 354 reply to DATA: 2 minutes.
    pub data_init: Duration,
    /// Each block of message data written: 3 minutes.
    pub data_block: Duration,
    /// The reply after the final dot: 10 minutes. A timeout here leaves it unknown
    /// whether the server took the message.
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Timeouts {
            connect: minutes(1),
            greeting: minutes(5),
            command: minutes(5),
            mail: minutes(5),
            rcpt: minutes(5),
            data_init: minutes(2),
            data_block: minutes(3),
            data_end: minutes(10),
        }
    }
}

impl Timeouts {
    /// The same limit for every step, as tests want.
    pub fn uniform(limit: Duration) -> Self {
        Timeouts {
            connect: limit,
            greeting: limit,
            command: limit,
            mail: limit,
            rcpt: limit,
            data_init: limit,
            data_block: limit,
            data_end: limit,
        }
    }
}

/// The settings of a client, shared by all its connections.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The name we give in EHLO/HELO: our host name as the world sees it.
    pub helo_name: String,
    pub tls: TlsPolicy,
    pub timeouts: Timeouts,
    /// Log in after EHLO (and STARTTLS) when set; a server that offers neither PLAIN nor
    /// LOGIN then fails the connection.
    pub auth: Option<Credentials>,
    /// Certificates trusted as roots besides Mozilla's (webpki-roots), for a smart host
    /// with a private CA. Only the verifying policies look at them.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl ClientConfig {
    /// Opportunistic TLS, default timeouts, no credentials.
    pub fn new(helo_name: impl Into<String>) -> Self {
        ClientConfig {
            helo_name: helo_name.into(),
            tls: TlsPolicy::Opportunistic,
            timeouts: Timeouts::default(),
            auth: None,
            extra_roots: Vec::new(),
        }
    }
}

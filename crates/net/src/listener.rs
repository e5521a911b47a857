//! The accept loop: a connection limit per listener and per client address, back-off on
//! accept errors, and a shutdown signal handed to every connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::admission::{Admissions, Refusal};
use crate::{Admission, Shutdown, Stream};

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Names the protocol in logs ("smtp", "pop3").
    pub protocol: &'static str,
    pub max_connections: usize,
    /// Written to a client turned away because the listener is full, then the socket closes.
    pub busy_reply: &'static [u8],
    /// Implicit TLS (RFC 8314): the handshake runs before the session starts, within
    /// `HANDSHAKE_TIMEOUT`, and the session gets a stream that is already TLS.
    pub implicit_tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections one client address (one /64 for IPv6) may hold before logging in;
    /// 0 means no limit.
    pub max_per_address: usize,
    /// Loopback peers are exempt from `max_per_address`.
    pub exempt_loopback: bool,
}

/// One accepted client, handed to the protocol's session.
pub struct Connection {
    pub stream: Stream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub shutdown: Shutdown,
    /// The connection's slot in the listener's limits; a session that logs in tells it.
    pub admission: Admission,
}

/// Accepts connections until shutdown and runs `session` for each on its own task.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    config: ListenerConfig,
    mut shutdown: Shutdown,
    session: F,
) where
    F: Fn(Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admissions = Admissions::new(
        config.max_connections,
        config.max_per_address,
        config.exempt_loopback,
    );
    let session = Arc::new(session);
    let local = listener
        .local_addr()
        .expect("a bound listener has an address");
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.requested() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(ok) => {
                backoff = Duration::from_millis(10);
                ok
            }
            Err(e) => {
                // Running out of file descriptors must not spin the loop; wait and retry.
                tracing::warn!(protocol = config.protocol, error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (slot, admission) = match admissions.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                turn_away(tcp, peer, &config, refusal);
                continue;
            }
        };
        let session = session.clone();
        let implicit_tls = config.implicit_tls.clone();
        let protocol = config.protocol;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stream = match implicit_tls {
                None => Stream::Plain(tcp),
                Some(tls) => match crate::tls::accept_implicit(tcp, tls, protocol, peer).await {
                    Some(stream) => stream,
                    None => return,
                },
            };
            let connection = Connection {
                stream,
                peer,
                local,
                shutdown,
                admission,
            };
            session(connection).await;
            drop(slot);
        });
    }
}

/// Writes the busy reply to a client over a limit and closes, without holding up the loop.
fn turn_away(tcp: tokio::net::TcpStream, peer: SocketAddr, config: &ListenerConfig, why: Refusal) {
    match why {
        Refusal::ListenerFull => {
            tracing::warn!(protocol = config.protocol, %peer, "connection limit reached; turning a client away")
        }
        Refusal::AddressFull => {
            tracing::info!(protocol = config.protocol, %peer, "too many connections from one address; turning it away")
        }
    }
    let busy = config.busy_reply;
    tokio::spawn(async move {
        let mut tcp = tcp;
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(busy)).await;
    });
}

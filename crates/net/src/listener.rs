//! The accept loop: a connection limit per listener, back-off on accept errors, and a
//! shutdown signal handed to every connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::{Shutdown, Stream};

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
}

/// One accepted client, handed to the protocol's session.
pub struct Connection {
    pub stream: Stream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub shutdown: Shutdown,
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
    let limit = Arc::new(Semaphore::new(config.max_connections));
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
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(protocol = config.protocol, %peer, "connection limit reached; turning a client away");
            let busy = config.busy_reply;
            tokio::spawn(async move {
                let mut tcp = tcp;
                let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(busy)).await;
            });
            continue;
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
            };
            session(connection).await;
            drop(permit);
        });
    }
}

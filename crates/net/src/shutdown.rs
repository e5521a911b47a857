//! Graceful shutdown: one trigger, any number of watchers, and a way to wait for them all.

use tokio::sync::{mpsc, watch};

/// Held by the code that decides to stop the server.
pub struct ShutdownTrigger {
    signal: watch::Sender<bool>,
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
}

/// Held by every listener and connection. Dropping the last one tells the trigger that
/// everything has finished.
#[derive(Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl ShutdownTrigger {
    pub fn new() -> ShutdownTrigger {
        let (signal, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        ShutdownTrigger {
            signal,
            done_tx: Some(done_tx),
            done_rx,
        }
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            signal: self.signal.subscribe(),
            _alive: self.done_tx.clone().expect("subscribe before shutdown"),
        }
    }

    /// Tells everyone to stop and waits until every [`Shutdown`] handle is gone.
    pub async fn shutdown(mut self) {
        let _ = self.signal.send(true);
        self.done_tx.take();
        let _ = self.done_rx.recv().await;
    }
}

impl Default for ShutdownTrigger {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn is_shutting_down(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once shutdown has been requested.
    pub async fn requested(&mut self) {
        let _ = self.signal.wait_for(|stop| *stop).await;
    }
}

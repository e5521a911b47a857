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

    /// Tells everyone to stop, without waiting for them.
    pub fn request(&self) {
        self.signal.send_replace(true);
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

    /// Waits for `pause` (a tick, a sleep) unless a stop is requested first. `false` means
    /// stop now: a background job calls this between its steps, so a stop never cuts a step
    /// in half and never waits for a whole interval either.
    pub async fn pause<F: std::future::Future>(&mut self, pause: F) -> bool {
        if self.is_shutting_down() {
            return false;
        }
        tokio::select! {
            _ = pause => true,
            _ = self.requested() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn pause_ends_early_on_a_stop_and_at_once_after_one() {
        let trigger = ShutdownTrigger::new();
        let mut stop = trigger.subscribe();
        assert!(
            stop.pause(tokio::time::sleep(Duration::from_millis(1)))
                .await
        );
        let waiting = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let went_on = stop
                .pause(tokio::time::sleep(Duration::from_secs(600)))
                .await;
            // Asked again after the stop: no wait at all, even for a pause that is ready.
            let again = stop.pause(std::future::ready(())).await;
            (went_on, again, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        trigger.shutdown().await;
        let (went_on, again, waited) = waiting.await.unwrap();
        assert!(!went_on && !again);
        assert!(waited < Duration::from_secs(60), "waited {waited:?}");
    }
}

//! The server's background jobs as named services. Each one gets a stop signal, finishes the
//! step it is in (a backup, a check, a queue delivery, a usage flush), and returns: nothing
//! is aborted halfway, so a stop never leaves maintenance mode set or a statistic unwritten.
//! `serve` lists them when it starts and waits for each by name when it stops.

use std::future::Future;
use std::time::Duration;

use net::{Shutdown, ShutdownTrigger};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub struct Services {
    trigger: ShutdownTrigger,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Services {
    pub fn new() -> Services {
        Services {
            trigger: ShutdownTrigger::new(),
            running: Vec::new(),
        }
    }

    /// Starts `job`, which must return soon after its [`Shutdown`] says so.
    pub fn start<F>(&mut self, name: &'static str, job: impl FnOnce(Shutdown) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = tokio::spawn(job(self.trigger.subscribe()));
        self.running.push((name, task));
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|(name, _)| *name).collect()
    }

    /// Tells every service to stop and waits for them in the order they started, all of
    /// them within `grace`. Returns the names of those still busy when it ran out; they are
    /// left to end with the process, with a warning that names them.
    pub async fn stop(self, grace: Duration) -> Vec<&'static str> {
        let Services { trigger, running } = self;
        // Only the signal: `ShutdownTrigger::shutdown` would wait for every handle at once,
        // and could then not tell which service is late.
        trigger.request();
        let deadline = tokio::time::Instant::now() + grace;
        let mut late = Vec::new();
        for (name, task) in running {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(())) => info!(service = name, "stopped"),
                Ok(Err(e)) => warn!(service = name, error = %e, "the service had failed"),
                Err(_) => {
                    warn!(
                        service = name,
                        seconds = grace.as_secs(),
                        "the service did not finish its step in time; it ends with the process"
                    );
                    late.push(name);
                }
            }
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    #[tokio::test]
    async fn a_stop_lets_each_service_finish_its_step_and_names_the_late_one() {
        let mut services = Services::new();
        let steps = Arc::new(AtomicU32::new(0));
        let step_finished = Arc::new(AtomicBool::new(false));
        {
            let steps = steps.clone();
            services.start("ticker", |mut stop| async move {
                while stop
                    .pause(tokio::time::sleep(Duration::from_millis(5)))
                    .await
                {
                    steps.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        {
            let finished = step_finished.clone();
            services.start("busy", |mut stop| async move {
                stop.requested().await;
                // The step in progress when the stop came: it completes.
                tokio::time::sleep(Duration::from_millis(50)).await;
                finished.store(true, Ordering::Relaxed);
            });
        }
        services.start("deaf", |_stop| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        assert_eq!(services.names(), ["ticker", "busy", "deaf"]);
        // Stop after the ticker has stepped: a stop and a step due in the same turn may
        // go either way.
        while steps.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let started = std::time::Instant::now();
        let late = services.stop(Duration::from_millis(500)).await;
        assert_eq!(late, ["deaf"]);
        assert!(step_finished.load(Ordering::Relaxed));
        assert!(steps.load(Ordering::Relaxed) > 0);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

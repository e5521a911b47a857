//! How a long operation tells its face where it is. An operation never draws anything: it
//! names its phases and counts units, and the face decides what that looks like (a bar on a
//! terminal, nothing in a script, a percentage in the web console, a line in the log).

use std::sync::Arc;

/// What a phase counts, so a face can show "3/10" or "1.2 MiB/40 MiB".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Items,
    Bytes,
}

/// Every method has a default that does nothing, so a face implements only what it shows.
/// Calls may come from several threads at once (the check verifies blobs in parallel).
pub trait Progress: Send + Sync {
    /// A new phase begins ("verifying blobs", "copying"), with its total units (items or
    /// bytes) when they are known.
    fn phase(&self, _name: &str, _unit: Unit, _total: Option<u64>) {}
    /// The total of the current phase became known or changed.
    fn total(&self, _total: u64) {}
    /// `done` units of the current phase are finished. Parallel workers may report out of
    /// order; a face that draws should never step back.
    fn advance(&self, _done: u64) {}
    /// The operation is over (successfully or not): a face clears what it drew.
    fn finish(&self) {}
    /// Something worth one line while the operation goes on (a skipped message and why).
    fn note(&self, _line: &str) {}
}

/// Who started a long operation: the operator by hand, or the server's daily schedule.
/// The result logs and the backup manifest say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Scheduled,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
        }
    }

    /// The line of a result log that says who ran it and when.
    pub fn run_times(self, started: &jiff::Zoned, finished: &jiff::Zoned, seconds: f64) -> String {
        const FORMAT: &str = "%Y-%m-%d %H:%M:%S %z";
        format!(
            "{} run, started {}, finished {} ({seconds:.1} s)",
            self.label(),
            started.strftime(FORMAT),
            finished.strftime(FORMAT)
        )
    }
}

/// For callers that show nothing: scheduled runs, tests.
pub struct Silent;

impl Progress for Silent {}

/// Shared by value, so an operation can hand it to a worker thread or to the store.
pub type Reporter = Arc<dyn Progress>;

pub fn silent() -> Reporter {
    Arc::new(Silent)
}

/// The store's `(done, total)` callback, feeding a reporter.
pub fn for_store(progress: &Reporter) -> store::Progress {
    let progress = progress.clone();
    Arc::new(move |done, total| {
        progress.total(total);
        progress.advance(done);
    })
}

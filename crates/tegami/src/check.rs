//! The faces of `ops::check`: `tegami check`, `check --recover-orphans` and `optimize` print
//! the report on standard output (a progress bar on standard error when that is a
//! terminal). The operations, and the result logs in `log/`, are ops'; the server's daily
//! run is in `schedule.rs`.

use std::process::ExitCode;
use std::sync::Arc;

use ops::Ops;
use ops::check::CheckRequest;
use ops::progress::{Progress, Reporter, Unit};

use ops::check::Trigger;

/// `tegami check [--repair]`: the report, a hint on standard error when the store is not
/// healthy, and exit 1 then.
pub fn run_check(ops: &Ops, repair: bool) -> anyhow::Result<ExitCode> {
    let request = CheckRequest {
        repair,
        trigger: Trigger::Manual,
    };
    let outcome = ops.check(&request, &manual())?;
    print!("{}", outcome.summary);
    if let Some(hint) = &outcome.hint {
        eprintln!("tegami: {hint}");
    }
    Ok(if outcome.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `tegami optimize`.
pub fn run_optimize(ops: &Ops) -> anyhow::Result<ExitCode> {
    let outcome = ops.optimize(Trigger::Manual, &manual())?;
    print!("{}", outcome.summary);
    Ok(ExitCode::SUCCESS)
}

/// `tegami check --recover-orphans --account ADDRESS [--mailbox NAME]`: exit 1 when some
/// files could not be taken back.
pub fn run_recover_orphans(ops: &Ops, account: &str, mailbox: &str) -> anyhow::Result<ExitCode> {
    let outcome = ops.recover_orphans(account, mailbox, &manual())?;
    println!("{}", outcome.line);
    let report = &outcome.report;
    for left in &report.left {
        println!("  left in quarantine: {left}");
    }
    if report.young > 0 {
        println!(
            "  {} unreferenced blob files younger than five minutes were left alone (perhaps \
             deliveries in flight); run again later if they stay",
            report.young
        );
    }
    if !outcome.complete() {
        eprintln!(
            "tegami: {} files in {} are not message bodies this store can take back (listed \
             above); look at them and delete them when you are done",
            report.left.len(),
            outcome.orphans_dir.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The check for the server's schedule (and any caller holding a store): a scheduled run
/// prints nothing and says its result in one line of the server's log.
fn manual() -> Reporter {
    Arc::new(Notes(crate::progress::terminal()))
}

struct Notes(Reporter);

impl Progress for Notes {
    fn phase(&self, name: &str, unit: Unit, total: Option<u64>) {
        self.0.phase(name, unit, total);
    }
    fn total(&self, total: u64) {
        self.0.total(total);
    }
    fn advance(&self, done: u64) {
        self.0.advance(done);
    }
    fn finish(&self) {
        self.0.finish();
    }
    fn note(&self, line: &str) {
        eprintln!("tegami: {line}");
    }
}

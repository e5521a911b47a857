//! The operations logs in `log/`: appended histories (`maintenance.log`, `optimize.log`) and
//! latest-result files (`maintenance_result.log`, `optimize_result.log`), as operators of
//! the products we replace expect to find them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Appends one line, stamped with the local time, to `log/<name>`.
pub fn append(log_dir: &Path, name: &str, now: &jiff::Zoned, line: &str) -> std::io::Result<()> {
    fs::create_dir_all(log_dir)?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(name))?;
    writeln!(file, "{} {line}", now.strftime("%Y-%m-%d %H:%M:%S %z"))
}

/// Replaces `log/<name>` with `content` atomically: readers see the old result or the new one.
pub fn replace(log_dir: &Path, name: &str, content: &str) -> std::io::Result<()> {
    fs::create_dir_all(log_dir)?;
    let tmp = log_dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, content)?;
    fs::rename(&tmp, log_dir.join(name))
}

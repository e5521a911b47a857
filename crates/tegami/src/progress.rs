//! The terminal's face of `ops::Progress`: one indicatif bar per phase on standard error when
//! it is a terminal, nothing otherwise (scripts and pipes get only the report).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ops::progress::{Progress, Reporter, Unit};

/// A reporter for a manual run: bars on a terminal, silence elsewhere.
pub fn terminal() -> Reporter {
    if std::io::stderr().is_terminal() {
        Arc::new(Bars(Mutex::new(None)))
    } else {
        ops::progress::silent()
    }
}

struct Bars(Mutex<Option<ProgressBar>>);

impl Bars {
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            f(bar);
        }
    }
}

impl Progress for Bars {
    fn phase(&self, name: &str, unit: Unit, total: Option<u64>) {
        let mut current = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = current.take() {
            bar.finish_and_clear();
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let counts = match unit {
            Unit::Items => "{pos}/{len} ({per_sec}, {eta} left)",
            Unit::Bytes => "{bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        };
        if let Ok(style) = ProgressStyle::with_template(&format!("{name} {{wide_bar}} {counts}")) {
            bar.set_style(style);
        }
        *current = Some(bar);
    }

    fn total(&self, total: u64) {
        self.with(|bar| bar.set_length(total));
    }

    fn advance(&self, done: u64) {
        // Workers finish out of order; never let the bar step back.
        self.with(|bar| bar.set_position(done.max(bar.position())));
    }

    fn note(&self, line: &str) {
        self.with(|bar| bar.suspend(|| eprintln!("{line}")));
    }

    fn finish(&self) {
        if let Some(bar) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

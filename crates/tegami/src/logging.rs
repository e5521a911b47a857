//! Logs to stderr and to `log/tegami.log`, rotated by size with a cap on the number of
//! files: however long the server runs, its logs take at most `max_files × max_file_bytes`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use ops::config::LogConfig;

/// Logs to stderr only: for the short-lived CLI commands.
pub fn init_stderr(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(filter)
        .try_init();
}

/// Logs to stderr and to the rotated file in `dir`: for `serve`.
pub fn init_server(dir: &Path, config: &LogConfig) -> anyhow::Result<()> {
    let file = RotatingFile::open(
        dir.join("tegami.log"),
        config.max_file_bytes,
        config.max_files,
    )?;
    // Resolving the config refused a level that is no level; this only guards a caller that
    // built a `LogConfig` by hand, so a bad filter never silently becomes another one.
    EnvFilter::try_new(&config.level)
        .map_err(|e| anyhow::anyhow!("log.level = {:?} is not valid: {e}", config.level))?;
    let filter = || EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(io::stderr().is_terminal())
                .with_writer(io::stderr)
                .with_filter(filter()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(file)
                .with_filter(filter()),
        )
        .try_init()?;
    Ok(())
}

/// A log file that moves itself aside once it reaches `max_bytes`:
/// `tegami.log` → `tegami.log.1` → … → `tegami.log.{max_files-1}`, oldest dropped.
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Current>>,
}

struct Current {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    max_files: usize,
}

impl RotatingFile {
    pub fn open(path: PathBuf, max_bytes: u64, max_files: usize) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            inner: Arc::new(Mutex::new(Current {
                path,
                file,
                written,
                max_bytes,
                max_files: max_files.max(1),
            })),
        })
    }
}

impl Current {
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        // With one file allowed, the current file is simply started afresh.
        if self.max_files > 1 {
            let _ = fs::remove_file(numbered(self.max_files - 1));
            for n in (1..self.max_files - 1).rev() {
                let _ = fs::rename(numbered(n), numbered(n + 1));
            }
            fs::rename(&self.path, numbered(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut current = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if current.written > 0 && current.written + buf.len() as u64 > current.max_bytes {
            // A failed rotation (say, a full disk) must not stop logging to stderr or the
            // server itself; the line is dropped from the file instead.
            if current.rotate().is_err() {
                return Ok(buf.len());
            }
        }
        current.file.write_all(buf)?;
        current.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .flush()
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_total_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tegami.log");
        let mut log = RotatingFile::open(path.clone(), 1000, 3).unwrap();
        for i in 0..500 {
            writeln!(log, "line {i:04} of a log that would fill the disk").unwrap();
        }
        let mut files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "{files:?}");
        let total: u64 = files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
        assert!(total <= 3000, "{total}");
        let newest = fs::read_to_string(&path).unwrap();
        assert!(
            newest.contains("line 0499"),
            "the newest lines are in tegami.log"
        );
        let older = fs::read_to_string(dir.path().join("tegami.log.1")).unwrap();
        assert!(!older.contains("line 0499") && older.contains("line 04"));
    }
}

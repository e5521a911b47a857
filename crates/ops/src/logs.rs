//! The server's own log (`log/tegami.log`, rotated as `tegami.log.1`, ...) read back for a
//! face: the most recent lines at or above a level. Only the end of the files is read, so
//! a large log costs no more than a small one.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::{Error, Result};

/// The log file `serve` writes in `log/`.
pub const SERVER_LOG: &str = "tegami.log";

/// How much of the end of each file is read.
const TAIL_BYTES: u64 = 512 * 1024;

/// At most this many lines are returned, whatever is asked.
pub const LINES_MAX: usize = 1000;

/// The levels of the server's log lines, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ];

    /// As the log writes it ("WARN").
    pub fn label(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// "warn", "WARN" or "Warn".
    pub fn parse(text: &str) -> Result<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.label().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "'{text}' is not a log level: trace, debug, info, warn or error"
                ))
            })
    }
}

/// One line of the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// As the log stamps it (UTC, RFC 3339).
    pub at: String,
    pub level: Level,
    /// The rest: where it comes from, the message and its fields.
    pub text: String,
}

/// Reads one line as `tracing` writes it: `<time>  <LEVEL> <target>: <message> <fields>`.
/// A line that does not start so (a continuation of a multi-line message) is `None`.
pub fn parse_line(line: &str) -> Option<Line> {
    let line = line.trim_end();
    let (at, rest) = line.split_once(' ')?;
    if !at.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let rest = rest.trim_start();
    let (level, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let level = Level::ALL.into_iter().find(|l| l.label() == level)?;
    Some(Line {
        at: at.to_string(),
        level,
        text: text.trim_start().to_string(),
    })
}

/// The most recent lines of the server's log at `min` or above, newest first, at most
/// `limit` (and never more than [`LINES_MAX`]). The newest file is read first, then the
/// rotated ones while lines are still wanted.
pub fn recent(data: &Path, min: Level, limit: usize) -> Result<Vec<Line>> {
    let limit = limit.min(LINES_MAX);
    let dir = data.join("log");
    let mut out = Vec::new();
    for n in 0..10 {
        let name = if n == 0 {
            SERVER_LOG.to_string()
        } else {
            format!("{SERVER_LOG}.{n}")
        };
        let Some(text) = tail(&dir.join(&name))? else {
            break;
        };
        for line in text.lines().rev() {
            if out.len() >= limit {
                return Ok(out);
            }
            if let Some(line) = parse_line(line)
                && line.level >= min
            {
                out.push(line);
            }
        }
    }
    Ok(out)
}

/// The last [`TAIL_BYTES`] of a file, from its first whole line; `None` when it is absent.
fn tail(path: &Path) -> Result<Option<String>> {
    let io = |source| Error::Io {
        context: format!("cannot read {}", path.display()),
        source,
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let len = file.metadata().map_err(io)?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // The first line read began before the tail.
        let cut = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..cut);
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_as_tracing_writes_them() {
        let line = parse_line(
            "2026-12-07T06:41:30.123456Z  WARN tegami::serve: starting in maintenance mode until=None",
        )
        .unwrap();
        assert_eq!(line.at, "2026-12-07T06:41:30.123456Z");
        assert_eq!(line.level, Level::Warn);
        assert_eq!(
            line.text,
            "tegami::serve: starting in maintenance mode until=None"
        );
        assert_eq!(
            parse_line("2026-12-07T06:41:30Z ERROR x: y").unwrap().level,
            Level::Error
        );
        assert_eq!(parse_line("   continued message"), None);
        assert_eq!(parse_line("2026-12-07T06:41:30Z NOTICE x"), None);
        assert_eq!(Level::parse("warn").unwrap(), Level::Warn);
        assert!(matches!(Level::parse("loud"), Err(Error::Invalid(_))));
    }

    #[test]
    fn recent_lines_are_filtered_by_level_newest_first_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(recent(dir.path(), Level::Trace, 10).unwrap().is_empty());
        let log = dir.path().join("log");
        std::fs::create_dir(&log).unwrap();
        std::fs::write(
            log.join("tegami.log.1"),
            "2026-12-07T01:00:00Z ERROR a: oldest error\n2026-12-07T01:00:01Z  INFO a: old info\n",
        )
        .unwrap();
        std::fs::write(
            log.join("tegami.log"),
            "2026-12-07T02:00:00Z  WARN a: a warning\n  second line\n2026-12-07T02:00:01Z  INFO a: newest\n",
        )
        .unwrap();
        let texts = |lines: Vec<Line>| lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(
            texts(recent(dir.path(), Level::Info, 10).unwrap()),
            [
                "a: newest",
                "a: a warning",
                "a: old info",
                "a: oldest error"
            ]
        );
        assert_eq!(
            texts(recent(dir.path(), Level::Warn, 10).unwrap()),
            ["a: a warning", "a: oldest error"]
        );
        assert_eq!(
            texts(recent(dir.path(), Level::Trace, 2).unwrap()),
            ["a: newest", "a: a warning"]
        );
    }

    #[test]
    fn only_the_end_of_a_large_log_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::create_dir(&log).unwrap();
        let mut text = String::new();
        let mut n = 0;
        while text.len() < 3 * TAIL_BYTES as usize {
            text.push_str(&format!("2026-12-07T02:00:00Z  INFO a: line {n}\n"));
            n += 1;
        }
        std::fs::write(log.join("tegami.log"), &text).unwrap();
        let lines = recent(dir.path(), Level::Info, LINES_MAX + 50).unwrap();
        assert_eq!(lines.len(), LINES_MAX);
        assert_eq!(lines[0].text, format!("a: line {}", n - 1));
    }
}

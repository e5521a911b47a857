//! A reader that stops early (`tegami campaign show 1 | head -1`, `queue list | head`) is
//! not an error: the command ends with success and says nothing, as `doctor` does.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe returns EPIPE, and `println!` turns
//! that into a panic (exit 101 with a backtrace hint). Every face prints with `println!`,
//! so the one place that sees them all is the panic hook. Errors returned with `?` are not
//! touched: a backup or an export streamed into a pipe that closes has failed, and must
//! say so.

use std::io;

/// Installs a panic hook that exits with success when the panic is a print to a closed
/// stdout or stderr, and leaves every other panic to the hook that was there.
pub fn install() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload_as_str().is_some_and(closed_pipe_panic) {
            // Nothing can be said: the reader is gone. What was done is committed (every
            // store change is durable when its call returns), so stop here.
            std::process::exit(0);
        }
        previous(info)
    }));
}

/// `print!`'s panic message when its write failed with EPIPE.
fn closed_pipe_panic(message: &str) -> bool {
    message.starts_with("failed printing to std")
        && message.contains(&io::Error::from_raw_os_error(libc::EPIPE).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_print_into_a_closed_pipe_counts() {
        let epipe = io::Error::from_raw_os_error(libc::EPIPE);
        assert!(closed_pipe_panic(&format!(
            "failed printing to stdout: {epipe}"
        )));
        assert!(closed_pipe_panic(&format!(
            "failed printing to stderr: {epipe}"
        )));
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(!closed_pipe_panic(&format!(
            "failed printing to stdout: {full}"
        )));
        assert!(!closed_pipe_panic(&format!("index out of bounds: {epipe}")));
    }
}

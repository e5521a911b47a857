//! A connection's buffers: bytes read but not yet parsed, and replies not yet written.
//!
//! Sessions parse commands straight out of `input` and append replies to `output`; replies
//! to pipelined commands are written together when the client's input runs dry.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Stream;

pub struct Wire {
    pub stream: Stream,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
}

/// How a wait for more input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// New bytes are in `input`.
    Data,
    /// The client closed the connection.
    Closed,
    /// The client stayed silent for the whole timeout.
    TimedOut,
    /// The wake-up future resolved first (shutdown, maintenance): nothing was read.
    Woken,
}

impl Wire {
    pub fn new(stream: Stream) -> Wire {
        Wire {
            stream,
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(1024),
        }
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Reads up to `chunk` more bytes, waiting at most `timeout`; `wake` cuts the wait short.
    pub async fn read_more(
        &mut self,
        chunk: usize,
        timeout: Duration,
        wake: impl Future<Output = ()>,
    ) -> io::Result<Read> {
        self.input.reserve(chunk);
        tokio::select! {
            read = tokio::time::timeout(timeout, self.stream.read_buf(&mut self.input)) => match read {
                Ok(Ok(0)) => Ok(Read::Closed),
                Ok(Ok(_)) => Ok(Read::Data),
                Ok(Err(e)) => Err(e),
                Err(_) => Ok(Read::TimedOut),
            },
            _ = wake => Ok(Read::Woken),
        }
    }
}

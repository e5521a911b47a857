//! A buffered TCP connection with the two reads every text protocol needs: a line, and n bytes.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

pub type Result<T> = std::result::Result<T, String>;

/// Longest line accepted from a server before the run is declared failed.
const MAX_LINE: usize = 1 << 20;

pub struct Conn {
    stream: BufStream<TcpStream>,
    timeout: Duration,
    pub line: Vec<u8>,
    scratch: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr}: timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("set_nodelay: {e}"))?;
        Ok(Conn {
            stream: BufStream::with_capacity(64 * 1024, 64 * 1024, tcp),
            timeout,
            line: Vec::with_capacity(1024),
            scratch: Vec::new(),
        })
    }

    /// Reads one line into `self.line` (CRLF included); end of stream is an error.
    pub async fn read_line(&mut self) -> Result<()> {
        self.line.clear();
        let n = tokio::time::timeout(self.timeout, self.stream.read_until(b'\n', &mut self.line))
            .await
            .map_err(|_| "server silent for too long".to_string())?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        if self.line.len() > MAX_LINE {
            return Err("line longer than 1 MiB".into());
        }
        Ok(())
    }

    /// Reads and discards exactly `n` bytes (an IMAP literal).
    pub async fn skip(&mut self, n: usize) -> Result<()> {
        self.scratch.resize(n, 0);
        tokio::time::timeout(self.timeout, self.stream.read_exact(&mut self.scratch))
            .await
            .map_err(|_| "server silent for too long".to_string())?
            .map_err(|e| format!("read literal: {e}"))?;
        Ok(())
    }

    /// Queues bytes; nothing is sent before `flush`.
    pub async fn write(&mut self, b: &[u8]) -> Result<()> {
        self.stream
            .write_all(b)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    pub async fn flush(&mut self) -> Result<()> {
        self.stream.flush().await.map_err(|e| format!("flush: {e}"))
    }

    pub async fn send(&mut self, b: &[u8]) -> Result<()> {
        self.write(b).await?;
        self.flush().await
    }

    pub fn line_str(&self) -> String {
        String::from_utf8_lossy(&self.line).trim_end().to_string()
    }
}

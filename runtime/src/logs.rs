//! Bounded capture of a guest's stdout and stderr for one invocation.
//!
//! A guest that prints too much loses the excess, never traps: the first
//! `log_bytes_max` bytes are kept and the rest only counted.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// What a guest wrote to one stream during one invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedStream {
    /// The first bytes written, up to the invocation's `log_bytes_max`.
    pub bytes: Bytes,
    /// Bytes written beyond the bound and dropped.
    pub bytes_dropped: u64,
}

/// Both output streams of one invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestLogs {
    /// The guest's stdout.
    pub stdout: CapturedStream,
    /// The guest's stderr.
    pub stderr: CapturedStream,
}

#[derive(Debug)]
struct Buffer {
    bytes: Vec<u8>,
    bytes_max: usize,
    bytes_dropped: u64,
}

/// A cloneable handle on one bounded buffer; every clone writes to it.
#[derive(Clone, Debug)]
pub(crate) struct LogPipe(Arc<Mutex<Buffer>>);

/// Largest write a guest is told it may make at once.
const WRITE_CHUNK_MAX: usize = 64 << 10;

impl LogPipe {
    pub(crate) fn new(bytes_max: u32) -> Self {
        LogPipe(Arc::new(Mutex::new(Buffer {
            bytes: Vec::new(),
            bytes_max: bytes_max as usize,
            bytes_dropped: 0,
        })))
    }

    fn append(&self, data: &[u8]) {
        // A poisoned lock means a writer panicked mid-append; the bytes are
        // still valid, so keep using them.
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = buffer.bytes_max.saturating_sub(buffer.bytes.len());
        let kept = data.len().min(room);
        buffer.bytes.extend_from_slice(&data[..kept]);
        buffer.bytes_dropped += (data.len() - kept) as u64;
    }

    pub(crate) fn take(&self) -> CapturedStream {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        CapturedStream {
            bytes: Bytes::from(std::mem::take(&mut buffer.bytes)),
            bytes_dropped: buffer.bytes_dropped,
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_CHUNK_MAX)
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let pipe = LogPipe::new(4);
        pipe.append(b"abc");
        pipe.append(b"defg");
        let captured = pipe.take();
        assert_eq!(&captured.bytes[..], b"abcd");
        assert_eq!(captured.bytes_dropped, 3);
    }
}

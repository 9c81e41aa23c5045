//! Guest stdout and stderr, written line by line to the host log tagged with
//! the app, so a `println!` in a handler is visible and attributable.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept; the rest of a longer line is cut off.
const MAX_LINE: usize = 4096;

/// Which of the guest's streams this is.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A WASI output stream that logs each line with the app's name.
#[derive(Clone)]
pub struct GuestOutput {
    /// The app the lines come from.
    app: Arc<str>,
    /// stdout or stderr (stderr lines log at warn level).
    stream: Stream,
}

impl GuestOutput {
    pub fn new(app: Arc<str>, stream: Stream) -> Self {
        Self { app, stream }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger {
            sink: self.clone(),
            line: BytesMut::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only the WASI 0.2 stream is linked; anything else sees a sink.
        Box::new(tokio::io::sink())
    }
}

/// The per-stream line buffer behind [`GuestOutput`].
struct LineLogger {
    /// Where complete lines go.
    sink: GuestOutput,
    /// The incomplete last line, at most [`MAX_LINE`] bytes.
    line: BytesMut,
}

impl LineLogger {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            self.line.clear();
            return;
        }
        match self.sink.stream {
            Stream::Stdout => tracing::info!(app = %self.sink.app, "stdout: {text}"),
            Stream::Stderr => tracing::warn!(app = %self.sink.app, "stderr: {text}"),
        }
        self.line.clear();
    }
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let room = MAX_LINE.saturating_sub(self.line.len());
            let (body, newline) = match chunk.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (chunk, false),
            };
            self.line.extend_from_slice(&body[..body.len().min(room)]);
            if newline {
                self.emit();
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

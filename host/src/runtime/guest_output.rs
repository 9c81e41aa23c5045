//! Everything an app writes to the host log: its stdout and stderr line by
//! line, its `logging` calls, and warnings about its templates. Each line is
//! tagged with the app, so it is attributable; rate-limited per app (one
//! allowance for all of them), so a guest cannot flood the host's log; and
//! its control characters are escaped, so a guest (or a client whose input
//! it echoes) cannot forge log lines or drive a terminal.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line kept; the rest of a longer line is cut off.
const MAX_LINE: usize = 4096;
/// Lines per second an app may log, on average.
const LINES_PER_SECOND: f64 = 100.0;
/// Lines an app may log in a burst.
const BURST: f64 = 200.0;

/// An app's allowance of log lines (a token bucket), shared by its stdout
/// and stderr and by every instance of the app.
#[derive(Debug)]
pub(crate) struct OutputBudget {
    /// Lines that may be logged now.
    tokens: f64,
    /// When `tokens` was last topped up.
    refilled: Instant,
    /// Lines dropped since the last report.
    dropped: u64,
}

impl Default for OutputBudget {
    fn default() -> Self {
        Self {
            tokens: BURST,
            refilled: Instant::now(),
            dropped: 0,
        }
    }
}

impl OutputBudget {
    /// Takes one line's allowance; on success also returns how many lines
    /// were dropped since the last line that got through.
    fn take(&mut self) -> Option<u64> {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * LINES_PER_SECOND;
        self.tokens = (self.tokens + earned).min(BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            None
        }
    }
}

/// One app's way into the host log, shared by all its instances.
#[derive(Debug, Clone)]
pub(crate) struct AppLog {
    /// The app the lines come from.
    app: Arc<str>,
    /// The app's allowance of lines.
    budget: Arc<Mutex<OutputBudget>>,
}

impl AppLog {
    /// A log for `app` with a full allowance.
    pub(crate) fn new(app: Arc<str>) -> Self {
        Self {
            app,
            budget: Default::default(),
        }
    }

    /// Logs one line of the app's at `level`, if its allowance has room;
    /// says how many were dropped since the last one that got through.
    pub(crate) fn line(&self, level: tracing::Level, source: &str, text: &str) {
        let allowed = self.budget.lock().unwrap_or_else(|e| e.into_inner()).take();
        let app = &*self.app;
        match allowed {
            None => return,
            Some(0) => {}
            Some(dropped) => tracing::warn!(
                app = %app,
                dropped,
                "guest output over its rate limit ({LINES_PER_SECOND} lines/s); lines dropped"
            ),
        }
        let text = escaped(text);
        match level {
            tracing::Level::ERROR => tracing::error!(app = %app, "{source}: {text}"),
            tracing::Level::WARN => tracing::warn!(app = %app, "{source}: {text}"),
            tracing::Level::INFO => tracing::info!(app = %app, "{source}: {text}"),
            tracing::Level::DEBUG => tracing::debug!(app = %app, "{source}: {text}"),
            tracing::Level::TRACE => tracing::trace!(app = %app, "{source}: {text}"),
        }
    }
}

/// `text` with control characters (line breaks, escapes) written as
/// `\u{..}`, so one logged line stays one line and says only what it says.
pub(crate) fn escaped(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Which of the guest's streams this is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// A WASI output stream that logs each line with the app's name.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    /// Where its lines go.
    log: AppLog,
    /// stdout or stderr (stderr lines log at warn level).
    stream: Stream,
}

impl GuestOutput {
    pub(crate) fn new(log: AppLog, stream: Stream) -> Self {
        Self { log, stream }
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
        if !text.trim().is_empty() {
            match self.sink.stream {
                Stream::Stdout => self.sink.log.line(tracing::Level::INFO, "stdout", text),
                Stream::Stderr => self.sink.log.line(tracing::Level::WARN, "stderr", text),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escaped("plain\ttext"), "plain\ttext");
        assert_eq!(
            escaped("forged\n2026 INFO admin logged in\u{1b}[2J"),
            "forged\\u{a}2026 INFO admin logged in\\u{1b}[2J"
        );
    }

    #[test]
    fn a_burst_is_allowed_then_lines_are_dropped_and_counted() {
        let mut budget = OutputBudget::default();
        let passed = (0..1000).filter(|_| budget.take().is_some()).count();
        // The burst, plus whatever trickled in while the loop ran.
        assert!((200..210).contains(&passed), "{passed}");
        assert!(budget.dropped >= 790);
        budget.refilled -= std::time::Duration::from_secs(1);
        assert!(matches!(budget.take(), Some(d) if d >= 790));
    }
}

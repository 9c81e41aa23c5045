//! Write deadlines for HTTP connections: a connection whose peer takes
//! none of our bytes for longer than the write timeout is dropped. So a
//! client that asks for a response and never reads it holds its socket,
//! its slot and the response's buffers for that long at most.
//!
//! The socket wrapper ([`Watched`]) only notes when a write started to
//! wait and clears it when bytes go through; the connection's task runs
//! the [`Stall::deadline`] beside the connection and drops it when the
//! wait is too long. The check lives outside the socket because the HTTP
//! stack, once a write has waited, may not try the socket again until it
//! is woken by the socket itself.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Since when one connection's writes have been waiting for the peer.
#[derive(Debug)]
pub(crate) struct Stall {
    /// When the connection started, the origin of `since`.
    origin: Instant,
    /// Nanoseconds after `origin` at which the waiting write began; 0
    /// while nothing waits.
    since: AtomicU64,
}

impl Stall {
    /// Nothing waiting yet.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            since: AtomicU64::new(0),
        })
    }

    fn waiting(&self) {
        if self.since.load(Ordering::Relaxed) == 0 {
            let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.since.store(nanos.max(1), Ordering::Relaxed);
        }
    }

    fn moved(&self) {
        self.since.store(0, Ordering::Relaxed);
    }

    /// How long the current write has waited, if one waits.
    fn stalled_for(&self) -> Option<Duration> {
        let since = self.since.load(Ordering::Relaxed);
        (since != 0).then(|| {
            self.origin
                .elapsed()
                .saturating_sub(Duration::from_nanos(since))
        })
    }

    /// Resolves once a write has waited `timeout` without the peer taking
    /// a byte; checked a few times per timeout, so a connection is dropped
    /// within 1.25 × `timeout`.
    pub(crate) async fn deadline(&self, timeout: Duration) {
        let mut checks = tokio::time::interval((timeout / 4).max(Duration::from_millis(10)));
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            checks.tick().await;
            if self.stalled_for().is_some_and(|waited| waited >= timeout) {
                return;
            }
        }
    }
}

/// A socket whose waiting writes are noted in a [`Stall`].
#[derive(Debug)]
pub(crate) struct Watched<S> {
    /// The socket.
    inner: S,
    /// Where its writes' waiting is noted.
    stall: Arc<Stall>,
}

impl<S> Watched<S> {
    /// Wraps `inner`, noting in `stall`.
    pub(crate) fn new(inner: S, stall: Arc<Stall>) -> Self {
        Self { inner, stall }
    }

    /// Passes on a write's outcome: bytes taken (or an error) clear the
    /// stall, waiting starts it. An empty write, or a flush (a TCP flush
    /// completes at once), is no sign the peer takes anything.
    fn note(&self, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match &poll {
            Poll::Pending => self.stall.waiting(),
            Poll::Ready(Ok(0)) => {}
            Poll::Ready(_) => self.stall.moved(),
        }
        poll
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_nobody_reads_meets_the_deadline() {
        // A pipe with room for 16 bytes, whose other end is never read.
        let (near, _far) = tokio::io::duplex(16);
        let stall = Stall::new();
        let mut socket = Watched::new(near, stall.clone());
        let started = Instant::now();
        tokio::select! {
            _ = socket.write_all(&[0; 64]) => panic!("the write went through"),
            () = stall.deadline(Duration::from_millis(100)) => {}
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_up_is_never_cut_off() {
        let (near, mut far) = tokio::io::duplex(16);
        let timeout = Duration::from_secs(1);
        let stall = Stall::new();
        let mut socket = Watched::new(near, stall.clone());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 16];
            while got.len() < 192 {
                // Each read comes well within the timeout; all of them
                // together take longer than one timeout.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let n = far.read(&mut chunk).await.unwrap();
                got.extend_from_slice(&chunk[..n]);
            }
            got.len()
        });
        let started = Instant::now();
        tokio::select! {
            written = socket.write_all(&[7; 192]) => written.unwrap(),
            () = stall.deadline(timeout) => panic!("cut off after {:?}", started.elapsed()),
        }
        assert!(started.elapsed() > timeout);
        assert_eq!(reader.await.unwrap(), 192);
        assert_eq!(stall.stalled_for(), None);
    }
}

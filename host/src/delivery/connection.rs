//! One connection as delivery sees it: its id, its [`Room`], and its
//! bounded outbox, into which frames are queued without blocking. A
//! connection whose outbox fills up, in frames or in bytes, is a slow
//! consumer: it is evicted (closed with 1008) rather than allowed to stall
//! the sender or the rest of its path group.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::close;
use crate::telemetry::AppMetrics;

/// Identifies a connection; unique across host instances (see [`ConnectionRegistry::next_id`]).
pub(crate) type ConnectionId = Arc<str>;

/// A broadcast group: the connections one app serves on one concrete path.
///
/// Stored as one string, the app's name followed by the path
/// (`chat/ws/room/lobby`): app names never hold a `/` and paths always
/// start with one, so the split is unambiguous, and the same string names
/// the room on the backplane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Room(Arc<str>);

impl Room {
    /// The room of `app`'s connections on `path` (a decoded, canonical path).
    pub(crate) fn new(app: &str, path: &str) -> Self {
        debug_assert!(!app.contains('/') && path.starts_with('/'));
        Self(format!("{app}{path}").into())
    }

    /// A room named by another instance; `None` unless well formed.
    pub(crate) fn parse(key: &str) -> Option<Self> {
        let split = key.find('/')?;
        (split > 0).then(|| Self(key.into()))
    }

    fn split(&self) -> usize {
        self.0.find('/').unwrap_or(self.0.len())
    }

    /// The app whose room it is.
    pub(crate) fn app(&self) -> &str {
        &self.0[..self.split()]
    }

    /// The concrete path.
    pub(crate) fn path(&self) -> &str {
        &self.0[self.split()..]
    }

    /// The whole key, as instances exchange it.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} of app {:?}", self.path(), self.app())
    }
}

/// How much one connection's outbox may hold: in frames (each costs its
/// slot from the start), and in bytes of payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutboxBounds {
    /// Frames queued at most.
    pub(crate) frames: usize,
    /// Payload bytes queued at most; one frame always fits.
    pub(crate) bytes: usize,
}

/// What a connection's writer is asked to do. One pointer and a tag wide
/// (a test holds it there): every outbox allocates room for 32 of these
/// when its connection opens, so the size of this type is memory every
/// idle connection pays.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    /// Send this frame; one allocation shared by every recipient.
    Frame(Arc<Message>),
    /// Send this frame of a room that keeps history, with its offset.
    Kept(Arc<super::Kept>),
    /// The recovery of a reconnecting client was sent before this; whether
    /// it was all the client missed.
    Recovered(bool),
    /// A key joined or left the room (its route announces presence).
    Presence(Arc<super::presence::PresenceChange>),
    /// Send a close frame with this code and reason, then finish.
    Close(Box<(u16, String)>),
}

impl Outgoing {
    /// The payload bytes it holds against its outbox's byte bound.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Outgoing::Frame(frame) => frame.len(),
            Outgoing::Kept(kept) => kept.frame.len(),
            Outgoing::Recovered(_) => 0,
            Outgoing::Presence(change) => change.key.len() + change.value.len(),
            Outgoing::Close(_) => 0,
        }
    }
}

/// The registry's view of one open connection.
#[derive(Debug)]
pub(crate) struct ConnectionHandle {
    /// Unique id, handed to apps.
    pub(crate) id: ConnectionId,
    /// Its app and the concrete path it connected to: its broadcast group.
    pub(crate) room: Room,
    /// Name of the app that serves it; only that app may address it.
    pub(crate) app: Arc<str>,
    /// The client's address, for the per-address cap.
    pub(crate) from: std::net::IpAddr,
    /// An event stream (the client cannot send), not a WebSocket: which
    /// kind of route must serve its path.
    pub(crate) one_way: bool,
    /// Its app's metrics, where a slow consumer is counted.
    metrics: Arc<AppMetrics>,
    /// Bounded queue drained by the connection's task.
    outbox: mpsc::Sender<Outgoing>,
    /// Payload bytes on the outbox and not yet written.
    queued_bytes: AtomicUsize,
    /// The most `queued_bytes` may reach.
    outbox_bytes: usize,
    /// Wakes the connection's task when it must close without draining its
    /// outbox (slow consumer, app unloaded).
    evicted: Notify,
    /// The close code and reason of an eviction, set once.
    eviction: Mutex<Option<(u16, String)>>,
    /// True while the connection is in its path group: from its `open`
    /// event until it leaves. Only then does it count and can be sent to.
    pub(super) open: AtomicBool,
    /// The app's small per-connection value; kept by the host so it
    /// survives re-instantiation and hot swaps.
    attachment: Mutex<Option<Vec<u8>>>,
}

impl ConnectionHandle {
    /// A handle plus the receiving end of its outbox, for the connection task.
    pub(crate) fn new(
        id: ConnectionId,
        app: Arc<str>,
        metrics: Arc<AppMetrics>,
        path: &str,
        from: std::net::IpAddr,
        one_way: bool,
        bounds: OutboxBounds,
    ) -> (Arc<Self>, mpsc::Receiver<Outgoing>) {
        let (outbox, rx) = mpsc::channel(bounds.frames);
        let handle = Arc::new(Self {
            id,
            room: Room::new(&app, path),
            app,
            from,
            one_way,
            metrics,
            outbox,
            queued_bytes: AtomicUsize::new(0),
            outbox_bytes: bounds.bytes,
            evicted: Notify::new(),
            eviction: Mutex::new(None),
            open: AtomicBool::new(false),
            attachment: Mutex::new(None),
        });
        (handle, rx)
    }

    /// Whether it is still open (in its path group).
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Queues a frame for this connection.
    pub(crate) fn send(&self, frame: Message) -> Result<(), RegistryError> {
        self.ensure_open()?;
        self.deliver(Outgoing::Frame(Arc::new(frame)));
        Ok(())
    }

    /// Asks this connection to close with `code` and `reason`, after the
    /// frames already queued for it.
    pub(crate) fn close(&self, code: u16, reason: &str) -> Result<(), RegistryError> {
        self.ensure_open()?;
        self.deliver(Outgoing::Close(Box::new((code, reason.to_string()))));
        Ok(())
    }

    /// The value the app attached to this connection.
    pub(crate) fn attachment(&self) -> Option<Vec<u8>> {
        self.attachment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the value the app attached to this connection.
    pub(crate) fn set_attachment(&self, value: Vec<u8>) {
        *self.attachment.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }

    fn ensure_open(&self) -> Result<(), RegistryError> {
        if self.is_open() {
            Ok(())
        } else {
            Err(RegistryError::UnknownConnection(self.id.to_string()))
        }
    }

    /// Queues a frame or close request; evicts the connection if its
    /// outbox is full, in frames or in bytes.
    pub(super) fn deliver(&self, item: Outgoing) {
        let len = item.bytes();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.outbox_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return self.overflow();
        }
        match self.outbox.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.overflow();
            }
            // The connection task has finished; nothing to deliver to.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// It was queued `messages` it missed, `complete` if that was all.
    pub(super) fn recovered(&self, complete: bool, messages: usize) {
        self.metrics.recovered(complete, messages);
    }

    /// The connection's task wrote `item`: its bytes leave the outbox.
    pub(crate) fn written(&self, item: &Outgoing) {
        self.queued_bytes.fetch_sub(item.bytes(), Ordering::AcqRel);
    }

    /// A slow consumer: counted once, and closed.
    fn overflow(&self) {
        if !self.is_evicted() {
            self.metrics.outbox_overflow();
        }
        self.evict(close::POLICY_VIOLATION, "slow consumer: outbox full");
    }

    fn is_evicted(&self) -> bool {
        self.eviction
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Asks the connection's task to close now with `code`, skipping its queue.
    pub(crate) fn evict(&self, code: u16, reason: &str) {
        let mut eviction = self.eviction.lock().unwrap_or_else(|e| e.into_inner());
        if eviction.is_none() {
            tracing::warn!(connection = %self.id, app = %self.app, path = ?self.room.path(), code, reason, "closing connection");
            *eviction = Some((code, reason.to_string()));
            self.evicted.notify_one();
        }
    }

    /// Resolves once the connection has been evicted, with the close code and reason.
    pub(crate) async fn evicted(&self) -> (u16, String) {
        loop {
            if let Some(found) = self
                .eviction
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return found;
            }
            self.evicted.notified().await;
        }
    }
}

/// Why the registry could not act.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RegistryError {
    #[error("no open connection {0}")]
    UnknownConnection(String),
}

#[cfg(test)]
mod tests {
    use super::Outgoing;

    #[test]
    fn an_outgoing_item_is_a_pointer_and_a_tag() {
        assert!(std::mem::size_of::<Outgoing>() <= 2 * std::mem::size_of::<usize>());
    }
}

//! The connection registry: every open WebSocket connection by id and by
//! [`Room`] (its app and concrete path), and delivery into their outboxes.
//!
//! A room belongs to one app: two apps serving the same concrete path never
//! share a room, so nothing one tenant sends can reach another's clients.
//!
//! Delivery never blocks: a frame is built once and its (reference-counted)
//! payload is queued on each recipient's outbox, bounded in frames and in
//! bytes. A recipient whose outbox is full is a slow consumer; it is evicted (closed with 1008) rather
//! than allowed to stall the sender or the rest of its path group.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use indexmap::IndexMap;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

/// Identifies a connection; unique across host instances (see [`ConnectionRegistry::next_id`]).
pub type ConnectionId = Arc<str>;

/// Close code for a connection evicted because its outbox filled up.
pub const CLOSE_SLOW_CONSUMER: u16 = 1008;

/// A broadcast group: the connections one app serves on one concrete path.
///
/// Stored as one string, the app's name followed by the path
/// (`chat/ws/room/lobby`): app names never hold a `/` and paths always
/// start with one, so the split is unambiguous, and the same string names
/// the room on the backplane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Room(Arc<str>);

impl Room {
    /// The room of `app`'s connections on `path` (a decoded, canonical path).
    pub fn new(app: &str, path: &str) -> Self {
        debug_assert!(!app.contains('/') && path.starts_with('/'));
        Self(format!("{app}{path}").into())
    }

    /// A room named by another instance; `None` unless well formed.
    pub fn parse(key: &str) -> Option<Self> {
        let split = key.find('/')?;
        (split > 0).then(|| Self(key.into()))
    }

    fn split(&self) -> usize {
        self.0.find('/').unwrap_or(self.0.len())
    }

    /// The app whose room it is.
    pub fn app(&self) -> &str {
        &self.0[..self.split()]
    }

    /// The concrete path.
    pub fn path(&self) -> &str {
        &self.0[self.split()..]
    }

    /// The whole key, as instances exchange it.
    pub fn as_str(&self) -> &str {
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
pub struct OutboxBounds {
    /// Frames queued at most.
    pub frames: usize,
    /// Payload bytes queued at most; one frame always fits.
    pub bytes: usize,
}

/// What a connection's writer is asked to do. One pointer wide: every
/// outbox allocates room for 32 of these when its connection opens, so the
/// size of this type is memory every idle connection pays.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Send this frame; one allocation shared by every recipient.
    Frame(Arc<Message>),
    /// Send a close frame with this code and reason, then finish.
    Close(Box<(u16, String)>),
}

impl Outgoing {
    /// The payload bytes it holds against its outbox's byte bound.
    pub fn bytes(&self) -> usize {
        match self {
            Outgoing::Frame(frame) => frame.len(),
            Outgoing::Close(_) => 0,
        }
    }
}

/// The registry's view of one open connection.
#[derive(Debug)]
pub struct ConnectionHandle {
    /// Unique id, handed to apps.
    pub id: ConnectionId,
    /// Its app and the concrete path it connected to: its broadcast group.
    pub room: Room,
    /// Name of the app that serves it; only that app may address it.
    pub app: Arc<str>,
    /// The client's address, for the per-address cap.
    pub from: std::net::IpAddr,
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
    open: AtomicBool,
    /// The app's small per-connection value; kept by the host so it
    /// survives re-instantiation and hot swaps.
    attachment: Mutex<Option<Vec<u8>>>,
}

impl ConnectionHandle {
    /// A handle plus the receiving end of its outbox, for the connection task.
    pub fn new(
        id: ConnectionId,
        app: Arc<str>,
        path: &str,
        from: std::net::IpAddr,
        bounds: OutboxBounds,
    ) -> (Arc<Self>, mpsc::Receiver<Outgoing>) {
        let (outbox, rx) = mpsc::channel(bounds.frames);
        let handle = Arc::new(Self {
            id,
            room: Room::new(&app, path),
            app,
            from,
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
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Queues a frame for this connection.
    pub fn send(&self, frame: Message) -> Result<(), RegistryError> {
        self.ensure_open()?;
        self.deliver(Outgoing::Frame(Arc::new(frame)));
        Ok(())
    }

    /// Asks this connection to close with `code` and `reason`, after the
    /// frames already queued for it.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), RegistryError> {
        self.ensure_open()?;
        self.deliver(Outgoing::Close(Box::new((code, reason.to_string()))));
        Ok(())
    }

    /// The value the app attached to this connection.
    pub fn attachment(&self) -> Option<Vec<u8>> {
        self.attachment
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the value the app attached to this connection.
    pub fn set_attachment(&self, value: Vec<u8>) {
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
    fn deliver(&self, item: Outgoing) {
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

    /// The connection's task wrote `item`: its bytes leave the outbox.
    pub fn written(&self, item: &Outgoing) {
        self.queued_bytes.fetch_sub(item.bytes(), Ordering::AcqRel);
    }

    /// A slow consumer: counted once, and closed.
    fn overflow(&self) {
        if !self.is_evicted() {
            metrics::counter!(crate::telemetry::OUTBOX_OVERFLOWS, "app" => self.app.to_string())
                .increment(1);
        }
        self.evict(CLOSE_SLOW_CONSUMER, "slow consumer: outbox full");
    }

    fn is_evicted(&self) -> bool {
        self.eviction
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Asks the connection's task to close now with `code`, skipping its queue.
    pub fn evict(&self, code: u16, reason: &str) {
        let mut eviction = self.eviction.lock().unwrap_or_else(|e| e.into_inner());
        if eviction.is_none() {
            tracing::warn!(connection = %self.id, app = %self.app, path = ?self.room.path(), code, reason, "closing connection");
            *eviction = Some((code, reason.to_string()));
            self.evicted.notify_one();
        }
    }

    /// Resolves once the connection has been evicted, with the close code and reason.
    pub async fn evicted(&self) -> (u16, String) {
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
pub enum RegistryError {
    #[error("no open connection {0}")]
    UnknownConnection(String),
}

/// Every open connection on this host.
#[derive(Debug)]
pub struct ConnectionRegistry {
    /// Random per-process prefix of connection ids, so ids stay unique when
    /// several hosts share a backplane.
    instance: String,
    /// Sequence for the rest of the id.
    next_seq: AtomicU64,
    /// The connections, by id and by path.
    inner: RwLock<Groups>,
    /// How many are admitted and not yet forgotten, for admission control.
    admitted: AtomicUsize,
    /// Paths changed since the backplane last looked; `None` while no
    /// backplane watches, so a single instance keeps no such record.
    changes: Mutex<Option<Changes>>,
    /// Wakes the backplane when `changes` gains a path.
    changed: Notify,
}

/// What changed in the registry that other instances must learn about.
#[derive(Debug, Default)]
pub struct Changes {
    /// Rooms whose first connection was admitted or last one forgotten:
    /// subscribe to them or unsubscribe.
    pub interest: HashSet<Room>,
    /// Rooms whose number of open connections changed.
    pub counts: HashSet<Room>,
}

#[derive(Debug, Default)]
struct Groups {
    /// Every connection by id (for `send` and `close`).
    by_id: HashMap<ConnectionId, Arc<ConnectionHandle>>,
    /// Open connections grouped by room (for `broadcast` and `count`); an
    /// `IndexMap` for O(1) removal and contiguous iteration.
    by_room: HashMap<Room, IndexMap<ConnectionId, Arc<ConnectionHandle>>>,
    /// Admitted connections per room, joined or not (for the per-path cap).
    admitted_in: HashMap<Room, usize>,
    /// Admitted connections per app (for the per-app cap).
    admitted_by: HashMap<Arc<str>, usize>,
    /// Admitted connections per client address (for the per-address cap).
    admitted_from: HashMap<std::net::IpAddr, usize>,
}

impl Default for ConnectionRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionRegistry {
    /// An empty registry with a fresh random instance id.
    pub fn new() -> Self {
        let mut bytes = [0u8; 6];
        // Without OS randomness ids would still be unique on this host; fall
        // back to the process id and time rather than refusing to start.
        if getrandom::fill(&mut bytes).is_err() {
            let fallback = u64::from(std::process::id())
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
            bytes.copy_from_slice(&fallback.to_le_bytes()[..6]);
        }
        let instance = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            instance,
            next_seq: AtomicU64::new(1),
            inner: RwLock::new(Groups::default()),
            admitted: Default::default(),
            changes: Mutex::new(None),
            changed: Notify::new(),
        }
    }

    /// This host's instance id (the prefix of its connection ids).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// A new connection id: `<instance>-<sequence>`.
    pub fn next_id(&self) -> ConnectionId {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{seq}", self.instance).into()
    }

    /// Starts recording [`Changes`] for a backplane to
    /// [`take`](Self::take_changes).
    pub fn record_changes(&self) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        changes.get_or_insert_with(Changes::default);
    }

    /// The changes since the last call; empty when none are recorded.
    pub fn take_changes(&self) -> Changes {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        changes.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Resolves when a change has been recorded since the last wake-up.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn note_change(&self, room: &Room, interest: bool) {
        let recorded = {
            let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
            changes.as_mut().map(|changes| {
                let set = if interest {
                    &mut changes.interest
                } else {
                    &mut changes.counts
                };
                set.insert(room.clone());
            })
        };
        if recorded.is_some() {
            self.changed.notify_one();
        }
    }

    /// Every room with an admitted connection (the channels to listen on).
    pub fn admitted_rooms(&self) -> Vec<Room> {
        self.read().admitted_in.keys().cloned().collect()
    }

    /// The number of open connections in every room that has one.
    pub fn open_counts(&self) -> Vec<(Room, u32)> {
        self.read()
            .by_room
            .iter()
            .map(|(room, group)| (room.clone(), len_u32(group.len())))
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Groups> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Groups> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection at its handshake: it counts against the
    /// connection cap from now on, but joins its path group (counts there,
    /// receives broadcasts) only at its `open` event, so the first message it
    /// gets is one its own `open` handler, or a later event, sent.
    pub fn admit(&self, handle: Arc<ConnectionHandle>) {
        let mut groups = self.write();
        let in_room = groups.admitted_in.entry(handle.room.clone()).or_default();
        *in_room += 1;
        let first = *in_room == 1;
        *groups.admitted_by.entry(handle.app.clone()).or_default() += 1;
        *groups.admitted_from.entry(handle.from).or_default() += 1;
        let room = handle.room.clone();
        groups.by_id.insert(handle.id.clone(), handle);
        drop(groups);
        self.admitted.fetch_add(1, Ordering::Relaxed);
        if first {
            self.note_change(&room, true);
        }
    }

    /// How many connections `app` holds (joined or not yet).
    pub fn admitted_by(&self, app: &str) -> usize {
        self.read().admitted_by.get(app).copied().unwrap_or(0)
    }

    /// How many connections the client at `ip` holds (joined or not yet).
    pub fn admitted_from(&self, ip: std::net::IpAddr) -> usize {
        self.read().admitted_from.get(&ip).copied().unwrap_or(0)
    }

    /// How many connections are admitted in `room` (joined or not yet).
    pub fn admitted_in(&self, room: &Room) -> usize {
        self.read().admitted_in.get(room).copied().unwrap_or(0)
    }

    /// Puts an admitted connection in its path group (its `open` event).
    pub fn join(&self, id: &str) {
        let mut groups = self.write();
        let Some(handle) = groups.by_id.get(id).cloned() else {
            return;
        };
        if !handle.open.swap(true, Ordering::AcqRel) {
            let room = handle.room.clone();
            groups
                .by_room
                .entry(room.clone())
                .or_default()
                .insert(handle.id.clone(), handle);
            drop(groups);
            self.note_change(&room, false);
        }
    }

    /// [`admit`](Self::admit) and [`join`](Self::join) at once.
    pub fn register(&self, handle: Arc<ConnectionHandle>) {
        let id = handle.id.clone();
        self.admit(handle);
        self.join(&id);
    }

    /// Takes a connection out of its path group: from now on it does not
    /// count, receives no broadcasts and cannot be sent to. Its handle (and
    /// attachment) stay reachable by id until [`forget`](Self::forget), so
    /// the app's `close` handler can still read the attachment.
    pub fn leave(&self, id: &str) {
        let mut groups = self.write();
        let Some(handle) = groups.by_id.get(id).cloned() else {
            return;
        };
        handle.open.store(false, Ordering::Release);
        if let Some(group) = groups.by_room.get_mut(&handle.room) {
            let left = group.swap_remove(id).is_some();
            if group.is_empty() {
                groups.by_room.remove(&handle.room);
            }
            drop(groups);
            if left {
                self.note_change(&handle.room, false);
            }
        }
    }

    /// Drops every trace of a connection (after its `close` event).
    pub fn forget(&self, id: &str) {
        self.leave(id);
        let mut groups = self.write();
        let Some(handle) = groups.by_id.remove(id) else {
            return;
        };
        self.admitted.fetch_sub(1, Ordering::Relaxed);
        let last = decrement(&mut groups.admitted_in, &handle.room);
        decrement(&mut groups.admitted_by, &handle.app);
        decrement(&mut groups.admitted_from, &handle.from);
        drop(groups);
        if last {
            self.note_change(&handle.room, true);
        }
    }

    /// The handle of a connection, open or closing.
    pub fn get(&self, id: &str) -> Option<Arc<ConnectionHandle>> {
        self.read().by_id.get(id).cloned()
    }

    /// Queues a frame for every connection in `room` except `exclude`;
    /// returns how many it was queued for.
    pub fn broadcast(&self, room: &Room, frame: &Message, exclude: Option<&str>) -> u32 {
        let groups = self.read();
        let Some(group) = groups.by_room.get(room) else {
            return 0;
        };
        let item = Outgoing::Frame(Arc::new(frame.clone()));
        let mut queued = 0;
        for (id, handle) in group {
            if Some(&**id) != exclude {
                // A clone shares the payload: the frame is built once.
                handle.deliver(item.clone());
                queued += 1;
            }
        }
        queued
    }

    /// Asks one open connection to close with `code` and `reason`, after
    /// the frames already queued for it.
    pub fn close(&self, id: &str, code: u16, reason: &str) -> Result<(), RegistryError> {
        self.get(id)
            .ok_or_else(|| RegistryError::UnknownConnection(id.to_string()))?
            .close(code, reason)
    }

    /// How many connections are open in `room`.
    pub fn count(&self, room: &Room) -> u32 {
        self.read()
            .by_room
            .get(room)
            .map_or(0, |g| len_u32(g.len()))
    }

    /// How many connections are admitted and not yet forgotten: the
    /// number the connection cap applies to.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Every open connection served by `app`.
    pub fn connections_of(&self, app: &str) -> Vec<Arc<ConnectionHandle>> {
        self.read()
            .by_id
            .values()
            .filter(|h| &*h.app == app && h.is_open())
            .cloned()
            .collect()
    }

    /// Every open connection.
    pub fn all(&self) -> Vec<Arc<ConnectionHandle>> {
        self.read()
            .by_id
            .values()
            .filter(|h| h.is_open())
            .cloned()
            .collect()
    }
}

/// Counts one fewer under `key`, dropping the entry at zero; true if it did.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) -> bool {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
            return true;
        }
    }
    false
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(
        reg: &ConnectionRegistry,
        path: &str,
        capacity: usize,
    ) -> (Arc<ConnectionHandle>, mpsc::Receiver<Outgoing>) {
        connect_as(reg, "app", path, capacity)
    }

    fn connect_as(
        reg: &ConnectionRegistry,
        app: &str,
        path: &str,
        capacity: usize,
    ) -> (Arc<ConnectionHandle>, mpsc::Receiver<Outgoing>) {
        let from = std::net::Ipv4Addr::LOCALHOST.into();
        let bounds = OutboxBounds {
            frames: capacity,
            bytes: 1 << 20,
        };
        let (handle, rx) = ConnectionHandle::new(reg.next_id(), app.into(), path, from, bounds);
        reg.register(handle.clone());
        (handle, rx)
    }

    fn text(rx: &mut mpsc::Receiver<Outgoing>) -> Option<String> {
        match rx.try_recv().ok()? {
            Outgoing::Frame(frame) => match &*frame {
                Message::Text(t) => Some(t.to_string()),
                other => panic!("unexpected {other:?}"),
            },
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ids_are_unique_and_carry_the_instance() {
        let reg = ConnectionRegistry::new();
        let a = reg.next_id();
        let b = reg.next_id();
        assert_ne!(a, b);
        assert!(a.starts_with(reg.instance()));
        assert_ne!(ConnectionRegistry::new().instance(), reg.instance());
    }

    fn room(path: &str) -> Room {
        Room::new("app", path)
    }

    #[test]
    fn rooms_name_their_app_and_path() {
        let r = Room::new("chat", "/ws/room/lobby");
        assert_eq!((r.app(), r.path()), ("chat", "/ws/room/lobby"));
        assert_eq!(Room::parse(r.as_str()), Some(r));
        assert_eq!(Room::parse("/ws/no-app"), None);
        assert_eq!(Room::parse("no-path"), None);
    }

    #[test]
    fn two_apps_on_one_path_never_share_a_room() {
        let reg = ConnectionRegistry::new();
        let (_chat, mut rx_chat) = connect_as(&reg, "chat", "/ws/room/lobby", 8);
        let (_other, mut rx_other) = connect_as(&reg, "other", "/ws/room/lobby", 8);
        let chat = Room::new("chat", "/ws/room/lobby");
        assert_eq!(reg.broadcast(&chat, &Message::text("hi"), None), 1);
        assert_eq!(text(&mut rx_chat).as_deref(), Some("hi"));
        assert_eq!(text(&mut rx_other), None);
        assert_eq!(reg.count(&chat), 1);
    }

    #[test]
    fn broadcast_is_scoped_to_the_path_and_honours_exclude() {
        let reg = ConnectionRegistry::new();
        let (a, mut rx_a) = connect(&reg, "/ws/chat/a", 8);
        let (_b, mut rx_b) = connect(&reg, "/ws/chat/a", 8);
        let (_c, mut rx_c) = connect(&reg, "/ws/chat/b", 8);
        assert_eq!(
            reg.broadcast(&room("/ws/chat/a"), &Message::text("hi"), Some(&a.id)),
            1
        );
        assert_eq!(text(&mut rx_a), None);
        assert_eq!(text(&mut rx_b).as_deref(), Some("hi"));
        assert_eq!(text(&mut rx_c), None);
        assert_eq!(reg.count(&room("/ws/chat/a")), 2);
        assert_eq!(reg.admitted(), 3);
        a.set_attachment(b"alice".to_vec());
        reg.leave(&a.id);
        assert_eq!(reg.count(&room("/ws/chat/a")), 1);
        assert_eq!(reg.admitted(), 3, "still admitted until forgotten");
        assert_eq!(
            a.send(Message::text("x")),
            Err(RegistryError::UnknownConnection(a.id.to_string()))
        );
        // Still readable while its close event is handled, then gone.
        assert_eq!(
            reg.get(&a.id).unwrap().attachment().as_deref(),
            Some(&b"alice"[..])
        );
        reg.forget(&a.id);
        assert!(reg.get(&a.id).is_none());
        assert_eq!(reg.admitted(), 2);
        assert_eq!(reg.admitted_in(&room("/ws/chat/a")), 1);
        assert_eq!(reg.admitted_by("app"), 2);
        assert_eq!(reg.admitted_from(std::net::Ipv4Addr::LOCALHOST.into()), 2);
    }

    #[test]
    fn changes_are_recorded_only_once_a_backplane_asks() {
        let reg = ConnectionRegistry::new();
        let (a, _rx) = connect(&reg, "/p", 8);
        assert!(reg.take_changes().interest.is_empty());
        reg.record_changes();
        let (b, _rx) = connect(&reg, "/q", 8);
        let (c, _rx) = connect(&reg, "/q", 8);
        let changes = reg.take_changes();
        let paths = |set: &HashSet<Room>| {
            let mut v: Vec<String> = set.iter().map(|p| p.path().to_string()).collect();
            v.sort();
            v
        };
        // Interest changes at the first admission; counts at every join.
        assert_eq!(paths(&changes.interest), ["/q"]);
        assert_eq!(paths(&changes.counts), ["/q"]);
        reg.forget(&b.id);
        let changes = reg.take_changes();
        assert!(changes.interest.is_empty(), "/q still has a connection");
        assert_eq!(paths(&changes.counts), ["/q"]);
        reg.forget(&c.id);
        reg.forget(&a.id);
        let changes = reg.take_changes();
        assert_eq!(paths(&changes.interest), ["/p", "/q"]);
        assert_eq!(reg.open_counts(), vec![]);
        assert!(reg.admitted_rooms().is_empty());
    }

    #[tokio::test]
    async fn a_full_outbox_evicts_only_that_connection() {
        let reg = ConnectionRegistry::new();
        let (slow, _rx_slow) = connect(&reg, "/p", 2);
        let (_fast, mut rx_fast) = connect(&reg, "/p", 8);
        for _ in 0..3 {
            reg.broadcast(&room("/p"), &Message::text("m"), None);
        }
        assert_eq!(slow.evicted().await.0, CLOSE_SLOW_CONSUMER);
        for _ in 0..3 {
            assert_eq!(text(&mut rx_fast).as_deref(), Some("m"));
        }
    }
}

//! The connection registry: every open WebSocket connection by id and by
//! [`Room`] (its app and concrete path), the caps' counts, and delivery
//! into their outboxes.
//!
//! A room belongs to one app: two apps serving the same concrete path never
//! share a room, so nothing one tenant sends can reach another's clients.
//! A frame is built once and its (reference-counted) payload is queued on
//! each recipient's outbox ([`ConnectionHandle`]), never blocking.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use indexmap::IndexMap;
use tokio_tungstenite::tungstenite::Message;

use super::changes::{Change, Journal};
use super::connection::{ConnectionHandle, ConnectionId, Outgoing, Room};
use super::history::{History, HistoryLimits, Numbered, Position};
use super::presence::Presence;

/// The most connections admission lets in, checked in this order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    /// On this instance.
    pub(crate) total: usize,
    /// From one client address; `None`: no cap for it.
    pub(crate) per_address: Option<usize>,
    /// On one concrete path of one app.
    pub(crate) per_path: Option<usize>,
    /// Held by one app.
    pub(crate) per_app: Option<usize>,
}

/// The cap a refused connection would have taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("too many WebSocket connections")]
    Total,
    #[error("too many WebSocket connections from this address")]
    PerAddress,
    #[error("too many WebSocket connections on this path")]
    PerPath,
    #[error("this app holds all the WebSocket connections it may")]
    PerApp,
}

impl Refusal {
    /// Its label on the refusals metric.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "ws_connections",
            Refusal::PerAddress => "ws_connections_per_ip",
            Refusal::PerPath => "ws_connections_per_path",
            Refusal::PerApp => "ws_connections_per_app",
        }
    }
}

/// Every open connection on this host.
#[derive(Debug)]
pub(crate) struct ConnectionRegistry {
    /// Random per-process prefix of connection ids, so ids stay unique when
    /// several hosts share a backplane.
    instance: String,
    /// Sequence for the rest of the id.
    next_seq: AtomicU64,
    /// The connections, by id and by path.
    inner: RwLock<Groups>,
    /// What other instances must learn about, once a backplane asks.
    changes: Journal,
    /// Recent messages of the rooms that keep them.
    history: History,
    /// Who is on the rooms that keep presence.
    presence: Presence,
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
    /// An empty registry with a fresh random instance id, and history
    /// within the default ceilings.
    pub(crate) fn new() -> Self {
        Self::with_history(HistoryLimits {
            max_messages: 1000,
            app_bytes: 16 << 20,
        })
    }

    /// An empty registry whose rooms keep history within `limits`.
    pub(crate) fn with_history(limits: HistoryLimits) -> Self {
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
        let instance = crate::hex::hex(&bytes);
        Self {
            history: History::new(&instance, limits),
            presence: Presence::new(),
            instance,
            next_seq: AtomicU64::new(1),
            inner: RwLock::new(Groups::default()),
            changes: Journal::default(),
        }
    }

    /// The history of the rooms that keep one.
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// Who is on the rooms that keep presence.
    pub(crate) fn presence(&self) -> &Presence {
        &self.presence
    }

    /// This host's instance id (the prefix of its connection ids).
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// A new connection id: `<instance>-<sequence>`.
    pub(crate) fn next_id(&self) -> ConnectionId {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{seq}", self.instance).into()
    }

    /// The journal of changes a backplane follows.
    pub(crate) fn changes(&self) -> &Journal {
        &self.changes
    }

    /// Every room with an admitted connection (the channels to listen on).
    pub(crate) fn admitted_rooms(&self) -> Vec<Room> {
        self.read().admitted_in.keys().cloned().collect()
    }

    /// The number of open connections in every room that has one.
    pub(crate) fn open_counts(&self) -> Vec<(Room, u32)> {
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

    /// Admits a connection at its handshake, unless that would take one of
    /// its [`Caps`] over: checked and counted under one lock, so the caps
    /// are exact however many clients arrive at once. It counts against
    /// them from now on, but joins its path group (counts there, receives
    /// broadcasts) only at its `open` event, so the first message it gets
    /// is one its own `open` handler, or a later event, sent.
    pub(crate) fn admit(
        self: &Arc<Self>,
        handle: Arc<ConnectionHandle>,
        caps: &Caps,
    ) -> Result<Arc<Membership>, Refusal> {
        let mut groups = self.write();
        let over = |cap: Option<usize>, held: usize| cap.is_some_and(|cap| held >= cap);
        if groups.by_id.len() >= caps.total {
            return Err(Refusal::Total);
        }
        if over(caps.per_address, held(&groups.admitted_from, &handle.from)) {
            return Err(Refusal::PerAddress);
        }
        if over(caps.per_path, held(&groups.admitted_in, &handle.room)) {
            return Err(Refusal::PerPath);
        }
        if over(caps.per_app, held(&groups.admitted_by, &handle.app)) {
            return Err(Refusal::PerApp);
        }
        let in_room = groups.admitted_in.entry(handle.room.clone()).or_default();
        *in_room += 1;
        let first = *in_room == 1;
        *groups.admitted_by.entry(handle.app.clone()).or_default() += 1;
        *groups.admitted_from.entry(handle.from).or_default() += 1;
        groups.by_id.insert(handle.id.clone(), handle.clone());
        drop(groups);
        if first {
            self.changes.note(&handle.room, Change::Interest);
        }
        Ok(Arc::new(Membership {
            registry: self.clone(),
            handle,
            recover_from: Mutex::new(None),
        }))
    }

    /// How many connections `app` holds (joined or not yet).
    #[cfg(test)]
    fn admitted_by(&self, app: &str) -> usize {
        self.read().admitted_by.get(app).copied().unwrap_or(0)
    }

    /// How many connections the client at `ip` holds (joined or not yet).
    #[cfg(test)]
    fn admitted_from(&self, ip: std::net::IpAddr) -> usize {
        self.read().admitted_from.get(&ip).copied().unwrap_or(0)
    }

    /// How many connections are admitted in `room` (joined or not yet).
    pub(crate) fn admitted_in(&self, room: &Room) -> usize {
        self.read().admitted_in.get(room).copied().unwrap_or(0)
    }

    /// Puts an admitted connection in its path group (its `open` event).
    fn join(&self, id: &str) {
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
            self.changes.note(&room, Change::Count);
        }
    }

    /// Takes a connection out of its path group: from now on it does not
    /// count, receives no broadcasts and cannot be sent to. Its handle (and
    /// attachment) stay reachable by id until its membership is dropped, so
    /// the app's `close` handler can still read the attachment.
    fn leave(&self, id: &str) {
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
                self.changes.note(&handle.room, Change::Count);
                self.absent(&handle);
            }
        }
    }

    /// Drops every trace of a connection (after its `close` event).
    fn forget(&self, id: &str) {
        self.leave(id);
        let mut groups = self.write();
        let Some(handle) = groups.by_id.remove(id) else {
            return;
        };
        let last = decrement(&mut groups.admitted_in, &handle.room);
        decrement(&mut groups.admitted_by, &handle.app);
        decrement(&mut groups.admitted_from, &handle.from);
        drop(groups);
        // Present before it opened (a key from its token), never joined.
        self.absent(&handle);
        if last {
            // No longer listened to here: a copy of the room's shared
            // history may miss what comes next.
            self.history.detach(&handle.room);
            self.changes.note(&handle.room, Change::Interest);
        }
    }

    /// The handle of a connection, open or closing.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<ConnectionHandle>> {
        self.read().by_id.get(id).cloned()
    }

    /// Queues a frame for every connection in `room` except `exclude`;
    /// returns how many it was queued for.
    pub(crate) fn broadcast(&self, room: &Room, frame: &Message, exclude: Option<&str>) -> u32 {
        // A room that keeps history numbers the frame and queues it while
        // its history is locked, so every connection gets offsets in order.
        let now = std::time::Instant::now();
        let kept = self.history.record(room, frame, exclude, now, |kept| {
            self.queue(room, Outgoing::Kept(kept.clone()), exclude)
        });
        kept.unwrap_or_else(|| self.queue(room, Outgoing::Frame(Arc::new(frame.clone())), exclude))
    }

    /// Queues a frame the shared store numbered `offset` in `epoch` for
    /// every connection in `room` except `exclude`, keeping it in the
    /// room's copy of the store; returns how many it was queued for (none
    /// if it was already kept, and so already delivered).
    pub(crate) fn broadcast_numbered(
        &self,
        room: &Room,
        at: &Position,
        frame: &Message,
        exclude: Option<&str>,
    ) -> u32 {
        let now = std::time::Instant::now();
        let numbered =
            self.history
                .record_numbered(room, &at.epoch, at.offset, frame, exclude, now, |kept| {
                    self.queue(room, Outgoing::Kept(kept.clone()), exclude)
                });
        match numbered {
            Numbered::Kept(queued) => queued,
            Numbered::Again => 0,
            Numbered::NotKept => {
                self.queue(room, Outgoing::Frame(Arc::new(frame.clone())), exclude)
            }
        }
    }

    /// Queues `item` for every connection in `room` but `exclude`.
    pub(super) fn queue(&self, room: &Room, item: Outgoing, exclude: Option<&str>) -> u32 {
        let groups = self.read();
        let Some(group) = groups.by_room.get(room) else {
            return 0;
        };
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

    /// How many connections are open in `room`, not counting `exclude`.
    pub(crate) fn count_except(&self, room: &Room, exclude: Option<&str>) -> u32 {
        let groups = self.read();
        let Some(group) = groups.by_room.get(room) else {
            return 0;
        };
        let excluded = exclude.is_some_and(|id| group.contains_key(id));
        len_u32(group.len()) - u32::from(excluded)
    }

    /// How many connections are open in `room`.
    pub(crate) fn count(&self, room: &Room) -> u32 {
        self.read()
            .by_room
            .get(room)
            .map_or(0, |g| len_u32(g.len()))
    }

    /// How many connections are admitted and not yet forgotten: the
    /// number the connection cap applies to.
    #[cfg(test)]
    fn admitted(&self) -> usize {
        self.read().by_id.len()
    }

    /// Every open connection served by `app`.
    pub(crate) fn connections_of(&self, app: &str) -> Vec<Arc<ConnectionHandle>> {
        self.read()
            .by_id
            .values()
            .filter(|h| &*h.app == app && h.is_open())
            .cloned()
            .collect()
    }

    /// Every open connection.
    pub(crate) fn all(&self) -> Vec<Arc<ConnectionHandle>> {
        self.read()
            .by_id
            .values()
            .filter(|h| h.is_open())
            .cloned()
            .collect()
    }
}

/// A connection's place in the registry, from its admission to its end:
/// the one owner of its lifecycle. The upgrade admits it (it counts against
/// the caps from then on), the app's `open` event puts it in its path
/// group, the end of its socket takes it out, and dropping the last
/// reference (the connection task's, and the one its `close` event holds
/// until the app has handled it) forgets it.
#[derive(Debug)]
pub(crate) struct Membership {
    /// The registry it is admitted in.
    registry: Arc<ConnectionRegistry>,
    /// The connection.
    handle: Arc<ConnectionHandle>,
    /// Where its client had got to in its path's history, if it asks to
    /// recover what it missed; used once, when it joins.
    recover_from: Mutex<Option<Position>>,
}

impl Membership {
    /// The connection.
    pub(crate) fn handle(&self) -> &Arc<ConnectionHandle> {
        &self.handle
    }

    /// Asks that, when it joins, it is first sent what its path kept after
    /// `from`.
    pub(crate) fn recover_from(&self, from: Position) {
        *self.recover_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
    }

    /// Its `open` event runs: into its path group, so `count` includes it
    /// in its own `open` and nothing broadcast before reaches it. A
    /// connection that asked to recover is queued what it missed, then
    /// whether that was all, in the same step: no kept message can come
    /// between, so each reaches it once, in order.
    pub(crate) fn opened(&self) {
        let from = self
            .recover_from
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(from) = from else {
            self.registry.join(&self.handle.id);
            return;
        };
        let handle = &self.handle;
        let now = std::time::Instant::now();
        self.registry
            .history
            .recover(&handle.room, &handle.id, &from, now, |recovery| {
                if !recovery.complete {
                    tracing::debug!(
                        connection = %handle.id,
                        room = %handle.room,
                        from = %format!("{}-{}", from.epoch, from.offset),
                        epoch = ?recovery.epoch,
                        "incomplete recovery: another epoch, or messages no longer kept"
                    );
                }
                handle.recovered(recovery.complete, recovery.missed.len());
                for kept in recovery.missed {
                    handle.deliver(Outgoing::Kept(kept));
                }
                handle.deliver(Outgoing::Recovered(recovery.complete));
                self.registry.join(&handle.id);
            });
    }

    /// Its socket ended: out of its path group before the app's `close`
    /// handler runs, so that handler sees the new count. The handle (and
    /// its attachment) stays reachable by id until this is dropped.
    pub(crate) fn closed(&self) {
        self.registry.leave(&self.handle.id);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.registry.forget(&self.handle.id);
    }
}

/// How many `counts` holds under `key`.
fn held<K: std::hash::Hash + Eq>(counts: &HashMap<K, usize>, key: &K) -> usize {
    counts.get(key).copied().unwrap_or(0)
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

mod presence_changes;

pub(crate) use presence_changes::PresenceError;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use tokio::sync::mpsc;

    use super::*;
    use crate::delivery::close;
    use crate::delivery::connection::{OutboxBounds, RegistryError};

    fn connect(
        reg: &Arc<ConnectionRegistry>,
        path: &str,
        capacity: usize,
    ) -> (Arc<Membership>, mpsc::Receiver<Outgoing>) {
        connect_as(reg, "app", path, capacity)
    }

    fn connect_as(
        reg: &Arc<ConnectionRegistry>,
        app: &str,
        path: &str,
        capacity: usize,
    ) -> (Arc<Membership>, mpsc::Receiver<Outgoing>) {
        let from = std::net::Ipv4Addr::LOCALHOST.into();
        let bounds = OutboxBounds {
            frames: capacity,
            bytes: 1 << 20,
        };
        let (handle, rx) = ConnectionHandle::new(
            reg.next_id(),
            app.into(),
            metrics(app),
            path,
            from,
            false,
            bounds,
        );
        let member = reg.admit(handle, &NO_CAPS).unwrap();
        member.opened();
        (member, rx)
    }

    fn metrics(app: &str) -> Arc<crate::telemetry::AppMetrics> {
        Arc::new(crate::telemetry::AppMetrics::new(app))
    }

    const NO_CAPS: Caps = Caps {
        total: usize::MAX,
        per_address: None,
        per_path: None,
        per_app: None,
    };

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
        let reg = Arc::new(ConnectionRegistry::new());
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
        let reg = Arc::new(ConnectionRegistry::new());
        let (a, mut rx_a) = connect(&reg, "/ws/chat/a", 8);
        let (_b, mut rx_b) = connect(&reg, "/ws/chat/a", 8);
        let (_c, mut rx_c) = connect(&reg, "/ws/chat/b", 8);
        assert_eq!(
            reg.broadcast(
                &room("/ws/chat/a"),
                &Message::text("hi"),
                Some(&a.handle().id)
            ),
            1
        );
        assert_eq!(text(&mut rx_a), None);
        assert_eq!(text(&mut rx_b).as_deref(), Some("hi"));
        assert_eq!(text(&mut rx_c), None);
        assert_eq!(reg.count(&room("/ws/chat/a")), 2);
        assert_eq!(reg.admitted(), 3);
        let a_id = a.handle().id.clone();
        a.handle().set_attachment(b"alice".to_vec());
        a.closed();
        assert_eq!(reg.count(&room("/ws/chat/a")), 1);
        assert_eq!(reg.admitted(), 3, "still admitted until forgotten");
        assert_eq!(
            a.handle().send(Message::text("x")),
            Err(RegistryError::UnknownConnection(a_id.to_string()))
        );
        // Still readable while its close event is handled, then gone.
        assert_eq!(
            reg.get(&a_id).unwrap().attachment().as_deref(),
            Some(&b"alice"[..])
        );
        drop(a);
        assert!(reg.get(&a_id).is_none());
        assert_eq!(reg.admitted(), 2);
        assert_eq!(reg.admitted_in(&room("/ws/chat/a")), 1);
        assert_eq!(reg.admitted_by("app"), 2);
        assert_eq!(reg.admitted_from(std::net::Ipv4Addr::LOCALHOST.into()), 2);
    }

    #[test]
    fn changes_are_recorded_only_once_a_backplane_asks() {
        let reg = Arc::new(ConnectionRegistry::new());
        let (a, _rx) = connect(&reg, "/p", 8);
        assert!(reg.changes().take().interest.is_empty());
        reg.changes().record();
        let (b, _rx) = connect(&reg, "/q", 8);
        let (c, _rx) = connect(&reg, "/q", 8);
        let changes = reg.changes().take();
        let paths = |set: &HashSet<Room>| {
            let mut v: Vec<String> = set.iter().map(|p| p.path().to_string()).collect();
            v.sort();
            v
        };
        // Interest changes at the first admission; counts at every join.
        assert_eq!(paths(&changes.interest), ["/q"]);
        assert_eq!(paths(&changes.counts), ["/q"]);
        drop(b);
        let changes = reg.changes().take();
        assert!(changes.interest.is_empty(), "/q still has a connection");
        assert_eq!(paths(&changes.counts), ["/q"]);
        drop(c);
        drop(a);
        let changes = reg.changes().take();
        assert_eq!(paths(&changes.interest), ["/p", "/q"]);
        assert_eq!(reg.open_counts(), vec![]);
        assert!(reg.admitted_rooms().is_empty());
    }

    #[tokio::test]
    async fn a_full_outbox_evicts_only_that_connection() {
        let reg = Arc::new(ConnectionRegistry::new());
        let (slow, _rx_slow) = connect(&reg, "/p", 2);
        let (_fast, mut rx_fast) = connect(&reg, "/p", 8);
        for _ in 0..3 {
            reg.broadcast(&room("/p"), &Message::text("m"), None);
        }
        assert_eq!(slow.handle().evicted().await.0, close::POLICY_VIOLATION);
        for _ in 0..3 {
            assert_eq!(text(&mut rx_fast).as_deref(), Some("m"));
        }
    }

    #[test]
    fn admission_holds_each_cap_exactly_and_a_drop_frees_the_place() {
        let reg = Arc::new(ConnectionRegistry::new());
        let bounds = OutboxBounds {
            frames: 1,
            bytes: 1 << 10,
        };
        let ip = |last: u8| std::net::Ipv4Addr::new(127, 0, 0, last).into();
        let admit = |app: &str, path: &str, from, caps: &Caps| {
            let (handle, _rx) = ConnectionHandle::new(
                reg.next_id(),
                app.into(),
                metrics(app),
                path,
                from,
                false,
                bounds,
            );
            reg.admit(handle, caps)
        };
        let caps = Caps {
            total: 4,
            per_address: Some(2),
            per_path: Some(2),
            per_app: Some(3),
        };
        let a = admit("app", "/a", ip(1), &caps).unwrap();
        let _b = admit("app", "/a", ip(2), &caps).unwrap();
        assert_eq!(
            admit("app", "/a", ip(3), &caps).unwrap_err(),
            Refusal::PerPath
        );
        let _c = admit("app", "/b", ip(1), &caps).unwrap();
        assert_eq!(
            admit("app", "/c", ip(1), &caps).unwrap_err(),
            Refusal::PerAddress
        );
        assert_eq!(
            admit("app", "/c", ip(3), &caps).unwrap_err(),
            Refusal::PerApp
        );
        let _d = admit("other", "/c", ip(3), &caps).unwrap();
        assert_eq!(
            admit("other", "/d", ip(4), &caps).unwrap_err(),
            Refusal::Total
        );
        // A refusal leaves no trace; a dropped membership frees its place.
        assert_eq!(reg.admitted(), 4);
        drop(a);
        assert_eq!(reg.admitted(), 3);
        admit("app", "/a", ip(3), &caps).unwrap();
    }
}

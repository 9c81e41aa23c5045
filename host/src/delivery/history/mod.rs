//! Recent messages of the paths whose routes keep history: a bounded ring
//! per room, each message numbered by its offset within the room's epoch,
//! so that a client that reconnects can be sent what it missed, in order
//! and once, before live messages.
//!
//! - An **offset** counts the messages kept in a room, from 1.
//! - An **epoch** names one unbroken run of offsets. A room's history
//!   starts a new epoch when it is created in this process: after a
//!   restart, after the app was unloaded, or once the room's history was
//!   dropped whole to stay within the app's memory. A client that asks to
//!   recover from another epoch learns that it cannot (`complete: false`).
//! - A room keeps at most its route's `max-messages` (capped by the
//!   operator), none older than its `max-age`, and all of an app's rooms
//!   together hold at most the operator's byte budget per app: past it,
//!   the app's oldest messages are dropped first, whichever room they are
//!   in.
//!
//! Which rooms keep history is said per app, by a rule the apps layer
//! gives ([`History::keep_for`]); delivery knows nothing of routes.
//!
//! A ring numbers its messages itself, or, with a shared store (Redis
//! Streams, see [`shared`]), mirrors the store's numbering: then the epoch
//! and offsets are the cluster's, and survive this process.

mod shared;

pub(crate) use shared::{Numbered, StoredMessage, Tail};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use super::connection::Room;

/// How much of a room's recent messages to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryPolicy {
    /// Messages kept at most.
    pub(crate) max_messages: u32,
    /// Messages older than this are dropped; `None`: no age limit.
    pub(crate) max_age: Option<Duration>,
}

/// Which paths of an app keep history, and how much: `None` for a path
/// that keeps none.
pub(crate) type HistoryRule = Arc<dyn Fn(&str) -> Option<HistoryPolicy> + Send + Sync>;

/// The operator's ceilings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistoryLimits {
    /// Most messages any one room keeps, whatever its route asks.
    pub(crate) max_messages: u32,
    /// Most bytes all of one app's rooms keep together.
    pub(crate) app_bytes: usize,
}

/// What a kept message costs beyond its payload, counted against the
/// app's byte budget so that a flood of empty messages is bounded too.
const ENTRY_OVERHEAD: usize = 64;

/// A message kept in a room's history, as its connections are sent it.
#[derive(Debug)]
pub(crate) struct Kept {
    /// The room's epoch when it was kept.
    pub(crate) epoch: Arc<str>,
    /// Its offset in the room.
    pub(crate) offset: u64,
    /// The frame.
    pub(crate) frame: Message,
    /// The connection it was not sent to (`broadcast`'s `exclude`): it is
    /// not replayed to that connection either.
    pub(crate) excluded: Option<Arc<str>>,
    /// The frame with its position line, as `tina4.v1` clients get it:
    /// made once, on first use, and shared by all of them.
    pub(crate) with_position: std::sync::OnceLock<Message>,
}

impl Kept {
    /// What it costs against the app's budget.
    fn cost(&self) -> usize {
        self.frame.len() + ENTRY_OVERHEAD
    }
}

/// Where a reconnecting client says it had got to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    /// The epoch of the last message it got.
    pub(crate) epoch: String,
    /// The offset of the last message it got.
    pub(crate) offset: u64,
}

impl Position {
    /// Reads `<epoch>-<offset>`, an SSE event id as the host writes it.
    pub(crate) fn parse(id: &str) -> Option<Self> {
        let (epoch, offset) = id.trim().rsplit_once('-')?;
        let valid = !epoch.is_empty()
            && epoch.len() <= 64
            && epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.');
        Some(Self {
            epoch: valid.then(|| epoch.to_string())?,
            offset: offset.parse().ok()?,
        })
    }
}

/// What a reconnecting client is sent before live messages.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// The kept messages after its position, in order.
    pub(crate) missed: Vec<Arc<Kept>>,
    /// Whether they are all it missed: same epoch, and nothing dropped
    /// between its position and the oldest kept message.
    pub(crate) complete: bool,
    /// The room's epoch now, if it keeps any history.
    pub(crate) epoch: Option<Arc<str>>,
}

/// One room's ring.
struct Ring {
    /// The app's rule for this room, when the ring was made.
    policy: HistoryPolicy,
    /// Its epoch.
    epoch: Arc<str>,
    /// The offset the next message gets.
    next: u64,
    /// Kept messages, oldest first, with when each was kept and its place
    /// in the instance's order of kept messages.
    kept: VecDeque<(Instant, u64, Arc<Kept>)>,
    /// Who numbers its messages.
    source: Source,
}

/// Who numbers a ring's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// This instance: the epoch is this process's.
    Local,
    /// The shared store; the ring is a copy of the store's newest messages,
    /// `synced` while it holds every one of them from its oldest on (not
    /// after this instance stopped listening to the room for a while).
    Shared { synced: bool },
}

impl Ring {
    /// An empty ring whose next message gets offset `next`.
    fn new(policy: HistoryPolicy, epoch: Arc<str>, next: u64, source: Source) -> Self {
        Self {
            policy,
            epoch,
            next,
            kept: VecDeque::new(),
            source,
        }
    }

    /// The instance-wide place of its oldest message.
    fn front(&self) -> Option<u64> {
        self.kept.front().map(|(_, seq, _)| *seq)
    }
}

/// One app's share of the budget.
#[derive(Default)]
struct AppBytes {
    /// Bytes its rooms keep.
    bytes: usize,
    /// Its rooms by the place of their oldest message: the first is where
    /// the app's oldest message is.
    fronts: BTreeMap<u64, Room>,
}

impl AppBytes {
    /// Drops everything `ring` keeps, which is going away.
    fn drop_ring(&mut self, ring: &Ring) {
        if let Some(front) = ring.front() {
            self.fronts.remove(&front);
        }
        self.bytes -= ring
            .kept
            .iter()
            .map(|(_, _, kept)| kept.cost())
            .sum::<usize>();
    }

    /// Drops the oldest message of `ring` (of `room`).
    fn pop(&mut self, room: &Room, ring: &mut Ring) {
        let Some((_, seq, kept)) = ring.kept.pop_front() else {
            return;
        };
        self.bytes -= kept.cost();
        self.fronts.remove(&seq);
        if let Some(next) = ring.front() {
            self.fronts.insert(next, room.clone());
        }
    }
}

/// The rings, under one lock.
#[derive(Default)]
struct Rings {
    /// Rings by room.
    rooms: HashMap<Room, Ring>,
    /// Byte accounting by app.
    apps: HashMap<Arc<str>, AppBytes>,
    /// Epochs made so far: the next one's number.
    epochs: u64,
    /// Messages kept so far: the next one's place.
    seq: u64,
}

impl Rings {
    /// Puts `ring` in place of `room`'s ring, if any (its messages are
    /// dropped).
    fn replace(&mut self, room: &Room, ring: Ring) {
        self.remove(room);
        self.rooms.insert(room.clone(), ring);
    }

    /// Drops `room`'s ring and its messages.
    fn remove(&mut self, room: &Room) {
        if let Some(old) = self.rooms.remove(room)
            && let Some(app) = self.apps.get_mut(room.app())
        {
            app.drop_ring(&old);
        }
    }
}

/// The history of every room that keeps one.
pub(crate) struct History {
    /// Each app's rule, as its serving version declares it.
    rules: RwLock<HashMap<Arc<str>, HistoryRule>>,
    /// The rings. Kept locked while a kept message is queued for its
    /// room's connections, so that offsets reach every connection in order
    /// and a recovery reads a consistent cut.
    rings: Mutex<Rings>,
    /// The operator's ceilings.
    limits: HistoryLimits,
    /// This instance's id, the stem of its epochs.
    instance: Arc<str>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl History {
    /// No history kept until an app asks for it.
    pub(crate) fn new(instance: &str, limits: HistoryLimits) -> Self {
        Self {
            rules: RwLock::default(),
            rings: Mutex::default(),
            limits,
            instance: instance.into(),
        }
    }

    /// Sets which of `app`'s paths keep history (a new version's rule
    /// replaces the last; `None`: none). Rooms already kept keep their
    /// messages and epoch under the new rule's limits, or are dropped if
    /// it keeps none there.
    pub(crate) fn keep_for(&self, app: &str, rule: Option<HistoryRule>) {
        {
            let mut rules = self.rules.write().unwrap_or_else(|e| e.into_inner());
            match &rule {
                Some(rule) => rules.insert(app.into(), rule.clone()),
                None => rules.remove(app),
            };
        }
        // Rooms already kept follow the new rule: its limits (applied as
        // the room is next written or read), or none at all.
        let mut rings = self.lock();
        let Rings { rooms, apps, .. } = &mut *rings;
        let Some(bytes) = apps.get_mut(app) else {
            return;
        };
        rooms.retain(|room, ring| {
            if room.app() != app {
                return true;
            }
            match rule
                .as_ref()
                .and_then(|rule| self.capped(rule(room.path())))
            {
                Some(policy) => {
                    ring.policy = policy;
                    true
                }
                None => {
                    bytes.drop_ring(ring);
                    false
                }
            }
        });
        if bytes.fronts.is_empty() {
            apps.remove(app);
        }
    }

    /// Drops all of `app`'s history (it was unloaded).
    pub(crate) fn forget(&self, app: &str) {
        self.keep_for(app, None);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `room` keeps history (its app's rule says so).
    pub(crate) fn keeps(&self, room: &Room) -> bool {
        self.policy(room).is_some()
    }

    /// Most bytes all of one app's rooms keep together.
    pub(crate) fn app_bytes(&self) -> usize {
        self.limits.app_bytes
    }

    /// The rule for `room` (within the operator's ceiling), if its app
    /// keeps history there.
    pub(crate) fn policy(&self, room: &Room) -> Option<HistoryPolicy> {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        let rule = rules.get(room.app())?;
        self.capped(rule(room.path()))
    }

    /// `policy` within the operator's ceiling; `None` if it keeps nothing.
    fn capped(&self, policy: Option<HistoryPolicy>) -> Option<HistoryPolicy> {
        let mut policy = policy?;
        policy.max_messages = policy.max_messages.min(self.limits.max_messages);
        (policy.max_messages > 0).then_some(policy)
    }

    /// Keeps `frame` if `room` keeps history, and hands the kept message
    /// to `deliver` while the rings are locked; `None` (and nothing
    /// delivered) if the room keeps none.
    pub(crate) fn record<T>(
        &self,
        room: &Room,
        frame: &Message,
        excluded: Option<&str>,
        now: Instant,
        deliver: impl FnOnce(&Arc<Kept>) -> T,
    ) -> Option<T> {
        let policy = self.policy(room)?;
        let mut rings = self.lock();
        let rings = &mut *rings;
        let numbered_here = |r: &Ring| r.source == Source::Local;
        if !rings.rooms.get(room).is_some_and(numbered_here) {
            // New, or numbered by the store (now unreachable): an epoch of
            // this process's starts, since its offsets cannot continue the
            // store's.
            rings.epochs += 1;
            let epoch = format!("{}.{}", self.instance, rings.epochs).into();
            rings.replace(room, Ring::new(policy, epoch, 1, Source::Local));
        }
        let ring = rings.rooms.get_mut(room).expect("the ring exists");
        let kept = Arc::new(Kept {
            epoch: ring.epoch.clone(),
            offset: ring.next,
            frame: frame.clone(),
            excluded: excluded.map(Arc::from),
            with_position: std::sync::OnceLock::new(),
        });
        ring.next += 1;
        Some(self.keep_in(rings, room, kept, now, deliver))
    }

    /// Appends `kept` to `room`'s ring (which exists), hands it to
    /// `deliver`, and trims the ring and the app to their limits.
    fn keep_in<T>(
        &self,
        rings: &mut Rings,
        room: &Room,
        kept: Arc<Kept>,
        now: Instant,
        deliver: impl FnOnce(&Arc<Kept>) -> T,
    ) -> T {
        let Rings {
            rooms, apps, seq, ..
        } = rings;
        let ring = rooms.get_mut(room).expect("the ring exists");
        let app = apps.entry(Arc::from(room.app())).or_default();
        *seq += 1;
        if ring.kept.is_empty() {
            app.fronts.insert(*seq, room.clone());
        }
        ring.kept.push_back((now, *seq, kept.clone()));
        app.bytes += kept.cost();
        trim_ring(room, ring, app, now);
        let delivered = deliver(&kept);
        // Over the app's budget: its oldest messages go first, whichever
        // room holds them; a room emptied this way is dropped, and starts a
        // new epoch with its next message.
        while app.bytes > self.limits.app_bytes {
            let Some((_, oldest)) = app.fronts.first_key_value() else {
                break;
            };
            let oldest = oldest.clone();
            let Some(ring) = rooms.get_mut(&oldest) else {
                break;
            };
            app.pop(&oldest, ring);
            if ring.kept.is_empty() && oldest != *room {
                rooms.remove(&oldest);
            }
        }
        delivered
    }

    /// The newest `limit` messages `room` keeps after offset `since`,
    /// oldest first.
    pub(crate) fn read(
        &self,
        room: &Room,
        since: u64,
        limit: usize,
        now: Instant,
    ) -> Vec<Arc<Kept>> {
        let mut rings = self.lock();
        let Rings { rooms, apps, .. } = &mut *rings;
        let Some(ring) = rooms.get_mut(room) else {
            return Vec::new();
        };
        if let Some(app) = apps.get_mut(room.app()) {
            trim_ring(room, ring, app, now);
        }
        let after: Vec<_> = ring
            .kept
            .iter()
            .filter(|(_, _, k)| k.offset > since)
            .map(|(_, _, k)| k.clone())
            .collect();
        let skip = after.len().saturating_sub(limit);
        after.into_iter().skip(skip).collect()
    }

    /// What connection `id` of `room`, whose client had got to `from`,
    /// missed, handed to `then` while nothing can be kept in the room: if
    /// `then` queues the recovery and puts the connection in the room's
    /// group, every message reaches it once, in order, whether kept
    /// before (in the recovery) or after (live).
    pub(crate) fn recover<T>(
        &self,
        room: &Room,
        id: &str,
        from: &Position,
        now: Instant,
        then: impl FnOnce(Recovery) -> T,
    ) -> T {
        let mut rings = self.lock();
        let Rings { rooms, apps, .. } = &mut *rings;
        let recovery = match rooms.get_mut(room) {
            None => Recovery {
                missed: Vec::new(),
                complete: false,
                epoch: None,
            },
            Some(ring) => {
                if let Some(app) = apps.get_mut(room.app()) {
                    trim_ring(room, ring, app, now);
                }
                read_from(ring, id, from)
            }
        };
        then(recovery)
    }
}

/// What `ring` kept after `from`, but what was not sent to `id`.
fn read_from(ring: &Ring, id: &str, from: &Position) -> Recovery {
    let newest = ring.next - 1;
    if *ring.epoch != *from.epoch || from.offset > newest {
        return Recovery {
            missed: Vec::new(),
            complete: false,
            epoch: Some(ring.epoch.clone()),
        };
    }
    let oldest = ring.kept.front().map_or(ring.next, |(_, _, k)| k.offset);
    Recovery {
        missed: ring
            .kept
            .iter()
            .filter(|(_, _, k)| k.offset > from.offset && k.excluded.as_deref() != Some(id))
            .map(|(_, _, k)| k.clone())
            .collect(),
        // A copy of the store that missed messages cannot vouch for them.
        complete: from.offset + 1 >= oldest && ring.source != Source::Shared { synced: false },
        epoch: Some(ring.epoch.clone()),
    }
}

/// Drops what `ring` (of `room`) keeps beyond its count and age.
fn trim_ring(room: &Room, ring: &mut Ring, app: &mut AppBytes, now: Instant) {
    while let Some((at, _, _)) = ring.kept.front() {
        let too_many = ring.kept.len() > ring.policy.max_messages as usize;
        let too_old = ring
            .policy
            .max_age
            .is_some_and(|age| now.saturating_duration_since(*at) > age);
        if !(too_many || too_old) {
            break;
        }
        app.pop(room, ring);
    }
}

#[cfg(test)]
mod tests;

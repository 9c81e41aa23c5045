//! Rings that copy a shared store's history (Redis Streams, through the
//! backplane). The store numbers every message of a room for the whole
//! cluster, so an epoch and its offsets mean the same on every instance
//! and outlive any one of them; each instance listening to the room keeps
//! a copy of the newest messages, so that a recovery is answered here in
//! the same single step as from a local ring.
//!
//! - A message comes back from the store with its epoch and offset
//!   ([`History::record_numbered`]) and is kept and queued at once, under
//!   the lock, as a local one is.
//! - A copy is *synced* while it holds every message the store kept from
//!   its oldest on. An instance that starts listening to a room fills its
//!   copy from the store's tail ([`History::prime`]) before a connection
//!   joins; one that stops listening ([`History::detach`]) or sees a gap in
//!   the offsets no longer vouches for its copy: a recovery from it is
//!   incomplete until it is primed again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use super::{History, Kept, Ring, Source};
use crate::delivery::connection::Room;

/// One message as the store keeps it.
#[derive(Debug)]
pub(crate) struct StoredMessage {
    /// Its offset in the room's epoch.
    pub(crate) offset: u64,
    /// The frame.
    pub(crate) frame: Message,
    /// The connection its broadcast excluded.
    pub(crate) excluded: Option<Arc<str>>,
    /// How long ago the store took it.
    pub(crate) age: Duration,
}

/// The newest messages the store keeps for a room.
#[derive(Debug)]
pub(crate) struct Tail {
    /// The room's epoch in the store; `None` if it keeps nothing there.
    pub(crate) epoch: Option<Arc<str>>,
    /// The offset of the newest message it numbered (0: none yet).
    pub(crate) newest: u64,
    /// Its newest messages, oldest first.
    pub(crate) messages: Vec<StoredMessage>,
}

/// What became of a message numbered by the store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Numbered<T> {
    /// Kept, and handed to the delivery.
    Kept(T),
    /// Already kept (it came in the store's tail first): not again.
    Again,
    /// Its room keeps no history here: deliver it as any message.
    NotKept,
}

impl History {
    /// Keeps a message the store numbered `offset` in `epoch`, and hands it
    /// to `deliver` while the rings are locked.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_numbered<T>(
        &self,
        room: &Room,
        epoch: &str,
        offset: u64,
        frame: &Message,
        excluded: Option<&str>,
        now: Instant,
        deliver: impl FnOnce(&Arc<Kept>) -> T,
    ) -> Numbered<T> {
        let Some(policy) = self.policy(room) else {
            return Numbered::NotKept;
        };
        let mut rings = self.lock();
        let rings = &mut *rings;
        let copy = rings
            .rooms
            .get(room)
            .filter(|ring| ring.source != Source::Local && *ring.epoch == *epoch);
        match copy.map(|ring| ring.next) {
            Some(next) if offset < next => return Numbered::Again,
            Some(next) if offset == next => {}
            // Offsets were missed: what is kept is no longer all there is.
            Some(_) => {
                let epoch = copy.map(|ring| ring.epoch.clone()).expect("a copy");
                let unsynced = Source::Shared { synced: false };
                rings.replace(room, Ring::new(policy, epoch, offset, unsynced));
            }
            // A new epoch, or the first message heard: the copy starts
            // here, complete only if the epoch does.
            None => {
                let source = Source::Shared {
                    synced: offset == 1,
                };
                rings.replace(room, Ring::new(policy, epoch.into(), offset, source));
            }
        }
        let ring = rings.rooms.get_mut(room).expect("the ring exists");
        ring.next = offset + 1;
        let kept = Arc::new(Kept {
            epoch: ring.epoch.clone(),
            offset,
            frame: frame.clone(),
            excluded: excluded.map(Arc::from),
            with_position: std::sync::OnceLock::new(),
        });
        Numbered::Kept(self.keep_in(rings, room, kept, now, deliver))
    }

    /// Fills `room`'s copy from the store's `tail`, keeping what arrived
    /// since the tail was read: the copy is then synced.
    pub(crate) fn prime(&self, room: &Room, tail: Tail, now: Instant) {
        let Some(policy) = self.policy(room) else {
            return;
        };
        let mut rings = self.lock();
        let rings = &mut *rings;
        let Some(epoch) = tail.epoch else {
            // The store keeps nothing there: neither does a copy.
            if rings
                .rooms
                .get(room)
                .is_some_and(|ring| ring.source != Source::Local)
            {
                rings.remove(room);
            }
            return;
        };
        // Messages heard since the tail was read follow it.
        let heard: Vec<(Instant, Arc<Kept>)> = match rings.rooms.get(room) {
            Some(ring) if ring.source != Source::Local && ring.epoch == epoch => ring
                .kept
                .iter()
                .filter(|(_, _, kept)| kept.offset > tail.newest)
                .map(|(at, _, kept)| (*at, kept.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let next = heard
            .last()
            .map_or(tail.newest + 1, |(_, kept)| kept.offset + 1);
        let synced = Source::Shared { synced: true };
        rings.replace(room, Ring::new(policy, epoch.clone(), next, synced));
        for stored in tail.messages {
            let kept = Arc::new(Kept {
                epoch: epoch.clone(),
                offset: stored.offset,
                frame: stored.frame,
                excluded: stored.excluded,
                with_position: std::sync::OnceLock::new(),
            });
            let at = now.checked_sub(stored.age).unwrap_or(now);
            self.keep_in(rings, room, kept, at, |_| ());
        }
        for (at, kept) in heard {
            self.keep_in(rings, room, kept, at, |_| ());
        }
    }

    /// This instance stopped listening to `room`: its copy may miss what
    /// comes next.
    pub(crate) fn detach(&self, room: &Room) {
        if let Some(ring) = self.lock().rooms.get_mut(room)
            && ring.source != Source::Local
        {
            ring.source = Source::Shared { synced: false };
        }
    }

    /// Whether `room`'s copy of the store is synced (false for a room
    /// numbered here, or not kept yet).
    pub(crate) fn is_synced(&self, room: &Room) -> bool {
        self.lock()
            .rooms
            .get(room)
            .is_some_and(|ring| ring.source == Source::Shared { synced: true })
    }
}

//! The journal of registry changes that other instances must learn about:
//! rooms that gained their first or lost their last connection (subscribe
//! or unsubscribe), rooms whose count changed, and connections whose
//! presence changed. Only a backplane reads
//! it; until one asks, nothing is recorded, so a single instance keeps no
//! such record.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::connection::Room;

/// What changed since the backplane last looked.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    /// Rooms whose first connection was admitted or last one forgotten:
    /// subscribe to them or unsubscribe.
    pub(crate) interest: HashSet<Room>,
    /// Rooms whose number of open connections changed.
    pub(crate) counts: HashSet<Room>,
    /// Connections (by room) whose presence was set or dropped.
    pub(crate) presence: HashSet<(Room, Arc<str>)>,
}

/// Records [`Changes`] once [`record`](Self::record) was called.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// The changes not yet taken; `None` while no backplane watches.
    changes: Mutex<Option<Changes>>,
    /// Wakes the backplane when `changes` gains a room.
    changed: Notify,
}

/// Which set of [`Changes`] a change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// First admitted or last forgotten.
    Interest,
    /// Joined or left.
    Count,
}

impl Journal {
    /// Starts recording, for a backplane to [`take`](Self::take).
    pub(crate) fn record(&self) {
        self.lock().get_or_insert_with(Changes::default);
    }

    /// The changes since the last call; empty when none are recorded.
    pub(crate) fn take(&self) -> Changes {
        self.lock().as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Resolves when a change has been recorded since the last wake-up.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Notes that `room` changed, if anyone is recording.
    pub(super) fn note(&self, room: &Room, change: Change) {
        let recorded = self.lock().as_mut().map(|changes| {
            let set = match change {
                Change::Interest => &mut changes.interest,
                Change::Count => &mut changes.counts,
            };
            set.insert(room.clone());
        });
        if recorded.is_some() {
            self.changed.notify_one();
        }
    }

    /// Notes that the presence of connection `conn` in `room` changed, if
    /// anyone is recording.
    pub(super) fn note_presence(&self, room: &Room, conn: &Arc<str>) {
        let recorded = self.lock().as_mut().map(|changes| {
            changes.presence.insert((room.clone(), conn.clone()));
        });
        if recorded.is_some() {
            self.changed.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Changes>> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

//! The registry's side of presence: a connection's key, set by its app or
//! taken from its token, dropped when it leaves; every join and leave
//! turned into notices for the room's clients (where the route announces)
//! and an event for the app (on the instance that made the change).

use std::sync::Arc;

use super::ConnectionRegistry;
use crate::delivery::connection::{ConnectionHandle, Outgoing, Room};
use crate::delivery::presence::{MAX_KEY_BYTES, MAX_VALUE_BYTES, Member, PresenceChange};

/// Why a presence could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PresenceError {
    /// The connection's route keeps no presence.
    #[error("the route of {0} keeps no presence")]
    NotKept(String),
    /// The key or the value is longer than allowed (the limit in bytes).
    #[error("presence {0} longer than {1} bytes")]
    TooLarge(&'static str, usize),
}

impl ConnectionRegistry {
    /// Sets who `handle` is in its room: `key` and `value`.
    pub(crate) fn set_presence(
        &self,
        handle: &ConnectionHandle,
        key: &str,
        value: &str,
    ) -> Result<(), PresenceError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(PresenceError::TooLarge("key", MAX_KEY_BYTES));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(PresenceError::TooLarge("value", MAX_VALUE_BYTES));
        }
        if self.presence.policy(&handle.room).is_none() {
            return Err(PresenceError::NotKept(handle.id.to_string()));
        }
        let member = Member {
            conn: handle.id.clone(),
            key: key.into(),
            value: value.into(),
        };
        let here: Arc<str> = self.instance.as_str().into();
        let changes = self.presence.set(&handle.room, member, &here, true);
        self.changes.note_presence(&handle.room, &handle.id);
        self.announce(&changes, true);
        Ok(())
    }

    /// `handle` is no longer present (it left its room).
    pub(super) fn absent(&self, handle: &ConnectionHandle) {
        if self.presence.member(&handle.room, &handle.id).is_none() {
            return;
        }
        let change = self.presence.remove(&handle.room, &handle.id);
        self.changes.note_presence(&handle.room, &handle.id);
        self.announce(change.as_slice(), true);
    }

    /// Another instance's connection `conn` in `room` is now `member`
    /// (`None`: gone). Its app heard of it there.
    pub(crate) fn presence_from(
        &self,
        instance: &Arc<str>,
        room: &Room,
        conn: &str,
        member: Option<(&str, &str)>,
    ) {
        let changes = match member {
            Some((key, value)) if key.len() <= MAX_KEY_BYTES && value.len() <= MAX_VALUE_BYTES => {
                if self.presence.policy(room).is_none() {
                    return;
                }
                let member = Member {
                    conn: conn.into(),
                    key: key.into(),
                    value: value.into(),
                };
                self.presence.set(room, member, instance, false)
            }
            Some(_) => return,
            None => self.presence.remove(room, conn).into_iter().collect(),
        };
        self.announce(&changes, false);
    }

    /// Another instance is gone: its members leave. `tell_app` on the one
    /// instance chosen to tell the apps.
    pub(crate) fn presence_gone(&self, instance: &str, tell_app: bool) {
        let changes = self.presence.drop_instance(instance);
        self.announce(&changes, tell_app);
    }

    /// Other instances' members not confirmed since resync `generation`
    /// began are gone.
    pub(crate) fn presence_unconfirmed(&self, generation: u64, tell_app: bool) {
        let changes = self.presence.drop_unconfirmed(generation, &self.instance);
        self.announce(&changes, tell_app);
    }

    /// Sends notices of `changes` to the rooms' clients where their route
    /// announces, and, with `tell_app`, gives them to the apps.
    fn announce(&self, changes: &[PresenceChange], tell_app: bool) {
        for change in changes {
            let Some(policy) = self.presence.policy(&change.room) else {
                continue;
            };
            if policy.announce {
                let notice = Outgoing::Presence(Arc::new(change.clone()));
                self.queue(&change.room, notice, None);
            }
            if tell_app && policy.events {
                self.presence.tell_app(change.clone());
            }
        }
    }
}

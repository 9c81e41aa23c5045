//! Who is on each path whose route keeps presence: every connection's
//! key (who it is, e.g. a user id) and value (what others may see of it),
//! this instance's own and, through the backplane, every live instance's.
//!
//! A key *joins* a path when its first connection there appears, on any
//! instance, and *leaves* when its last one goes: a user with three tabs
//! joins once. The book counts connections per key to tell; the registry
//! turns its [`PresenceChange`]s into notices for the path's clients and
//! events for the app.
//!
//! Which paths keep presence, and who hears of changes, is said per app by
//! the apps layer ([`Presence::keep_for`]); delivery knows nothing of
//! routes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::connection::Room;

/// Longest presence key, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 128;
/// Longest presence value, in bytes.
pub(crate) const MAX_VALUE_BYTES: usize = 1024;
/// Most members believed of one other instance: more than one process can
/// hold, so whoever can publish to Redis cannot grow the book without
/// bound.
pub(crate) const MAX_REMOTE_MEMBERS: usize = 1_000_000;

/// How a route keeps presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PresencePolicy {
    /// The claim of a connection's token that is its key, if the host sets
    /// keys itself.
    pub(crate) claim: Option<Arc<str>>,
    /// Whether the path's clients get notices of joins and leaves.
    pub(crate) announce: bool,
    /// Whether the app hears of joins and leaves.
    pub(crate) events: bool,
}

/// A key that came to a room or left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PresenceChange {
    /// Where.
    pub(crate) room: Room,
    /// Who.
    pub(crate) key: Arc<str>,
    /// The value of the connection that joined, or of the last to leave.
    pub(crate) value: Arc<str>,
    /// Joined (true) or left.
    pub(crate) joined: bool,
}

impl PresenceChange {
    /// The notice a client of the room gets:
    /// `{"presence":"join"|"leave","key":…,"value":…}`.
    pub(crate) fn notice(&self) -> String {
        let quoted = |text: &str| serde_json::Value::from(text).to_string();
        format!(
            "{{\"presence\":\"{}\",\"key\":{},\"value\":{}}}",
            if self.joined { "join" } else { "leave" },
            quoted(&self.key),
            quoted(&self.value)
        )
    }
}

/// One connection present in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The connection's id.
    pub(crate) conn: Arc<str>,
    /// Who it is.
    pub(crate) key: Arc<str>,
    /// What the app said of it.
    pub(crate) value: Arc<str>,
}

/// Which paths of an app keep presence, and how.
pub(crate) type PresenceRule = Arc<dyn Fn(&str) -> Option<PresencePolicy> + Send + Sync>;

/// What the apps layer says of one app.
#[derive(Clone)]
pub(crate) struct PresenceApp {
    /// Which of its paths keep presence, and how.
    pub(crate) rule: PresenceRule,
    /// Gives the app a change it is to hear of (its `on-presence`).
    pub(crate) notify: Arc<dyn Fn(PresenceChange) + Send + Sync>,
}

/// One member as the book keeps it.
#[derive(Debug)]
struct Entry {
    /// Who.
    key: Arc<str>,
    /// What others see.
    value: Arc<str>,
    /// The instance holding the connection.
    instance: Arc<str>,
    /// For another instance's member: the resync it was last confirmed in.
    generation: u64,
}

/// One room's members.
#[derive(Debug, Default)]
struct RoomBook {
    /// Members by connection id.
    members: HashMap<Arc<str>, Entry>,
    /// Connections per key.
    keys: HashMap<Arc<str>, u32>,
}

/// Every room's members, under one lock.
#[derive(Debug, Default)]
struct Book {
    /// Rooms with members.
    rooms: HashMap<Room, RoomBook>,
    /// Members each other instance has here.
    remote: HashMap<Arc<str>, usize>,
    /// The current resync: other instances' members confirmed since.
    generation: u64,
}

/// The presence of every room that keeps it.
pub(crate) struct Presence {
    /// Each app's settings, as its serving version declares them.
    apps: RwLock<HashMap<Arc<str>, PresenceApp>>,
    /// The members.
    book: Mutex<Book>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence").finish_non_exhaustive()
    }
}

impl Presence {
    /// No presence kept until an app asks for it.
    pub(crate) fn new() -> Self {
        Self {
            apps: RwLock::default(),
            book: Mutex::default(),
        }
    }

    /// Sets `app`'s settings (a new version's replace the last; `None`:
    /// none, and its rooms are forgotten without notice).
    pub(crate) fn keep_for(&self, app: &str, settings: Option<PresenceApp>) {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        match settings {
            Some(settings) => {
                apps.insert(app.into(), settings);
            }
            None => {
                apps.remove(app);
                drop(apps);
                let mut book = self.lock();
                let Book { rooms, remote, .. } = &mut *book;
                rooms.retain(|room, members| {
                    if room.app() != app {
                        return true;
                    }
                    for entry in members.members.values() {
                        uncount(remote, &entry.instance);
                    }
                    false
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How `room` keeps presence, if it does.
    pub(crate) fn policy(&self, room: &Room) -> Option<PresencePolicy> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        (apps.get(room.app())?.rule)(room.path())
    }

    /// Gives `room`'s app a change, if it keeps presence there.
    pub(crate) fn tell_app(&self, change: PresenceChange) {
        let notify = {
            let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
            apps.get(change.room.app()).map(|app| app.notify.clone())
        };
        if let Some(notify) = notify {
            notify(change);
        }
    }

    /// Sets connection `conn`'s key and value in `room`, held by
    /// `instance`; returns the joins and leaves it makes. An instance over
    /// its [`MAX_REMOTE_MEMBERS`] is not believed.
    pub(crate) fn set(
        &self,
        room: &Room,
        member: Member,
        instance: &Arc<str>,
        local: bool,
    ) -> Vec<PresenceChange> {
        let mut book = self.lock();
        let Book {
            rooms,
            remote,
            generation,
        } = &mut *book;
        let members = rooms.entry(room.clone()).or_default();
        let known = members.members.contains_key(&member.conn);
        if !local && !known {
            let held = remote.entry(instance.clone()).or_default();
            if *held >= MAX_REMOTE_MEMBERS {
                return Vec::new();
            }
            *held += 1;
        }
        let entry = Entry {
            key: member.key.clone(),
            value: member.value.clone(),
            instance: instance.clone(),
            generation: *generation,
        };
        let mut changes = Vec::new();
        let old = members.members.insert(member.conn, entry);
        let same_key = old.as_ref().is_some_and(|old| old.key == member.key);
        if let Some(old) = old.filter(|_| !same_key) {
            changes.extend(members.uncount_key(room, &old.key, &old.value));
        }
        if !same_key {
            changes.extend(members.count_key(room, &member.key, &member.value));
        }
        changes
    }

    /// Connection `conn` left `room`; returns the leave it makes, if any.
    pub(crate) fn remove(&self, room: &Room, conn: &str) -> Option<PresenceChange> {
        let mut book = self.lock();
        let Book { rooms, remote, .. } = &mut *book;
        let members = rooms.get_mut(room)?;
        let entry = members.members.remove(conn)?;
        uncount(remote, &entry.instance);
        let change = members.uncount_key(room, &entry.key, &entry.value);
        if members.members.is_empty() {
            rooms.remove(room);
        }
        change
    }

    /// Drops every member of `instance` (it is gone); returns the leaves.
    pub(crate) fn drop_instance(&self, instance: &str) -> Vec<PresenceChange> {
        self.drop_where(|entry, _| &*entry.instance == instance)
    }

    /// Starts a resync: other instances' members not confirmed again
    /// before [`Presence::drop_unconfirmed`] are dropped then.
    pub(crate) fn begin_resync(&self) -> u64 {
        let mut book = self.lock();
        book.generation += 1;
        book.generation
    }

    /// Drops the other instances' members not confirmed since resync
    /// `generation` began, except those of `local`; returns the leaves.
    pub(crate) fn drop_unconfirmed(&self, generation: u64, local: &str) -> Vec<PresenceChange> {
        self.drop_where(|entry, _| &*entry.instance != local && entry.generation < generation)
    }

    fn drop_where(&self, gone: impl Fn(&Entry, &Room) -> bool) -> Vec<PresenceChange> {
        let mut book = self.lock();
        let Book { rooms, remote, .. } = &mut *book;
        let mut changes = Vec::new();
        rooms.retain(|room, members| {
            let leaving: Vec<Arc<str>> = members
                .members
                .iter()
                .filter(|(_, entry)| gone(entry, room))
                .map(|(conn, _)| conn.clone())
                .collect();
            for conn in leaving {
                if let Some(entry) = members.members.remove(&conn) {
                    uncount(remote, &entry.instance);
                    changes.extend(members.uncount_key(room, &entry.key, &entry.value));
                }
            }
            !members.members.is_empty()
        });
        changes
    }

    /// The members of `room`, on every live instance (none where its app
    /// no longer keeps presence).
    pub(crate) fn members(&self, room: &Room) -> Vec<Member> {
        if self.policy(room).is_none() {
            return Vec::new();
        }
        let book = self.lock();
        book.rooms.get(room).map_or_else(Vec::new, |members| {
            members
                .members
                .iter()
                .map(|(conn, entry)| Member {
                    conn: conn.clone(),
                    key: entry.key.clone(),
                    value: entry.value.clone(),
                })
                .collect()
        })
    }

    /// `conn`'s key and value in `room`, if it is present there.
    pub(crate) fn member(&self, room: &Room, conn: &str) -> Option<Member> {
        let book = self.lock();
        let entry = book.rooms.get(room)?.members.get(conn)?;
        Some(Member {
            conn: conn.into(),
            key: entry.key.clone(),
            value: entry.value.clone(),
        })
    }

    /// Every member `instance` holds, by room.
    pub(crate) fn held_by(&self, instance: &str) -> Vec<(Room, Member)> {
        let book = self.lock();
        book.rooms
            .iter()
            .flat_map(|(room, members)| {
                members
                    .members
                    .iter()
                    .filter(|(_, entry)| &*entry.instance == instance)
                    .map(|(conn, entry)| {
                        let member = Member {
                            conn: conn.clone(),
                            key: entry.key.clone(),
                            value: entry.value.clone(),
                        };
                        (room.clone(), member)
                    })
            })
            .collect()
    }
}

impl RoomBook {
    /// One more connection of `key`: a join if it is the first.
    fn count_key(
        &mut self,
        room: &Room,
        key: &Arc<str>,
        value: &Arc<str>,
    ) -> Option<PresenceChange> {
        let n = self.keys.entry(key.clone()).or_default();
        *n += 1;
        (*n == 1).then(|| PresenceChange {
            room: room.clone(),
            key: key.clone(),
            value: value.clone(),
            joined: true,
        })
    }

    /// One connection of `key` fewer: a leave if it was the last.
    fn uncount_key(
        &mut self,
        room: &Room,
        key: &Arc<str>,
        value: &Arc<str>,
    ) -> Option<PresenceChange> {
        let n = self.keys.get_mut(key)?;
        *n -= 1;
        if *n > 0 {
            return None;
        }
        self.keys.remove(key);
        Some(PresenceChange {
            room: room.clone(),
            key: key.clone(),
            value: value.clone(),
            joined: false,
        })
    }
}

/// One member fewer held by `instance` (if it is another instance's).
fn uncount(remote: &mut HashMap<Arc<str>, usize>, instance: &Arc<str>) {
    if let Some(held) = remote.get_mut(instance) {
        *held -= 1;
        if *held == 0 {
            remote.remove(instance);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Presence kept on every path of the app `chat`.
    fn kept() -> Presence {
        let presence = Presence::new();
        let everywhere = PresencePolicy {
            claim: None,
            announce: false,
            events: false,
        };
        presence.keep_for(
            "chat",
            Some(PresenceApp {
                rule: Arc::new(move |_| Some(everywhere.clone())),
                notify: Arc::new(|_| {}),
            }),
        );
        presence
    }

    fn member(conn: &str, key: &str) -> Member {
        Member {
            conn: conn.into(),
            key: key.into(),
            value: format!("{key}'s value").into(),
        }
    }

    fn keys(changes: &[PresenceChange]) -> Vec<(String, bool)> {
        changes
            .iter()
            .map(|c| (c.key.to_string(), c.joined))
            .collect()
    }

    #[test]
    fn a_notice_names_the_change_first_and_escapes_what_the_app_said() {
        let change = PresenceChange {
            room: Room::new("chat", "/ws/a"),
            key: "ann".into(),
            value: "say \"hi\"".into(),
            joined: false,
        };
        assert_eq!(
            change.notice(),
            r#"{"presence":"leave","key":"ann","value":"say \"hi\""}"#
        );
    }

    #[test]
    fn a_key_joins_with_its_first_connection_and_leaves_with_its_last() {
        let presence = kept();
        let room = Room::new("chat", "/ws/a");
        let here: Arc<str> = "i1".into();
        let there: Arc<str> = "i2".into();
        let joined = presence.set(&room, member("i1-1", "ann"), &here, true);
        assert_eq!(keys(&joined), [("ann".to_string(), true)]);
        // Her second tab, on another instance: no join.
        assert!(
            presence
                .set(&room, member("i2-1", "ann"), &there, false)
                .is_empty()
        );
        assert_eq!(presence.members(&room).len(), 2);
        assert_eq!(presence.remove(&room, "i1-1"), None);
        let left = presence.remove(&room, "i2-1").unwrap();
        assert_eq!((&*left.key, left.joined), ("ann", false));
        assert!(presence.members(&room).is_empty());
    }

    #[test]
    fn a_connection_that_changes_its_key_leaves_one_and_joins_the_other() {
        let presence = kept();
        let room = Room::new("chat", "/ws/a");
        let here: Arc<str> = "i1".into();
        presence.set(&room, member("i1-1", "guest"), &here, true);
        let changes = presence.set(&room, member("i1-1", "ann"), &here, true);
        assert_eq!(
            keys(&changes),
            [("guest".to_string(), false), ("ann".to_string(), true)]
        );
        // A new value under the same key is no news.
        let mut again = member("i1-1", "ann");
        again.value = "away".into();
        assert!(presence.set(&room, again, &here, true).is_empty());
        assert_eq!(&*presence.member(&room, "i1-1").unwrap().value, "away");
    }

    #[test]
    fn a_gone_instance_s_members_leave_and_unconfirmed_ones_go_after_a_resync() {
        let presence = kept();
        let room = Room::new("chat", "/ws/a");
        let (here, two, three): (Arc<str>, Arc<str>, Arc<str>) =
            ("i1".into(), "i2".into(), "i3".into());
        presence.set(&room, member("i1-1", "ann"), &here, true);
        presence.set(&room, member("i2-1", "bob"), &two, false);
        presence.set(&room, member("i2-2", "ann"), &two, false);
        presence.set(&room, member("i3-1", "cy"), &three, false);
        let left = presence.drop_instance("i2");
        assert_eq!(keys(&left), [("bob".to_string(), false)]);
        let generation = presence.begin_resync();
        presence.set(&room, member("i3-2", "dee"), &three, false);
        let left = presence.drop_unconfirmed(generation, "i1");
        assert_eq!(keys(&left), [("cy".to_string(), false)]);
        let mut present: Vec<String> = presence
            .members(&room)
            .iter()
            .map(|m| m.key.to_string())
            .collect();
        present.sort();
        assert_eq!(present, ["ann", "dee"]);
        assert_eq!(presence.held_by("i1").len(), 1);
        // An app that no longer keeps presence lists no one.
        presence.keep_for("chat", None);
        assert!(presence.members(&room).is_empty());
    }
}

//! Presence: who is on a path, kept by the host across the cluster.
//!
//! A route asks for it with [`Router::presence`](crate::Router::presence);
//! each connection then says who it is ([`Connection::set_presence`]), or
//! the host takes it from a token claim ([`Presence::from_claim`]).
//! [`presence`] lists a path's members on every instance, and the route's
//! [`on_presence`](crate::Router::on_presence) handler hears when a key
//! joins (its first connection) or leaves (its last).

use crate::bindings::tina4::wasm::types::Presence as WitPresence;
use crate::bindings::tina4::wasm::websocket;
use crate::connection::Connection;
use crate::error::Error;

/// How a route keeps presence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    /// The token claim that is each connection's key, if the host sets it.
    claim: Option<String>,
    /// Whether the path's clients get notices of joins and leaves.
    announce: bool,
    /// Whether the route's `on_presence` handler hears them.
    pub(crate) events: bool,
}

impl Presence {
    /// Keys set by the app, with [`Connection::set_presence`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys taken from the claim `claim` of each connection's token (on a
    /// secured route), set by the host before `Open`.
    pub fn from_claim(claim: &str) -> Self {
        Self {
            claim: Some(claim.to_string()),
            ..Self::default()
        }
    }

    /// Also sends the path's clients a notice when a key joins or leaves:
    /// `{"presence":"join"|"leave","key":…,"value":…}` (frond.js raises a
    /// `presence` event for it).
    pub fn announce(mut self) -> Self {
        self.announce = true;
        self
    }
}

impl From<Presence> for WitPresence {
    fn from(presence: Presence) -> Self {
        Self {
            claim: presence.claim,
            announce: presence.announce,
            events: presence.events,
        }
    }
}

/// One connection present on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The connection's id.
    pub id: String,
    /// Who it is.
    pub key: String,
    /// What the app said of it.
    pub value: String,
}

/// A key that joined a path (its first connection, on any instance) or
/// left it (its last one went).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// The concrete path.
    pub path: String,
    /// Who.
    pub key: String,
    /// The value of the connection that joined, or of the last to leave.
    pub value: String,
    /// Joined, or left.
    pub joined: bool,
}

impl Connection {
    /// Says who this connection is on its path, whose route keeps presence:
    /// `key` names the user (several tabs may share it; at most 128 bytes),
    /// `value` what others may see (at most 1 KiB).
    pub fn set_presence(&self, key: &str, value: &str) -> Result<(), Error> {
        websocket::set_presence(self.id(), key, value).map_err(Error::from)
    }

    /// The members of this connection's path, on every instance.
    pub fn presence(&self) -> Result<Vec<Member>, Error> {
        presence(self.path())
    }
}

/// The members of the concrete `path` of this app, on every live instance;
/// empty if its route keeps no presence.
pub fn presence(path: &str) -> Result<Vec<Member>, Error> {
    let members = websocket::presence(path).map_err(Error::from)?;
    Ok(members
        .into_iter()
        .map(|m| Member {
            id: m.conn,
            key: m.key,
            value: m.value,
        })
        .collect())
}

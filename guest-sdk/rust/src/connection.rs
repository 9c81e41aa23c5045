//! [`Connection`] and [`Event`]: what a WebSocket handler works with.

use std::ops::Index;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::tina4::wasm::types::{
    Connection as WitConnection, Message as WitMessage, WsEvent,
};
use crate::bindings::tina4::wasm::websocket;
use crate::error::Error;

/// Something that happened on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client connected; [`Connection::connection_count`] includes it.
    Open,
    /// A text message from the client.
    Message(String),
    /// A binary message from the client.
    Binary(Vec<u8>),
    /// The connection closed (code and reason as the peer or host sent
    /// them); it no longer counts and can no longer be sent to.
    Close { code: u16, reason: String },
}

impl From<WsEvent> for Event {
    fn from(event: WsEvent) -> Self {
        match event {
            WsEvent::Open => Self::Open,
            WsEvent::Text(text) => Self::Message(text),
            WsEvent::Binary(data) => Self::Binary(data),
            WsEvent::Close(info) => Self::Close {
                code: info.code,
                reason: info.reason,
            },
        }
    }
}

/// Named values: path parameters, query string pairs or headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// The first value named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl From<Vec<(String, String)>> for Params {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }
}

/// `params["room"]`; panics if there is no such name, like a map would —
/// route parameters of the handler's own pattern are always there.
impl Index<&str> for Params {
    type Output = str;

    fn index(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no parameter named {name:?}"))
    }
}

/// One open WebSocket connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The record the host passed.
    inner: WitConnection,
    /// `inner.params`, indexable.
    params: Params,
    /// `inner.query`, indexable.
    query: Params,
    /// `inner.headers`, indexable.
    headers: Params,
}

impl From<WitConnection> for Connection {
    fn from(mut inner: WitConnection) -> Self {
        Self {
            params: std::mem::take(&mut inner.params).into(),
            query: std::mem::take(&mut inner.query).into(),
            headers: std::mem::take(&mut inner.headers).into(),
            inner,
        }
    }
}

impl Connection {
    /// Unique id of this connection (across every host of a cluster).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The concrete path it connected to, e.g. `/ws/chat/lobby`.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Path parameters: `conn.params()["room"]`.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The query string value `name` of the upgrade request.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name)
    }

    /// A header of the upgrade request (lower-case name; see the WIT for
    /// which headers are passed).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// On a secured route: the claims of the client's verified token.
    pub fn claims(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.inner.claims.as_deref()?).ok()
    }

    /// Sends a text message to this connection only.
    pub fn send(&self, text: &str) -> Result<(), Error> {
        websocket::send(self.id(), text).map_err(Error::from)
    }

    /// Sends `value` as JSON text to this connection only.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        self.send(&serde_json::to_string(value)?)
    }

    /// Sends a binary message to this connection only.
    pub fn send_binary(&self, data: &[u8]) -> Result<(), Error> {
        websocket::send_binary(self.id(), data).map_err(Error::from)
    }

    /// Sends a text message to every connection on this path, this one included.
    pub fn broadcast(&self, text: &str) -> Result<(), Error> {
        websocket::broadcast(self.path(), text, None).map_err(Error::from)
    }

    /// Sends a text message to every other connection on this path.
    pub fn broadcast_except_self(&self, text: &str) -> Result<(), Error> {
        websocket::broadcast(self.path(), text, Some(self.id())).map_err(Error::from)
    }

    /// [`broadcast`](Self::broadcast) of `value` as JSON.
    pub fn broadcast_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        self.broadcast(&serde_json::to_string(value)?)
    }

    /// [`broadcast_except_self`](Self::broadcast_except_self) of `value` as JSON.
    pub fn broadcast_json_except_self<T: Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<(), Error> {
        self.broadcast_except_self(&serde_json::to_string(value)?)
    }

    /// Sends a binary message to every connection on this path, this one included.
    pub fn broadcast_binary(&self, data: &[u8]) -> Result<(), Error> {
        websocket::broadcast_binary(self.path(), data, None).map_err(Error::from)
    }

    /// Closes the connection normally (1000) after what was already sent.
    pub fn close(&self) -> Result<(), Error> {
        self.close_with(1000, "")
    }

    /// Closes the connection with `code` (1000-1003, 1007-1014 or
    /// 3000-4999) and `reason` (at most 123 bytes).
    pub fn close_with(&self, code: u16, reason: &str) -> Result<(), Error> {
        websocket::close(self.id(), code, reason).map_err(Error::from)
    }

    /// Keeps a small value with this connection, held by the host (as
    /// JSON): it survives the app being restarted or hot-swapped, and is
    /// readable until this connection's `Close` event has been handled.
    /// Limited in size (16 KiB by default; [`Error::TooLarge`] beyond).
    pub fn set_attachment<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)?;
        websocket::set_attachment(self.id(), &bytes).map_err(Error::from)
    }

    /// The value last kept with [`set_attachment`](Self::set_attachment),
    /// if any.
    pub fn attachment<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        match websocket::attachment(self.id())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// How many connections are open on this path (this one included while
    /// it is open).
    pub fn connection_count(&self) -> u32 {
        // The host only refuses paths that are not the app's own; a
        // connection's own path always is.
        websocket::count(self.path()).unwrap_or(0)
    }

    /// The newest `limit` messages this connection's path keeps (its
    /// route's [`history`](crate::Router::history)), oldest first: what
    /// was said before this client came.
    pub fn history(&self, limit: u32) -> Result<Vec<KeptMessage>, Error> {
        history(self.path(), 0, limit)
    }
}

/// A message a path's history keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptMessage {
    /// Its position in the path's history (1, 2, 3, …).
    pub offset: u64,
    /// The text, for a text message.
    pub text: Option<String>,
    /// The bytes, for a binary message.
    pub data: Option<Vec<u8>>,
}

/// The newest `limit` messages the concrete `path` of this app keeps with
/// an offset above `since` (0: all), oldest first; empty if it keeps none.
pub fn history(path: &str, since: u64, limit: u32) -> Result<Vec<KeptMessage>, Error> {
    let kept = websocket::history(path, since, limit).map_err(Error::from)?;
    Ok(kept
        .into_iter()
        .map(|kept| {
            let (text, data) = match kept.message {
                WitMessage::Text(text) => (Some(text), None),
                WitMessage::Binary(data) => (None, Some(data)),
            };
            KeptMessage {
                offset: kept.offset,
                text,
                data,
            }
        })
        .collect())
}

/// Sends `text` to every connection on the concrete WebSocket `path` of
/// this app, from anywhere (typically an HTTP handler). Returns how many
/// connections it was sent to (with a backplane, those on other instances
/// as their last published counts say).
pub fn push_to_websocket(path: &str, text: &str) -> Result<u32, Error> {
    websocket::push(path, text).map_err(Error::from)
}

/// Sends `text` to the connection with id `id` (from [`Connection::id`]),
/// from anywhere; with a backplane, on whichever instance holds it.
pub fn send_to_connection(id: &str, text: &str) -> Result<(), Error> {
    websocket::send(id, text).map_err(Error::from)
}

/// Closes the connection with id `id` with `code` and `reason`, from
/// anywhere; with a backplane, on whichever instance holds it.
pub fn close_connection(id: &str, code: u16, reason: &str) -> Result<(), Error> {
    websocket::close(id, code, reason).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_index_by_name() {
        let p = Params::from(vec![
            ("room".to_string(), "a".to_string()),
            ("room".to_string(), "b".to_string()),
        ]);
        assert_eq!(&p["room"], "a");
        assert_eq!(p.get("nope"), None);
        assert_eq!(p.iter().count(), 2);
    }

    #[test]
    #[should_panic(expected = "no parameter named \"nope\"")]
    fn a_missing_param_panics_with_its_name() {
        let _ = &Params::default()["nope"];
    }
}

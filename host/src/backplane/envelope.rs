//! What instances say to each other over the backplane, and the channels
//! they say it on.
//!
//! A message is encoded once by its sender (a format byte, then postcard)
//! and decoded once by each receiving instance, borrowing from the received
//! bytes; the frame built from it is shared by every local recipient.

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Message;

/// Leading byte of every encoded message; instances speaking another
/// format ignore each other's messages instead of misreading them.
const FORMAT: u8 = 1;

/// A WebSocket message's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Payload<'a> {
    /// The content of a data frame; `None` for control frames.
    pub fn of(frame: &'a Message) -> Option<Self> {
        match frame {
            Message::Text(text) => Some(Self::Text(text.as_str())),
            Message::Binary(data) => Some(Self::Binary(data)),
            _ => None,
        }
    }

    /// The frame to queue for local recipients.
    pub fn to_frame(self) -> Message {
        match self {
            Self::Text(text) => Message::text(text),
            Self::Binary(data) => Message::binary(data.to_vec()),
        }
    }
}

/// One message between instances. Every variant names its sender, so an
/// instance ignores its own messages when Redis hands them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope<'a> {
    /// `broadcast` or `push` by `app` to every connection on `path`.
    Broadcast {
        origin: &'a str,
        app: &'a str,
        path: &'a str,
        exclude: Option<&'a str>,
        payload: Payload<'a>,
    },
    /// `send` by `app` to the connection `to` on the receiving instance.
    Send {
        origin: &'a str,
        app: &'a str,
        to: &'a str,
        payload: Payload<'a>,
    },
    /// `close` by `app` of the connection `to` on the receiving instance.
    Close {
        origin: &'a str,
        app: &'a str,
        to: &'a str,
        code: u16,
        reason: &'a str,
    },
    /// The sender's open connections per path: every path it has (`full`),
    /// or only paths that changed (0 for a path it no longer has).
    Counts {
        origin: &'a str,
        full: bool,
        counts: Vec<(&'a str, u32)>,
    },
    /// The sender is alive (sent every heartbeat interval).
    Heartbeat { origin: &'a str },
    /// The sender (re)joined and asks everyone for their full counts.
    Hello { origin: &'a str },
    /// The sender is shutting down: drop its counts now.
    Bye { origin: &'a str },
}

impl<'a> Envelope<'a> {
    /// The instance that sent it.
    pub fn origin(&self) -> &'a str {
        match self {
            Self::Broadcast { origin, .. }
            | Self::Send { origin, .. }
            | Self::Close { origin, .. }
            | Self::Counts { origin, .. }
            | Self::Heartbeat { origin }
            | Self::Hello { origin }
            | Self::Bye { origin } => origin,
        }
    }

    /// The bytes to publish.
    pub fn encode(&self) -> Vec<u8> {
        // A u8 is one byte in postcard: the format leads.
        postcard::to_allocvec(&(FORMAT, self)).expect("an envelope always serializes")
    }

    /// Reads a received message; `None` if it is not one of ours.
    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        if bytes.first() != Some(&FORMAT) {
            return None;
        }
        let (_, envelope): (u8, Self) = postcard::from_bytes(bytes).ok()?;
        Some(envelope)
    }
}

/// The channel names of one cluster (instances sharing a prefix).
#[derive(Debug, Clone)]
pub struct Channels {
    /// Prepended to every channel, so clusters can share one Redis.
    prefix: String,
}

impl Channels {
    /// Channels under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// Where broadcasts to `path` go; only instances with a connection on
    /// `path` listen.
    pub fn path(&self, path: &str) -> String {
        format!("{}:path:{path}", self.prefix)
    }

    /// The path a path channel is for.
    pub fn path_of<'c>(&self, channel: &'c str) -> Option<&'c str> {
        channel.strip_prefix(&self.prefix)?.strip_prefix(":path:")
    }

    /// Where sends and closes to `instance`'s connections go.
    pub fn instance(&self, instance: &str) -> String {
        format!("{}:instance:{instance}", self.prefix)
    }

    /// Where every instance announces itself and its counts.
    pub fn cluster(&self) -> String {
        format!("{}:cluster", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_survive_a_round_trip() {
        let data = [0u8, 159, 255];
        let sent = [
            Envelope::Broadcast {
                origin: "a1",
                app: "chat",
                path: "/ws/room/x",
                exclude: Some("a1-7"),
                payload: Payload::Text("héllo"),
            },
            Envelope::Send {
                origin: "a1",
                app: "chat",
                to: "b2-1",
                payload: Payload::Binary(&data),
            },
            Envelope::Close {
                origin: "a1",
                app: "chat",
                to: "b2-1",
                code: 4001,
                reason: "bye",
            },
            Envelope::Counts {
                origin: "a1",
                full: true,
                counts: vec![("/ws/room/x", 3), ("/ws/room/y", 0)],
            },
            Envelope::Hello { origin: "a1" },
        ];
        for envelope in sent {
            let bytes = envelope.encode();
            assert_eq!(Envelope::decode(&bytes), Some(envelope));
        }
    }

    #[test]
    fn foreign_or_damaged_bytes_are_ignored() {
        assert_eq!(Envelope::decode(b""), None);
        assert_eq!(Envelope::decode(b"hello"), None);
        let mut bytes = Envelope::Hello { origin: "a1" }.encode();
        bytes.truncate(bytes.len() - 1);
        assert_eq!(Envelope::decode(&bytes), None);
    }

    #[test]
    fn path_channels_name_their_path() {
        let channels = Channels::new("t4");
        let channel = channels.path("/ws/room/a:b");
        assert_eq!(channels.path_of(&channel), Some("/ws/room/a:b"));
        assert_eq!(channels.path_of(&channels.cluster()), None);
        assert_eq!(Channels::new("other").path_of(&channel), None);
    }
}

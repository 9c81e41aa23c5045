//! What instances say to each other over the backplane, and the channels
//! they say it on.
//!
//! A message is encoded once by its sender (a format byte, then postcard)
//! and decoded once by each receiving instance, borrowing from the received
//! bytes; the frame built from it is shared by every local recipient.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio_tungstenite::tungstenite::Message;

use super::streams::RoomKeys;

/// Leading byte of every encoded message; instances speaking another
/// format ignore each other's messages instead of misreading them.
const FORMAT: u8 = 1;

/// A WebSocket message's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Payload<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Payload<'a> {
    /// The content of a data frame; `None` for control frames.
    pub(crate) fn of(frame: &'a Message) -> Option<Self> {
        match frame {
            Message::Text(text) => Some(Self::Text(text.as_str())),
            Message::Binary(data) => Some(Self::Binary(data)),
            _ => None,
        }
    }

    /// The frame to queue for local recipients.
    pub(crate) fn to_frame(self) -> Message {
        match self {
            Self::Text(text) => Message::text(text),
            Self::Binary(data) => Message::binary(data.to_vec()),
        }
    }
}

/// One connection's presence as an instance publishes it: its room, its
/// id, and its key and value (`None`: no longer present).
pub(crate) type PresenceUpdate<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);

/// One message between instances. Every variant names its sender, so an
/// instance ignores its own messages when Redis hands them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Envelope<'a> {
    /// `broadcast` or `push` to every connection of a room (its key names
    /// the app and the path).
    Broadcast {
        origin: &'a str,
        room: &'a str,
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
    /// The sender's open connections per room (by key): every room it has
    /// (`full`), or only rooms that changed (0 for one it no longer has).
    Counts {
        origin: &'a str,
        full: bool,
        counts: Vec<(&'a str, u32)>,
    },
    /// Presence of the sender's connections: `(room, connection, Some((key,
    /// value)))` where one was set, `None` where it is gone.
    Presence {
        origin: &'a str,
        updates: Vec<PresenceUpdate<'a>>,
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
    pub(crate) fn origin(&self) -> &'a str {
        match self {
            Self::Broadcast { origin, .. }
            | Self::Send { origin, .. }
            | Self::Close { origin, .. }
            | Self::Counts { origin, .. }
            | Self::Presence { origin, .. }
            | Self::Heartbeat { origin }
            | Self::Hello { origin }
            | Self::Bye { origin } => origin,
        }
    }

    /// The bytes to publish.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // A u8 is one byte in postcard: the format leads.
        postcard::to_allocvec(&(FORMAT, self)).expect("an envelope always serializes")
    }

    /// Reads a received message; `None` if it is not one of ours.
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<Self> {
        if bytes.first() != Some(&FORMAT) {
            return None;
        }
        let (_, envelope): (u8, Self) = postcard::from_bytes(bytes).ok()?;
        Some(envelope)
    }
}

/// Leading byte of a sealed message: then its HMAC-SHA256, then the
/// encoded envelope.
const SEALED: u8 = 2;

/// Bytes of a seal's tag.
const TAG: usize = 32;

/// Why a received message was not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not one of ours, or damaged.
    Malformed,
    /// This cluster seals its messages, and this one has no seal.
    Unsealed,
    /// Its seal does not match: forged, or sealed with another secret.
    BadSeal,
}

impl Refusal {
    /// The reason, as a metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unsealed => "unsealed",
            Self::BadSeal => "bad seal",
        }
    }
}

/// Seals and checks messages when the cluster shares a secret
/// (`--backplane-secret`): a message is then acted on only if it carries
/// an HMAC-SHA256 of its bytes under that secret, so whoever can publish to
/// Redis without the secret can neither reach clients nor forge counts.
#[derive(Clone)]
pub(crate) struct Seal {
    /// The HMAC keyed with the secret; `None` without one.
    key: Option<Hmac<Sha256>>,
}

impl Seal {
    /// Seals with `secret`, or not at all.
    pub(crate) fn new(secret: Option<&str>) -> Self {
        Self {
            key: secret.map(|s| Hmac::new_from_slice(s.as_bytes()).expect("HMAC takes any key")),
        }
    }

    /// The bytes to publish for `envelope`.
    pub(crate) fn seal(&self, envelope: &Envelope<'_>) -> Vec<u8> {
        let body = envelope.encode();
        let Some(key) = &self.key else {
            return body;
        };
        let mut mac = key.clone();
        mac.update(&body);
        let mut sealed = Vec::with_capacity(1 + TAG + body.len());
        sealed.push(SEALED);
        sealed.extend_from_slice(&mac.finalize().into_bytes());
        sealed.extend_from_slice(&body);
        sealed
    }

    /// Reads a received message, if it may be acted on.
    pub(crate) fn open<'a>(&self, bytes: &'a [u8]) -> Result<Envelope<'a>, Refusal> {
        let body = match &self.key {
            None => bytes,
            Some(key) => {
                if bytes.first() != Some(&SEALED) {
                    return Err(Refusal::Unsealed);
                }
                if bytes.len() < 1 + TAG {
                    return Err(Refusal::Malformed);
                }
                let (tag, body) = bytes[1..].split_at(TAG);
                let mut mac = key.clone();
                mac.update(body);
                mac.verify_slice(tag).map_err(|_| Refusal::BadSeal)?;
                body
            }
        };
        Envelope::decode(body).ok_or(Refusal::Malformed)
    }
}

/// The channel names of one cluster (instances sharing a prefix).
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    /// Prepended to every channel, so clusters can share one Redis.
    prefix: String,
}

impl Channels {
    /// Channels under `prefix`.
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    /// Where broadcasts to a room go (by its key); only instances with a
    /// connection in the room listen.
    pub(crate) fn room(&self, room: &str) -> String {
        // The braces make the room the hash tag: in a Redis Cluster its
        // channel and its history keys live on one shard.
        format!("{}:room:{{{room}}}", self.prefix)
    }

    /// The room key a room channel is for.
    #[cfg(test)]
    pub(crate) fn room_of<'c>(&self, channel: &'c str) -> Option<&'c str> {
        channel
            .strip_prefix(&self.prefix)?
            .strip_prefix(":room:{")?
            .strip_suffix('}')
    }

    /// The key of a lease (see [`RedisLink::lease`](super::RedisLink::lease)).
    pub(crate) fn lease(&self, key: &str) -> String {
        format!("{}:lease:{key}", self.prefix)
    }

    /// The keys of `room`'s history in Redis Streams.
    pub(crate) fn history(&self, room: &str) -> RoomKeys {
        RoomKeys {
            stream: format!("{}:history:{{{room}}}", self.prefix),
            meta: format!("{}:history-meta:{{{room}}}", self.prefix),
        }
    }

    /// Where sends and closes to `instance`'s connections go.
    pub(crate) fn instance(&self, instance: &str) -> String {
        format!("{}:instance:{instance}", self.prefix)
    }

    /// Where every instance announces itself and its counts.
    pub(crate) fn cluster(&self) -> String {
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
                room: "chat/ws/room/x",
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
                counts: vec![("chat/ws/room/x", 3), ("chat/ws/room/y", 0)],
            },
            Envelope::Hello { origin: "a1" },
        ];
        for envelope in sent {
            let bytes = envelope.encode();
            assert_eq!(Envelope::decode(&bytes), Some(envelope));
        }
    }

    #[test]
    fn sealed_messages_open_only_with_their_secret() {
        let hello = Envelope::Hello { origin: "a1" };
        let ours = Seal::new(Some("the cluster's secret"));
        let sealed = ours.seal(&hello);
        assert_eq!(ours.open(&sealed), Ok(hello.clone()));
        let theirs = Seal::new(Some("another secret"));
        assert_eq!(theirs.open(&sealed), Err(Refusal::BadSeal));
        // A forger without the secret: unsealed, or with a made-up seal.
        assert_eq!(ours.open(&hello.encode()), Err(Refusal::Unsealed));
        let mut forged = sealed.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(ours.open(&forged), Err(Refusal::BadSeal));
        assert_eq!(ours.open(&[SEALED, 1, 2]), Err(Refusal::Malformed));
        // Without a secret, plain envelopes pass as before.
        assert_eq!(Seal::new(None).open(&hello.encode()), Ok(hello));
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
    fn room_channels_name_their_room() {
        let channels = Channels::new("t4");
        let channel = channels.room("chat/ws/room/a:b");
        assert_eq!(channels.room_of(&channel), Some("chat/ws/room/a:b"));
        assert_eq!(channels.room_of(&channels.cluster()), None);
        assert_eq!(Channels::new("other").room_of(&channel), None);
    }
}

//! History in Redis Streams: the store that numbers the messages of rooms
//! that keep history, for the whole cluster.
//!
//! One stream per room (`<prefix>:history:{<room>}`), entries `0-<offset>`,
//! and beside it a hash (`<prefix>:history-meta:{<room>}`) with the room's
//! epoch, its last offset and the bytes its stream holds. Both keys and the
//! room's channel share the hash tag `{<room>}`, so in a Redis Cluster
//! they live on one shard and one script can touch all three.
//!
//! [`KEEP`] numbers a message, appends it, trims the stream to the room's
//! limits and publishes it with its position, in one atomic step: every
//! instance, the sender included, receives a room's kept messages in offset
//! order and delivers them then. [`TAIL`] reads a room's newest messages to
//! fill an instance's copy ([`crate::delivery::History::prime`]).
//!
//! Entries hold the envelope as the sender sealed it, so with a shared
//! secret a message read back from a stream is checked like one received.
//! The position travels beside the seal, not under it: whoever can write
//! to Redis can reorder or drop kept messages, never forge one.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{Script, Value};

use super::envelope::{Envelope, Seal};
use crate::delivery::{Position, Room, StoredMessage, Tail};

/// Leading byte of a kept message as published: then its position line
/// (`<epoch>-<offset>\n`), then the sealed envelope.
pub(crate) const KEPT: u8 = 3;

/// Bytes counted per entry beyond its envelope, as in a local ring.
const ENTRY_OVERHEAD: usize = 64;

/// How long a room's stream outlives its last message when its route sets
/// no age limit.
pub(crate) const IDLE_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// Numbers, appends, trims and publishes one message.
///
/// KEYS: stream, meta. ARGV: channel, sealed envelope, max messages, max
/// bytes, max age in ms (0: none), expiry in ms, a new epoch in case the
/// room has none, and the publish command (`PUBLISH` or `SPUBLISH`).
pub(crate) static KEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stream, meta = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  -- A room without its epoch starts over, whatever is left of it.
  redis.call('DEL', stream)
  epoch = ARGV[7]
  redis.call('HSET', meta, 'epoch', epoch, 'last', 0, 'bytes', 0)
end
local offset = redis.call('HINCRBY', meta, 'last', 1)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local overhead = tonumber(ARGV[9])
redis.call('XADD', stream, '0-' .. offset, 'e', ARGV[2], 't', now)
local bytes = redis.call('HINCRBY', meta, 'bytes', string.len(ARGV[2]) + overhead)
local max, max_bytes, max_age = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local len = redis.call('XLEN', stream)
while len > 1 do
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  local fields = oldest[2]
  local too_old = max_age > 0 and tonumber(fields[4]) < now - max_age
  if len <= max and bytes <= max_bytes and not too_old then break end
  redis.call('XDEL', stream, oldest[1])
  bytes = redis.call('HINCRBY', meta, 'bytes', -(string.len(fields[2]) + overhead))
  len = len - 1
end
redis.call('PEXPIRE', stream, ARGV[6])
redis.call('PEXPIRE', meta, ARGV[6])
redis.call(ARGV[8], ARGV[1], '\3' .. epoch .. '-' .. offset .. '\n' .. ARGV[2])
return offset
",
    )
});

/// A room's epoch, last offset, the time, and its newest entries.
///
/// KEYS: stream, meta. ARGV: how many entries at most.
pub(crate) static TAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'last')
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])
return {meta[1] or '', meta[2] or '0', tostring(now), entries}
",
    )
});

/// The keys of a room's history, and how to keep a message in it.
#[derive(Debug, Clone)]
pub(crate) struct RoomKeys {
    /// The stream of its messages.
    pub(crate) stream: String,
    /// Its epoch, last offset and bytes.
    pub(crate) meta: String,
}

/// Where [`KeepArgs::to_args`] puts the sealed envelope.
pub(crate) const ENVELOPE_ARG: usize = 1;

/// What [`KEEP`] needs besides the keys, in its argument order.
pub(crate) struct KeepArgs {
    /// The room's channel.
    pub(crate) channel: String,
    /// The sealed envelope.
    pub(crate) envelope: Vec<u8>,
    /// Most messages the stream keeps.
    pub(crate) max_messages: u32,
    /// Most bytes the stream keeps (counting [`ENTRY_OVERHEAD`] each).
    pub(crate) max_bytes: usize,
    /// Messages older than this are dropped.
    pub(crate) max_age: Option<Duration>,
    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    pub(crate) publish: &'static str,
}

impl KeepArgs {
    /// The script's arguments.
    pub(crate) fn to_args(&self) -> Vec<Vec<u8>> {
        let max_age = self.max_age.map_or(0, |age| age.as_millis());
        let expiry = self.max_age.unwrap_or(IDLE_EXPIRY).as_millis().max(1);
        vec![
            self.channel.clone().into_bytes(),
            self.envelope.clone(),
            self.max_messages.to_string().into_bytes(),
            self.max_bytes.to_string().into_bytes(),
            max_age.to_string().into_bytes(),
            expiry.to_string().into_bytes(),
            new_epoch().into_bytes(),
            self.publish.as_bytes().to_vec(),
            ENTRY_OVERHEAD.to_string().into_bytes(),
        ]
    }
}

/// A fresh epoch name: 16 hex digits, unlikely ever to repeat.
fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    crate::hex::hex(&bytes)
}

/// Splits a published kept message into its position and sealed envelope.
pub(crate) fn split_kept(bytes: &[u8]) -> Option<(Position, &[u8])> {
    let rest = bytes.strip_prefix(&[KEPT])?;
    let newline = rest.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&rest[..newline]).ok()?;
    Some((Position::parse(line)?, &rest[newline + 1..]))
}

/// Reads [`TAIL`]'s answer for `room`: entries that do not open under
/// `seal`, or name another room, are left out (and the tail is then not
/// complete, which the offsets show).
pub(crate) fn read_tail(value: Value, room: &Room, seal: &Seal) -> Option<Tail> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [epoch, last, now, entries] = <[Value; 4]>::try_from(parts).ok()?;
    let epoch = text(&epoch)?;
    let newest: u64 = text(&last)?.parse().ok()?;
    let now: u64 = text(&now)?.parse().ok()?;
    let Value::Array(entries) = entries else {
        return None;
    };
    let mut messages: Vec<StoredMessage> = entries
        .iter()
        .filter_map(|entry| read_entry(entry, room, seal, now))
        .collect();
    messages.reverse();
    Some(Tail {
        epoch: (!epoch.is_empty()).then(|| Arc::from(epoch.as_str())),
        newest,
        messages,
    })
}

/// One stream entry: `[id, [field, value, ...]]`.
fn read_entry(entry: &Value, room: &Room, seal: &Seal, now: u64) -> Option<StoredMessage> {
    let Value::Array(entry) = entry else {
        return None;
    };
    let [id, Value::Array(fields)] = entry.as_slice() else {
        return None;
    };
    let offset: u64 = text(id)?.strip_prefix("0-")?.parse().ok()?;
    let field = |name: &[u8]| {
        fields
            .chunks_exact(2)
            .find(|pair| bytes(&pair[0]) == Some(name))
            .and_then(|pair| bytes(&pair[1]))
    };
    let at: u64 = std::str::from_utf8(field(b"t")?).ok()?.parse().ok()?;
    let Ok(Envelope::Broadcast {
        room: kept_room,
        exclude,
        payload,
        ..
    }) = seal.open(field(b"e")?)
    else {
        return None;
    };
    (kept_room == room.as_str()).then(|| StoredMessage {
        offset,
        frame: payload.to_frame(),
        excluded: exclude.map(Arc::from),
        age: Duration::from_millis(now.saturating_sub(at)),
    })
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::Int(n) => Some(n.to_string()),
        other => Some(std::str::from_utf8(bytes(other)?).ok()?.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_message_carries_its_position_before_the_seal() {
        let mut published = vec![KEPT];
        published.extend_from_slice(b"0123abcd-42\n");
        published.extend_from_slice(b"sealed bytes");
        let (at, sealed) = split_kept(&published).unwrap();
        assert_eq!((at.epoch.as_str(), at.offset), ("0123abcd", 42));
        assert_eq!(sealed, b"sealed bytes");
        assert!(split_kept(b"\x01plain envelope").is_none());
        assert!(split_kept(b"\x03no-newline").is_none());
        assert!(split_kept(b"\x03bad epoch!-1\nx").is_none());
    }

    #[test]
    fn a_tail_is_read_oldest_first_and_foreign_entries_are_left_out() {
        let seal = Seal::new(Some("secret"));
        let room = Room::new("chat", "/ws/a");
        let entry = |offset: u64, room: &str, seal: &Seal, at: u64| {
            let envelope = seal.seal(&Envelope::Broadcast {
                origin: "i1",
                room,
                exclude: None,
                payload: super::super::envelope::Payload::Text("hi"),
            });
            Value::Array(vec![
                Value::BulkString(format!("0-{offset}").into_bytes()),
                Value::Array(vec![
                    Value::BulkString(b"e".to_vec()),
                    Value::BulkString(envelope),
                    Value::BulkString(b"t".to_vec()),
                    Value::BulkString(at.to_string().into_bytes()),
                ]),
            ])
        };
        let answer = Value::Array(vec![
            Value::BulkString(b"ep0ch".to_vec()),
            Value::BulkString(b"9".to_vec()),
            Value::BulkString(b"10000".to_vec()),
            Value::Array(vec![
                entry(9, "chat/ws/a", &seal, 9_000),
                entry(8, "chat/ws/other", &seal, 8_000),
                entry(7, "chat/ws/a", &Seal::new(Some("forger")), 7_000),
                entry(6, "chat/ws/a", &seal, 6_000),
            ]),
        ]);
        let tail = read_tail(answer, &room, &seal).unwrap();
        assert_eq!(tail.epoch.as_deref(), Some("ep0ch"));
        assert_eq!(tail.newest, 9);
        let offsets: Vec<u64> = tail.messages.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, [6, 9]);
        assert_eq!(tail.messages[0].age, Duration::from_secs(4));
    }
}

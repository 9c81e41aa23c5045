//! The link to Redis: two connections, each in its own task, each
//! reconnecting on its own with backoff.
//!
//! - The publisher drains a bounded queue, one pipeline per batch. While
//!   it is down, new messages are dropped and counted at once, and what was
//!   queued is dropped too: nothing waits for Redis to come back.
//! - The listener subscribes to this instance's channel, the cluster
//!   channel, and the channel of every room that has a connection here
//!   (targeted: an instance hears only traffic it can deliver), following
//!   the registry's changes. It delivers what arrives, applies the other
//!   instances' counts, and sends the heartbeat and count updates.
//!
//! On every (re)connect of either, this instance asks the others for their
//! counts and publishes its own, so counts recover whichever comes back first.

pub(crate) mod envelope;
mod listener;
pub(crate) mod peers;
mod publisher;
pub(crate) mod streams;
pub(crate) mod transport;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::config::{BackplaneConfig, BackplaneKind};
use crate::delivery::PEER_TTL;
use crate::delivery::{ConnectionRegistry, HistoryPolicy, Member, Room, Tail};
use crate::telemetry;
use envelope::{Channels, Envelope, Payload, Seal};
use peers::Peers;
use streams::{KeepArgs, RoomKeys};
use transport::{Command, Publisher, RESPONSE_TIMEOUT, Transport};

/// First pause before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between reconnection attempts: delivery resumes within
/// about a second of Redis returning.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Most messages sent in one pipeline.
const BATCH: usize = 256;
/// Longest wait for the subscription of a new connection's path.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);
/// Most presence updates in one message.
const PRESENCE_BATCH: usize = 512;
/// How long after resubscribing the other instances have to republish
/// their presence before what they did not confirm is dropped.
const RESYNC_WAIT: Duration = Duration::from_secs(3);
/// Longest wait for the goodbye to reach Redis at shutdown.
const GOODBYE_WAIT: Duration = Duration::from_millis(500);

/// This instance's link to the others through Redis.
pub(crate) struct RedisLink {
    /// This instance's id: the prefix of its connection ids.
    instance: Arc<str>,
    /// The channel names of this cluster.
    channels: Channels,
    /// Seals what this instance publishes and checks what it receives.
    seal: Seal,
    /// This instance's connections, where received messages are delivered.
    registry: Arc<ConnectionRegistry>,
    /// Redis's address without any password, for log lines.
    shown_url: String,
    /// Messages waiting for the publisher (bounded by `--backplane-queue`).
    outgoing: mpsc::Sender<Publication>,
    /// Whether the publisher is connected; while not, messages are dropped.
    publishing: AtomicBool,
    /// A handle on the publisher's connection while it is up, for reading
    /// rooms' history.
    reader: Mutex<Option<Publisher>>,
    /// Whether this is a Redis Cluster (sharded pub/sub).
    cluster: bool,
    /// Whether the listener is connected and subscribed.
    connected: AtomicBool,
    /// Rooms whose channel Redis confirmed this instance listens to.
    subscribed: Mutex<HashSet<Room>>,
    /// Wakes connections waiting for their room's subscription.
    subscribed_changed: Notify,
    /// The other instances and their counts.
    peers: Peers,
    /// Messages dropped since the last report in the log.
    unreported_drops: AtomicU64,
    /// The presence resync begun when the listener last (re)subscribed,
    /// and when: other instances' members not republished by then are
    /// gone.
    resync: Mutex<Option<(u64, Instant)>>,
}

/// One message for the publisher.
struct Publication {
    /// Where it goes.
    target: Target,
    /// Told once Redis has taken it (the goodbye waits for this).
    sent: Option<oneshot::Sender<()>>,
}

/// Where a publication goes.
enum Target {
    /// Published on `channel`: the encoded envelope.
    Channel { channel: String, payload: Vec<u8> },
    /// Kept in a room's history, which publishes it with its position.
    History {
        keys: RoomKeys,
        /// [`streams::KEEP`]'s arguments.
        args: Vec<Vec<u8>>,
    },
}

impl Target {
    /// The Redis command that sends it.
    fn command(&self) -> Command<'_> {
        match self {
            Self::Channel { channel, payload } => Command::Publish { channel, payload },
            Self::History { keys, args } => Command::Script {
                script: &streams::KEEP,
                keys: [&keys.stream, &keys.meta],
                args,
            },
        }
    }
}

impl RedisLink {
    /// Checks the URL and starts the publisher and the listener.
    pub(crate) fn start(
        config: &BackplaneConfig,
        registry: Arc<ConnectionRegistry>,
    ) -> anyhow::Result<Arc<Self>> {
        let shown_url = hide_password(&config.url);
        let cluster = config.kind == BackplaneKind::RedisCluster;
        let transport = Arc::new(
            Transport::new(&config.url, cluster)
                .with_context(|| format!("invalid backplane URL {shown_url}"))?,
        );
        let (outgoing, queue) = mpsc::channel(config.queue.get());
        registry.changes().record();
        let link = Arc::new(Self {
            instance: registry.instance().into(),
            channels: Channels::new(&config.prefix),
            seal: Seal::new(config.shared_secret.as_deref()),
            registry,
            shown_url,
            outgoing,
            publishing: AtomicBool::new(false),
            reader: Mutex::new(None),
            cluster,
            connected: AtomicBool::new(false),
            subscribed: Mutex::new(HashSet::new()),
            subscribed_changed: Notify::new(),
            peers: Peers::new(PEER_TTL),
            unreported_drops: AtomicU64::new(0),
            resync: Mutex::new(None),
        });
        tracing::info!(
            url = %link.shown_url,
            prefix = %config.prefix,
            instance = %link.instance,
            cluster,
            "backplane: Redis; connecting in the background"
        );
        tokio::spawn(link.clone().publish(transport.clone(), queue));
        tokio::spawn(link.clone().listen(transport));
        Ok(link)
    }

    /// Whether the listener is connected (cross-instance delivery works).
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Whether `instance` was heard from recently.
    pub(crate) fn is_live(&self, instance: &str) -> bool {
        self.peers.is_live(instance, Instant::now())
    }

    /// Open connections in `room` on the other live instances.
    pub(crate) fn peers_count(&self, room: &Room) -> u32 {
        self.peers.count(room.as_str(), Instant::now())
    }

    /// Publishes a broadcast to the other instances with a connection in `room`.
    pub(crate) fn broadcast(&self, room: &Room, frame: &Message, exclude: Option<&str>) {
        if let Some(payload) = Payload::of(frame) {
            self.enqueue(self.channels.room(room.as_str()), || Envelope::Broadcast {
                origin: &self.instance,
                room: room.as_str(),
                exclude,
                payload,
            });
        }
    }

    /// Queues a broadcast to a room that keeps history, to be numbered
    /// and kept in the room's stream and published from there to every
    /// instance listening to the room, this one included. `false` (and
    /// counted as dropped) if Redis is unreachable or the queue is full:
    /// the caller then delivers it here alone.
    pub(crate) fn keep(
        &self,
        room: &Room,
        frame: &Message,
        exclude: Option<&str>,
        policy: HistoryPolicy,
        max_bytes: usize,
    ) -> bool {
        let Some(payload) = Payload::of(frame) else {
            return false;
        };
        if !self.is_connected() {
            // It would not come back here: deliver it here alone.
            self.dropped("unreachable", 1);
            return false;
        }
        let envelope = self.seal.seal(&Envelope::Broadcast {
            origin: &self.instance,
            room: room.as_str(),
            exclude,
            payload,
        });
        let args = KeepArgs {
            channel: self.channels.room(room.as_str()),
            envelope,
            max_messages: policy.max_messages,
            max_bytes,
            max_age: policy.max_age,
            publish: if self.cluster { "SPUBLISH" } else { "PUBLISH" },
        };
        let target = Target::History {
            keys: self.channels.history(room.as_str()),
            args: args.to_args(),
        };
        match self.try_send(target) {
            Ok(()) => true,
            Err(reason) => {
                self.dropped(reason, 1);
                false
            }
        }
    }

    /// The newest `max` messages Redis keeps for `room`, or `None` if it
    /// cannot say now.
    pub(crate) async fn tail(&self, room: &Room, max: u32) -> Option<Tail> {
        let mut reader = self.lock_reader().clone()?;
        let keys = self.channels.history(room.as_str());
        let args = [max.to_string().into_bytes()];
        let read = reader.run(&streams::TAIL, [&keys.stream, &keys.meta], &args);
        match tokio::time::timeout(RESPONSE_TIMEOUT, read).await {
            Ok(Ok(answer)) => streams::read_tail(answer, room, &self.seal),
            Ok(Err(err)) => {
                tracing::debug!(%room, "backplane: reading history failed: {err}");
                None
            }
            Err(_) => {
                tracing::debug!(%room, "backplane: reading history timed out");
                None
            }
        }
    }

    /// Claims `key` (under the cluster's prefix) for `ttl`: `SET NX PX`.
    /// True if this instance got it, or if Redis cannot say (see
    /// [`crate::delivery::Delivery::lease`]).
    pub(crate) async fn lease(&self, key: &str, ttl: Duration) -> bool {
        let Some(mut reader) = self.lock_reader().clone() else {
            return true;
        };
        let key = self.channels.lease(key);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut claim = redis::cmd("SET");
        claim
            .arg(&key)
            .arg(&*self.instance)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        match tokio::time::timeout(RESPONSE_TIMEOUT, reader.query(claim)).await {
            Ok(Ok(redis::Value::Okay)) => true,
            Ok(Ok(_)) => false,
            Ok(Err(err)) => {
                tracing::debug!(key, "backplane: a lease could not be claimed: {err}");
                true
            }
            Err(_) => true,
        }
    }

    /// Publishes a message for connection `to` of `instance`.
    pub(crate) fn send(&self, app: &str, instance: &str, to: &str, frame: &Message) {
        if let Some(payload) = Payload::of(frame) {
            self.enqueue(self.channels.instance(instance), || Envelope::Send {
                origin: &self.instance,
                app,
                to,
                payload,
            });
        }
    }

    /// Publishes a close request for connection `to` of `instance`.
    pub(crate) fn close(&self, app: &str, instance: &str, to: &str, code: u16, reason: &str) {
        self.enqueue(self.channels.instance(instance), || Envelope::Close {
            origin: &self.instance,
            app,
            to,
            code,
            reason,
        });
    }

    /// Encodes and queues an app's message, or drops it (counted) if Redis
    /// is unreachable or the queue is full; never waits.
    fn enqueue<'e>(&'e self, channel: String, envelope: impl FnOnce() -> Envelope<'e>) {
        if let Err(reason) = self.try_enqueue(channel, envelope) {
            self.dropped(reason, 1);
        }
    }

    /// Queues a message of the cluster's own bookkeeping (heartbeats,
    /// counts); one that cannot go is not an app's loss: the next heartbeat
    /// or snapshot, or the announcement on reconnect, stands in for it.
    fn enqueue_control<'e>(&'e self, envelope: impl FnOnce() -> Envelope<'e>) {
        let _ = self.try_enqueue(self.channels.cluster(), envelope);
    }

    fn try_enqueue<'e>(
        &'e self,
        channel: String,
        envelope: impl FnOnce() -> Envelope<'e>,
    ) -> Result<(), &'static str> {
        self.try_send(Target::Channel {
            channel,
            payload: self.seal.seal(&envelope()),
        })
    }

    fn try_send(&self, target: Target) -> Result<(), &'static str> {
        if !self.publishing.load(Ordering::Acquire) {
            return Err("unreachable");
        }
        let publication = Publication { target, sent: None };
        self.outgoing
            .try_send(publication)
            .map_err(|_| "queue full")
    }

    /// Counts `n` messages that will not reach the other instances.
    fn dropped(&self, reason: &'static str, n: u64) {
        metrics::counter!(telemetry::BACKPLANE_DROPPED, "reason" => reason).increment(n);
        if self.unreported_drops.fetch_add(n, Ordering::Relaxed) == 0 {
            tracing::warn!(
                reason,
                "backplane: dropping cross-instance messages until Redis takes them again"
            );
        }
    }

    /// Resolves once this instance listens to `room`'s channel, Redis is
    /// unreachable, or [`SUBSCRIBE_WAIT`] has passed.
    pub(crate) async fn listening(&self, room: &Room) {
        let subscribed = async {
            loop {
                let changed = self.subscribed_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if !self.is_connected() || self.lock_subscribed().contains(room) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(SUBSCRIBE_WAIT, subscribed)
            .await
            .is_err()
        {
            tracing::warn!(%room, "backplane: subscription not confirmed in time");
        }
    }

    fn lock_subscribed(&self) -> std::sync::MutexGuard<'_, HashSet<Room>> {
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the goodbye and waits (briefly) until Redis has it.
    pub(crate) async fn say_goodbye(&self) {
        if !self.publishing.load(Ordering::Acquire) {
            return;
        }
        let (sent, done) = oneshot::channel();
        let publication = Publication {
            target: Target::Channel {
                channel: self.channels.cluster(),
                payload: self.seal.seal(&Envelope::Bye {
                    origin: &self.instance,
                }),
            },
            sent: Some(sent),
        };
        if self.outgoing.try_send(publication).is_ok() {
            let _ = tokio::time::timeout(GOODBYE_WAIT, done).await;
        }
    }

    /// Asks every instance for its counts and presence, and publishes
    /// this one's.
    fn announce(&self) {
        self.enqueue_control(|| Envelope::Hello {
            origin: &self.instance,
        });
        self.publish_counts(true, self.registry.open_counts());
        self.publish_presence_all();
    }

    /// Publishes the presence of every connection here.
    fn publish_presence_all(&self) {
        let held = self.registry.presence().held_by(&self.instance);
        for part in held.chunks(PRESENCE_BATCH) {
            let updates = part
                .iter()
                .map(|(room, m)| (room.as_str(), &*m.conn, Some((&*m.key, &*m.value))))
                .collect();
            self.enqueue(self.channels.cluster(), || Envelope::Presence {
                origin: &self.instance,
                updates,
            });
        }
    }

    /// Publishes the presence of `changed` connections (by room), as it is now.
    fn publish_presence(&self, changed: impl IntoIterator<Item = (Room, Arc<str>)>) {
        let presence = self.registry.presence();
        let now: Vec<(Room, Arc<str>, Option<Member>)> = changed
            .into_iter()
            .map(|(room, conn)| {
                let member = presence.member(&room, &conn);
                (room, conn, member)
            })
            .collect();
        for part in now.chunks(PRESENCE_BATCH) {
            let updates = part
                .iter()
                .map(|(room, conn, m)| {
                    let member = m.as_ref().map(|m| (&*m.key, &*m.value));
                    (room.as_str(), &**conn, member)
                })
                .collect();
            self.enqueue(self.channels.cluster(), || Envelope::Presence {
                origin: &self.instance,
                updates,
            });
        }
    }

    /// Whether this instance tells the apps of changes no live instance
    /// made (an instance died): the first of the live ones, by id.
    fn leads(&self) -> bool {
        self.peers.leads(&self.instance, Instant::now())
    }

    /// Publishes this instance's counts for `counts`' rooms (all of them
    /// when `full`).
    fn publish_counts(&self, full: bool, counts: Vec<(Room, u32)>) {
        self.enqueue_control(|| Envelope::Counts {
            origin: &self.instance,
            full,
            counts: counts.iter().map(|(room, n)| (room.as_str(), *n)).collect(),
        });
    }
}

/// Pauses between reconnection attempts: doubling, capped, with jitter so
/// a fleet of instances does not reconnect in lockstep.
struct Backoff {
    /// The pause before jitter.
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    fn next_pause(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(MAX_BACKOFF);
        let mut byte = [0u8; 1];
        let _ = getrandom::fill(&mut byte);
        // 75% to 100% of the base.
        base.mul_f64(0.75 + f64::from(byte[0]) / 1020.0)
    }
}

/// `url` (or comma-separated URLs) with passwords replaced, fit for a log line.
fn hide_password(url: &str) -> String {
    url.split(',').map(hide_one).collect::<Vec<_>>().join(",")
}

fn hide_one(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_the_log() {
        assert_eq!(
            hide_password("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://:***@10.0.0.1:6379/0"
        );
        assert_eq!(
            hide_password("redis://app:s3cret@cache:6379"),
            "redis://app:***@cache:6379"
        );
        assert_eq!(
            hide_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            hide_password("redis://:a@n1:7000,redis://:b@n2:7000"),
            "redis://:***@n1:7000,redis://:***@n2:7000"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let mut backoff = Backoff::default();
        let pauses: Vec<Duration> = (0..8).map(|_| backoff.next_pause()).collect();
        assert!(pauses[0] <= FIRST_BACKOFF && pauses[0] >= FIRST_BACKOFF.mul_f64(0.75));
        assert!(pauses.iter().all(|p| *p <= MAX_BACKOFF));
        assert!(pauses[7] >= MAX_BACKOFF.mul_f64(0.75));
    }
}

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

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::RedisError;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::envelope::{Channels, Envelope, Payload, Seal};
use super::peers::Peers;
use super::transport::{Incoming, Publisher, RESPONSE_TIMEOUT, Received, Subscriber, Transport};
use super::{HEARTBEAT, PEER_TTL, SNAPSHOT_EVERY};
use crate::config::{BackplaneConfig, BackplaneKind};
use crate::telemetry;
use crate::ws::registry::{ConnectionRegistry, Room};

/// First pause before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between reconnection attempts: delivery resumes within
/// about a second of Redis returning.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Most messages sent in one pipeline.
const BATCH: usize = 256;
/// Longest wait for the subscription of a new connection's path.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for the goodbye to reach Redis at shutdown.
const GOODBYE_WAIT: Duration = Duration::from_millis(500);

/// This instance's link to the others through Redis.
pub struct RedisLink {
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
}

/// One message for the publisher.
struct Publication {
    /// Where to publish it.
    channel: String,
    /// The encoded envelope.
    payload: Vec<u8>,
    /// Told once Redis has taken it (the goodbye waits for this).
    sent: Option<oneshot::Sender<()>>,
}

impl RedisLink {
    /// Checks the URL and starts the publisher and the listener.
    pub fn start(
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
        registry.record_changes();
        let link = Arc::new(Self {
            instance: registry.instance().into(),
            channels: Channels::new(&config.prefix),
            seal: Seal::new(config.shared_secret.as_deref()),
            registry,
            shown_url,
            outgoing,
            publishing: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            subscribed: Mutex::new(HashSet::new()),
            subscribed_changed: Notify::new(),
            peers: Peers::new(PEER_TTL),
            unreported_drops: AtomicU64::new(0),
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
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Whether `instance` was heard from recently.
    pub fn is_live(&self, instance: &str) -> bool {
        self.peers.is_live(instance, Instant::now())
    }

    /// Open connections in `room` on the other live instances.
    pub fn peers_count(&self, room: &Room) -> u32 {
        self.peers.count(room.as_str(), Instant::now())
    }

    /// Publishes a broadcast to the other instances with a connection in `room`.
    pub fn broadcast(&self, room: &Room, frame: &Message, exclude: Option<&str>) {
        if let Some(payload) = Payload::of(frame) {
            self.enqueue(self.channels.room(room.as_str()), || Envelope::Broadcast {
                origin: &self.instance,
                room: room.as_str(),
                exclude,
                payload,
            });
        }
    }

    /// Publishes a message for connection `to` of `instance`.
    pub fn send(&self, app: &str, instance: &str, to: &str, frame: &Message) {
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
    pub fn close(&self, app: &str, instance: &str, to: &str, code: u16, reason: &str) {
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
        if !self.publishing.load(Ordering::Acquire) {
            return Err("unreachable");
        }
        let publication = Publication {
            channel,
            payload: self.seal.seal(&envelope()),
            sent: None,
        };
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
    pub async fn listening(&self, room: &Room) {
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
    pub async fn say_goodbye(&self) {
        if !self.publishing.load(Ordering::Acquire) {
            return;
        }
        let (sent, done) = oneshot::channel();
        let publication = Publication {
            channel: self.channels.cluster(),
            payload: self.seal.seal(&Envelope::Bye {
                origin: &self.instance,
            }),
            sent: Some(sent),
        };
        if self.outgoing.try_send(publication).is_ok() {
            let _ = tokio::time::timeout(GOODBYE_WAIT, done).await;
        }
    }

    /// Asks every instance for its counts and publishes this one's.
    fn announce(&self) {
        self.enqueue_control(|| Envelope::Hello {
            origin: &self.instance,
        });
        self.publish_counts(true, self.registry.open_counts());
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

    // ---- The publisher ----

    /// The publisher task: connect, publish batches until an error, drop
    /// what is queued, reconnect.
    async fn publish(
        self: Arc<Self>,
        transport: Arc<Transport>,
        mut queue: mpsc::Receiver<Publication>,
    ) {
        let mut backoff = Backoff::default();
        loop {
            let mut connection = match transport.publisher().await {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::debug!(url = %self.shown_url, "backplane publisher: {err:#}");
                    tokio::time::sleep(backoff.next_pause()).await;
                    continue;
                }
            };
            backoff = Backoff::default();
            self.publishing.store(true, Ordering::Release);
            self.announce();
            let err = self.publish_until_error(&mut connection, &mut queue).await;
            self.publishing.store(false, Ordering::Release);
            let mut stranded = 0;
            while queue.try_recv().is_ok() {
                stranded += 1;
            }
            if stranded > 0 {
                self.dropped("unreachable", stranded);
            }
            tracing::debug!(url = %self.shown_url, "backplane publisher lost Redis: {err}");
        }
    }

    async fn publish_until_error(
        &self,
        connection: &mut Publisher,
        queue: &mut mpsc::Receiver<Publication>,
    ) -> RedisError {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if queue.recv_many(&mut batch, BATCH).await == 0 {
                return RedisError::from(std::io::Error::other("the link was dropped"));
            }
            let messages = batch
                .iter()
                .map(|p| (p.channel.as_str(), p.payload.as_slice()));
            let sent = tokio::time::timeout(RESPONSE_TIMEOUT, connection.publish(messages))
                .await
                .unwrap_or_else(|_| {
                    Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "Redis did not answer in time",
                    )))
                });
            let n = batch.len() as u64;
            match sent {
                Ok(()) => {
                    metrics::counter!(telemetry::BACKPLANE_PUBLISHED).increment(n);
                    for publication in batch.drain(..) {
                        if let Some(sent) = publication.sent {
                            let _ = sent.send(());
                        }
                    }
                    self.report_drops();
                }
                Err(err) => {
                    self.dropped("unreachable", n);
                    return err;
                }
            }
        }
    }

    /// Logs how many messages were dropped since the last report, if any.
    fn report_drops(&self) {
        let dropped = self.unreported_drops.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "backplane: {dropped} cross-instance messages were dropped (see tina4_backplane_dropped_total)"
            );
        }
    }

    // ---- The listener ----

    /// The listener task: subscribe, run the session until the connection
    /// drops, reconnect with backoff.
    async fn listen(self: Arc<Self>, transport: Arc<Transport>) {
        let mut backoff = Backoff::default();
        let mut reported = false;
        loop {
            match self.subscribe(&transport).await {
                Ok((sink, stream)) => {
                    backoff = Backoff::default();
                    reported = false;
                    metrics::gauge!(telemetry::BACKPLANE_CONNECTED).set(1.0);
                    tracing::info!(url = %self.shown_url, "backplane: connected to Redis");
                    let ended = self.session(sink, stream).await;
                    self.connected.store(false, Ordering::Release);
                    self.lock_subscribed().clear();
                    self.subscribed_changed.notify_waiters();
                    metrics::gauge!(telemetry::BACKPLANE_CONNECTED).set(0.0);
                    metrics::counter!(telemetry::BACKPLANE_DISCONNECTS).increment(1);
                    tracing::warn!(
                        url = %self.shown_url,
                        "backplane: lost Redis ({ended}); serving this instance's connections only, reconnecting"
                    );
                }
                Err(err) => {
                    if !reported {
                        reported = true;
                        tracing::warn!(
                            url = %self.shown_url,
                            "backplane: cannot reach Redis ({err:#}); serving this instance's connections only, retrying"
                        );
                    }
                    tokio::time::sleep(backoff.next_pause()).await;
                }
            }
        }
    }

    /// A subscribed connection: this instance's and the cluster's channels
    /// plus every room with a connection here.
    async fn subscribe(&self, transport: &Transport) -> anyhow::Result<(Subscriber, Incoming)> {
        let (mut sink, stream) = transport.subscriber().await?;
        // Everything is subscribed afresh; pending interest changes are moot.
        let _ = self.registry.take_changes();
        let rooms = self.registry.admitted_rooms();
        let mut channels = vec![
            self.channels.instance(&self.instance),
            self.channels.cluster(),
        ];
        channels.extend(rooms.iter().map(|room| self.channels.room(room.as_str())));
        tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(channels))
            .await
            .context("timed out subscribing")??;
        *self.lock_subscribed() = rooms.into_iter().collect();
        self.connected.store(true, Ordering::Release);
        self.subscribed_changed.notify_waiters();
        self.announce();
        Ok((sink, stream))
    }

    /// Runs until the connection drops: delivers messages, follows the
    /// registry's changes, and sends the heartbeat. Returns why it ended.
    async fn session(&self, mut sink: Subscriber, mut stream: Incoming) -> String {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats = 0u32;
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => self.receive(&message),
                    None => return "connection closed".to_string(),
                },
                () = self.registry.changed() => {
                    if let Err(err) = self.follow_changes(&mut sink).await {
                        return format!("{err:#}");
                    }
                }
                _ = heartbeat.tick() => {
                    beats = beats.wrapping_add(1);
                    if beats.is_multiple_of(SNAPSHOT_EVERY) {
                        self.publish_counts(true, self.registry.open_counts());
                    } else {
                        self.enqueue_control(|| Envelope::Heartbeat {
                            origin: &self.instance,
                        });
                    }
                    for gone in self.peers.sweep(Instant::now()) {
                        tracing::info!(instance = %gone, "backplane: instance silent; dropping its counts");
                    }
                }
            }
        }
    }

    /// Publishes changed counts; subscribes to rooms that gained their
    /// first connection and unsubscribes from those that lost their last.
    async fn follow_changes(&self, sink: &mut Subscriber) -> anyhow::Result<()> {
        let changes = self.registry.take_changes();
        if !changes.counts.is_empty() {
            let counts = changes
                .counts
                .into_iter()
                .map(|room| {
                    let n = self.registry.count(&room);
                    (room, n)
                })
                .collect();
            self.publish_counts(false, counts);
        }
        let (mut join, mut part) = (Vec::new(), Vec::new());
        {
            let subscribed = self.lock_subscribed();
            for room in changes.interest {
                let wanted = self.registry.admitted_in(&room) > 0;
                match (wanted, subscribed.contains(&room)) {
                    (true, false) => join.push(room),
                    (false, true) => part.push(room),
                    _ => {}
                }
            }
        }
        if !join.is_empty() {
            let channels: Vec<String> = join
                .iter()
                .map(|r| self.channels.room(r.as_str()))
                .collect();
            tokio::time::timeout(RESPONSE_TIMEOUT, sink.subscribe(channels))
                .await
                .context("timed out subscribing")??;
            self.lock_subscribed().extend(join);
            self.subscribed_changed.notify_waiters();
        }
        if !part.is_empty() {
            {
                let mut subscribed = self.lock_subscribed();
                for room in &part {
                    subscribed.remove(room);
                }
            }
            let channels: Vec<String> = part
                .iter()
                .map(|r| self.channels.room(r.as_str()))
                .collect();
            tokio::time::timeout(RESPONSE_TIMEOUT, sink.unsubscribe(channels))
                .await
                .context("timed out unsubscribing")??;
        }
        Ok(())
    }

    /// Acts on one message from another instance.
    fn receive(&self, message: &Received) {
        metrics::counter!(telemetry::BACKPLANE_RECEIVED).increment(1);
        let envelope = match self.seal.open(message.payload()) {
            Ok(envelope) => envelope,
            Err(refusal) => {
                metrics::counter!(telemetry::BACKPLANE_REFUSED, "reason" => refusal.as_str())
                    .increment(1);
                tracing::debug!(reason = refusal.as_str(), "backplane: refused a message");
                return;
            }
        };
        let origin = envelope.origin();
        if origin == &*self.instance {
            // Our own broadcast, back from Redis: delivered here already.
            return;
        }
        let now = Instant::now();
        match envelope {
            Envelope::Broadcast {
                room,
                exclude,
                payload,
                ..
            } => {
                let Some(room) = Room::parse(room) else {
                    return;
                };
                let frame = payload.to_frame();
                let len = frame.len();
                let recipients = self.registry.broadcast(&room, &frame, exclude);
                if recipients > 0 {
                    telemetry::count_out(room.app(), recipients, len);
                }
            }
            Envelope::Send {
                app, to, payload, ..
            } => {
                if let Some(handle) = self.registry.get(to).filter(|h| *h.app == *app) {
                    let frame = payload.to_frame();
                    let len = frame.len();
                    if handle.send(frame).is_ok() {
                        telemetry::count_out(app, 1, len);
                    }
                }
            }
            Envelope::Close {
                app,
                to,
                code,
                reason,
                ..
            } => {
                if let Some(handle) = self.registry.get(to).filter(|h| *h.app == *app) {
                    let _ = handle.close(code, reason);
                }
            }
            Envelope::Counts { full, counts, .. } => self.peers.update(origin, full, &counts, now),
            Envelope::Heartbeat { .. } => self.peers.seen(origin, now),
            Envelope::Hello { .. } => {
                self.peers.seen(origin, now);
                self.publish_counts(true, self.registry.open_counts());
            }
            Envelope::Bye { .. } => self.peers.remove(origin),
        }
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

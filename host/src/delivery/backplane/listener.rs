//! The listener: one connection to Redis subscribed to this instance's
//! channel, the cluster channel, and the channel of every room that has a
//! connection here, following the registry's changes. It delivers what
//! arrives, applies the other instances' counts, and sends the heartbeat
//! and count updates.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;

use super::envelope::Envelope;
use super::transport::{Incoming, RESPONSE_TIMEOUT, Received, Subscriber, Transport};
use super::{Backoff, RESYNC_WAIT, RedisLink, streams};
use crate::delivery::{HEARTBEAT, Position, Room, SNAPSHOT_EVERY};
use crate::telemetry;

impl RedisLink {
    /// The listener task: subscribe, run the session until the connection
    /// drops, reconnect with backoff.
    pub(super) async fn listen(self: Arc<Self>, transport: Arc<Transport>) {
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
        let _ = self.registry.changes().take();
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
        // Leaves may have been missed while away: what the others do not
        // republish in answer to the hello is gone.
        let generation = self.registry.presence().begin_resync();
        *self.lock_resync() = Some((generation, Instant::now()));
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
                () = self.registry.changes().changed() => {
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
                    let now = Instant::now();
                    for gone in self.peers.sweep(now) {
                        tracing::info!(instance = %gone, "backplane: instance silent; dropping its counts and presence");
                        self.registry.presence_gone(&gone, self.leads());
                    }
                    let resynced = self
                        .lock_resync()
                        .take_if(|(_, began)| now.duration_since(*began) >= RESYNC_WAIT);
                    if let Some((generation, _)) = resynced {
                        self.registry.presence_unconfirmed(generation, self.leads());
                    }
                }
            }
        }
    }

    /// Publishes changed counts; subscribes to rooms that gained their
    /// first connection and unsubscribes from those that lost their last.
    async fn follow_changes(&self, sink: &mut Subscriber) -> anyhow::Result<()> {
        let changes = self.registry.changes().take();
        if !changes.presence.is_empty() {
            self.publish_presence(changes.presence);
        }
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

    /// Acts on one message from another instance, or on a message kept in
    /// a room's history by any instance.
    fn receive(&self, message: &Received) {
        metrics::counter!(telemetry::BACKPLANE_RECEIVED).increment(1);
        if let Some((at, sealed)) = streams::split_kept(message.payload()) {
            if let Some(envelope) = self.open(sealed) {
                self.receive_kept(&at, envelope);
            }
            return;
        }
        let Some(envelope) = self.open(message.payload()) else {
            return;
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
            Envelope::Presence { updates, .. } => {
                self.peers.seen(origin, now);
                // Only instances the peer table holds (it is bounded).
                if !self.peers.is_live(origin, now) {
                    return;
                }
                let instance: Arc<str> = origin.into();
                for (room, conn, member) in updates {
                    // An instance speaks for its own connections only.
                    let theirs = conn
                        .split_once('-')
                        .is_some_and(|(prefix, _)| prefix == origin);
                    if let (true, Some(room)) = (theirs, Room::parse(room)) {
                        self.registry.presence_from(&instance, &room, conn, member);
                    }
                }
            }
            Envelope::Hello { .. } => {
                self.peers.seen(origin, now);
                self.publish_counts(true, self.registry.open_counts());
                self.publish_presence_all();
            }
            Envelope::Bye { .. } => {
                self.peers.remove(origin);
                self.registry.presence_gone(origin, self.leads());
            }
        }
    }

    fn lock_resync(&self) -> std::sync::MutexGuard<'_, Option<(u64, Instant)>> {
        self.resync.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks a message's seal; counts and logs a refusal.
    fn open<'m>(&self, bytes: &'m [u8]) -> Option<Envelope<'m>> {
        self.seal
            .open(bytes)
            .inspect_err(|refusal| {
                metrics::counter!(telemetry::BACKPLANE_REFUSED, "reason" => refusal.as_str())
                    .increment(1);
                tracing::debug!(reason = refusal.as_str(), "backplane: refused a message");
            })
            .ok()
    }

    /// Delivers a broadcast that Redis numbered `at` in its room's
    /// history, whoever sent it: this instance's own come back this way too.
    fn receive_kept(&self, at: &Position, envelope: Envelope<'_>) {
        let Envelope::Broadcast {
            origin,
            room,
            exclude,
            payload,
        } = envelope
        else {
            return;
        };
        let Some(room) = Room::parse(room) else {
            return;
        };
        let frame = payload.to_frame();
        let len = frame.len();
        let recipients = self.registry.broadcast_numbered(&room, at, &frame, exclude);
        // The sender counted its own recipients when it sent.
        if recipients > 0 && origin != &*self.instance {
            telemetry::count_out(room.app(), recipients, len);
        }
    }
}

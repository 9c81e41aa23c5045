//! Delivery: every WebSocket connection this instance holds, what an app's
//! `broadcast`, `push`, `send`, `close` and `count` reach, here and beyond
//! this process, and each connection's lifecycle.
//!
//! Delivery is the lowest layer of the host: it knows connections, rooms
//! and close codes, and nothing of apps, routes or sockets.
//!
//! With `--backplane local` (the default) the [`Delivery`] acts on this
//! instance's [`ConnectionRegistry`] only. With `--backplane redis`, every
//! instance on the same Redis and channel prefix acts as one server: a
//! broadcast is delivered here directly and published once for the others;
//! a connection id names its instance, so `send` and `close` reach it
//! wherever it is; `count` adds up every live instance's counts, kept
//! locally.
//!
//! Delivery across instances is at most once: what is published while Redis
//! is unreachable is dropped (and counted), never queued without bound.
//! Delivery to this instance's own connections never depends on Redis.
//!
//! - [`registry`]: connections by id and by room, and their [`Membership`].
//! - [`connection`]: one connection's handle and bounded outbox.
//! - [`history`]: recent messages of the paths that keep them, numbered,
//!   for clients that reconnect.
//! - [`presence`]: who is on the paths that keep presence, cluster-wide.
//! - [`changes`]: the journal of rooms a backplane must tell others about.
//! - [`close`]: close codes and reasons.
//! - [`backplane`]: the link to Redis, with its envelope, peers and
//!   transport.

pub(crate) mod backplane;
mod changes;
pub(crate) mod close;
mod connection;
mod history;
mod presence;
mod registry;

pub(crate) use connection::{ConnectionHandle, OutboxBounds, Outgoing, RegistryError, Room};
pub(crate) use history::{
    HistoryLimits, HistoryPolicy, HistoryRule, Kept, Position, StoredMessage, Tail,
};
pub(crate) use presence::{Member, PresenceApp, PresenceChange, PresencePolicy};
pub(crate) use registry::{Caps, ConnectionRegistry, Membership, PresenceError};

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;

use crate::config::{BackplaneConfig, BackplaneKind};
use backplane::RedisLink;

/// How often each instance says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long an instance not heard from still counts.
pub(crate) const PEER_TTL: Duration = Duration::from_secs(3);
/// How often each instance publishes all its counts (repairs lost updates).
pub(crate) const SNAPSHOT_EVERY: u32 = 5;

/// Delivery for this instance, and across instances when configured.
pub(crate) struct Delivery {
    /// This instance's connections.
    registry: Arc<ConnectionRegistry>,
    /// The link to the other instances; `None` when local.
    link: Option<Arc<RedisLink>>,
}

/// Whom a broadcast or push reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fanout {
    /// Connections on this instance it was queued for.
    pub(crate) local: u32,
    /// Connections on other instances, as their last published counts say.
    pub(crate) remote: u32,
}

impl Delivery {
    /// This instance alone.
    pub(crate) fn local(registry: Arc<ConnectionRegistry>) -> Self {
        Self {
            registry,
            link: None,
        }
    }

    /// The backplane `config` asks for; for Redis, the link starts
    /// connecting in the background (serving does not wait for it).
    pub(crate) fn start(
        config: &BackplaneConfig,
        registry: Arc<ConnectionRegistry>,
    ) -> anyhow::Result<Self> {
        let link = match config.kind {
            BackplaneKind::Local => None,
            BackplaneKind::Redis | BackplaneKind::RedisCluster => {
                Some(RedisLink::start(config, registry.clone())?)
            }
        };
        Ok(Self { registry, link })
    }

    /// This instance's connections.
    pub(crate) fn registry(&self) -> &Arc<ConnectionRegistry> {
        &self.registry
    }

    /// The instance a connection id belongs to, if not this one.
    fn remote_instance<'i>(&self, id: &'i str) -> Option<&'i str> {
        let (instance, _) = id.split_once('-')?;
        (instance != self.registry.instance()).then_some(instance)
    }

    /// Whether `id` names a connection of another instance.
    pub(crate) fn is_remote(&self, id: &str) -> bool {
        self.remote_instance(id).is_some()
    }

    /// Queues `frame` for every connection in `room` (except `exclude`),
    /// here and on every other instance.
    pub(crate) fn broadcast(&self, room: &Room, frame: &Message, exclude: Option<&str>) -> Fanout {
        let Some(link) = &self.link else {
            let local = self.registry.broadcast(room, frame, exclude);
            return Fanout { local, remote: 0 };
        };
        let excluded = exclude.is_some_and(|id| self.is_remote(id));
        let remote = link.peers_count(room).saturating_sub(u32::from(excluded));
        // A room that keeps history has Redis number its messages: they
        // come back to every instance listening there, this one included,
        // in one order, and are delivered then.
        let history = self.registry.history();
        if let Some(policy) = history.policy(room)
            && link.keep(room, frame, exclude, policy, history.app_bytes())
        {
            let local = self.registry.count_except(room, exclude);
            return Fanout { local, remote };
        }
        let local = self.registry.broadcast(room, frame, exclude);
        link.broadcast(room, frame, exclude);
        Fanout { local, remote }
    }

    /// Sends `frame` to a connection of another instance, served by `app`.
    /// Fails if no live instance has that id's prefix.
    pub(crate) fn send_remote(
        &self,
        app: &str,
        to: &str,
        frame: &Message,
    ) -> Result<(), RegistryError> {
        let (link, instance) = self.route(to)?;
        link.send(app, instance, to, frame);
        Ok(())
    }

    /// Closes a connection of another instance, served by `app`.
    pub(crate) fn close_remote(
        &self,
        app: &str,
        to: &str,
        code: u16,
        reason: &str,
    ) -> Result<(), RegistryError> {
        let (link, instance) = self.route(to)?;
        link.close(app, instance, to, code, reason);
        Ok(())
    }

    fn route<'i>(&self, to: &'i str) -> Result<(&Arc<RedisLink>, &'i str), RegistryError> {
        match (&self.link, self.remote_instance(to)) {
            (Some(link), Some(instance)) if link.is_live(instance) => Ok((link, instance)),
            _ => Err(RegistryError::UnknownConnection(to.to_string())),
        }
    }

    /// Open connections in `room`, on every instance.
    pub(crate) fn count(&self, room: &Room) -> u32 {
        let local = self.registry.count(room);
        let remote = self.link.as_ref().map_or(0, |link| link.peers_count(room));
        local.saturating_add(remote)
    }

    /// Resolves once messages other instances publish to `room` reach this
    /// one (immediately when local or while Redis is unreachable), so a
    /// connection's `open` handler runs only once it can hear the cluster.
    pub(crate) async fn listening(&self, room: &Room) {
        let Some(link) = &self.link else {
            return;
        };
        link.listening(room).await;
        // Listening now, this instance's copy of the room's history is
        // filled from Redis, so a recovery here sees what others kept.
        let history = self.registry.history();
        if let Some(policy) = history.policy(room)
            && !history.is_synced(room)
            && let Some(tail) = link.tail(room, policy.max_messages).await
        {
            history.prime(room, tail, std::time::Instant::now());
        }
    }

    /// Claims `key` for `ttl` across the cluster: true for the one
    /// instance that gets it (always, on one instance alone or while Redis
    /// is unreachable: a claim that cannot be made does not stop the work).
    pub(crate) async fn lease(&self, key: &str, ttl: Duration) -> bool {
        match &self.link {
            Some(link) => link.lease(key, ttl).await,
            None => true,
        }
    }

    /// What `/ready` reports: `local`, or whether Redis is connected.
    pub(crate) fn status(&self) -> &'static str {
        match &self.link {
            None => "local",
            Some(link) if link.is_connected() => "redis: connected",
            Some(_) => "redis: unreachable",
        }
    }

    /// Tells the other instances this one is leaving, so its counts drop
    /// at once (waits briefly for Redis).
    pub(crate) async fn leave(&self) {
        if let Some(link) = &self.link {
            link.say_goodbye().await;
        }
    }
}

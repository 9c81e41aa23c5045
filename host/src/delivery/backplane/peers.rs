//! What this instance knows of the others: which are alive, and how many
//! connections each has open per path, so `count` is cluster-wide and
//! still a local read.
//!
//! Every instance announces itself each heartbeat and publishes its counts
//! when they change (absolute values, so a lost update is repaired by the
//! next one or by the periodic full snapshot). An instance not heard from
//! for [`PEER_TTL`](super::PEER_TTL) is presumed dead and drops out of the
//! counts, so a killed instance does not inflate them for long.
//!
//! What peers say is bounded: at most [`MAX_PEERS`] instances, each with at
//! most [`MAX_ROOMS`] rooms, each with at most [`MAX_COUNT`] connections
//! (more than one process can hold). Beyond that, news is ignored, so
//! nobody who can publish to Redis can grow this table without bound.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Most instances kept track of.
pub(crate) const MAX_PEERS: usize = 1024;
/// Most rooms kept per instance.
pub(crate) const MAX_ROOMS: usize = 65_536;
/// The largest count believed for one room of one instance.
pub(crate) const MAX_COUNT: u32 = 1_000_000;

/// The other instances of the cluster.
#[derive(Debug)]
pub(crate) struct Peers {
    /// How long an instance counts after it was last heard from.
    ttl: Duration,
    /// Each instance by id.
    known: RwLock<HashMap<Box<str>, Peer>>,
}

#[derive(Debug)]
struct Peer {
    /// When any message from it last arrived.
    last_seen: Instant,
    /// Its open connections per path (paths with none are absent).
    counts: HashMap<Box<str>, u32>,
}

impl Peers {
    /// No peers yet; each expires `ttl` after it was last heard from.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            known: RwLock::new(HashMap::new()),
        }
    }

    /// Records that `peer` is alive at `now`.
    pub(crate) fn seen(&self, peer: &str, now: Instant) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = known.get_mut(peer) {
            known.last_seen = now;
        } else if known.len() < MAX_PEERS {
            known.insert(
                peer.into(),
                Peer {
                    last_seen: now,
                    counts: HashMap::new(),
                },
            );
        }
    }

    /// Applies `peer`'s counts: all of them (`full`) or the changed ones.
    pub(crate) fn update(&self, peer: &str, full: bool, counts: &[(&str, u32)], now: Instant) {
        self.seen(peer, now);
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = known.get_mut(peer) else {
            return;
        };
        if full {
            entry.counts.clear();
        }
        for &(room, n) in counts {
            if n == 0 {
                entry.counts.remove(room);
            } else if n <= MAX_COUNT
                && (entry.counts.len() < MAX_ROOMS || entry.counts.contains_key(room))
            {
                entry.counts.insert(room.into(), n);
            }
        }
    }

    /// Forgets `peer` (it said goodbye).
    pub(crate) fn remove(&self, peer: &str) {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(peer);
    }

    /// Whether `peer` was heard from within the TTL.
    pub(crate) fn is_live(&self, peer: &str, now: Instant) -> bool {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.get(peer).is_some_and(|p| self.fresh(p, now))
    }

    /// Whether `me` comes first, by id, among the live instances: the one
    /// that speaks for the cluster when an instance dies.
    pub(crate) fn leads(&self, me: &str, now: Instant) -> bool {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known
            .iter()
            .filter(|(_, p)| self.fresh(p, now))
            .all(|(id, _)| me < &**id)
    }

    /// Open connections on `path` across the live peers.
    pub(crate) fn count(&self, path: &str, now: Instant) -> u32 {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known
            .values()
            .filter(|p| self.fresh(p, now))
            .filter_map(|p| p.counts.get(path))
            .fold(0u32, |sum, n| sum.saturating_add(*n))
    }

    /// Drops the peers that have expired; returns their ids.
    pub(crate) fn sweep(&self, now: Instant) -> Vec<Box<str>> {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let expired: Vec<Box<str>> = known
            .iter()
            .filter(|(_, p)| !self.fresh(p, now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            known.remove(id);
        }
        expired
    }

    fn fresh(&self, peer: &Peer, now: Instant) -> bool {
        now.saturating_duration_since(peer.last_seen) < self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);

    #[test]
    fn counts_add_up_across_peers_and_updates_are_absolute() {
        let peers = Peers::new(TTL);
        let t = Instant::now();
        peers.update("a", true, &[("/r", 2), ("/s", 1)], t);
        peers.update("b", false, &[("/r", 3)], t);
        assert_eq!(peers.count("/r", t), 5);
        peers.update("a", false, &[("/r", 0)], t);
        assert_eq!(peers.count("/r", t), 3);
        assert_eq!(peers.count("/s", t), 1);
        // A full snapshot replaces everything the peer had.
        peers.update("b", true, &[("/s", 4)], t);
        assert_eq!(peers.count("/r", t), 0);
        assert_eq!(peers.count("/s", t), 5);
    }

    #[test]
    fn what_peers_say_is_bounded() {
        let peers = Peers::new(TTL);
        let t = Instant::now();
        peers.update("a", true, &[("/r", MAX_COUNT + 1), ("/s", 3)], t);
        assert_eq!(peers.count("/r", t), 0);
        assert_eq!(peers.count("/s", t), 3);
        for n in 0..MAX_PEERS + 10 {
            peers.seen(&format!("p{n}"), t);
        }
        assert!(peers.is_live("p0", t));
        assert!(!peers.is_live(&format!("p{}", MAX_PEERS + 5), t));
        let rooms: Vec<String> = (0..MAX_ROOMS + 10).map(|n| format!("/r{n}")).collect();
        let counts: Vec<(&str, u32)> = rooms.iter().map(|r| (r.as_str(), 1)).collect();
        peers.update("a", true, &counts, t);
        assert_eq!(peers.count(&format!("/r{}", MAX_ROOMS + 5), t), 0);
        assert_eq!(peers.count("/r0", t), 1);
    }

    #[test]
    fn a_silent_peer_drops_out_after_the_ttl() {
        let peers = Peers::new(TTL);
        let t = Instant::now();
        peers.update("a", true, &[("/r", 2)], t);
        peers.update("b", true, &[("/r", 1)], t);
        let later = t + TTL;
        peers.seen("b", later);
        assert!(!peers.is_live("a", later));
        assert!(peers.is_live("b", later));
        assert_eq!(peers.count("/r", later), 1);
        assert_eq!(peers.sweep(later), vec![Box::<str>::from("a")]);
        peers.remove("b");
        assert_eq!(peers.count("/r", later), 0);
    }
}

//! Who may hold a connection: caps on open HTTP connections, in all and
//! per client address, taken at accept and given back when the connection
//! ends (or becomes a WebSocket, which the registry counts instead).
//!
//! Client addresses are the TCP peers' own: behind a proxy every client
//! shares the proxy's address, so list it in `--ip-limit-exempt` (headers
//! such as `X-Forwarded-For` are the client's to forge, and are not used).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::PerAddress;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds all the connections it may.
    Full,
    /// This client address holds all the connections it may.
    PerAddress,
}

impl Refusal {
    /// The reason, as a metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Full => "http_connections",
            Self::PerAddress => "http_connections_per_ip",
        }
    }
}

/// The open HTTP connections.
#[derive(Debug)]
pub(crate) struct ConnectionCaps {
    /// The most open at once.
    max: usize,
    /// The per-address cap.
    per_address: PerAddress,
    /// Open connections in all, and per address (addresses with none are
    /// absent, so the map is as small as the set of clients).
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Where it was taken.
    caps: Arc<ConnectionCaps>,
    /// The client's address.
    ip: IpAddr,
}

impl ConnectionCaps {
    /// Caps of `max` in all and `per_address` per client.
    pub(crate) fn new(max: usize, per_address: PerAddress) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_address,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for a connection from `ip`, if there is one.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.max {
            return Err(Refusal::Full);
        }
        let from = open.1.get(&ip).copied().unwrap_or(0);
        if self.per_address.cap_for(ip).is_some_and(|cap| from >= cap) {
            return Err(Refusal::PerAddress);
        }
        open.0 += 1;
        open.1.insert(ip, from + 1);
        Ok(Slot {
            caps: self.clone(),
            ip,
        })
    }

    /// Open connections in all.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_all_and_per_address_and_places_come_back() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let caps = ConnectionCaps::new(
            4,
            PerAddress {
                max: Some(2),
                exempt: vec![proxy],
            },
        );
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), Refusal::PerAddress);
        let _third = caps.admit(b).unwrap();
        let _fourth = caps.admit(proxy).unwrap();
        assert_eq!(caps.admit(proxy).unwrap_err(), Refusal::Full);
        drop(first);
        assert_eq!(caps.open(), 3);
        let _again = caps.admit(a).unwrap();
        assert_eq!(caps.open.lock().unwrap().1.len(), 3);
    }
}

//! Idle connections kept for apps' next requests to the same place, so a
//! request to an upstream an app just called skips the connection and TLS
//! handshakes.
//!
//! A connection is kept for the app that opened it, for the scheme, host
//! and port it was opened for (to an address checked then), and for a few
//! seconds at most. The pool is bounded in all and per app, so idle
//! connections never hold more than a fixed number of the process's file
//! descriptors, whatever apps do; a task drops the expired ones.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use wasmtime_wasi_http::WasiBody;

/// How long a connection is kept idle: below the keep-alive of common
/// servers (5 s), so that one is rarely closed under a request.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(4);

/// Where a kept connection leads, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolKey {
    /// The app that opened it.
    pub(crate) app: Arc<str>,
    /// True for HTTPS.
    pub(crate) tls: bool,
    /// The host the request named.
    pub(crate) host: String,
    /// The port.
    pub(crate) port: u16,
}

/// One idle connection.
struct Idle {
    /// Where it leads.
    key: PoolKey,
    /// Its sending half (its connection task ends when this is dropped).
    sender: SendRequest<WasiBody>,
    /// When it became idle.
    since: Instant,
}

/// Idle connections of every app.
pub(crate) struct ConnectionPool {
    /// Oldest first.
    idle: Mutex<VecDeque<Idle>>,
    /// Most kept in all.
    max: usize,
}

impl ConnectionPool {
    /// A pool of at most `max` idle connections, and its reaper.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        let pool = Arc::new(Self {
            idle: Mutex::new(VecDeque::new()),
            max,
        });
        if max > 0
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(reap(Arc::downgrade(&pool)));
        }
        pool
    }

    /// A kept connection to `key`, the newest, if there is one (its
    /// `ready()` says whether it can still take a request).
    pub(crate) fn take(&self, key: &PoolKey) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        expire(&mut idle, Instant::now());
        let at = idle.iter().rposition(|i| i.key == *key)?;
        idle.remove(at).map(|i| i.sender)
    }

    /// Keeps `sender` for `key` unless it is closed; the oldest of the
    /// app's (past `per_app`) or of all goes to make room.
    pub(crate) fn put(&self, key: PoolKey, sender: SendRequest<WasiBody>, per_app: usize) {
        if sender.is_closed() || self.max == 0 || per_app == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        expire(&mut idle, Instant::now());
        if idle.iter().filter(|i| i.key.app == key.app).count() >= per_app
            && let Some(at) = idle.iter().position(|i| i.key.app == key.app)
        {
            idle.remove(at);
        }
        if idle.len() >= self.max {
            idle.pop_front();
        }
        idle.push_back(Idle {
            key,
            sender,
            since: Instant::now(),
        });
    }

    /// Idle connections now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

/// Drops connections idle too long, or closed by their server.
fn expire(idle: &mut VecDeque<Idle>, now: Instant) {
    idle.retain(|i| now.duration_since(i.since) < IDLE_FOR && !i.sender.is_closed());
}

/// Every second, drops what has expired, while the pool lives.
async fn reap(pool: Weak<ConnectionPool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        expire(
            &mut pool.idle.lock().unwrap_or_else(|e| e.into_inner()),
            Instant::now(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A sender on a fresh loopback connection whose server reads
    /// requests and never answers.
    async fn sender() -> SendRequest<WasiBody> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    fn key(app: &str, host: &str) -> PoolKey {
        PoolKey {
            app: app.into(),
            tls: false,
            host: host.into(),
            port: 80,
        }
    }

    #[tokio::test]
    async fn a_connection_is_kept_for_its_app_and_place_only() {
        let pool = ConnectionPool::new(8);
        pool.put(key("a", "x.test"), sender().await, 4);
        assert!(pool.take(&key("b", "x.test")).is_none(), "another app's");
        assert!(pool.take(&key("a", "y.test")).is_none(), "another place");
        assert!(pool.take(&key("a", "x.test")).is_some());
        assert!(pool.take(&key("a", "x.test")).is_none(), "taken once");
    }

    #[tokio::test]
    async fn the_pool_is_bounded_per_app_and_in_all() {
        let pool = ConnectionPool::new(3);
        for _ in 0..3 {
            pool.put(key("a", "x.test"), sender().await, 2);
        }
        assert_eq!(pool.len(), 2, "two for app a");
        pool.put(key("b", "x.test"), sender().await, 2);
        pool.put(key("c", "x.test"), sender().await, 2);
        assert_eq!(pool.len(), 3, "three in all");
        assert!(pool.take(&key("c", "x.test")).is_some(), "the newest stays");
    }

    #[tokio::test]
    async fn an_idle_connection_expires() {
        let pool = ConnectionPool::new(8);
        pool.put(key("a", "x.test"), sender().await, 4);
        // As if it had been idle as long as it may.
        pool.idle.lock().unwrap()[0].since -= IDLE_FOR;
        assert!(pool.take(&key("a", "x.test")).is_none());
        assert_eq!(pool.len(), 0);
    }
}

//! Outbound HTTP: the requests apps send through `wasi:http/outgoing-handler`.
//!
//! Denied unless the app's `<app>.toml` lists `allowed_outbound_hosts`, each
//! entry within the operator's `--outbound-hosts`. The host sends every
//! request itself: it resolves the name, refuses internal addresses the
//! entry does not name, connects to the address it checked (so a name
//! cannot be re-pointed between the check and the connection), and bounds
//! the request in time, the response in bytes and the app in requests at
//! once.
//!
//! - [`allow`]: the entries and whether one allows a destination.
//! - [`address`]: which addresses are internal.
//! - [`client`]: sending one request, and the hooks wasmtime calls.
//! - [`connect`]: opening a connection to a checked address.
//! - [`failures`]: an instance's recent failures, for the guest to ask why.
//! - [`pool`]: idle connections kept for apps' next requests.

mod address;
pub(crate) mod allow;
mod client;
mod connect;
mod failures;
mod pool;

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::sync::Semaphore;

pub(crate) use self::allow::HostPattern;
pub(crate) use self::client::AppOutbound;
use self::pool::ConnectionPool;

/// The operator's bounds on apps' outbound HTTP: each is an app's default
/// and the most its `[outbound]` table may ask for.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutboundFlags {
    /// Destinations apps may list in `allowed_outbound_hosts`,
    /// comma-separated entries as `https://*.example.com` or
    /// `http://10.0.0.7:8080` (`none`: apps send no requests). `*` covers
    /// every public host but no internal address: those need an entry
    /// naming them here and in the app's file.
    #[arg(long, default_value = "*://*:*", env = "TINA4_OUTBOUND_HOSTS", value_parser = parse_ceiling)]
    pub(crate) outbound_hosts: OutboundCeiling,

    /// Time one outbound request may take, connection to last byte, in ms.
    /// It also ends by the deadline of the event that sent it.
    #[arg(long, default_value = "10000", env = "TINA4_OUTBOUND_TIMEOUT_MS")]
    pub(crate) outbound_timeout_ms: NonZeroU64,

    /// Largest response body an app may receive, in bytes.
    #[arg(
        long,
        default_value = "4194304",
        env = "TINA4_OUTBOUND_MAX_RESPONSE_BYTES"
    )]
    pub(crate) outbound_max_response_bytes: NonZeroU64,

    /// Outbound requests one app may have in flight at once (also the
    /// most idle connections kept for it).
    #[arg(long, default_value = "8", env = "TINA4_OUTBOUND_CONCURRENCY")]
    pub(crate) outbound_concurrency: NonZeroUsize,

    /// Certificates (PEM) trusted for apps' HTTPS requests beside the
    /// public web's roots: an internal CA's, say.
    #[arg(long, env = "TINA4_OUTBOUND_CA_FILE")]
    pub(crate) outbound_ca_file: Option<std::path::PathBuf>,

    /// Idle outbound connections kept for reuse, in all (0: a new
    /// connection for every request).
    #[arg(long, default_value = "256", env = "TINA4_OUTBOUND_IDLE_CONNECTIONS")]
    pub(crate) outbound_idle_connections: usize,
}

/// The destinations an app's entries must fall within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboundCeiling(pub(crate) Vec<HostPattern>);

fn parse_ceiling(text: &str) -> Result<OutboundCeiling, String> {
    if text.trim().eq_ignore_ascii_case("none") || text.trim().is_empty() {
        return Ok(OutboundCeiling(Vec::new()));
    }
    let entries: Vec<&str> = text.split(',').collect();
    allow::parse_all(&entries)
        .map(OutboundCeiling)
        .map_err(|err| err.to_string())
}

impl OutboundCeiling {
    /// The ceiling entry that `entry` falls within, if any.
    pub(crate) fn covers(&self, entry: &HostPattern) -> bool {
        self.0.iter().any(|ceiling| entry.within(ceiling))
    }
}

/// How far one app's requests may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutboundLimits {
    /// Longest a request may take (the event's deadline may end it sooner).
    pub(crate) timeout: Duration,
    /// Largest response body, in bytes.
    pub(crate) max_response_bytes: u64,
    /// Requests in flight at once.
    pub(crate) concurrency: usize,
}

impl OutboundLimits {
    /// Bytes of answers the host may hold for the app, being read or kept
    /// unread: as much as its requests in flight may bring at once.
    pub(crate) fn answer_bytes(&self) -> usize {
        let most = u64::try_from(self.concurrency)
            .unwrap_or(u64::MAX)
            .saturating_mul(self.max_response_bytes);
        usize::try_from(most).map_or(Semaphore::MAX_PERMITS, |most| {
            most.min(Semaphore::MAX_PERMITS)
        })
    }
}

impl OutboundFlags {
    /// The defaults (and ceilings) the flags set.
    pub(crate) fn limits(&self) -> OutboundLimits {
        OutboundLimits {
            timeout: Duration::from_millis(self.outbound_timeout_ms.get()),
            max_response_bytes: self.outbound_max_response_bytes.get(),
            concurrency: self.outbound_concurrency.get(),
        }
    }
}

/// An app's grant: where it may send requests, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboundPolicy {
    /// The entries of `allowed_outbound_hosts`.
    pub(crate) hosts: Vec<HostPattern>,
    /// Its limits, within the operator's.
    pub(crate) limits: OutboundLimits,
}

/// A grant in force: the policy and the app's count of requests in flight,
/// shared by its instances.
pub(crate) struct OutboundGrant {
    /// Where and how far.
    policy: OutboundPolicy,
    /// One permit per request in flight.
    in_flight: Arc<Semaphore>,
    /// One permit per byte of the app's answers the host holds: room for
    /// each whole answer while it is read, then its bytes until the guest
    /// has read them, so answers kept unread have a budget
    /// ([`OutboundLimits::answer_bytes`]).
    answers: Arc<Semaphore>,
    /// The server's idle connections, where the app's are kept.
    pool: Arc<ConnectionPool>,
    /// The server's TLS client configuration.
    tls: Arc<rustls::ClientConfig>,
}

impl OutboundGrant {
    /// A grant with nothing in flight, on the server's `network`.
    pub(crate) fn new(policy: OutboundPolicy, network: &Network) -> Arc<Self> {
        let in_flight = Arc::new(Semaphore::new(policy.limits.concurrency));
        let answers = Arc::new(Semaphore::new(policy.limits.answer_bytes()));
        Arc::new(Self {
            policy,
            in_flight,
            answers,
            pool: network.pool.clone(),
            tls: network.tls.clone(),
        })
    }
}

/// What every app's requests share: the idle connections and the TLS
/// client configuration.
pub(crate) struct Network {
    /// Idle connections kept for apps' next requests.
    pool: Arc<ConnectionPool>,
    /// The roots HTTPS upstreams are checked against.
    tls: Arc<rustls::ClientConfig>,
}

impl Network {
    /// The network the flags describe.
    pub(crate) fn new(flags: &OutboundFlags) -> anyhow::Result<Self> {
        Ok(Self {
            pool: ConnectionPool::new(flags.outbound_idle_connections),
            tls: connect::tls_config(flags.outbound_ca_file.as_deref())
                .context("--outbound-ca-file")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_may_hold_what_the_requests_in_flight_may_bring() {
        let limits = |concurrency, max_response_bytes| OutboundLimits {
            timeout: Duration::from_secs(1),
            max_response_bytes,
            concurrency,
        };
        assert_eq!(limits(8, 4 << 20).answer_bytes(), 32 << 20);
        // Past what a semaphore can count, it counts all it can.
        assert_eq!(
            limits(usize::MAX, u64::MAX).answer_bytes(),
            Semaphore::MAX_PERMITS
        );
    }
}

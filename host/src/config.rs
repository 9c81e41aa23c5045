//! Settings for `tina4-wasm serve`: flags, with `TINA4_*` environment
//! variables (and a `.env` file in the working directory) as fallbacks.

use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Everything `serve` needs to know.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeConfig {
    /// Folder of app components (`*.wasm`); each file is one app.
    #[arg(default_value = "apps", env = "TINA4_APPS_DIR")]
    pub(crate) apps_dir: PathBuf,

    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", env = "TINA4_HOST")]
    pub(crate) host: IpAddr,

    /// Port for HTTP and WebSocket alike (0 picks a free one).
    #[arg(long, short, default_value_t = 7146, env = "TINA4_PORT")]
    pub(crate) port: u16,

    /// PEM file with the server's certificate chain, leaf first: the port
    /// then serves HTTPS and wss:// only (with `--tls-key`). Read again
    /// when it changes.
    #[arg(long, env = "TINA4_TLS_CERT", requires = "tls_key", value_name = "PEM")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM file with the private key of `--tls-cert` (PKCS#8, PKCS#1 or
    /// SEC1; RSA, ECDSA or Ed25519).
    #[arg(long, env = "TINA4_TLS_KEY", requires = "tls_cert", value_name = "PEM")]
    pub(crate) tls_key: Option<PathBuf>,

    /// Also listen for plain HTTP on this port, and send every request
    /// there to the same host and path over HTTPS (308). Needs
    /// `--tls-cert`.
    #[arg(
        long,
        env = "TINA4_REDIRECT_HTTP_PORT",
        requires = "tls_cert",
        value_name = "PORT"
    )]
    pub(crate) redirect_http_port: Option<u16>,

    /// Folder for precompiled components, so restarts and swaps back to a
    /// known version skip compiling [default: ~/.cache/tina4-wasm/components].
    #[arg(long, env = "TINA4_CACHE_DIR")]
    pub(crate) cache_dir: Option<PathBuf>,

    /// Compile every component afresh; keep nothing on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    pub(crate) no_cache: bool,

    /// Compile about 40% faster (no optimizations, single-pass register
    /// allocation) at the cost of slower guest code: for development.
    #[arg(long, env = "TINA4_FAST_COMPILE")]
    pub(crate) fast_compile: bool,

    /// Rebuild apps when their sources (Rust, JavaScript or Python) change,
    /// as `tina4-wasm build` does. Searches the given folders (default: the
    /// current one, three levels deep) for app folders named like a served
    /// app (`chat/` builds `chat.wasm`); put DIR before this flag
    /// (`serve apps --watch`).
    #[arg(long, num_args = 0.., value_name = "SRC")]
    pub(crate) watch: Option<Vec<PathBuf>>,

    /// Development mode (implied by `--watch`): a request for `/` that no
    /// app serves gets a page listing the apps and their routes.
    #[arg(long, env = "TINA4_DEV")]
    pub(crate) dev: bool,

    /// The engine `--watch` compiles JavaScript apps with (as `build
    /// --js-engine`).
    #[arg(long, value_enum, default_value_t, env = "TINA4_JS_ENGINE")]
    pub(crate) js_engine: JsEngine,

    /// Address of the admin endpoints (/metrics, /health, /ready), or
    /// `off`. Loopback by default: never expose it publicly unasked.
    #[arg(long, default_value = "127.0.0.1:7147", env = "TINA4_ADMIN_LISTEN")]
    pub(crate) admin_listen: String,

    /// The HS256 secret that tokens for secured routes are signed with.
    /// Prefer the environment variable: flags show up in process lists.
    #[arg(long, env = "TINA4_SECRET", hide_env_values = true)]
    pub(crate) secret: Option<String>,

    /// Limits that protect the host from apps and clients.
    #[command(flatten)]
    pub(crate) limits: Limits,

    /// Who may connect, and how connections are kept alive.
    #[command(flatten)]
    pub(crate) edge: EdgePolicy,

    /// Whether, and how, several instances act as one.
    #[command(flatten)]
    pub(crate) backplane: BackplaneConfig,
}

/// The backplane: broadcasts, pushes, sends, closes and counts across
/// instances.
#[derive(Debug, Clone, Args)]
pub(crate) struct BackplaneConfig {
    /// `local` (this instance only), `redis` (every instance on the same
    /// Redis and prefix acts as one server) or `redis-cluster` (the same on
    /// a Redis Cluster, with sharded pub/sub).
    #[arg(
        long = "backplane",
        value_enum,
        default_value = "local",
        env = "TINA4_WS_BACKPLANE"
    )]
    pub(crate) kind: BackplaneKind,

    /// The Redis server for `--backplane redis`
    /// (`redis://[:password@]host:port[/db]`); for `redis-cluster`, seed
    /// nodes, comma-separated.
    #[arg(
        long = "backplane-url",
        default_value = "redis://127.0.0.1:6379",
        env = "TINA4_WS_BACKPLANE_URL",
        hide_env_values = true
    )]
    pub(crate) url: String,

    /// Prefix of the channel and key names: clusters with different
    /// prefixes share one Redis without hearing each other (no braces).
    #[arg(
        long = "backplane-prefix",
        default_value = "tina4",
        env = "TINA4_WS_BACKPLANE_PREFIX"
    )]
    pub(crate) prefix: String,

    /// A secret every instance of the cluster shares (at least 32 bytes):
    /// messages are sealed with it, and unsealed or forged ones refused.
    #[arg(
        long = "backplane-secret",
        env = "TINA4_WS_BACKPLANE_SECRET",
        hide_env_values = true
    )]
    pub(crate) shared_secret: Option<String>,

    /// Most messages waiting to be published; beyond that, new ones are
    /// dropped (and counted) rather than queued.
    #[arg(
        long = "backplane-queue",
        default_value = "16384",
        env = "TINA4_WS_BACKPLANE_QUEUE"
    )]
    pub(crate) queue: NonZeroUsize,
}

impl BackplaneConfig {
    /// Refuses a secret too short to seal with, and a prefix that would
    /// break the hash tag keeping a room's channel and history on one shard.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.prefix.contains(['{', '}']),
            "TINA4_WS_BACKPLANE_PREFIX {:?} may not contain braces",
            self.prefix
        );
        if let Some(secret) = &self.shared_secret {
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_BYTES,
                "TINA4_WS_BACKPLANE_SECRET is {} bytes; it must be at least {}",
                secret.len(),
                MIN_SECRET_BYTES
            );
        }
        Ok(())
    }
}

/// What happens to a WebSocket message sent faster than its connection's
/// rate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OverRate {
    /// Drop the message and count it; the connection stays.
    Drop,
    /// Close the connection with 1008.
    Close,
    /// Stop reading the connection until the rate allows its next message:
    /// nothing is lost, and TCP slows the client down.
    Wait,
}

/// Which backplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum BackplaneKind {
    /// This instance only.
    #[value(alias = "none")]
    Local,
    /// Redis pub/sub on one node.
    Redis,
    /// Sharded pub/sub on a Redis Cluster.
    RedisCluster,
}

/// The WebSocket edge: admission and liveness.
#[derive(Debug, Clone, Args)]
pub(crate) struct EdgePolicy {
    /// Most WebSocket connections open at once; more → 503 before the upgrade.
    #[arg(long, default_value = "10000", env = "TINA4_WS_MAX_CONNECTIONS")]
    pub(crate) max_connections: NonZeroUsize,

    /// Most WebSocket connections on one concrete path; more → 503.
    #[arg(long, env = "TINA4_WS_MAX_CONNECTIONS_PER_PATH")]
    pub(crate) max_connections_per_path: Option<NonZeroUsize>,

    /// Most connections one client address may hold, counted apart for
    /// HTTP and WebSocket (0: no cap); more → 503.
    #[arg(long, default_value_t = 256, env = "TINA4_MAX_CONNECTIONS_PER_IP")]
    pub(crate) max_connections_per_ip: usize,

    /// Client addresses the per-address cap does not apply to,
    /// comma-separated (a reverse proxy's; loopback is not exempt unless
    /// listed).
    #[arg(long, env = "TINA4_IP_LIMIT_EXEMPT", value_delimiter = ',')]
    pub(crate) ip_limit_exempt: Vec<IpAddr>,

    /// Most HTTP connections open at once (WebSockets count apart, once
    /// upgraded); more are answered 503 and closed.
    #[arg(long, default_value = "4096", env = "TINA4_MAX_HTTP_CONNECTIONS")]
    pub(crate) max_http_connections: NonZeroUsize,

    /// Host names the server answers on for apps that claim none (no
    /// `hosts` in their `<app>.toml`), comma-separated: `name`, `*.name`
    /// for every name below it, or `*` for any name. IP addresses are always
    /// answered. A request for any other name that no app claims gets 421,
    /// which keeps DNS-rebinding pages out.
    #[arg(
        long,
        default_value = "localhost,*.localhost",
        env = "TINA4_SERVER_NAMES",
        value_delimiter = ','
    )]
    pub(crate) server_names: Vec<String>,

    /// Origins allowed to open WebSockets, comma-separated (`*` for any).
    /// Requests without an Origin (non-browser clients) and same-origin
    /// requests are always allowed; any other origin, or one that is not a
    /// valid origin, gets 403.
    #[arg(long, env = "TINA4_WS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub(crate) allowed_origins: Vec<String>,

    /// Time a client has to send its request head, in ms (slowloris guard).
    #[arg(long, default_value = "10000", env = "TINA4_HANDSHAKE_TIMEOUT_MS")]
    pub(crate) handshake_timeout_ms: NonZeroU64,

    /// Server ping interval, in ms. A peer that sends nothing (not even a
    /// pong) for two intervals is dead and is dropped.
    #[arg(long, default_value = "30000", env = "TINA4_WS_PING_INTERVAL_MS")]
    pub(crate) ping_interval_ms: NonZeroU64,

    /// Kernel send buffer per connection, in bytes: bounds the memory a
    /// client that stops reading can pin, and lets the outbox notice it.
    #[arg(long, default_value = "262144", env = "TINA4_SEND_BUFFER_BYTES")]
    pub(crate) send_buffer_bytes: NonZeroUsize,

    /// Time a client has to take what is written to it, in ms: a write
    /// (or a close frame) it has not taken by then drops the connection
    /// and frees its slot. Also the TCP user timeout of every connection.
    #[arg(long, default_value = "10000", env = "TINA4_WRITE_TIMEOUT_MS")]
    pub(crate) write_timeout_ms: NonZeroU64,

    /// Close (1001) a connection whose client has sent no message for this
    /// many seconds; 0 keeps quiet listeners (the default).
    #[arg(long, default_value_t = 0, env = "TINA4_WS_IDLE_TIMEOUT_SECS")]
    pub(crate) idle_timeout_secs: u64,

    /// Serve HTTP/2 with prior knowledge (h2c) beside HTTP/1.1 on a plain
    /// port. Over TLS, HTTP/2 is offered by ALPN anyway.
    #[arg(long, env = "TINA4_H2C")]
    pub(crate) h2c: bool,

    /// HTTP/2 streams (requests) one connection may have open at once.
    #[arg(long, default_value = "100", env = "TINA4_H2_MAX_STREAMS")]
    pub(crate) h2_max_streams: NonZeroU32,
}

impl EdgePolicy {
    /// The ping interval.
    pub(crate) fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms.get())
    }

    /// The per-address caps and their exemptions.
    pub(crate) fn per_address(&self) -> PerAddress {
        PerAddress {
            max: (self.max_connections_per_ip > 0).then_some(self.max_connections_per_ip),
            exempt: self.ip_limit_exempt.clone(),
        }
    }

    /// How long a write may wait for the peer.
    pub(crate) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.get())
    }

    /// The idle timeout, if on.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }

    /// The request-head timeout.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.get())
    }

    /// The names the server answers on for apps that claim none.
    pub(crate) fn names(&self) -> anyhow::Result<ServerNames> {
        ServerNames::parse(&self.server_names)
    }

    /// Whether a browser page at `origin` (the Origin header's bytes) may
    /// connect to this server, which the client reached as `host` (the
    /// Host header), over TLS if `secure`. An Origin that is not
    /// `http(s)://authority` is refused. Served over TLS, a same-origin page
    /// must have come over TLS too; served plain, it may have come either
    /// way (a proxy in front may have ended its TLS).
    pub(crate) fn origin_allowed(
        &self,
        origin: Option<&[u8]>,
        host: Option<&str>,
        secure: bool,
    ) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        let (authority, tls) = match origin.strip_prefix("https://") {
            Some(authority) => (Some(authority), true),
            None => (origin.strip_prefix("http://"), false),
        };
        let Some(authority) = authority
            .filter(|a| !a.is_empty() && !a.contains(['/', '?', '#', '@']) && a.is_ascii())
        else {
            return false;
        };
        let same_origin =
            (tls || !secure) && host.is_some_and(|host| authority.eq_ignore_ascii_case(host));
        same_origin
            || self.allowed_origins.iter().any(|allowed| {
                allowed == "*" || allowed.trim_end_matches('/').eq_ignore_ascii_case(origin)
            })
    }
}

/// The names the server answers on for apps that claim none.
#[derive(Debug, Clone)]
pub(crate) struct ServerNames {
    /// `*`: any name no app claims.
    any: bool,
    /// The names listed.
    names: Vec<crate::router::HostPattern>,
}

impl ServerNames {
    /// Parses `--server-names`.
    pub(crate) fn parse(list: &[String]) -> anyhow::Result<Self> {
        let mut names = ServerNames {
            any: false,
            names: Vec::new(),
        };
        for name in list.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if name == "*" {
                names.any = true;
            } else {
                names.names.push(
                    name.parse()
                        .map_err(|err| anyhow::anyhow!("--server-names: {err}"))?,
                );
            }
        }
        Ok(names)
    }

    /// Whether `host` (a normalized host name) is one of them; an IP
    /// address always is.
    pub(crate) fn matches(&self, host: &str) -> bool {
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok();
        self.any || literal || self.names.iter().any(|n| n.matches(host))
    }

    /// Whether an app's claimed name is one of the listed ones, which
    /// belong to the apps that claim none.
    pub(crate) fn listed(&self, claim: &crate::router::HostPattern) -> bool {
        self.names.iter().any(|n| n.overlaps(claim))
    }
}

impl ServeConfig {
    /// The admin listener's address, or `None` for `off`.
    pub(crate) fn admin_address(&self) -> anyhow::Result<Option<std::net::SocketAddr>> {
        if self.admin_listen.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.admin_listen.parse().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "--admin-listen {:?} is not an address like 127.0.0.1:7147 (or off)",
                self.admin_listen
            )
        })
    }

    /// The source folders `--watch` searches, if it was given.
    pub(crate) fn watch_sources(&self) -> Option<Vec<PathBuf>> {
        let sources = self.watch.clone()?;
        Some(if sources.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            sources
        })
    }

    /// The compile cache folder in effect, if any.
    pub(crate) fn cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or_else(default_cache_dir)
        }
    }
}

/// Bounds on everything a guest or a client can make the host hold or do.
#[derive(Debug, Clone, Args)]
pub(crate) struct Limits {
    /// Largest WebSocket message accepted from a client or sent by an app, in bytes.
    #[arg(long, default_value = "1048576", env = "TINA4_WS_MAX_FRAME_SIZE")]
    pub(crate) max_message_bytes: NonZeroUsize,

    /// Largest value an app may attach to a connection, in bytes.
    #[arg(long, default_value = "16384", env = "TINA4_WS_ATTACHMENT_MAX")]
    pub(crate) max_attachment_bytes: NonZeroUsize,

    /// Largest HTTP request body, in bytes (larger → 413).
    #[arg(long, default_value = "8388608", env = "TINA4_MAX_BODY_SIZE")]
    pub(crate) max_body_bytes: NonZeroUsize,

    /// Request body bytes all requests together may hold while they are
    /// read and answered; a request that would go past it gets 503.
    #[arg(
        long,
        default_value = "268435456",
        env = "TINA4_MAX_INFLIGHT_BODY_BYTES"
    )]
    pub(crate) max_inflight_body_bytes: NonZeroUsize,

    /// Time a request body may take to arrive, in ms (→ 408).
    #[arg(long, default_value = "30000", env = "TINA4_BODY_TIMEOUT_MS")]
    pub(crate) body_timeout_ms: NonZeroU64,

    /// Time a request body may pause between two pieces, in ms (→ 408).
    #[arg(long, default_value = "10000", env = "TINA4_BODY_IDLE_TIMEOUT_MS")]
    pub(crate) body_idle_timeout_ms: NonZeroU64,

    /// Messages queued for one connection before it counts as a slow
    /// consumer and is closed with 1008.
    #[arg(long, default_value = "1024", env = "TINA4_WS_OUTBOX")]
    pub(crate) outbox_capacity: NonZeroUsize,

    /// Messages per second one WebSocket connection may send, on average
    /// (0: no limit). Apps may set their own, within
    /// `--ws-messages-per-second-max`.
    #[arg(long, default_value = "1000", env = "TINA4_WS_MESSAGES_PER_SECOND")]
    pub(crate) ws_messages_per_second: u32,

    /// Messages one WebSocket connection may send at once, above its rate.
    #[arg(long, default_value = "2000", env = "TINA4_WS_MESSAGE_BURST")]
    pub(crate) ws_message_burst: NonZeroU32,

    /// What happens to a message over its connection's rate: dropped (and
    /// counted), the connection closed with 1008, or the connection read no
    /// further until the rate allows (TCP slows the client down).
    #[arg(long, value_enum, default_value = "close", env = "TINA4_WS_OVER_RATE")]
    pub(crate) ws_over_rate: OverRate,

    /// Bytes of messages queued for one connection before it counts as a
    /// slow consumer and is closed with 1008 (one message always fits).
    #[arg(long, default_value = "16777216", env = "TINA4_WS_OUTBOX_BYTES")]
    pub(crate) outbox_bytes: NonZeroUsize,

    /// Most messages one path's history keeps, whatever its route asks.
    #[arg(long, default_value = "1000", env = "TINA4_HISTORY_MAX_MESSAGES")]
    pub(crate) history_max_messages: u32,

    /// Bytes of message history one app keeps across all its paths; past
    /// it, the app's oldest messages are dropped first.
    #[arg(long, default_value = "16777216", env = "TINA4_HISTORY_BYTES_PER_APP")]
    pub(crate) history_bytes_per_app: usize,

    /// Where the server keeps what apps store (`store.redb`); default: the
    /// user's data folder (`$XDG_DATA_HOME/tina4-wasm`, or
    /// `~/.local/share/tina4-wasm`). Opened only once an app with a storage
    /// grant uses it.
    #[arg(long, env = "TINA4_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// Where apps' storage lives: `embedded` (a file under `--data-dir`) or
    /// `redis` (at `--store-url`, shared by every instance using it).
    #[arg(long, value_enum, default_value = "embedded", env = "TINA4_STORE")]
    pub(crate) store: StoreKind,

    /// The Redis server for `--store redis`.
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379",
        env = "TINA4_STORE_URL",
        hide_env_values = true
    )]
    pub(crate) store_url: String,

    /// Prefix of the store's keys in Redis (no braces).
    #[arg(long, default_value = "tina4", env = "TINA4_STORE_PREFIX")]
    pub(crate) store_prefix: String,

    /// Most keys an app with a storage grant may keep (its default, and
    /// the most its `<app>.toml` may ask for).
    #[arg(long, default_value = "10000", env = "TINA4_STORAGE_MAX_KEYS")]
    pub(crate) storage_max_keys: u64,

    /// Largest value an app may store, in bytes (default and ceiling).
    #[arg(long, default_value = "65536", env = "TINA4_STORAGE_MAX_VALUE_BYTES")]
    pub(crate) storage_max_value_bytes: usize,

    /// Most bytes (keys and values) an app may store (default and ceiling).
    #[arg(long, default_value = "16777216", env = "TINA4_STORAGE_MAX_BYTES")]
    pub(crate) storage_max_bytes: u64,

    /// Timers one app may have at once (0: apps get no timers).
    #[arg(long, default_value = "32", env = "TINA4_TIMERS_PER_APP")]
    pub(crate) timers_per_app: usize,

    /// The shortest interval a timer may ask for, in ms.
    #[arg(long, default_value = "100", env = "TINA4_TIMER_MIN_INTERVAL_MS")]
    pub(crate) timer_min_interval_ms: u64,

    /// Events queued for one app before senders wait.
    #[arg(long, default_value = "4096", env = "TINA4_APP_MAILBOX")]
    pub(crate) mailbox_capacity: NonZeroUsize,

    /// Bytes of WebSocket messages queued for one app before senders wait
    /// (each connection also has at most 32 queued).
    #[arg(long, default_value = "67108864", env = "TINA4_APP_MAILBOX_BYTES")]
    pub(crate) mailbox_bytes: NonZeroUsize,

    /// Wall-clock time one guest call may run before it is interrupted, in ms.
    #[arg(long, default_value = "1000", env = "TINA4_EVENT_TIMEOUT_MS")]
    pub(crate) event_timeout_ms: NonZeroU64,

    /// Meter fuel: each guest call may execute about this many instructions
    /// (per-app `fuel` overrides). Off by default: metering costs speed.
    #[arg(long, env = "TINA4_FUEL_PER_EVENT")]
    pub(crate) fuel_per_event: Option<NonZeroU64>,

    /// Linear memory one app instance may grow to, in MiB.
    #[arg(long, default_value = "64", env = "TINA4_APP_MEMORY_MB")]
    pub(crate) app_memory_mb: NonZeroUsize,

    /// Drop the instance of an app that had no event for this long, in ms
    /// (its connections stay open; the next event starts a fresh one).
    /// 0: never. An app's `hibernate_after_ms` overrides it.
    #[arg(
        long,
        alias = "hibernate-after",
        default_value = "0",
        env = "TINA4_HIBERNATE_AFTER_MS"
    )]
    pub(crate) hibernate_after_ms: u64,

    /// How long an HTTP request may wait for its app's answer, in ms (→ 503).
    #[arg(long, default_value = "30000", env = "TINA4_HTTP_TIMEOUT_MS")]
    pub(crate) http_timeout_ms: NonZeroU64,

    /// The most an app's `<app>.toml` may ask for.
    #[command(flatten)]
    pub(crate) ceilings: Ceilings,

    /// Where apps may send HTTP requests, and how far.
    #[command(flatten)]
    pub(crate) outbound: crate::outbound::OutboundFlags,
}

/// The operator's ceilings on what an app's own `<app>.toml` may ask for:
/// a version asking for more is refused, naming the file and the key. A
/// server-wide default above its ceiling raises the ceiling to it.
#[derive(Debug, Clone, Args)]
pub(crate) struct Ceilings {
    /// Most memory (all linear memories and tables) an app may ask for, in MiB.
    #[arg(long, default_value = "512", env = "TINA4_APP_MEMORY_MB_MAX")]
    pub(crate) app_memory_mb_max: NonZeroUsize,

    /// Longest CPU deadline per event an app may ask for, in ms.
    #[arg(long, default_value = "10000", env = "TINA4_EVENT_TIMEOUT_MS_MAX")]
    pub(crate) event_timeout_ms_max: NonZeroU64,

    /// Most fuel per event an app may ask for.
    #[arg(long, default_value = "10000000000", env = "TINA4_APP_FUEL_MAX")]
    pub(crate) app_fuel_max: NonZeroU64,

    /// Most core instances, memories or tables (each) an app may ask for.
    #[arg(long, default_value = "1000", env = "TINA4_APP_INSTANCES_MAX")]
    pub(crate) app_instances_max: NonZeroUsize,

    /// Most elements per table an app may ask for.
    #[arg(long, default_value = "10000000", env = "TINA4_APP_TABLE_ELEMENTS_MAX")]
    pub(crate) app_table_elements_max: NonZeroUsize,

    /// Most messages per second per connection an app may allow (its
    /// burst may be at most twice that).
    #[arg(
        long,
        default_value = "100000",
        env = "TINA4_WS_MESSAGES_PER_SECOND_MAX"
    )]
    pub(crate) ws_messages_per_second_max: NonZeroU32,

    /// Longest an app may ask to stay resident while idle, in ms
    /// (`hibernate_after_ms`); 0: no ceiling, an app may stay resident.
    #[arg(long, default_value = "0", env = "TINA4_HIBERNATE_AFTER_MS_MAX")]
    pub(crate) hibernate_after_ms_max: u64,

    /// Most WebSocket connections an app may ask to hold.
    #[arg(long, default_value = "100000", env = "TINA4_APP_CONNECTIONS_MAX")]
    pub(crate) app_connections_max: NonZeroUsize,
}

/// Where apps' storage lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    /// One file under `--data-dir`.
    Embedded,
    /// Redis at `--store-url`.
    Redis,
    /// A Redis Cluster, its seed nodes at `--store-url`, comma-separated.
    RedisCluster,
}

impl Limits {
    /// The store the flags name (connected, or opened, on first use).
    pub(crate) fn store(&self) -> anyhow::Result<crate::storage::Storage> {
        use crate::storage::{Embedded, Shared, Storage};
        Ok(match self.store {
            StoreKind::Embedded => Storage::Embedded(Embedded::at(self.store_file())),
            StoreKind::Redis | StoreKind::RedisCluster => {
                anyhow::ensure!(
                    !self.store_prefix.contains(['{', '}']),
                    "TINA4_STORE_PREFIX {:?} may not contain braces",
                    self.store_prefix
                );
                let cluster = self.store == StoreKind::RedisCluster;
                Storage::Shared(Box::new(Shared::new(
                    &self.store_url,
                    &self.store_prefix,
                    cluster,
                )?))
            }
        })
    }

    /// The file apps' storage lives in.
    pub(crate) fn store_file(&self) -> PathBuf {
        let dir = self.data_dir.clone().unwrap_or_else(|| {
            let base = std::env::var_os("XDG_DATA_HOME")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
                })
                .unwrap_or_else(|| PathBuf::from("."));
            base.join("tina4-wasm")
        });
        dir.join("store.redb")
    }
}

impl Default for Limits {
    /// The limits `serve` runs with when no flag sets one: clap's defaults
    /// (and `TINA4_*` variables), so each default is written once, on its flag.
    fn default() -> Self {
        let command = <Self as clap::Args>::augment_args(clap::Command::new("limits"));
        let matches = command.get_matches_from(["limits"]);
        <Self as clap::FromArgMatches>::from_arg_matches(&matches)
            .expect("every limit has a default")
    }
}

impl Limits {
    /// The per-call CPU deadline.
    pub(crate) fn event_timeout(&self) -> Duration {
        Duration::from_millis(self.event_timeout_ms.get())
    }

    /// How long a body may take, and may pause.
    pub(crate) fn body_timeouts(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.body_timeout_ms.get()),
            Duration::from_millis(self.body_idle_timeout_ms.get()),
        )
    }

    /// The HTTP answer deadline.
    pub(crate) fn http_timeout(&self) -> Duration {
        Duration::from_millis(self.http_timeout_ms.get())
    }

    /// The linear memory cap in bytes.
    pub(crate) fn app_memory_bytes(&self) -> usize {
        self.app_memory_mb.get() << 20
    }
}

/// The shortest secret accepted: HS256's own output size.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// The JavaScript engine a JavaScript app is compiled with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum JsEngine {
    /// StarlingMonkey (componentize-js): runs `async` handlers to the end,
    /// as Node does; ~12 MB components.
    #[default]
    Spidermonkey,
    /// QuickJS (componentize-qjs): ~1.7 MB components that compile in a
    /// second, but an `async` handler stops at its first `await`.
    Quickjs,
}

/// Per-address caps and their exemptions, shared by HTTP and WebSocket
/// admission.
#[derive(Debug, Clone)]
pub(crate) struct PerAddress {
    /// The most connections of one kind one address may hold; `None`: no cap.
    pub(crate) max: Option<usize>,
    /// Addresses no per-address cap applies to.
    pub(crate) exempt: Vec<IpAddr>,
}

impl PerAddress {
    /// The cap that applies to `ip`, if any.
    pub(crate) fn cap_for(&self, ip: IpAddr) -> Option<usize> {
        self.max.filter(|_| !self.exempt.contains(&ip))
    }
}

/// The default cache folder: `$XDG_CACHE_HOME/tina4-wasm/components`, or
/// `~/.cache/tina4-wasm/components`.
pub(crate) fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("tina4-wasm").join("components"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Edge {
        #[command(flatten)]
        edge: EdgePolicy,
    }

    fn policy(args: &[&str]) -> EdgePolicy {
        Edge::parse_from(std::iter::once("test").chain(args.iter().copied())).edge
    }

    #[test]
    fn origins_default_to_same_origin_and_non_browser_clients() {
        let p = policy(&[]);
        let o = |s: &'static str| Some(s.as_bytes());
        assert!(p.origin_allowed(None, Some("example.test:7146"), false));
        assert!(p.origin_allowed(
            o("http://example.test:7146"),
            Some("example.test:7146"),
            false
        ));
        assert!(!p.origin_allowed(o("http://evil.test"), Some("example.test:7146"), false));
        assert!(!p.origin_allowed(o("http://example.test:7146"), None, false));
        // Served over TLS, a page from the same host over plain HTTP is
        // another origin.
        assert!(p.origin_allowed(o("https://example.test"), Some("example.test"), true));
        assert!(!p.origin_allowed(o("http://example.test"), Some("example.test"), true));
        // Served plain, a page over TLS may be behind a proxy that ends it.
        assert!(p.origin_allowed(o("https://example.test"), Some("example.test"), false));
        // Malformed origins are refusals, not "no origin".
        for bad in [
            &b"http://ex\xffample.test"[..],
            b"null",
            b"example.test:7146",
            b"http://",
        ] {
            assert!(
                !p.origin_allowed(Some(bad), Some("example.test:7146"), false),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn origins_can_be_listed_or_opened_wide() {
        let p = policy(&["--allowed-origins", "https://app.test,https://admin.test/"]);
        assert!(p.origin_allowed(Some(b"https://admin.test"), Some("api.test"), false));
        assert!(!p.origin_allowed(Some(b"https://evil.test"), Some("api.test"), false));
        assert!(policy(&["--allowed-origins", "*"]).origin_allowed(
            Some(b"https://evil.test"),
            None,
            false
        ));
    }

    #[test]
    fn server_names_default_to_this_machine() {
        let names = policy(&[]).names().unwrap();
        for known in ["localhost", "app.localhost", "127.0.0.1", "[::1]"] {
            assert!(names.matches(known), "{known}");
        }
        assert!(!names.matches("evil.example"));
        assert!(
            policy(&["--server-names", "*"])
                .names()
                .unwrap()
                .matches("evil.example")
        );
        assert!(policy(&["--server-names", "a b"]).names().is_err());
        assert!(names.listed(&"localhost".parse().unwrap()));
        assert!(!names.listed(&"chat.example.com".parse().unwrap()));
    }
}

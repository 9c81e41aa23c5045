//! Per-app limits and grants: the server-wide defaults, overridden by an
//! optional `<app>.toml` next to `<app>.wasm`, within the operator's
//! ceilings.
//!
//! ```toml
//! # apps/chat.toml: every key is optional
//! memory_mb = 32               # memory cap: all linear memories and tables
//! event_timeout_ms = 250       # CPU deadline per event
//! fuel = 50_000_000            # fuel per event (server must run with --fuel-per-event)
//! max_instances = 20           # core instances in the component
//! max_memories = 4             # linear memories
//! max_tables = 20              # tables
//! max_table_elements = 100_000 # elements per table
//! max_connections = 500        # WebSocket connections the app may hold
//! max_message_bytes = 65536    # largest message the app may send
//! messages_per_second = 50     # per connection, on average
//! message_burst = 100          # per connection, at once
//! over_message_rate = "wait"   # or "drop", or "close" (1008)
//! data_dir = "data"            # granted read-only as /data (inside <apps>/chat/)
//! token_audience = "chat"      # the `aud` tokens for its secured routes name
//! hosts = ["chat.example.com", "*.chat.example.org"]  # Host names it serves
//! hibernate_after_ms = 60_000  # drop the idle instance after this (0: never)
//! allowed_outbound_hosts = ["https://api.example.com", "http://10.0.0.7:8080"]
//!
//! [storage]                    # grants key-value storage (none without it)
//! max_keys = 1000              # each at most the operator's ceiling,
//! max_value_bytes = 4096       # which is also the default
//! max_bytes = 1_048_576
//!
//! [outbound]                   # HTTP requests (none without the list above)
//! timeout_ms = 5000            # each at most the operator's ceiling,
//! max_response_bytes = 1048576 # which is also the default
//! max_concurrent = 4
//! ```
//!
//! The file is the tenant's, so nothing in it is taken on trust: a value
//! above its ceiling ([`Ceilings`](crate::config::Ceilings)) refuses the
//! version, and `data_dir` must stay inside the app's own folder. The file
//! is part of the app's version: changing it reloads the app.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::app_files::AppFiles;
use crate::config::{Limits, OverRate};
use crate::outbound::{OutboundCeiling, OutboundLimits, OutboundPolicy};
use crate::router::{HostBinding, HostPattern};
use crate::storage::StorageQuota;

mod grants;

use grants::{OutboundConfig, StorageConfig};

/// What `<app>.toml` may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppConfig {
    memory_mb: Option<usize>,
    event_timeout_ms: Option<u64>,
    fuel: Option<u64>,
    max_instances: Option<usize>,
    max_memories: Option<usize>,
    max_tables: Option<usize>,
    max_table_elements: Option<usize>,
    max_connections: Option<usize>,
    max_message_bytes: Option<usize>,
    messages_per_second: Option<u32>,
    message_burst: Option<u32>,
    over_message_rate: Option<OverRate>,
    data_dir: Option<PathBuf>,
    token_audience: Option<String>,
    hosts: Option<Vec<String>>,
    hibernate_after_ms: Option<u64>,
    storage: Option<StorageConfig>,
    allowed_outbound_hosts: Option<Vec<String>>,
    outbound: Option<OutboundConfig>,
}

/// The limits and grants one app runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppPolicy {
    /// Memory cap, in bytes: all its linear memories and tables together.
    pub(crate) memory_bytes: usize,
    /// Wall-clock deadline of one guest call.
    pub(crate) event_timeout: Duration,
    /// Fuel per guest call, when the engine meters fuel.
    pub(crate) fuel: Option<u64>,
    /// Core instances the component may create.
    pub(crate) max_instances: usize,
    /// Linear memories it may create.
    pub(crate) max_memories: usize,
    /// Tables it may create.
    pub(crate) max_tables: usize,
    /// Elements per table.
    pub(crate) max_table_elements: usize,
    /// WebSocket connections it may hold at once.
    pub(crate) max_connections: Option<usize>,
    /// Largest message it may send, in bytes.
    pub(crate) max_message_bytes: usize,
    /// Largest value it may attach to a connection, in bytes.
    pub(crate) max_attachment_bytes: usize,
    /// How fast each of its connections may send; `None`: no limit.
    pub(crate) message_rate: Option<MessageRate>,
    /// A folder inside the app's own it may read, seen as `/data`.
    pub(crate) data_dir: Option<PathBuf>,
    /// The `aud` its secured routes' tokens must name (default: its name).
    pub(crate) token_audience: Option<String>,
    /// The `Host` names it serves; `None`: the server's own names.
    pub(crate) hosts: HostBinding,
    /// How long it may go without an event before its instance is
    /// dropped (its connections stay); `None`: never.
    pub(crate) hibernate_after: Option<Duration>,
    /// Its key-value storage, if granted.
    pub(crate) storage: Option<StorageQuota>,
    /// Where it may send HTTP requests, if anywhere.
    pub(crate) outbound: Option<OutboundPolicy>,
}

/// The most an `<app>.toml` may ask for, resolved from the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ceilings {
    /// [`AppPolicy::memory_bytes`].
    memory_bytes: usize,
    /// [`AppPolicy::event_timeout`].
    event_timeout: Duration,
    /// [`AppPolicy::fuel`].
    fuel: u64,
    /// Instances, memories and tables, each.
    instances: usize,
    /// [`AppPolicy::max_table_elements`].
    table_elements: usize,
    /// [`AppPolicy::max_connections`].
    connections: usize,
    /// [`AppPolicy::max_message_bytes`].
    message_bytes: usize,
    /// [`MessageRate::per_second`] (the burst may be twice that).
    messages_per_second: u32,
    /// [`AppPolicy::hibernate_after`]; `None`: an app may stay resident.
    hibernate_after: Option<Duration>,
    /// [`AppPolicy::storage`]: each quota's most (and default).
    storage: StorageQuota,
    /// [`AppPolicy::outbound`]: the destinations entries must fall within.
    outbound_hosts: OutboundCeiling,
    /// [`AppPolicy::outbound`]: each limit's most (and default).
    outbound: OutboundLimits,
}

/// How many messages one connection may send: a steady rate, a burst above
/// it, and what happens to a message over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageRate {
    /// Messages per second, on average.
    pub(crate) per_second: u32,
    /// Messages that may come at once.
    pub(crate) burst: u32,
    /// Dropped, or the connection closed.
    pub(crate) over: OverRate,
}

/// Defaults for the instance and table caps (generous for components built
/// by today's toolchains, small enough to stop a runaway).
const DEFAULT_INSTANCES: usize = 100;
const DEFAULT_MEMORIES: usize = 10;
const DEFAULT_TABLES: usize = 100;
const DEFAULT_TABLE_ELEMENTS: usize = 1_000_000;

impl Ceilings {
    /// The ceilings the flags set, never below the server-wide defaults.
    pub(crate) fn from_limits(limits: &Limits, defaults: &AppPolicy) -> Self {
        let c = &limits.ceilings;
        Self {
            memory_bytes: (c.app_memory_mb_max.get() << 20).max(defaults.memory_bytes),
            event_timeout: Duration::from_millis(c.event_timeout_ms_max.get())
                .max(defaults.event_timeout),
            fuel: c.app_fuel_max.get().max(defaults.fuel.unwrap_or(0)),
            instances: c
                .app_instances_max
                .get()
                .max(DEFAULT_INSTANCES)
                .max(DEFAULT_TABLES),
            table_elements: c.app_table_elements_max.get().max(DEFAULT_TABLE_ELEMENTS),
            connections: c.app_connections_max.get(),
            message_bytes: defaults.max_message_bytes,
            messages_per_second: c
                .ws_messages_per_second_max
                .get()
                .max(defaults.message_rate.map_or(0, |r| r.per_second)),
            hibernate_after: millis(c.hibernate_after_ms_max).map(|ceiling| {
                defaults
                    .hibernate_after
                    .map_or(ceiling, |default| default.max(ceiling))
            }),
            storage: StorageQuota {
                max_keys: limits.storage_max_keys,
                max_value_bytes: limits.storage_max_value_bytes,
                max_bytes: limits.storage_max_bytes,
            },
            outbound_hosts: limits.outbound.outbound_hosts.clone(),
            outbound: limits.outbound.limits(),
        }
    }
}

/// A count of milliseconds where 0 means never.
fn millis(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl AppPolicy {
    /// The server-wide defaults.
    pub(crate) fn defaults(limits: &Limits, fuel: Option<u64>) -> Self {
        Self {
            memory_bytes: limits.app_memory_bytes(),
            event_timeout: limits.event_timeout(),
            fuel,
            max_instances: DEFAULT_INSTANCES,
            max_memories: DEFAULT_MEMORIES,
            max_tables: DEFAULT_TABLES,
            max_table_elements: DEFAULT_TABLE_ELEMENTS,
            max_connections: None,
            max_message_bytes: limits.max_message_bytes.get(),
            max_attachment_bytes: limits.max_attachment_bytes.get(),
            message_rate: (limits.ws_messages_per_second > 0).then(|| MessageRate {
                per_second: limits.ws_messages_per_second,
                burst: limits.ws_message_burst.get(),
                over: limits.ws_over_rate,
            }),
            data_dir: None,
            token_audience: None,
            hosts: None,
            hibernate_after: millis(limits.hibernate_after_ms),
            storage: None,
            outbound: None,
        }
    }

    /// The audience of the app named `app`'s tokens.
    pub(crate) fn audience(&self, app: &str) -> std::sync::Arc<str> {
        self.token_audience.as_deref().unwrap_or(app).into()
    }

    /// The policy of the app in `component` (`<dir>/<app>.wasm`): the
    /// defaults, overridden by `<dir>/<app>.toml` if there is one. Also
    /// returns the file's text, which is part of the app's version.
    pub(crate) fn for_component(
        component: &Path,
        defaults: &AppPolicy,
        ceilings: &Ceilings,
        metering: bool,
    ) -> anyhow::Result<(Self, String)> {
        let layout = AppFiles::of(component);
        let file = layout.settings();
        let text = match read_settings(&file) {
            Ok(Some(text)) => text,
            Ok(None) => return Ok((defaults.clone(), String::new())),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", file.display())),
        };
        let config: AppConfig = toml::from_str(&text).map_err(|err| {
            // One line for the log: where, and what.
            let line = err
                .span()
                .map_or(0, |span| text[..span.start].matches('\n').count() + 1);
            anyhow::anyhow!(
                "invalid {} (line {line}): {}",
                file.display(),
                err.message()
            )
        })?;
        let policy = defaults
            .apply(config, &layout, ceilings, metering)
            .with_context(|| format!("invalid {}", file.display()))?;
        Ok((policy, text))
    }

    fn apply(
        &self,
        config: AppConfig,
        layout: &AppFiles,
        ceilings: &Ceilings,
        metering: bool,
    ) -> anyhow::Result<Self> {
        let within = |name: &str, value: Option<usize>, default: usize, ceiling: usize| {
            value.map_or(Ok(default), |v| {
                checked(name, v as u64, ceiling as u64).map(|v| v as usize)
            })
        };
        let message_rate = self.message_rate_with(&config, ceilings)?;
        if config.fuel.is_some() && !metering {
            bail!("fuel needs the server started with --fuel-per-event");
        }
        if let Some(fuel) = config.fuel {
            checked("fuel", fuel, ceilings.fuel)?;
        }
        if let Some(ms) = config.event_timeout_ms {
            let ceiling = u64::try_from(ceilings.event_timeout.as_millis()).unwrap_or(u64::MAX);
            checked("event_timeout_ms", ms, ceiling)?;
        }
        let data_dir = match config.data_dir {
            None => None,
            Some(dir) => Some(layout.inside(&dir).context("data_dir")?),
        };
        if let Some(audience) = &config.token_audience {
            anyhow::ensure!(!audience.is_empty(), "token_audience must not be empty");
        }
        let hosts = match config.hosts {
            None => None,
            Some(names) => {
                anyhow::ensure!(
                    !names.is_empty(),
                    "hosts must name at least one host (leave it out to serve the server's names)"
                );
                let names = names
                    .iter()
                    .map(|name| name.parse::<HostPattern>())
                    .collect::<Result<Vec<_>, _>>()?;
                Some(names.into())
            }
        };
        Ok(Self {
            memory_bytes: within(
                "memory_mb",
                config.memory_mb,
                self.memory_bytes >> 20,
                ceilings.memory_bytes >> 20,
            )? << 20,
            event_timeout: config
                .event_timeout_ms
                .map_or(self.event_timeout, Duration::from_millis),
            fuel: config.fuel.or(self.fuel),
            max_instances: within(
                "max_instances",
                config.max_instances,
                self.max_instances,
                ceilings.instances,
            )?,
            max_memories: within(
                "max_memories",
                config.max_memories,
                self.max_memories,
                ceilings.instances,
            )?,
            max_tables: within(
                "max_tables",
                config.max_tables,
                self.max_tables,
                ceilings.instances,
            )?,
            max_table_elements: within(
                "max_table_elements",
                config.max_table_elements,
                self.max_table_elements,
                ceilings.table_elements,
            )?,
            max_connections: match config.max_connections {
                None => self.max_connections,
                some => Some(within("max_connections", some, 0, ceilings.connections)?),
            },
            max_message_bytes: within(
                "max_message_bytes",
                config.max_message_bytes,
                self.max_message_bytes,
                ceilings.message_bytes,
            )?,
            max_attachment_bytes: self.max_attachment_bytes,
            message_rate,
            data_dir,
            token_audience: config.token_audience,
            hosts,
            hibernate_after: match (config.hibernate_after_ms, ceilings.hibernate_after) {
                (None, _) => self.hibernate_after,
                (Some(0), Some(ceiling)) => bail!(
                    "hibernate_after_ms = 0 (never) is above the operator's ceiling of {} ms",
                    ceiling.as_millis()
                ),
                (Some(ms), Some(ceiling)) => {
                    let ceiling = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
                    Some(Duration::from_millis(checked(
                        "hibernate_after_ms",
                        ms,
                        ceiling,
                    )?))
                }
                (Some(ms), None) => millis(ms),
            },
            storage: grants::storage(config.storage, ceilings)?,
            outbound: grants::outbound(config.allowed_outbound_hosts, config.outbound, ceilings)?,
        })
    }
}

impl AppPolicy {
    /// The message rate `config` asks for: its keys over the defaults,
    /// within the ceiling. A burst left out follows the rate (twice it).
    fn message_rate_with(
        &self,
        config: &AppConfig,
        ceilings: &Ceilings,
    ) -> anyhow::Result<Option<MessageRate>> {
        let ceiling = u64::from(ceilings.messages_per_second);
        let per_second = match config.messages_per_second {
            Some(rate) => Some(checked("messages_per_second", rate.into(), ceiling)? as u32),
            None => self.message_rate.map(|r| r.per_second),
        };
        let Some(per_second) = per_second else {
            anyhow::ensure!(
                config.message_burst.is_none() && config.over_message_rate.is_none(),
                "message_burst and over_message_rate need messages_per_second \
                 (the server sets no message rate)"
            );
            return Ok(None);
        };
        let burst = match config.message_burst {
            Some(burst) => checked("message_burst", burst.into(), ceiling * 2)? as u32,
            None if config.messages_per_second.is_some() => per_second.saturating_mul(2),
            None => self.message_rate.map_or(per_second, |r| r.burst),
        };
        let over = config
            .over_message_rate
            .or(self.message_rate.map(|r| r.over))
            .unwrap_or(OverRate::Close);
        Ok(Some(MessageRate {
            per_second,
            burst,
            over,
        }))
    }
}

/// A value from an app's file, at least 1 and at most its ceiling.
fn checked(name: &str, value: u64, ceiling: u64) -> anyhow::Result<u64> {
    anyhow::ensure!(value >= 1, "{name} must be at least 1");
    anyhow::ensure!(
        value <= ceiling,
        "{name} = {value} is above the operator's ceiling of {ceiling}"
    );
    Ok(value)
}

/// Largest `<app>.toml` read: settings are a few lines.
const MAX_SETTINGS_BYTES: u64 = 64 * 1024;

/// The settings file's text, if there is one: a regular file (not a link
/// to elsewhere), of a sane size.
fn read_settings(file: &Path) -> anyhow::Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(file) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    anyhow::ensure!(
        meta.is_file(),
        "not a regular file (links are not followed)"
    );
    anyhow::ensure!(
        meta.len() <= MAX_SETTINGS_BYTES,
        "larger than {MAX_SETTINGS_BYTES} bytes"
    );
    Ok(Some(std::fs::read_to_string(file)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> AppPolicy {
        AppPolicy {
            memory_bytes: 64 << 20,
            event_timeout: Duration::from_secs(1),
            fuel: None,
            max_instances: 100,
            max_memories: 10,
            max_tables: 100,
            max_table_elements: 1000,
            max_connections: None,
            max_message_bytes: 1 << 20,
            max_attachment_bytes: 16 << 10,
            message_rate: Some(MessageRate {
                per_second: 100,
                burst: 300,
                over: OverRate::Close,
            }),
            data_dir: None,
            token_audience: None,
            hosts: None,
            hibernate_after: None,
            storage: None,
            outbound: None,
        }
    }

    fn ceilings() -> Ceilings {
        Ceilings {
            memory_bytes: 256 << 20,
            event_timeout: Duration::from_secs(10),
            fuel: 1_000_000,
            instances: 1000,
            table_elements: 10_000,
            connections: 100,
            message_bytes: 1 << 20,
            messages_per_second: 1000,
            hibernate_after: None,
            storage: StorageQuota {
                max_keys: 100,
                max_value_bytes: 1000,
                max_bytes: 10_000,
            },
            outbound_hosts: OutboundCeiling(
                crate::outbound::allow::parse_all(&["*://*:*", "http://127.0.0.1:*"]).unwrap(),
            ),
            outbound: OutboundLimits {
                timeout: Duration::from_secs(10),
                max_response_bytes: 1 << 20,
                concurrency: 8,
            },
        }
    }

    #[test]
    fn outbound_http_is_granted_by_its_list_within_the_operator_s() {
        assert_eq!(apply("", false).unwrap().outbound, None);
        assert_eq!(
            apply("allowed_outbound_hosts = []", false)
                .unwrap()
                .outbound,
            None
        );
        let granted = apply(
            "allowed_outbound_hosts = [\"https://api.example.com\", \"http://127.0.0.1:9000\"]\n\
             [outbound]\ntimeout_ms = 2000\nmax_concurrent = 2",
            false,
        )
        .unwrap()
        .outbound
        .unwrap();
        assert_eq!(granted.hosts.len(), 2);
        assert_eq!(
            granted.limits,
            OutboundLimits {
                timeout: Duration::from_secs(2),
                max_response_bytes: 1 << 20,
                concurrency: 2,
            }
        );
        for (text, says) in [
            (
                "allowed_outbound_hosts = [\"http://10.0.0.7\"]",
                "outside what the operator allows",
            ),
            (
                "allowed_outbound_hosts = [\"api.example.com\"]",
                "no scheme",
            ),
            ("[outbound]\ntimeout_ms = 5", "needs allowed_outbound_hosts"),
            (
                "allowed_outbound_hosts = [\"https://a.example\"]\n[outbound]\nmax_concurrent = 9",
                "outbound.max_concurrent = 9 is above",
            ),
        ] {
            let err = format!("{:#}", apply(text, false).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn storage_is_granted_by_its_table_within_the_ceilings() {
        assert_eq!(apply("", false).unwrap().storage, None);
        assert_eq!(
            apply("[storage]", false).unwrap().storage,
            Some(ceilings().storage)
        );
        let asked = apply("[storage]\nmax_keys = 10\nmax_bytes = 500", false).unwrap();
        assert_eq!(
            asked.storage,
            Some(StorageQuota {
                max_keys: 10,
                max_value_bytes: 1000,
                max_bytes: 500
            })
        );
        let err = apply("[storage]\nmax_value_bytes = 1001", false).unwrap_err();
        assert!(
            format!("{err:#}").contains("storage.max_value_bytes = 1001 is above"),
            "{err:#}"
        );
        assert!(apply("[storage]\nmax_keyz = 1", false).is_err());
    }

    fn apply(text: &str, metering: bool) -> anyhow::Result<AppPolicy> {
        let layout = AppFiles::of(Path::new("/nonexistent/app.wasm"));
        defaults().apply(toml::from_str(text)?, &layout, &ceilings(), metering)
    }

    #[test]
    fn keys_override_the_defaults() {
        let p = apply(
            "memory_mb = 8\nevent_timeout_ms = 50\nmax_connections = 3\ntoken_audience = \"x\"",
            false,
        )
        .unwrap();
        assert_eq!(p.memory_bytes, 8 << 20);
        assert_eq!(p.event_timeout, Duration::from_millis(50));
        assert_eq!(p.max_connections, Some(3));
        assert_eq!(p.max_message_bytes, 1 << 20);
        assert_eq!(&*p.audience("app"), "x");
        assert_eq!(&*defaults().audience("app"), "app");
    }

    #[test]
    fn message_rates_follow_the_file_within_the_ceiling() {
        let rate = |text: &str| apply(text, false).unwrap().message_rate.unwrap();
        assert_eq!(rate(""), defaults().message_rate.unwrap());
        // A rate of its own brings a burst of twice that, unless it says.
        let own = rate("messages_per_second = 10");
        assert_eq!(
            (own.per_second, own.burst, own.over),
            (10, 20, OverRate::Close)
        );
        let own = rate("messages_per_second = 10\nmessage_burst = 1\nover_message_rate = \"drop\"");
        assert_eq!(
            (own.per_second, own.burst, own.over),
            (10, 1, OverRate::Drop)
        );
        assert_eq!(rate("message_burst = 5").per_second, 100);
        let err = |text: &str| format!("{:#}", apply(text, false).unwrap_err());
        assert!(err("messages_per_second = 1001").contains("ceiling of 1000"));
        assert!(err("message_burst = 2001").contains("ceiling of 2000"));
        assert!(err("messages_per_second = 0").contains("at least 1"));
        assert!(err("over_message_rate = \"ignore\"").contains("unknown variant"));
        // Where the server sets no rate, the other keys need one.
        let layout = AppFiles::of(Path::new("/nonexistent/app.wasm"));
        let unlimited = AppPolicy {
            message_rate: None,
            ..defaults()
        };
        let config = toml::from_str("message_burst = 5").unwrap();
        let refused = unlimited.apply(config, &layout, &ceilings(), false);
        assert!(format!("{:#}", refused.unwrap_err()).contains("need messages_per_second"));
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let err = |text: &str, metering| format!("{:#}", apply(text, metering).unwrap_err());
        assert!(err("memory_mb = 0", false).contains("memory_mb must be at least 1"));
        assert!(err("colour = \"blue\"", false).contains("unknown field"));
        assert!(err("fuel = 10", false).contains("--fuel-per-event"));
        assert!(apply("fuel = 10", true).is_ok());
        assert!(err("data_dir = \"/etc\"", false).contains("relative path"));
        assert!(err("data_dir = \"../other\"", false).contains("relative path"));
        assert!(err("token_audience = \"\"", false).contains("empty"));
        assert!(err("hosts = []", false).contains("at least one"));
        assert!(err("hosts = [\"a b\"]", false).contains("not a host name"));
        let p = apply("hosts = [\"Chat.Example.com\", \"*.example.org\"]", false).unwrap();
        assert_eq!(p.hosts.unwrap().len(), 2);
    }

    #[test]
    fn nothing_goes_above_its_ceiling() {
        for (text, key) in [
            ("event_timeout_ms = 3600000", "event_timeout_ms"),
            ("memory_mb = 4096", "memory_mb"),
            ("max_instances = 5000", "max_instances"),
            ("max_memories = 5000", "max_memories"),
            ("max_table_elements = 100000", "max_table_elements"),
            ("max_connections = 1000", "max_connections"),
            ("max_message_bytes = 2000000", "max_message_bytes"),
            ("fuel = 2000000", "fuel"),
        ] {
            let err = format!("{:#}", apply(text, true).unwrap_err());
            assert!(
                err.contains(key) && err.contains("ceiling"),
                "{text}: {err}"
            );
        }
        assert!(apply("event_timeout_ms = 10000\nmemory_mb = 256", false).is_ok());
    }

    #[test]
    fn hibernation_follows_the_file_within_the_ceiling() {
        let after = |text: &str| apply(text, false).unwrap().hibernate_after;
        assert_eq!(after(""), None);
        assert_eq!(
            after("hibernate_after_ms = 500"),
            Some(Duration::from_millis(500))
        );
        assert_eq!(after("hibernate_after_ms = 0"), None);
        // With a ceiling, an app may hibernate sooner, never later.
        let layout = AppFiles::of(Path::new("/nonexistent/app.wasm"));
        let capped = Ceilings {
            hibernate_after: Some(Duration::from_secs(60)),
            ..ceilings()
        };
        let with = |text: &str| {
            let config = toml::from_str(text).unwrap();
            defaults().apply(config, &layout, &capped, false)
        };
        assert_eq!(
            with("hibernate_after_ms = 1000").unwrap().hibernate_after,
            Some(Duration::from_secs(1))
        );
        for text in ["hibernate_after_ms = 0", "hibernate_after_ms = 60001"] {
            let err = format!("{:#}", with(text).unwrap_err());
            assert!(
                err.contains("hibernate_after_ms") && err.contains("ceiling"),
                "{err}"
            );
        }
    }
}

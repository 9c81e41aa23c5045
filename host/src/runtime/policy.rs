//! Per-app limits and grants: the server-wide defaults, overridden by an
//! optional `<app>.toml` next to `<app>.wasm`.
//!
//! ```toml
//! # apps/chat.toml: every key is optional
//! memory_mb = 32               # linear memory cap
//! event_timeout_ms = 250       # CPU deadline per event
//! fuel = 50_000_000            # fuel per event (server must run with --fuel-per-event)
//! max_instances = 20           # core instances in the component
//! max_tables = 20              # tables
//! max_table_elements = 100_000 # elements per table
//! max_connections = 500        # WebSocket connections the app may hold
//! max_message_bytes = 65536    # largest message the app may send
//! data_dir = "data/chat"       # granted read-only as /data (relative to the apps folder)
//! ```
//!
//! The file is part of the app's version: changing it reloads the app.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::config::Limits;

/// What `<app>.toml` may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppConfig {
    memory_mb: Option<usize>,
    event_timeout_ms: Option<u64>,
    fuel: Option<u64>,
    max_instances: Option<usize>,
    max_tables: Option<usize>,
    max_table_elements: Option<usize>,
    max_connections: Option<usize>,
    max_message_bytes: Option<usize>,
    data_dir: Option<PathBuf>,
}

/// The limits and grants one app runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPolicy {
    /// Linear memory cap, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock deadline of one guest call.
    pub event_timeout: Duration,
    /// Fuel per guest call, when the engine meters fuel.
    pub fuel: Option<u64>,
    /// Core instances the component may create.
    pub max_instances: usize,
    /// Tables it may create.
    pub max_tables: usize,
    /// Elements per table.
    pub max_table_elements: usize,
    /// WebSocket connections it may hold at once.
    pub max_connections: Option<usize>,
    /// Largest message it may send, in bytes.
    pub max_message_bytes: usize,
    /// Largest value it may attach to a connection, in bytes.
    pub max_attachment_bytes: usize,
    /// A host folder it may read, seen as `/data`.
    pub data_dir: Option<PathBuf>,
}

/// Defaults for the instance and table caps (generous for components built
/// by today's toolchains, small enough to stop a runaway).
const DEFAULT_INSTANCES: usize = 100;
const DEFAULT_TABLES: usize = 100;
const DEFAULT_TABLE_ELEMENTS: usize = 1_000_000;

impl AppPolicy {
    /// The server-wide defaults.
    pub fn defaults(limits: &Limits, fuel: Option<u64>) -> Self {
        Self {
            memory_bytes: limits.app_memory_bytes(),
            event_timeout: limits.event_timeout(),
            fuel,
            max_instances: DEFAULT_INSTANCES,
            max_tables: DEFAULT_TABLES,
            max_table_elements: DEFAULT_TABLE_ELEMENTS,
            max_connections: None,
            max_message_bytes: limits.max_message_bytes.get(),
            max_attachment_bytes: limits.max_attachment_bytes.get(),
            data_dir: None,
        }
    }

    /// The policy of the app in `component` (`<dir>/<app>.wasm`): the
    /// defaults, overridden by `<dir>/<app>.toml` if there is one. Also
    /// returns the file's text, which is part of the app's version.
    pub fn for_component(
        component: &Path,
        defaults: &AppPolicy,
        metering: bool,
    ) -> anyhow::Result<(Self, String)> {
        let file = component.with_extension("toml");
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok((defaults.clone(), String::new()));
            }
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
            .apply(
                config,
                component.parent().unwrap_or(Path::new(".")),
                metering,
            )
            .with_context(|| format!("invalid {}", file.display()))?;
        Ok((policy, text))
    }

    fn apply(&self, config: AppConfig, apps_dir: &Path, metering: bool) -> anyhow::Result<Self> {
        let positive = |name: &str, value: Option<usize>, default: usize| match value {
            Some(0) => bail!("{name} must be at least 1"),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        if config.fuel.is_some() && !metering {
            bail!("fuel needs the server started with --fuel-per-event");
        }
        let data_dir = match config.data_dir {
            None => None,
            Some(dir) => {
                let dir = apps_dir.join(dir);
                anyhow::ensure!(dir.is_dir(), "data_dir {} is not a folder", dir.display());
                Some(dir)
            }
        };
        Ok(Self {
            memory_bytes: positive("memory_mb", config.memory_mb, self.memory_bytes >> 20)? << 20,
            event_timeout: match config.event_timeout_ms {
                Some(0) => bail!("event_timeout_ms must be at least 1"),
                Some(ms) => Duration::from_millis(ms),
                None => self.event_timeout,
            },
            fuel: config.fuel.or(self.fuel),
            max_instances: positive("max_instances", config.max_instances, self.max_instances)?,
            max_tables: positive("max_tables", config.max_tables, self.max_tables)?,
            max_table_elements: positive(
                "max_table_elements",
                config.max_table_elements,
                self.max_table_elements,
            )?,
            max_connections: match config.max_connections {
                Some(0) => bail!("max_connections must be at least 1"),
                other => other.or(self.max_connections),
            },
            max_message_bytes: positive(
                "max_message_bytes",
                config.max_message_bytes,
                self.max_message_bytes,
            )?,
            max_attachment_bytes: self.max_attachment_bytes,
            data_dir,
        })
    }
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
            max_tables: 100,
            max_table_elements: 1000,
            max_connections: None,
            max_message_bytes: 1 << 20,
            max_attachment_bytes: 16 << 10,
            data_dir: None,
        }
    }

    fn apply(text: &str, metering: bool) -> anyhow::Result<AppPolicy> {
        defaults().apply(toml::from_str(text)?, Path::new("/nonexistent"), metering)
    }

    #[test]
    fn keys_override_the_defaults() {
        let p = apply(
            "memory_mb = 8\nevent_timeout_ms = 50\nmax_connections = 3",
            false,
        )
        .unwrap();
        assert_eq!(p.memory_bytes, 8 << 20);
        assert_eq!(p.event_timeout, Duration::from_millis(50));
        assert_eq!(p.max_connections, Some(3));
        assert_eq!(p.max_message_bytes, 1 << 20);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let err = |text: &str, metering| format!("{:#}", apply(text, metering).unwrap_err());
        assert!(err("memory_mb = 0", false).contains("memory_mb must be at least 1"));
        assert!(err("colour = \"blue\"", false).contains("unknown field"));
        assert!(err("fuel = 10", false).contains("--fuel-per-event"));
        assert!(apply("fuel = 10", true).is_ok());
        assert!(err("data_dir = \"nope\"", false).contains("not a folder"));
    }
}

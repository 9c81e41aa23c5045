//! Key-value storage of each app's own: get, set (with a time to live),
//! delete, keys by prefix, and atomic increment, in the app's namespace
//! and within its quotas.
//!
//! An app names keys; the store prefixes them with the app's name, so no
//! key an app can write names another app's. A grant in `<app>.toml`
//! (`[storage]`) is needed, with quotas below the operator's ceilings:
//! keys, bytes per value, and bytes in all (a key's bytes and its value's).
//!
//! - [`embedded`]: one file per server under `--data-dir`, in redb, written
//!   by one thread that commits what is waiting in one transaction.
//! - [`shared`]: the same on Redis (`--store redis`), shared by a cluster.

mod embedded;
mod shared;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use embedded::Embedded;
use embedded::MAX_LISTED;
pub(crate) use shared::Shared;

/// Where apps' values are kept.
pub(crate) enum Storage {
    /// In a file of this server's.
    Embedded(Embedded),
    /// On Redis, shared by the instances that use it.
    Shared(Box<Shared>),
}

impl Storage {
    /// The live value of `app`'s `key`, if any.
    pub(crate) async fn get(&self, app: &str, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Self::Embedded(store) => store.get(app, key),
            Self::Shared(store) => store.get(app, key).await,
        }
    }

    /// `app`'s live keys from `prefix`, in order, at most `limit` (and 1,000).
    pub(crate) async fn keys(
        &self,
        app: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        match self {
            Self::Embedded(store) => store.keys(app, prefix, limit),
            Self::Shared(store) => store.keys(app, prefix, limit).await,
        }
    }

    /// Sets `app`'s `key`, for `ttl` if given, within `quota`.
    pub(crate) async fn set(
        &self,
        app: &Arc<str>,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: StorageQuota,
    ) -> Result<(), StorageError> {
        match self {
            Self::Embedded(store) => store.set(app, key, value, ttl, quota).await,
            Self::Shared(store) => store.set(app, key, value, ttl, quota).await,
        }
    }

    /// Removes `app`'s `key`; whether it had a live value.
    pub(crate) async fn delete(
        &self,
        app: &Arc<str>,
        key: &str,
        quota: StorageQuota,
    ) -> Result<bool, StorageError> {
        match self {
            Self::Embedded(store) => store.delete(app, key, quota).await,
            Self::Shared(store) => store.delete(app, key).await,
        }
    }

    /// Adds `delta` to the integer `app`'s `key` holds; the new value.
    pub(crate) async fn increment(
        &self,
        app: &Arc<str>,
        key: &str,
        delta: i64,
        quota: StorageQuota,
    ) -> Result<i64, StorageError> {
        match self {
            Self::Embedded(store) => store.increment(app, key, delta, quota).await,
            Self::Shared(store) => store.increment(app, key, delta, quota).await,
        }
    }
}

/// Longest key, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 256;

/// How much one app may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StorageQuota {
    /// Keys at most.
    pub(crate) max_keys: u64,
    /// Bytes of one value at most.
    pub(crate) max_value_bytes: usize,
    /// Bytes of all keys and values at most.
    pub(crate) max_bytes: u64,
}

/// Why a storage call was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StorageError {
    /// The app has no storage grant.
    #[error("this app has no storage (grant it with [storage] in its .toml)")]
    NotPermitted,
    /// A quota of the app's would be passed.
    #[error("{0}")]
    Quota(String),
    /// The key or the value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The store failed (the reason, for the log).
    #[error("the store failed: {0}")]
    Unavailable(String),
}

/// Refuses a key the store does not take.
pub(crate) fn check_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StorageError::Invalid(format!(
            "a key has 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// A value and when it stops being there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    /// Milliseconds since the Unix epoch after which it is gone (0: never).
    expires_at: u64,
    /// The value.
    value: Vec<u8>,
}

impl Stored {
    /// Its bytes in the store: the expiry, then the value.
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + self.value.len());
        bytes.extend_from_slice(&self.expires_at.to_le_bytes());
        bytes.extend_from_slice(&self.value);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (expiry, value) = bytes.split_at_checked(8)?;
        Some(Self {
            expires_at: u64::from_le_bytes(expiry.try_into().ok()?),
            value: value.to_vec(),
        })
    }

    fn is_live(&self, now: u64) -> bool {
        self.expires_at == 0 || self.expires_at > now
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// When a value set now with `ttl` expires (0: never).
fn expiry(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| {
        now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_value_keeps_its_expiry_and_bytes() {
        let stored = Stored {
            expires_at: 42,
            value: b"hi".to_vec(),
        };
        assert_eq!(Stored::decode(&stored.encode()), Some(stored.clone()));
        assert!(stored.is_live(41) && !stored.is_live(42));
        assert!(Stored::decode(b"short").is_none());
        assert!(check_key("").is_err() && check_key(&"k".repeat(257)).is_err());
        assert!(check_key("users:7").is_ok());
    }
}

//! Key-value storage of the app's own, kept by the host: it outlives the
//! app's instances, versions and the server's restarts. Needs a grant
//! (`[storage]` in the app's `.toml`); every refusal is an [`Error`]
//! (`NotPermitted`, `Quota`, `Invalid`, `Unavailable`) with its reason.
//!
//! ```ignore
//! storage::set_json("room:lobby:last", &messages)?;
//! let seen = storage::increment("visits", 1)?;
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::tina4::wasm::storage as host;
use crate::error::Error;

/// The value of `key`, if it has one (and it has not expired).
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    host::get(key).map_err(Error::from)
}

/// The value of `key` as JSON, if it has one.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        None => Ok(None),
    }
}

/// Sets `key` to `value`.
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    host::set(key, value, None).map_err(Error::from)
}

/// Sets `key` to `value` for `ttl`; then it is gone.
pub fn set_for(key: &str, value: &[u8], ttl: Duration) -> Result<(), Error> {
    let ms = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
    host::set(key, value, Some(ms)).map_err(Error::from)
}

/// Sets `key` to `value` as JSON.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    set(key, &serde_json::to_vec(value)?)
}

/// Removes `key`; whether it had a value.
pub fn delete(key: &str) -> Result<bool, Error> {
    host::delete(key).map_err(Error::from)
}

/// The keys that start with `prefix`, in order, at most `limit` (and 1,000).
pub fn keys(prefix: &str, limit: u32) -> Result<Vec<String>, Error> {
    host::keys(prefix, limit).map_err(Error::from)
}

/// Adds `delta` to the integer `key` holds (0 if none), atomically; the new value.
pub fn increment(key: &str, delta: i32) -> Result<i64, Error> {
    host::increment(key, delta).map_err(Error::from)
}

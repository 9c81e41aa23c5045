//! The grants an `<app>.toml` may ask for beside its limits: key-value
//! storage (`[storage]`) and outbound HTTP (`allowed_outbound_hosts` and
//! `[outbound]`). Without its table or list an app has neither; with it,
//! every quota is at most the operator's ceiling, which is also its default.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::{Ceilings, checked};
use crate::outbound::{OutboundLimits, OutboundPolicy, allow};
use crate::storage::StorageQuota;

/// The `[outbound]` table: limits on the app's HTTP requests, below the
/// ceilings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutboundConfig {
    /// [`OutboundLimits::timeout`], in milliseconds.
    timeout_ms: Option<u64>,
    /// [`OutboundLimits::max_response_bytes`].
    max_response_bytes: Option<u64>,
    /// [`OutboundLimits::concurrency`].
    max_concurrent: Option<u64>,
}

/// The `[storage]` table: the grant, and quotas below the ceilings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StorageConfig {
    /// [`StorageQuota::max_keys`].
    max_keys: Option<u64>,
    /// [`StorageQuota::max_value_bytes`].
    max_value_bytes: Option<usize>,
    /// [`StorageQuota::max_bytes`].
    max_bytes: Option<u64>,
}

/// The app's storage grant: none without a `[storage]` table, and each
/// quota it sets within the operator's.
pub(super) fn storage(
    asked: Option<StorageConfig>,
    ceilings: &Ceilings,
) -> anyhow::Result<Option<StorageQuota>> {
    let Some(asked) = asked else {
        return Ok(None);
    };
    let most = &ceilings.storage;
    Ok(Some(StorageQuota {
        max_keys: checked(
            "storage.max_keys",
            asked.max_keys.unwrap_or(most.max_keys),
            most.max_keys,
        )?,
        max_value_bytes: checked(
            "storage.max_value_bytes",
            asked.max_value_bytes.unwrap_or(most.max_value_bytes) as u64,
            most.max_value_bytes as u64,
        )? as usize,
        max_bytes: checked(
            "storage.max_bytes",
            asked.max_bytes.unwrap_or(most.max_bytes),
            most.max_bytes,
        )?,
    }))
}

/// The app's outbound HTTP grant: its entries, each within the operator's
/// `--outbound-hosts`, and its `[outbound]` limits within theirs.
pub(super) fn outbound(
    hosts: Option<Vec<String>>,
    asked: Option<OutboundConfig>,
    ceilings: &Ceilings,
) -> anyhow::Result<Option<OutboundPolicy>> {
    let Some(hosts) = hosts.filter(|hosts| !hosts.is_empty()) else {
        anyhow::ensure!(
            asked.is_none(),
            "[outbound] needs allowed_outbound_hosts (no host is allowed without it)"
        );
        return Ok(None);
    };
    let hosts = allow::parse_all(&hosts)?;
    if let Some(outside) = hosts
        .iter()
        .find(|entry| !ceilings.outbound_hosts.covers(entry))
    {
        bail!(
            "allowed_outbound_hosts: {outside} is outside what the operator allows \
             (--outbound-hosts; an internal address must be named there too)"
        );
    }
    let asked = asked.unwrap_or_default();
    let most = ceilings.outbound;
    let timeout_ms = u64::try_from(most.timeout.as_millis()).unwrap_or(u64::MAX);
    Ok(Some(OutboundPolicy {
        hosts,
        limits: OutboundLimits {
            timeout: Duration::from_millis(checked(
                "outbound.timeout_ms",
                asked.timeout_ms.unwrap_or(timeout_ms),
                timeout_ms,
            )?),
            max_response_bytes: checked(
                "outbound.max_response_bytes",
                asked.max_response_bytes.unwrap_or(most.max_response_bytes),
                most.max_response_bytes,
            )?,
            concurrency: checked(
                "outbound.max_concurrent",
                asked.max_concurrent.unwrap_or(most.concurrency as u64),
                most.concurrency as u64,
            )? as usize,
        },
    }))
}

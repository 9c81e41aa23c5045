//! Metrics: the names the host records (Prometheus, through the `metrics`
//! facade) and the recorder that renders them for the admin listener.
//!
//! Labels are bounded: apps, route patterns (never concrete paths), event
//! kinds and close codes.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Open WebSocket connections, by app and route pattern (gauge).
pub const WS_CONNECTIONS: &str = "tina4_ws_connections";
/// WebSocket connections opened, by app (counter).
pub const WS_OPENED: &str = "tina4_ws_connections_opened_total";
/// WebSocket connections closed, by app and close code (counter).
pub const WS_CLOSED: &str = "tina4_ws_connections_closed_total";
/// Messages received from clients, by app (counter).
pub const MESSAGES_IN: &str = "tina4_ws_messages_in_total";
/// Bytes received from clients, by app (counter).
pub const BYTES_IN: &str = "tina4_ws_bytes_in_total";
/// Messages queued for clients (one per recipient), by app (counter).
pub const MESSAGES_OUT: &str = "tina4_ws_messages_out_total";
/// Bytes queued for clients (per recipient), by app (counter).
pub const BYTES_OUT: &str = "tina4_ws_bytes_out_total";
/// Recipients of one broadcast or push, by app (histogram).
pub const FANOUT: &str = "tina4_ws_broadcast_fanout";
/// Connections closed because their outbox was full, by app (counter).
pub const OUTBOX_OVERFLOWS: &str = "tina4_ws_outbox_overflows_total";
/// Time in a guest call, by app and event (http, open, message, close) (histogram).
pub const HANDLER_SECONDS: &str = "tina4_handler_seconds";
/// Guest calls that failed, by app and reason (trap, interrupt, fuel, other) (counter).
pub const GUEST_FAILURES: &str = "tina4_guest_failures_total";
/// Instances created after a failure, by app (counter).
pub const REINSTANTIATIONS: &str = "tina4_app_reinstantiations_total";
/// Versions swapped in, by app (counter).
pub const SWAPS: &str = "tina4_app_swaps_total";
/// Time to prepare a new version (compile or load, instantiate), by app (histogram).
pub const SWAP_SECONDS: &str = "tina4_app_swap_seconds";
/// HTTP requests answered by apps, by app and status class (counter).
pub const HTTP_REQUESTS: &str = "tina4_http_requests_total";
/// Messages published to the backplane (counter).
pub const BACKPLANE_PUBLISHED: &str = "tina4_backplane_published_total";
/// Messages received from the backplane, own echoes included (counter).
pub const BACKPLANE_RECEIVED: &str = "tina4_backplane_received_total";
/// Messages that could not be published, by reason (counter).
pub const BACKPLANE_DROPPED: &str = "tina4_backplane_dropped_total";
/// 1 while the backplane is connected to Redis (gauge).
pub const BACKPLANE_CONNECTED: &str = "tina4_backplane_connected";
/// Times the backplane lost its Redis connection (counter).
pub const BACKPLANE_DISCONNECTS: &str = "tina4_backplane_disconnects_total";

/// Records `recipients` messages of `len` bytes queued for `app`'s clients.
pub fn count_out(app: &str, recipients: u32, len: usize) {
    metrics::counter!(MESSAGES_OUT, "app" => app.to_string()).increment(recipients.into());
    metrics::counter!(BYTES_OUT, "app" => app.to_string())
        .increment(u64::from(recipients) * len as u64);
}

/// Installs the process-wide recorder; the handle renders the metrics.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let seconds = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5,
    ];
    let fanout = [
        1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &seconds)?
        .set_buckets_for_metric(Matcher::Full(FANOUT.to_string()), &fanout)?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))
}

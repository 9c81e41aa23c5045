//! Metrics: the names the host records (Prometheus, through the `metrics`
//! facade) and the recorder that renders them for the admin listener.
//!
//! Labels are bounded: apps, route patterns (never concrete paths), event
//! kinds and close codes.

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Open WebSocket connections, by app and route pattern (gauge).
pub(crate) const WS_CONNECTIONS: &str = "tina4_ws_connections";
/// WebSocket connections opened, by app (counter).
pub(crate) const WS_OPENED: &str = "tina4_ws_connections_opened_total";
/// WebSocket connections closed, by app and close code (counter).
pub(crate) const WS_CLOSED: &str = "tina4_ws_connections_closed_total";
/// Messages received from clients, by app (counter).
pub(crate) const MESSAGES_IN: &str = "tina4_ws_messages_in_total";
/// Bytes received from clients, by app (counter).
pub(crate) const BYTES_IN: &str = "tina4_ws_bytes_in_total";
/// Messages queued for clients (one per recipient), by app (counter).
pub(crate) const MESSAGES_OUT: &str = "tina4_ws_messages_out_total";
/// Bytes queued for clients (per recipient), by app (counter).
pub(crate) const BYTES_OUT: &str = "tina4_ws_bytes_out_total";
/// Recipients of one broadcast or push, by app (histogram).
pub(crate) const FANOUT: &str = "tina4_ws_broadcast_fanout";
/// Connections closed because their outbox was full, by app (counter).
pub(crate) const OUTBOX_OVERFLOWS: &str = "tina4_ws_outbox_overflows_total";
/// Time in a guest call, by app and event (http, open, message, close) (histogram).
pub(crate) const HANDLER_SECONDS: &str = "tina4_handler_seconds";
/// Guest calls that failed, by app and reason (trap, interrupt, fuel, other) (counter).
pub(crate) const GUEST_FAILURES: &str = "tina4_guest_failures_total";
/// Instances created after a failure, by app (counter).
pub(crate) const REINSTANTIATIONS: &str = "tina4_app_reinstantiations_total";
/// Versions swapped in, by app (counter).
pub(crate) const SWAPS: &str = "tina4_app_swaps_total";
/// Time to prepare a new version (compile or load, instantiate), by app (histogram).
pub(crate) const SWAP_SECONDS: &str = "tina4_app_swap_seconds";
/// Bytes of linear memory and tables an app's instance holds, after its
/// last event: guest memory, told apart from the host's (gauge).
pub(crate) const APP_MEMORY: &str = "tina4_app_memory_bytes";
/// Instances dropped for want of events, by app (counter).
pub(crate) const HIBERNATIONS: &str = "tina4_app_hibernations_total";
/// Time to instantiate an app woken from hibernation, by app (histogram).
pub(crate) const WAKE_SECONDS: &str = "tina4_app_wake_seconds";
/// Events sent to an app, by app and by how they ran: `at_once` on the
/// task that read them (the app was idle), or `queued` in its mailbox
/// behind others (counter).
pub(crate) const APP_EVENTS: &str = "tina4_app_events_total";
/// HTTP requests answered by apps, by app and status class (counter).
pub(crate) const HTTP_REQUESTS: &str = "tina4_http_requests_total";
/// Messages published to the backplane (counter).
pub(crate) const BACKPLANE_PUBLISHED: &str = "tina4_backplane_published_total";
/// Messages received from the backplane, own echoes included (counter).
pub(crate) const BACKPLANE_RECEIVED: &str = "tina4_backplane_received_total";
/// Messages that could not be published, by reason (counter).
pub(crate) const BACKPLANE_DROPPED: &str = "tina4_backplane_dropped_total";
/// HTTP requests dropped from an app's mailbox because their caller had
/// given up before the app got to them (counter).
pub(crate) const HTTP_ABANDONED: &str = "tina4_http_abandoned_total";
/// Presence changes an app did not hear of because too many were already
/// on their way to it (counter).
pub(crate) const PRESENCE_DROPPED: &str = "tina4_presence_dropped_total";

/// WebSocket messages over their connection's rate, by app (counter);
/// dropped or ending the connection, as the app's policy says.
pub(crate) const RATE_LIMITED: &str = "tina4_ws_rate_limited_total";

/// Reconnecting clients sent what they missed, by app and whether that was
/// all of it (counter).
pub(crate) const RECOVERIES: &str = "tina4_recoveries_total";

/// Messages replayed to reconnecting clients, by app (counter).
pub(crate) const RECOVERED_MESSAGES: &str = "tina4_recovered_messages_total";

/// Connections and requests refused before any app was involved, by
/// reason (counter).
pub(crate) const REFUSED: &str = "tina4_refused_total";

/// Counts one refusal.
pub(crate) fn refused(reason: &'static str) {
    metrics::counter!(REFUSED, "reason" => reason).increment(1);
}

/// Apps' outbound HTTP requests, by app and outcome: `ok`, `denied`,
/// `prohibited`, `busy`, `timeout`, `too-large`, `invalid-url` or
/// `failed` (counter).
pub(crate) const OUTBOUND_REQUESTS: &str = "tina4_outbound_requests_total";

/// Counts one outbound request of `app`.
pub(crate) fn outbound_request(app: &str, outcome: &'static str) {
    metrics::counter!(OUTBOUND_REQUESTS, "app" => app.to_string(), "outcome" => outcome)
        .increment(1);
}

/// Messages received from the backplane and not acted on, by reason: no
/// seal, a bad seal, or malformed (counter).
pub(crate) const BACKPLANE_REFUSED: &str = "tina4_backplane_refused_total";
/// 1 while the backplane is connected to Redis (gauge).
pub(crate) const BACKPLANE_CONNECTED: &str = "tina4_backplane_connected";
/// Times the backplane lost its Redis connection (counter).
pub(crate) const BACKPLANE_DISCONNECTS: &str = "tina4_backplane_disconnects_total";

/// One app's metrics on the hot paths (every message, every request),
/// looked up once: recording is then an atomic add, with no label strings
/// built and no registry lookup per event.
#[derive(Debug)]
pub(crate) struct AppMetrics {
    /// The app's name, for the few labels made per connection (route, close
    /// code).
    app: String,
    /// [`WS_OPENED`].
    opened: Counter,
    /// [`MESSAGES_IN`].
    messages_in: Counter,
    /// [`BYTES_IN`].
    bytes_in: Counter,
    /// [`RATE_LIMITED`].
    rate_limited: Counter,
    /// [`OUTBOX_OVERFLOWS`].
    outbox_overflows: Counter,
    /// [`RECOVERIES`]: incomplete, complete.
    recoveries: [Counter; 2],
    /// [`RECOVERED_MESSAGES`].
    recovered_messages: Counter,
    /// [`HTTP_ABANDONED`].
    http_abandoned: Counter,
    /// [`PRESENCE_DROPPED`].
    presence_dropped: Counter,
    /// [`GUEST_FAILURES`] by reason: trap, interrupt, fuel, other.
    guest_failures: [Counter; 4],
    /// [`REINSTANTIATIONS`].
    reinstantiations: Counter,
    /// [`SWAPS`].
    swaps: Counter,
    /// [`SWAP_SECONDS`].
    swap_seconds: Histogram,
    /// [`MESSAGES_OUT`].
    messages_out: Counter,
    /// [`BYTES_OUT`].
    bytes_out: Counter,
    /// [`FANOUT`].
    fanout: Histogram,
    /// [`HANDLER_SECONDS`] by event: http, open, message, close.
    handler_seconds: [Histogram; 4],
    /// [`HTTP_REQUESTS`] by status class, 1xx to 5xx.
    http_requests: [Counter; 5],
    /// [`APP_MEMORY`].
    memory: metrics::Gauge,
    /// [`HIBERNATIONS`].
    hibernations: Counter,
    /// [`WAKE_SECONDS`].
    wake_seconds: Histogram,
    /// [`APP_EVENTS`]: run at once, queued.
    events: [Counter; 2],
}

/// Why a guest call failed, for [`AppMetrics::guest_failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GuestFailure {
    Trap = 0,
    Interrupt = 1,
    Fuel = 2,
    Other = 3,
}

/// A guest call, for [`AppMetrics::handler_time`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum HandlerEvent {
    Http = 0,
    Open = 1,
    Message = 2,
    Close = 3,
}

impl AppMetrics {
    /// The handles for `app`.
    pub(crate) fn new(app: &str) -> Self {
        let app = app.to_string();
        let handler = |event: &'static str| metrics::histogram!(HANDLER_SECONDS, "app" => app.clone(), "event" => event);
        let http = |class: &'static str| metrics::counter!(HTTP_REQUESTS, "app" => app.clone(), "status" => class);
        let failure = |reason: &'static str| metrics::counter!(GUEST_FAILURES, "app" => app.clone(), "reason" => reason);
        Self {
            opened: metrics::counter!(WS_OPENED, "app" => app.clone()),
            messages_in: metrics::counter!(MESSAGES_IN, "app" => app.clone()),
            bytes_in: metrics::counter!(BYTES_IN, "app" => app.clone()),
            rate_limited: metrics::counter!(RATE_LIMITED, "app" => app.clone()),
            outbox_overflows: metrics::counter!(OUTBOX_OVERFLOWS, "app" => app.clone()),
            recoveries: [
                metrics::counter!(RECOVERIES, "app" => app.clone(), "complete" => "false"),
                metrics::counter!(RECOVERIES, "app" => app.clone(), "complete" => "true"),
            ],
            recovered_messages: metrics::counter!(RECOVERED_MESSAGES, "app" => app.clone()),
            http_abandoned: metrics::counter!(HTTP_ABANDONED, "app" => app.clone()),
            presence_dropped: metrics::counter!(PRESENCE_DROPPED, "app" => app.clone()),
            guest_failures: [
                failure("trap"),
                failure("interrupt"),
                failure("fuel"),
                failure("other"),
            ],
            reinstantiations: metrics::counter!(REINSTANTIATIONS, "app" => app.clone()),
            swaps: metrics::counter!(SWAPS, "app" => app.clone()),
            swap_seconds: metrics::histogram!(SWAP_SECONDS, "app" => app.clone()),
            messages_out: metrics::counter!(MESSAGES_OUT, "app" => app.clone()),
            bytes_out: metrics::counter!(BYTES_OUT, "app" => app.clone()),
            memory: metrics::gauge!(APP_MEMORY, "app" => app.clone()),
            hibernations: metrics::counter!(HIBERNATIONS, "app" => app.clone()),
            wake_seconds: metrics::histogram!(WAKE_SECONDS, "app" => app.clone()),
            fanout: metrics::histogram!(FANOUT, "app" => app.clone()),
            events: [
                metrics::counter!(APP_EVENTS, "app" => app.clone(), "ran" => "at_once"),
                metrics::counter!(APP_EVENTS, "app" => app.clone(), "ran" => "queued"),
            ],
            handler_seconds: [
                handler("http"),
                handler("open"),
                handler("message"),
                handler("close"),
            ],
            http_requests: [
                http("1xx"),
                http("2xx"),
                http("3xx"),
                http("4xx"),
                http("5xx"),
            ],
            app,
        }
    }

    /// A WebSocket connection opened on the route of shape `route`: the
    /// gauge of that route's open connections, already counting it.
    pub(crate) fn connection_opened(&self, route: &str) -> metrics::Gauge {
        self.opened.increment(1);
        let open = metrics::gauge!(WS_CONNECTIONS, "app" => self.app.clone(), "route" => route.to_string());
        open.increment(1.0);
        open
    }

    /// A WebSocket connection closed with `code` (`open` is its route's gauge).
    pub(crate) fn connection_closed(&self, open: &metrics::Gauge, code: u16) {
        open.decrement(1.0);
        metrics::counter!(WS_CLOSED, "app" => self.app.clone(), "code" => code.to_string())
            .increment(1);
    }

    /// A client's message of `len` bytes arrived.
    pub(crate) fn received(&self, len: usize) {
        self.messages_in.increment(1);
        self.bytes_in.increment(len as u64);
    }

    /// A client's message was over its connection's rate.
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.increment(1);
    }

    /// A connection was closed because its outbox was full.
    pub(crate) fn outbox_overflow(&self) {
        self.outbox_overflows.increment(1);
    }

    /// A reconnecting client was sent `messages` it missed; `complete`
    /// if that was all.
    pub(crate) fn recovered(&self, complete: bool, messages: usize) {
        self.recoveries[usize::from(complete)].increment(1);
        self.recovered_messages.increment(messages as u64);
    }

    /// An HTTP request left the mailbox unanswered: its caller gave up.
    pub(crate) fn http_abandoned(&self) {
        self.http_abandoned.increment(1);
    }

    /// A presence change was not given to the app: too many were pending.
    pub(crate) fn presence_dropped(&self) {
        self.presence_dropped.increment(1);
    }

    /// A guest call failed; its instance is replaced.
    pub(crate) fn guest_failed(&self, why: GuestFailure) {
        self.guest_failures[why as usize].increment(1);
        self.reinstantiations.increment(1);
    }

    /// A new version took `prepared` to compile and instantiate, and serves.
    pub(crate) fn swapped(&self, prepared: std::time::Duration) {
        self.swaps.increment(1);
        self.swap_seconds.record(prepared);
    }

    /// Records `recipients` messages of `len` bytes queued.
    pub(crate) fn count_out(&self, recipients: u32, len: usize) {
        self.messages_out.increment(recipients.into());
        self.bytes_out.increment(u64::from(recipients) * len as u64);
    }

    /// Records the recipients of one broadcast or push.
    pub(crate) fn fanout(&self, recipients: u32) {
        self.fanout.record(recipients);
    }

    /// Records how long a guest call took.
    pub(crate) fn handler_time(&self, event: HandlerEvent, elapsed: std::time::Duration) {
        self.handler_seconds[event as usize].record(elapsed);
    }

    /// Records the memory the app's instance holds.
    pub(crate) fn memory(&self, bytes: usize) {
        self.memory.set(bytes as f64);
    }

    /// The app's instance was dropped for want of events.
    pub(crate) fn hibernated(&self) {
        self.hibernations.increment(1);
    }

    /// The app woke from hibernation: a new instance took `elapsed`.
    pub(crate) fn woke(&self, elapsed: std::time::Duration) {
        self.wake_seconds.record(elapsed);
    }

    /// An event was sent to the app: run at once, or `queued`.
    pub(crate) fn event_sent(&self, queued: bool) {
        self.events[usize::from(queued)].increment(1);
    }

    /// Records an HTTP answer.
    pub(crate) fn http_request(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_requests[class].increment(1);
    }
}

/// Records `recipients` messages of `len` bytes queued for `app`'s clients,
/// off the hot paths (deliveries from other instances).
pub(crate) fn count_out(app: &str, recipients: u32, len: usize) {
    metrics::counter!(MESSAGES_OUT, "app" => app.to_string()).increment(recipients.into());
    metrics::counter!(BYTES_OUT, "app" => app.to_string())
        .increment(u64::from(recipients) * len as u64);
}

/// Installs the process-wide recorder; the handle renders the metrics.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let seconds = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5,
    ];
    let fanout = [
        1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &seconds)?
        .set_buckets_for_metric(Matcher::Full(FANOUT.to_string()), &fanout)?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("cannot install the metrics recorder: {e}"))?;
    // Histogram samples wait in a queue until they are folded into their
    // buckets; without a scrape, only upkeep folds them. Unscraped, the
    // queue would grow with every event.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

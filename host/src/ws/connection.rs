//! One WebSocket connection's task: reads the client's frames into app
//! events, and writes what the registry queued on its outbox.
//!
//! Lifecycle: register (so `count` includes it) → `open` event → frames in
//! both directions → leave the path group (so `count` excludes it) → `close`
//! event → forgotten (its attachment with it). Every connection that saw
//! `open` gets exactly one `close`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::registry::{ConnectionHandle, Outgoing};
use crate::backplane::Backplane;
use crate::runtime::RouteTarget;
use crate::runtime::bindings::{CloseInfo, Connection, WsEvent};
use crate::telemetry;

/// How long to wait for the peer's reply to our close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Outgoing frames written before one flush, so a burst costs one syscall.
const WRITE_BATCH: usize = 64;

/// Close code when the peer vanished without a close frame (RFC 6455 §7.1.5).
const ABNORMAL: u16 = 1006;
/// Close code when the peer sent a close frame without a code.
const NO_STATUS: u16 = 1005;
/// Close code for a connection that may no longer stay (RFC 6455 §7.4.1).
const POLICY_VIOLATION: u16 = 1008;

/// Everything the connection task needs.
pub struct ConnectionTask {
    /// The registry entry (id, path, outbox sender, eviction signal).
    pub handle: Arc<ConnectionHandle>,
    /// The outbox the registry fills.
    pub outbox: mpsc::Receiver<Outgoing>,
    /// The connection as the app sees it, passed with every event.
    pub info: Arc<Connection>,
    /// The app and route that serve it.
    pub target: RouteTarget,
    /// Where it is registered.
    pub backplane: Arc<Backplane>,
    /// How often to ping; a peer silent for two intervals is dead.
    pub ping_interval: Duration,
    /// Close a connection whose client sends no message for this long.
    pub idle_timeout: Option<Duration>,
    /// On a secured route: when the client's token expires, and with it
    /// the connection (1008).
    pub token_expires: Option<Instant>,
}

/// How the connection ended.
struct Ending {
    /// The close code reported to the app.
    code: u16,
    /// The close reason reported to the app.
    reason: String,
    /// A close frame we still owe the peer (we have not sent one yet).
    send_close: bool,
}

impl Ending {
    fn peer(code: u16, reason: String) -> Self {
        Self {
            code,
            reason,
            send_close: false,
        }
    }

    fn ours(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            send_close: true,
        }
    }
}

impl ConnectionTask {
    /// Runs the connection until it closes.
    pub async fn run<S>(self, ws: WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Self {
            handle,
            mut outbox,
            info,
            target,
            backplane,
            ping_interval,
            idle_timeout,
            token_expires,
        } = self;
        let app = target.app.name.to_string();
        let open = metrics::gauge!(telemetry::WS_CONNECTIONS, "app" => app.clone(), "route" => target.key.shape.clone());
        open.increment(1.0);
        metrics::counter!(telemetry::WS_OPENED, "app" => app.clone()).increment(1);
        let messages_in = metrics::counter!(telemetry::MESSAGES_IN, "app" => app.clone());
        let bytes_in = metrics::counter!(telemetry::BYTES_IN, "app" => app.clone());
        // With a backplane, `open` runs once this instance hears the
        // cluster's broadcasts to this path.
        backplane.listening(&handle.room).await;
        let registry = backplane.registry();
        target.dispatch(&info, WsEvent::Open).await;

        let (mut sink, mut stream) = ws.split();
        // One timer per connection: pings, dead-peer and idle checks.
        let period = idle_timeout.map_or(ping_interval, |idle| idle.min(ping_interval));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last_heard, mut last_message) = (Instant::now(), Instant::now());
        let mut last_ping = Instant::now();
        let expired = async {
            match token_expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let ending = loop {
            tokio::select! {
                (code, reason) = handle.evicted() => break Ending::ours(code, reason),
                () = &mut expired => break Ending::ours(POLICY_VIOLATION, "token expired"),
                now = ticks.tick() => {
                    if idle_timeout.is_some_and(|idle| now - last_message >= idle) {
                        break Ending::ours(1001, "idle timeout");
                    }
                    if now - last_heard >= ping_interval * 2 {
                        // Nobody there to close with: drop it.
                        tracing::debug!(connection = %handle.id, "peer stopped answering pings");
                        break Ending::peer(ABNORMAL, "no answer to pings".to_string());
                    }
                    if now - last_ping >= ping_interval {
                        last_ping = now;
                        if sink.send(Message::Ping(Default::default())).await.is_err() {
                            break Ending::peer(ABNORMAL, String::new());
                        }
                    }
                }
                item = outbox.recv() => {
                    let Some(item) = item else { break Ending::ours(1011, "host error") };
                    match write_burst(&mut sink, &mut outbox, item).await {
                        Ok(None) => {}
                        Ok(Some(ending)) => break ending,
                        Err(_) => break Ending::peer(ABNORMAL, String::new()),
                    }
                }
                frame = stream.next() => {
                    last_heard = Instant::now();
                    if matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_)))) {
                        last_message = last_heard;
                    }
                    match frame {
                    Some(Ok(Message::Text(text))) => {
                        messages_in.increment(1);
                        bytes_in.increment(text.len() as u64);
                        target.dispatch(&info, WsEvent::Text(text.as_str().to_owned())).await;
                    }
                    Some(Ok(Message::Binary(data))) => {
                        messages_in.increment(1);
                        bytes_in.increment(data.len() as u64);
                        target.dispatch(&info, WsEvent::Binary(data.to_vec())).await;
                    }
                    // tungstenite answers pings itself; pongs need nothing.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map_or((NO_STATUS, String::new()), |f| (f.code.into(), f.reason.as_str().to_owned()));
                        break Ending::peer(code, reason);
                    }
                    Some(Err(err)) => break ending_for_error(&err),
                    None => break Ending::peer(ABNORMAL, String::new()),
                    }
                }
            }
        };

        // Out of the group first, so the app's `close` handler sees the new
        // count; the app forgets the connection once it has handled `close`.
        registry.leave(&handle.id);
        open.decrement(1.0);
        metrics::counter!(telemetry::WS_CLOSED, "app" => app, "code" => ending.code.to_string())
            .increment(1);
        let close_event = WsEvent::Close(CloseInfo {
            code: ending.code,
            reason: ending.reason.clone(),
        });
        if !target.dispatch(&info, close_event).await {
            registry.forget(&handle.id);
        }
        finish_close(sink, stream, &ending).await;
    }
}

/// Writes `first` and whatever else is already queued, then flushes once.
/// Returns the ending if a close request was among them.
async fn write_burst<S>(
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    outbox: &mut mpsc::Receiver<Outgoing>,
    first: Outgoing,
) -> Result<Option<Ending>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = Some(first);
    let mut written = 0;
    while let Some(item) = next.take() {
        match item {
            // Cloning the message shares its payload.
            Outgoing::Frame(frame) => sink.feed(Message::clone(&frame)).await?,
            Outgoing::Close(close) => {
                let (code, reason) = *close;
                sink.flush().await?;
                return Ok(Some(Ending::ours(code, reason)));
            }
        }
        written += 1;
        if written < WRITE_BATCH {
            next = outbox.try_recv().ok();
        }
    }
    sink.flush().await?;
    Ok(None)
}

/// Maps a read error to the close code RFC 6455 prescribes for it.
fn ending_for_error(err: &WsError) -> Ending {
    match err {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Ending::ours(1009, "message too big")
        }
        WsError::Capacity(_) => Ending::ours(1009, "frame too big"),
        WsError::Utf8(_) => Ending::ours(1007, "invalid UTF-8 in text message"),
        WsError::Protocol(ProtocolError::InvalidCloseSequence) => {
            Ending::ours(1002, "invalid close sequence")
        }
        WsError::Protocol(_) => Ending::ours(1002, "protocol error"),
        _ => Ending::peer(ABNORMAL, String::new()),
    }
}

/// Sends our close frame if we owe one and waits (bounded) for the peer's
/// reply, so the peer sees a clean close handshake.
async fn finish_close<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    ending: &Ending,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        if ending.send_close {
            let frame = CloseFrame {
                code: CloseCode::from(ending.code),
                reason: truncate_reason(&ending.reason).into(),
            };
            if sink.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
        }
        // Reading on lets tungstenite flush its reply to a peer's close and
        // receive the peer's reply to ours; it ends when the peer is done.
        while let Some(Ok(_)) = stream.next().await {}
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, handshake).await;
}

/// A close reason must fit a control frame: at most 123 bytes of UTF-8.
pub fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_char_boundaries() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123);
        assert_eq!(cut.len() % 2, 0);
        assert_eq!(truncate_reason("bye"), "bye");
    }
}

//! One WebSocket connection's task: reads the client's frames into app
//! events for its app, and writes what the registry queued on its outbox,
//! also while an event waits for the app or runs on this task.
//!
//! Lifecycle: register (so `count` includes it) → `open` event → frames in
//! both directions → leave the path group (so `count` excludes it) → `close`
//! event → forgotten (its attachment with it). Every connection that saw
//! `open` gets exactly one `close`.
//!
//! The task never waits on the peer without a bound: every write (a burst
//! of frames, a ping, the close frame) must be taken within the write
//! timeout, and an eviction ends a write that is stuck, so a client that
//! stops reading is dropped and its slot freed. How it ends (the close
//! code, the close handshake) is [`ending`](super::ending)'s.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::ending::{Ending, ending_for_error, finish_close};
use super::rate::TokenBucket;
use crate::config::OverRate;
use crate::delivery::Delivery;
use crate::delivery::close;
use crate::delivery::{ConnectionHandle, Membership, Outgoing};
use crate::runtime::RouteTarget;
use crate::runtime::bindings::{CloseInfo, Connection, WsEvent};

/// Outgoing frames written before one flush, so a burst costs one syscall.
const WRITE_BATCH: usize = 64;

/// Everything the connection task needs.
pub(crate) struct ConnectionTask {
    /// Its place in delivery (id, path, outbox sender, eviction signal);
    /// dropped with the task, it forgets the connection.
    pub(crate) member: Arc<Membership>,
    /// The outbox the registry fills.
    pub(crate) outbox: mpsc::Receiver<Outgoing>,
    /// The connection as the app sees it, passed with every event.
    pub(crate) info: Arc<Connection>,
    /// The app and route that serve it.
    pub(crate) target: RouteTarget,
    /// Where it is registered, here and across instances.
    pub(crate) delivery: Arc<Delivery>,
    /// How often to ping; a peer silent for two intervals is dead.
    pub(crate) ping_interval: Duration,
    /// How long the peer has to take a write.
    pub(crate) write_timeout: Duration,
    /// Close a connection whose client sends no message for this long.
    pub(crate) idle_timeout: Option<Duration>,
    /// On a secured route: when the client's token expires, and with it
    /// the connection (1008).
    pub(crate) token_expires: Option<Instant>,
    /// The client speaks `tina4.v1`: each message goes with the line that
    /// says what it is ([`frame_for`]).
    pub(crate) framed: bool,
}

impl ConnectionTask {
    /// Runs the connection until it closes.
    pub(crate) async fn run<S>(self, ws: WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Self {
            member,
            mut outbox,
            info,
            target,
            delivery,
            ping_interval,
            write_timeout,
            idle_timeout,
            token_expires,
            framed,
        } = self;
        let metrics = target.app.metrics.clone();
        let open = metrics.connection_opened(&target.key.shape);
        // With a backplane, `open` runs once this instance hears the
        // cluster's broadcasts to this path.
        let handle = member.handle().clone();
        delivery.listening(&handle.room).await;
        // This connection's places in its app's mailbox.
        let quota = crate::runtime::actor::mailbox_quota();
        let (mut sink, mut stream) = ws.split();
        // One timer per connection: pings, dead-peer and idle checks.
        let period = idle_timeout.map_or(ping_interval, |idle| idle.min(ping_interval));
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut last_heard, mut last_message) = (Instant::now(), Instant::now());
        let mut last_ping = Instant::now();
        // Over the rate with the `wait` policy: the message waiting for
        // its token, and when it is due. Nothing is read meanwhile.
        let (mut held, mut resume): (Option<WsEvent>, Instant) = (None, Instant::now());
        let mut bucket = TokenBucket::new(
            target.app.message_rate().map_or(0, |rate| rate.burst),
            last_heard.into_std(),
        );
        let expired = async {
            match token_expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        // One wait for an eviction for the connection's whole life, shared
        // by the loop and the waits in it, rather than one per iteration.
        let evicted = handle.evicted();
        tokio::pin!(evicted);
        let opened = {
            let open_event = target.dispatch(&member, &info, WsEvent::Open, &quota);
            tokio::pin!(open_event);
            let opened = dispatch_while_writing(
                open_event.as_mut(),
                framed,
                &handle,
                &mut sink,
                &mut outbox,
                evicted.as_mut(),
                write_timeout,
            )
            .await;
            match opened {
                // The app sees `open` before `close`, even for a
                // connection ended while its `open` waited.
                Err(cut) if !cut.ran => {
                    open_event.await;
                    Err(cut.ending)
                }
                Err(cut) => Err(cut.ending),
                Ok(()) => Ok(()),
            }
        };
        let ending = if let Err(ending) = opened {
            ending
        } else {
            loop {
                tokio::select! {
                    (code, reason) = &mut evicted => break Ending::ours(code, reason),
                    () = &mut expired => break Ending::ours(close::POLICY_VIOLATION, "token expired"),
                    now = ticks.tick() => {
                        if idle_timeout.is_some_and(|idle| now - last_message >= idle) {
                            break Ending::ours(close::GOING_AWAY, "idle timeout");
                        }
                        if now - last_heard >= ping_interval * 2 {
                            // Nobody there to close with: drop it.
                            tracing::debug!(connection = %handle.id, "peer stopped answering pings");
                            break Ending::peer(close::ABNORMAL, "no answer to pings".to_string());
                        }
                        if now - last_ping >= ping_interval {
                            last_ping = now;
                            let ping = sink.send(Message::Ping(Default::default()));
                            match bounded(&handle, evicted.as_mut(), write_timeout, ping).await {
                                Ok(Ok(())) => {}
                                Ok(Err(_)) => break Ending::peer(close::ABNORMAL, String::new()),
                                Err(ending) => break ending,
                            }
                        }
                    }
                    item = outbox.recv() => {
                        let Some(item) = item else { break Ending::ours(close::INTERNAL_ERROR, "host error") };
                        let burst = write_burst(&handle, framed, &mut sink, &mut outbox, item);
                        if let Some(ending) = written(bounded(&handle, evicted.as_mut(), write_timeout, burst).await) {
                            break ending;
                        }
                    }
                    // A message held back by the `wait` policy, once its token
                    // is due; reading resumes after it.
                    () = tokio::time::sleep_until(resume), if held.is_some() => {
                        let now = Instant::now();
                        if let Some(rate) = target.app.message_rate()
                            && !bucket.take(&rate, now.into_std())
                        {
                            resume = now + bucket.until_next(&rate, now.into_std());
                            continue;
                        }
                        let Some(event) = held.take() else { continue };
                        let event = target.dispatch(&member, &info, event, &quota);
                        if let Err(cut) = dispatch_while_writing(event, framed, &handle, &mut sink, &mut outbox, evicted.as_mut(), write_timeout).await {
                            break cut.ending;
                        }
                    }
                    frame = stream.next(), if held.is_none() => {
                        last_heard = Instant::now();
                        if matches!(frame, Some(Ok(Message::Text(_) | Message::Binary(_)))) {
                            last_message = last_heard;
                        }
                        let (event, len) = match frame {
                            Some(Ok(Message::Text(text))) => (WsEvent::Text(text.as_str().to_owned()), text.len()),
                            Some(Ok(Message::Binary(data))) => (WsEvent::Binary(data.to_vec()), data.len()),
                            // tungstenite answers pings itself; pongs need nothing.
                            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                            Some(Ok(Message::Close(frame))) => {
                                let (code, reason) = frame
                                    .map_or((close::NO_STATUS, String::new()), |f| (f.code.into(), f.reason.as_str().to_owned()));
                                break Ending::peer(code, reason);
                            }
                            Some(Err(err)) => break ending_for_error(&err),
                            None => break Ending::peer(close::ABNORMAL, String::new()),
                        };
                        metrics.received(len);
                        if let Some(rate) = target.app.message_rate()
                            && !bucket.take(&rate, last_heard.into_std())
                        {
                            metrics.rate_limited();
                            match rate.over {
                                OverRate::Drop => continue,
                                OverRate::Close => break Ending::ours(close::POLICY_VIOLATION, "message rate exceeded"),
                                OverRate::Wait => {
                                    resume = last_heard + bucket.until_next(&rate, last_heard.into_std());
                                    held = Some(event);
                                    continue;
                                }
                            }
                        }
                        let event = target.dispatch(&member, &info, event, &quota);
                        if let Err(cut) = dispatch_while_writing(event, framed, &handle, &mut sink, &mut outbox, evicted.as_mut(), write_timeout).await {
                            break cut.ending;
                        }
                    }
                }
            }
        };

        // Out of the group first, so the app's `close` handler sees the new
        // count.
        member.closed();
        metrics.connection_closed(&open, ending.code);
        let close_event = WsEvent::Close(CloseInfo {
            code: ending.code,
            reason: ending.reason.clone(),
        });
        target.dispatch(&member, &info, close_event, &quota).await;
        // Forgotten once both this task and the close event are done.
        drop(member);
        finish_close(sink, stream, &ending, write_timeout).await;
    }
}

/// Runs a write, unless the peer does not take it within `timeout` (the
/// connection is dropped: nobody is there to close with) or the connection
/// is evicted meanwhile. A write the socket takes at once (the common case)
/// costs no timer.
async fn bounded<T>(
    handle: &ConnectionHandle,
    evicted: Pin<&mut impl Future<Output = (u16, String)>>,
    timeout: Duration,
    write: impl Future<Output = T>,
) -> Result<T, Ending> {
    let mut write = std::pin::pin!(write);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(written) = first {
        return Ok(written);
    }
    tokio::select! {
        written = tokio::time::timeout(timeout, write) => written.map_err(|_| {
            tracing::debug!(connection = %handle.id, "peer took no write for {timeout:?}; dropping it");
            Ending::peer(close::ABNORMAL, "the client stopped reading".to_string())
        }),
        (code, reason) = evicted => Err(Ending::ours(code, reason)),
    }
}

/// Gives one of the connection's events to its app while what is queued
/// for the connection keeps being written: the event may run at once on
/// this task, replying more than the outbox holds, or wait for a place in
/// a busy app's mailbox while the events ahead of it broadcast to this
/// connection; and a write the peer is slow to take must not hold up an
/// event running here. Returns early if the connection is evicted or a
/// write ends it; an event that has started still runs to its end.
async fn dispatch_while_writing<S>(
    event: impl Future<Output = bool>,
    framed: bool,
    handle: &ConnectionHandle,
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    outbox: &mut mpsc::Receiver<Outgoing>,
    mut evicted: Pin<&mut impl Future<Output = (u16, String)>>,
    write_timeout: Duration,
) -> Result<(), Cut>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut event = std::pin::pin!(event);
    let cut = |ending, ran| Err(Cut { ending, ran });
    loop {
        let item = tokio::select! {
            biased;
            _ = &mut event => return Ok(()),
            (code, reason) = evicted.as_mut() => return cut(Ending::ours(code, reason), false),
            item = outbox.recv() => item,
        };
        let Some(item) = item else {
            return cut(Ending::ours(close::INTERNAL_ERROR, "host error"), false);
        };
        let burst = write_burst(handle, framed, sink, outbox, item);
        let mut write = std::pin::pin!(bounded(handle, evicted.as_mut(), write_timeout, burst));
        // The event goes on while the burst is written.
        let mut ran = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut write => break outcome,
                _ = &mut event, if !ran => ran = true,
            }
        };
        if let Some(ending) = written(outcome) {
            return cut(ending, ran);
        }
        if ran {
            return Ok(());
        }
    }
}

/// A connection that ended while one of its events was given to the app.
struct Cut {
    /// How the connection ended.
    ending: Ending,
    /// Whether the event had already run (it goes on otherwise, unless it
    /// is dropped).
    ran: bool,
}

/// What a bounded burst of writes means for the connection: `None` if it
/// goes on, or how it ends.
fn written(outcome: Result<Result<Option<Ending>, WsError>, Ending>) -> Option<Ending> {
    match outcome {
        Ok(Ok(None)) => None,
        Ok(Ok(Some(ending))) | Err(ending) => Some(ending),
        Ok(Err(_)) => Some(Ending::peer(close::ABNORMAL, String::new())),
    }
}

/// Writes `first` and whatever else is already queued, then flushes once.
/// Returns the ending if a close request was among them.
async fn write_burst<S>(
    handle: &ConnectionHandle,
    framed: bool,
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
        // Its bytes are the socket's (and the write buffer's) from here.
        handle.written(&item);
        match item {
            // Cloning the message shares its payload.
            Outgoing::Frame(frame) if !framed => sink.feed(Message::clone(&frame)).await?,
            Outgoing::Frame(frame) => sink.feed(frame_for("", &frame)).await?,
            Outgoing::Kept(kept) if !framed => sink.feed(kept.frame.clone()).await?,
            Outgoing::Kept(kept) => {
                let framed = kept.with_position.get_or_init(|| {
                    frame_for(&format!("{}-{}", kept.epoch, kept.offset), &kept.frame)
                });
                // A clone shares the payload with every other recipient.
                sink.feed(framed.clone()).await?;
            }
            Outgoing::Recovered(complete) => {
                if framed {
                    let outcome = format!("{{\"complete\":{complete}}}");
                    sink.feed(frame_for("!recovered", &Message::text(outcome)))
                        .await?;
                }
            }
            Outgoing::Presence(change) if !framed => {
                sink.feed(Message::text(change.notice())).await?;
            }
            Outgoing::Presence(change) => {
                let notice = Message::text(change.notice());
                sink.feed(frame_for("!presence", &notice)).await?;
            }
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

/// `message` as a `tina4.v1` client gets it: a line saying what it is,
/// then the message, in a frame of the same kind.
fn frame_for(line: &str, message: &Message) -> Message {
    match message {
        Message::Text(text) => Message::text(format!("{line}\n{}", text.as_str())),
        Message::Binary(data) => {
            let mut framed = Vec::with_capacity(line.len() + 1 + data.len());
            framed.extend_from_slice(line.as_bytes());
            framed.push(b'\n');
            framed.extend_from_slice(data);
            Message::binary(framed)
        }
        other => other.clone(),
    }
}

//! Server-Sent Events: a `GET` on an SSE route opens a one-way stream
//! (`text/event-stream`) whose connection joins the path's group beside
//! WebSocket connections, so `send`, `broadcast`, `push` and `count` reach
//! it with no change in the app.
//!
//! Lifecycle, as for a WebSocket: admitted (so `count` includes it) →
//! `open` event → each text message queued on its outbox is written as
//! one event (a `data:` line per line of text) → leave the path group →
//! `close` event. The stream ends when the client goes away (code 1001),
//! or when the host or the app ends it: then a last `close` event tells
//! the client the code and reason, so it can tell an end from a drop. Comments are
//! written at the ping interval to keep proxies from closing a quiet
//! stream, and a client that takes no write within the write timeout is
//! dropped; the outbox bounds what waits for it, as for a WebSocket.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::join::{Joined, check_origin, join};
use super::response::{Body, plain};
use super::state::ServerState;
use crate::delivery::close;
use crate::delivery::{Delivery, Kept, Outgoing, Position};
use crate::router::RequestPath;
use crate::runtime::Serving;
use crate::runtime::bindings::{CloseInfo, WsEvent};

/// Outgoing messages encoded into one chunk of the stream, so a burst
/// costs one write.
const WRITE_BATCH: usize = 64;

/// How long the last `close` event may wait for a client to take it.
const LAST_WORD_TIMEOUT: Duration = Duration::from_secs(1);

/// What the stream starts with: a comment, so the client and any proxy see
/// the response begin at once, and the delay before a client reconnects.
const PREAMBLE: &[u8] = b": tina4-wasm\nretry: 2000\n\n";

/// Whether the request asks for an event stream (`Accept: text/event-stream`).
pub(crate) fn is_stream_request(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|range| {
                let media = range.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("text/event-stream")
            })
        })
    })
}

/// Opens an event stream on the app's SSE route for `path`, if it has one.
pub(crate) fn accept(
    state: &ServerState,
    serving: &Serving,
    request: &Request<Incoming>,
    host: &str,
    path: &RequestPath,
) -> Option<Response<Body>> {
    let found = serving.routes.match_sse(host, path)?;
    if let Err(refused) = check_origin(state, request.headers()) {
        return Some(*refused);
    }
    let mut joined = match join(state, request, path, found, true) {
        Ok(joined) => joined,
        Err(refused) => return Some(*refused),
    };
    // A browser reconnecting by itself says where it had got to.
    if joined.position.is_none() {
        joined.position = request
            .headers()
            .get("last-event-id")
            .and_then(|id| id.to_str().ok())
            .and_then(Position::parse);
    }
    // One chunk in hand at a time: what waits beyond it waits on the
    // connection's bounded outbox, where a slow client is seen.
    let (body, chunks) = mpsc::channel(1);
    let _ = body.try_send(Bytes::from_static(PREAMBLE));
    let task = StreamTask {
        joined,
        body,
        delivery: state.delivery.clone(),
        heartbeat: state.edge.ping_interval(),
        write_timeout: state.edge.write_timeout(),
    };
    state.tasks.spawn(task.run());

    let mut response = Response::new(EventStream { chunks }.boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer responses (nginx) must pass events on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Some(response)
}

/// The answer to a request for a path only an SSE route serves that does
/// not use GET.
pub(crate) fn wrong_method() -> Response<Body> {
    let mut response = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "this is an event stream: open it with GET",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}

/// The response body: the chunks the stream's task hands over.
struct EventStream {
    /// Filled by the task; its end ends the response.
    chunks: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// One SSE connection's task.
struct StreamTask {
    /// The admitted connection.
    joined: Joined,
    /// Where its chunks go to the response body; closed when the client
    /// has gone (hyper dropped the body).
    body: mpsc::Sender<Bytes>,
    /// Where it is registered, here and across instances.
    delivery: Arc<Delivery>,
    /// How often a comment is written to a quiet stream.
    heartbeat: Duration,
    /// How long the client has to take a chunk.
    write_timeout: Duration,
}

/// How a stream ended.
struct Ending {
    /// The code reported to the app (and to the client, when ours).
    code: u16,
    /// The reason reported alike.
    reason: String,
    /// The host or the app ended it, and the client should be told.
    ours: bool,
}

impl StreamTask {
    async fn run(self) {
        let Self {
            joined,
            body,
            delivery,
            heartbeat,
            write_timeout,
        } = self;
        let Joined {
            member,
            mut outbox,
            info,
            target,
            token_expires,
            position,
            ..
        } = joined;
        let metrics = target.app.metrics.clone();
        let open = metrics.connection_opened(&target.key.shape);
        let handle = member.handle().clone();
        delivery.listening(&handle.room).await;
        let quota = crate::runtime::actor::mailbox_quota();
        // The client never sends: the only events are `open` and `close`,
        // and what `open` queues waits on the outbox until it has run.
        if let Some(from) = position {
            // Queued with its joining, before anything live.
            member.recover_from(from);
        }
        target.dispatch(&member, &info, WsEvent::Open, &quota).await;
        let evicted = handle.evicted();
        tokio::pin!(evicted);
        let expired = async {
            match token_expires {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let mut ticks = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ours = |code, reason: &str| Ending {
            code,
            reason: reason.to_string(),
            ours: true,
        };
        let gone = || Ending {
            code: close::GOING_AWAY,
            reason: "the client went away".to_string(),
            ours: false,
        };
        let ending = loop {
            let chunk = tokio::select! {
                (code, reason) = &mut evicted => break ours(code, &reason),
                () = &mut expired => break ours(close::POLICY_VIOLATION, "token expired"),
                () = body.closed() => break gone(),
                _ = ticks.tick() => Bytes::from_static(b":\n\n"),
                item = outbox.recv() => {
                    let Some(item) = item else { break ours(close::INTERNAL_ERROR, "host error") };
                    match encode_burst(&handle, &mut outbox, item) {
                        (chunk, None) => chunk,
                        (chunk, Some((code, reason))) => {
                            // What came before the close request still goes.
                            if !chunk.is_empty() {
                                let _ = tokio::time::timeout(write_timeout, body.send(chunk)).await;
                            }
                            break ours(code, &reason);
                        }
                    }
                }
            };
            if chunk.is_empty() {
                continue;
            }
            tokio::select! {
                sent = tokio::time::timeout(write_timeout, body.send(chunk)) => match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break gone(),
                    Err(_) => {
                        tracing::debug!(connection = %handle.id, "event-stream client took no write for {write_timeout:?}; dropping it");
                        break Ending { code: close::ABNORMAL, reason: "the client stopped reading".to_string(), ours: false };
                    }
                },
                (code, reason) = &mut evicted => break ours(code, &reason),
            }
        };

        // Out of the group first, so the app's `close` handler sees the new
        // count.
        member.closed();
        metrics.connection_closed(&open, ending.code);
        if ending.ours && !body.is_closed() {
            let mut last = BytesMut::new();
            let reason = serde_json::json!({ "code": ending.code, "reason": ending.reason });
            encode_event(&mut last, Some("close"), &reason.to_string());
            let _ = tokio::time::timeout(LAST_WORD_TIMEOUT, body.send(last.freeze())).await;
        }
        let close_event = WsEvent::Close(CloseInfo {
            code: ending.code,
            reason: ending.reason,
        });
        target.dispatch(&member, &info, close_event, &quota).await;
        // Dropping the sender ends the response.
    }
}

/// Encodes `first` and whatever else is already queued into one chunk;
/// returns the close request among them, if any (what follows it is not
/// sent). Binary messages have no place in an event stream and are left
/// out.
fn encode_burst(
    handle: &crate::delivery::ConnectionHandle,
    outbox: &mut mpsc::Receiver<Outgoing>,
    first: Outgoing,
) -> (Bytes, Option<(u16, String)>) {
    let mut chunk = BytesMut::new();
    let mut next = Some(first);
    let mut encoded = 0;
    while let Some(item) = next.take() {
        handle.written(&item);
        match item {
            Outgoing::Frame(frame) => {
                if let Message::Text(text) = &*frame {
                    encode_event(&mut chunk, None, text.as_str());
                }
            }
            Outgoing::Kept(kept) => encode_kept(&mut chunk, &kept),
            Outgoing::Recovered(complete) => {
                let said = serde_json::json!({ "complete": complete });
                encode_event(&mut chunk, Some("recovered"), &said.to_string());
            }
            Outgoing::Presence(change) => {
                encode_event(&mut chunk, Some("presence"), &change.notice());
            }
            Outgoing::Close(close) => return (chunk.freeze(), Some(*close)),
        }
        encoded += 1;
        if encoded < WRITE_BATCH {
            next = outbox.try_recv().ok();
        }
    }
    (chunk.freeze(), None)
}

/// Appends a kept message as an event whose id is its position
/// (`<epoch>-<offset>`), which the client sends back to recover from.
fn encode_kept(out: &mut BytesMut, kept: &Kept) {
    if let Message::Text(text) = &kept.frame {
        out.put_slice(b"id: ");
        out.put_slice(kept.epoch.as_bytes());
        out.put_u8(b'-');
        out.put_slice(kept.offset.to_string().as_bytes());
        out.put_u8(b'\n');
        encode_event(out, None, text.as_str());
    }
}

/// Appends one event: its type if not the default `message`, then one
/// `data:` line per line of `text` (a line ends at CR LF, LF or CR, as an
/// event-stream parser reads it), then the blank line that dispatches it.
pub(crate) fn encode_event(out: &mut BytesMut, event: Option<&str>, text: &str) {
    if let Some(event) = event {
        out.put_slice(b"event: ");
        out.put_slice(event.as_bytes());
        out.put_u8(b'\n');
    }
    let mut rest = text;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        out.put_slice(b"data: ");
        out.put_slice(&rest.as_bytes()[..end]);
        out.put_u8(b'\n');
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(text: &str) -> String {
        let mut out = BytesMut::new();
        encode_event(&mut out, None, text);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn every_kind_of_line_end_starts_a_data_line() {
        assert_eq!(encoded("one"), "data: one\n\n");
        assert_eq!(
            encoded("a\nb\r\nc\rd"),
            "data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(encoded("end\n"), "data: end\ndata: \n\n");
        assert_eq!(encoded(""), "data: \n\n");
        // A line that looks like a field stays data.
        assert_eq!(
            encoded("id: 7\nevent: x"),
            "data: id: 7\ndata: event: x\n\n"
        );
    }

    #[test]
    fn a_named_event_says_its_type_first() {
        let mut out = BytesMut::new();
        encode_event(&mut out, Some("close"), "{}");
        assert_eq!(&out[..], b"event: close\ndata: {}\n\n");
    }

    #[test]
    fn only_an_event_stream_accept_asks_for_one() {
        let mut headers = HeaderMap::new();
        assert!(!is_stream_request(&headers));
        headers.append(header::ACCEPT, HeaderValue::from_static("text/html"));
        assert!(!is_stream_request(&headers));
        headers.append(
            header::ACCEPT,
            HeaderValue::from_static("application/json, Text/Event-Stream;q=0.9"),
        );
        assert!(is_stream_request(&headers));
    }
}

//! The native baseline: the echo example's routes written directly on hyper
//! and tokio-tungstenite, with no wasm, as a well-built server of our own
//! would be. Every scenario runs against it and against tina4-wasm in the
//! same run and reports the ratio.
//!
//! - `GET /hello/{name}` → `{"message":"Hello, name!","length":n}`
//! - `/ws/echo` → `"Echo: " + text`
//! - `/ws/broadcast/{topic}` → every message to everyone on the topic
//!
//! Like the host, a broadcast frame is built once and queued by reference
//! on each recipient's bounded outbox; each connection's task writes its
//! outbox in batches, one flush per batch.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::header::{
    CONNECTION, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Frames queued per connection before it is dropped as a slow consumer
/// (the host's default).
const OUTBOX: usize = 1024;
/// Frames written per flush.
const WRITE_BATCH: usize = 64;

type Outbox = mpsc::Sender<Message>;

/// Connections per topic.
#[derive(Default)]
struct Topics {
    /// Each topic's connections, by connection number.
    by_topic: RwLock<HashMap<String, HashMap<u64, Outbox>>>,
    /// Connection numbers.
    next: AtomicU64,
}

/// Serves on `port` (0: any) until killed; prints `listening on http://ADDR`.
pub async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let topics = Arc::new(Topics::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let topics = topics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(topics.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn answer(
    topics: Arc<Topics>,
    mut request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    if let Some(name) = path.strip_prefix("/hello/") {
        let body =
            serde_json::json!({ "message": format!("Hello, {name}!"), "length": name.len() });
        return Ok(response(
            StatusCode::OK,
            "application/json",
            body.to_string(),
        ));
    }
    let topic = match path.as_str() {
        "/ws/echo" => None,
        other => match other.strip_prefix("/ws/broadcast/") {
            Some(topic) => Some(topic.to_string()),
            None => return Ok(response(StatusCode::NOT_FOUND, "text/plain", "not found")),
        },
    };
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return Ok(response(
            StatusCode::UPGRADE_REQUIRED,
            "text/plain",
            "WebSocket only",
        ));
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        // The same read buffer as the host (the default, 128 KiB, would cost
        // every idle connection that much memory).
        let config = WebSocketConfig::default().read_buffer_size(2048);
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        run(ws, topics, topic).await;
    });
    let mut response = response(StatusCode::SWITCHING_PROTOCOLS, "text/plain", "");
    let headers = response.headers_mut();
    headers.remove(CONTENT_TYPE);
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    Ok(response)
}

/// One connection: echo, or membership of `topic`.
async fn run<S>(ws: WebSocketStream<S>, topics: Arc<Topics>, topic: Option<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (outbox, mut queued) = mpsc::channel::<Message>(OUTBOX);
    let id = topics.next.fetch_add(1, Ordering::Relaxed);
    if let Some(topic) = &topic {
        topics
            .by_topic
            .write()
            .unwrap()
            .entry(topic.clone())
            .or_default()
            .insert(id, outbox.clone());
    }
    let (mut sink, mut stream) = ws.split();
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => match &topic {
                    None => {
                        let _ = outbox.try_send(Message::text(format!("Echo: {text}")));
                    }
                    Some(topic) => broadcast(&topics, topic, Message::Text(text)),
                },
                Some(Ok(Message::Binary(data))) => match &topic {
                    None => {
                        let _ = outbox.try_send(Message::Binary(data));
                    }
                    Some(topic) => broadcast(&topics, topic, Message::Binary(data)),
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            n = queued.recv_many(&mut batch, WRITE_BATCH) => {
                if n == 0 {
                    break;
                }
                let mut failed = false;
                for frame in batch.drain(..) {
                    failed |= sink.feed(frame).await.is_err();
                }
                if failed || sink.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    if let Some(topic) = &topic
        && let Some(members) = topics.by_topic.write().unwrap().get_mut(topic)
    {
        members.remove(&id);
    }
}

/// Queues `frame` (shared, not copied) for everyone on `topic`.
fn broadcast(topics: &Topics, topic: &str, frame: Message) {
    if let Some(members) = topics.by_topic.read().unwrap().get(topic) {
        for outbox in members.values() {
            let _ = outbox.try_send(frame.clone());
        }
    }
}

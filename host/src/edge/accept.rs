//! Accepting connections on the public port: the caps on open HTTP
//! connections, socket options, the TLS handshake when the port serves
//! HTTPS, the write deadline beside each connection, and the clean
//! shutdown that closes every WebSocket with 1001.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub(crate) use super::http_conn::Answer;
use super::http_conn::{self, Protocol};
use super::state::ServerState;
use super::write_deadline::{Stall, Watched};
use crate::delivery::close;
use crate::telemetry;

/// How long shutdown waits for in-flight requests and close handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections until `shutdown` resolves: each one within the
/// connection caps is served HTTP (and may upgrade to a WebSocket) with
/// `answer`, over TLS if the server serves it and answers with its apps;
/// one over the caps is refused with 503.
pub(crate) async fn accept_until_shutdown(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: impl Future<Output = ()>,
    answer: Answer,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let socket = socket2::SockRef::from(&stream);
        let _ = socket.set_send_buffer_size(state.edge.send_buffer_bytes.get());
        // Data the peer leaves unacknowledged this long ends the connection
        // in the kernel too, so an orphaned socket cannot linger.
        let _ = socket.set_tcp_user_timeout(Some(state.edge.write_timeout()));
        let slot = match state.http_connections.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                telemetry::refused(refusal.as_str());
                state
                    .tasks
                    .spawn(refuse(stream, state.edge.write_timeout()));
                continue;
            }
        };
        let task_state = state.clone();
        state.tasks.spawn(async move {
            let state = task_state;
            // Held while the connection speaks HTTP; an upgrade lets it go.
            let _slot = slot;
            let stall = Stall::new();
            // The deadline watches the socket itself, under any TLS.
            let stream = Watched::new(stream, stall.clone());
            let tls = state.tls.clone().filter(|_| answer == Answer::Apps);
            let Some(tls) = tls else {
                let protocol = if state.edge.h2c {
                    Protocol::Either
                } else {
                    Protocol::Http1
                };
                return http_conn::serve(state, peer, stream, stall, protocol, answer).await;
            };
            match tls.accept(stream, state.edge.handshake_timeout()).await {
                Ok(stream) => {
                    let protocol = Protocol::from_alpn(stream.get_ref().1.alpn_protocol());
                    http_conn::serve(state, peer, stream, stall, protocol, answer).await;
                }
                Err(err) => {
                    telemetry::refused("tls_handshake");
                    tracing::debug!(%peer, "{err:#}");
                }
            }
        });
    }
}

/// Answers a connection over its caps with 503 and closes it, without
/// reading it (bounded by the write timeout).
async fn refuse(mut stream: tokio::net::TcpStream, timeout: Duration) {
    use tokio::io::AsyncWriteExt;
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nConnection: close\r\n\r\n\
        too many connections\n";
    let _ = tokio::time::timeout(timeout, async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await
    })
    .await;
}

/// Stops cleanly: every WebSocket is closed with 1001, in-flight HTTP
/// requests finish, idle keep-alive connections close; all within
/// [`SHUTDOWN_GRACE`].
pub(crate) async fn shut_down(state: &ServerState) {
    let open = state.delivery.registry().all();
    tracing::info!(websockets = open.len(), "shutting down");
    state.shutdown.cancel();
    for handle in &open {
        handle.evict(close::GOING_AWAY, "server shutting down");
    }
    state.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time; closing them");
    }
    state.delivery.leave().await;
}

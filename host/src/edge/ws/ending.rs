//! How a WebSocket connection ends: the close code for what the peer did
//! or sent, and the close handshake, bounded, after which the task
//! lingers a moment so the peer gets the close code instead of a reset.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::delivery::close;

/// How long to wait for the peer's reply to our close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// How the connection ended.
pub(super) struct Ending {
    /// The close code reported to the app.
    pub(super) code: u16,
    /// The close reason reported to the app.
    pub(super) reason: String,
    /// A close frame we still owe the peer (we have not sent one yet).
    send_close: bool,
    /// The peer sent what cannot be read as frames (a frame too big, a
    /// protocol error): the stream is done, and what is left is drained.
    unreadable: bool,
}

impl Ending {
    pub(super) fn peer(code: u16, reason: String) -> Self {
        Self {
            code,
            reason,
            send_close: false,
            unreadable: false,
        }
    }

    pub(super) fn ours(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            send_close: true,
            unreadable: false,
        }
    }

    /// Ours, after the peer sent something unreadable.
    pub(super) fn unreadable(code: u16, reason: &str) -> Self {
        Self {
            unreadable: true,
            ..Self::ours(code, reason)
        }
    }
}

/// Maps a read error to the close code RFC 6455 prescribes for it.
pub(super) fn ending_for_error(err: &WsError) -> Ending {
    match err {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Ending::unreadable(close::TOO_BIG, "message too big")
        }
        WsError::Capacity(_) => Ending::unreadable(close::TOO_BIG, "frame too big"),
        WsError::Utf8(_) => {
            Ending::unreadable(close::INVALID_DATA, "invalid UTF-8 in text message")
        }
        WsError::Protocol(ProtocolError::InvalidCloseSequence) => {
            Ending::unreadable(close::PROTOCOL_ERROR, "invalid close sequence")
        }
        WsError::Protocol(_) => Ending::unreadable(close::PROTOCOL_ERROR, "protocol error"),
        _ => Ending::peer(close::ABNORMAL, String::new()),
    }
}

/// Most bytes read and dropped while lingering after our close frame.
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// Sends our close frame if we owe one and waits (bounded) for the peer's
/// reply, so the peer sees a clean close handshake. Whatever the peer
/// still sends (the rest of a frame that was too big, say) is read and
/// dropped, within bounds, so closing the socket does not reset it and
/// discard the close frame on its way.
pub(super) async fn finish_close<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut stream: futures_util::stream::SplitStream<WebSocketStream<S>>,
    ending: &Ending,
    write_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let limit = CLOSE_HANDSHAKE_TIMEOUT.min(write_timeout);
    let sent = async {
        if ending.send_close {
            let frame = CloseFrame {
                code: CloseCode::from(ending.code),
                reason: close::truncate_reason(&ending.reason).into(),
            };
            return sink.send(Message::Close(Some(frame))).await.is_ok();
        }
        true
    };
    if !matches!(tokio::time::timeout(limit, sent).await, Ok(true)) {
        // The peer took nothing: drop it now.
        return;
    }
    // Reading on lets tungstenite flush its reply to a peer's close and
    // receive the peer's reply to ours; it ends when the peer is done. A
    // handshake that completes leaves nothing unread: the server closes
    // the connection first, as RFC 6455 §7.1.1 has it.
    if !ending.unreadable {
        let replies = async {
            loop {
                match stream.next().await {
                    Some(Ok(_)) => {}
                    None | Some(Err(WsError::ConnectionClosed)) => return true,
                    // What the peer still sends is not frames.
                    Some(Err(_)) => return false,
                }
            }
        };
        let left = CLOSE_HANDSHAKE_TIMEOUT.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, replies).await.unwrap_or(false) {
            return;
        }
    }
    // After an unreadable frame the stream has ended: what the peer still
    // sends is drained below.
    let Ok(mut ws) = sink.reunite(stream) else {
        return;
    };
    let linger = async {
        let socket = ws.get_mut();
        // Our side is done: saying so (FIN after the close frame) lets a
        // peer that has read our close frame finish at once.
        let _ = socket.shutdown().await;
        let mut scratch = vec![0u8; 16 * 1024];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match socket.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    // The peer may be in the middle of a large frame on a busy machine:
    // give it as long as any write of ours gets, within the byte bound.
    let _ = tokio::time::timeout(write_timeout.max(CLOSE_HANDSHAKE_TIMEOUT), linger).await;
}

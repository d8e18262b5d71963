//! The Ice WebSocket transport (`ws`, and `wss` over TLS) as ZeroC's WSTransceiver speaks
//! it: an HTTP/1.1 upgrade naming the `ice.zeroc.com` subprotocol, then the Ice byte stream in
//! binary frames, with no relation between frame and Ice message boundaries.
//!
//! The connection driver and the protocol state machine stay transport-blind: after the
//! upgrade a pump moves bytes between the WebSocket and an in-memory pipe whose other end the
//! driver reads and writes like a socket. The pump owns the closing handshake (close frames
//! and their codes), which the byte-stream driver has no words for.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::protocol::CloseReason;

/// The only subprotocol Ice speaks over WebSocket.
pub const ICE_PROTOCOL: &str = "ice.zeroc.com";
/// The largest upgrade request head accepted; real ones are a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 64;
/// Bytes buffered in each direction between the pump and the driver.
const PIPE_SIZE: usize = 64 * 1024;
/// The most bytes of driver output put into one binary frame.
const FRAME_CHUNK: usize = 16 * 1024;
/// Room above the Ice message size limit for a frame that carries the tail of one message
/// and the start of the next; the state machine enforces the real limit.
const FRAME_SLACK: usize = 64 * 1024;

/// Why an upgrade request was refused: the HTTP status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub message: String,
}

impl Rejection {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Rejection {
            status,
            message: message.into(),
        }
    }
}

#[derive(Debug, Error)]
pub enum HandshakeError {
    #[error("upgrade refused with HTTP {}: {}", .0.status, .0.message)]
    Rejected(Rejection),
    #[error("connection closed before the upgrade request was complete")]
    Eof,
    #[error("upgrade: {0}")]
    Io(#[from] std::io::Error),
}

/// An accepted upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The request target (Ice ignores it; any path is served).
    pub resource: String,
    /// The `Sec-WebSocket-Accept` value of the 101 answer.
    pub accept: String,
}

/// Checks an upgrade request the way ZeroC's server does, plus one rule of our own: the
/// `ice.zeroc.com` subprotocol must be offered. ZeroC tolerates its absence, but every Ice
/// client sends it, so a request without it is not an Ice client and gets a clear refusal
/// instead of a stream of binary it cannot read.
pub fn check_request(req: &httparse::Request<'_, '_>) -> Result<Upgrade, Rejection> {
    if req.method != Some("GET") {
        return Err(Rejection::new(405, "only GET can be upgraded to WebSocket"));
    }
    if req.version != Some(1) {
        return Err(Rejection::new(400, "WebSocket needs HTTP/1.1"));
    }
    let header = |name: &str| -> Option<String> {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .reduce(|a, b| format!("{a}, {b}"))
    };
    let upgrade = header("Upgrade").unwrap_or_default();
    let connection = header("Connection").unwrap_or_default();
    let has_token =
        |v: &str, token: &str| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token));
    if !has_token(&upgrade, "websocket") || !has_token(&connection, "upgrade") {
        return Err(Rejection::new(
            426,
            "this port speaks Ice over WebSocket: send a WebSocket upgrade",
        ));
    }
    match header("Sec-WebSocket-Version").as_deref() {
        Some("13") => {}
        Some(v) => {
            return Err(Rejection::new(
                426,
                format!("unsupported WebSocket version `{v}` (13 is)"),
            ))
        }
        None => return Err(Rejection::new(426, "missing Sec-WebSocket-Version")),
    }
    let protocols = header("Sec-WebSocket-Protocol").ok_or_else(|| {
        Rejection::new(
            400,
            format!("missing Sec-WebSocket-Protocol (expected {ICE_PROTOCOL})"),
        )
    })?;
    if let Some(other) = protocols
        .split(',')
        .map(str::trim)
        .find(|p| *p != ICE_PROTOCOL)
    {
        return Err(Rejection::new(
            400,
            format!("unknown WebSocket protocol `{other}` (expected {ICE_PROTOCOL})"),
        ));
    }
    let key = header("Sec-WebSocket-Key")
        .ok_or_else(|| Rejection::new(400, "missing Sec-WebSocket-Key"))?;
    if !key_is_valid(&key) {
        return Err(Rejection::new(400, "invalid Sec-WebSocket-Key"));
    }
    Ok(Upgrade {
        resource: req.path.unwrap_or("/").to_string(),
        accept: derive_accept_key(key.as_bytes()),
    })
}

/// A key is 16 bytes in base64: 22 characters and `==`.
fn key_is_valid(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn switching_protocols(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Protocol: {ICE_PROTOCOL}\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

fn refusal(r: &Rejection) -> String {
    let reason = match r.status {
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let body = serde_json::json!({ "error": r.message }).to_string();
    let extra = match r.status {
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
        405 => "Allow: GET\r\n",
        _ => "",
    };
    format!(
        "HTTP/1.1 {} {reason}\r\n{extra}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        r.status,
        body.len()
    )
}

/// Reads the upgrade request and answers it. On success the bytes the client sent after
/// the request head (frames it did not wait to send) are returned with the upgrade.
pub async fn handshake<S>(stream: &mut S) -> Result<(Upgrade, Vec<u8>), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let outcome = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HandshakeError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => break check_request(&req).map(|u| (u, len)),
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                break Err(Rejection::new(431, "upgrade request head too large"))
            }
            Err(httparse::Error::TooManyHeaders) => {
                break Err(Rejection::new(431, "too many header fields"))
            }
            Err(e) => break Err(Rejection::new(400, format!("malformed HTTP request: {e}"))),
        }
    };
    match outcome {
        Ok((upgrade, len)) => {
            stream
                .write_all(switching_protocols(&upgrade.accept).as_bytes())
                .await?;
            stream.flush().await?;
            Ok((upgrade, buf.split_off(len)))
        }
        Err(rejection) => {
            stream.write_all(refusal(&rejection).as_bytes()).await?;
            stream.flush().await?;
            let _ = stream.shutdown().await;
            Err(HandshakeError::Rejected(rejection))
        }
    }
}

/// WebSocket limits matching the connection's Ice message size limit.
pub fn ws_config(max_message_size: usize) -> WebSocketConfig {
    let limit = max_message_size.saturating_add(FRAME_SLACK);
    WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        // Each chunk of Ice output goes out as soon as it is produced: the driver flushes
        // by itself and heartbeats must not wait in a buffer.
        .write_buffer_size(0)
}

/// How the WebSocket side of a connection ended, as the outbound half learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inbound {
    /// The peer broke the WebSocket protocol (or Ice's use of it): close with this code.
    Violation(CloseCode),
    /// The peer sent its close frame or dropped the connection: nothing more to send.
    PeerGone,
    /// The driver stopped reading: its output ends soon, then our close frame goes out.
    DriverGone,
}

/// Upgrades an accepted stream (after its TLS handshake, for wss) to a WebSocket.
pub async fn accept<S>(
    mut stream: S,
    max_message_size: usize,
) -> Result<(Upgrade, WebSocketStream<S>), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (upgrade, early) = handshake(&mut stream).await?;
    let ws = WebSocketStream::from_partially_read(
        stream,
        early,
        Role::Server,
        Some(ws_config(max_message_size)),
    )
    .await;
    Ok((upgrade, ws))
}

/// A fresh pipe: the driver's end and the pump's end.
pub fn pipe() -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(PIPE_SIZE)
}

/// Moves bytes between the WebSocket and the driver's pipe until both are done. Both
/// directions run at once so that neither can stall the other (the driver stops reading
/// while its output is backed up). `driver_end` says why the driver closed.
/// `close_timeout` bounds the wait for the peer's close frame after ours, and a stalled send.
pub async fn pump<S>(
    ws: WebSocketStream<S>,
    pipe: DuplexStream,
    driver_end: oneshot::Receiver<CloseReason>,
    close_timeout: Duration,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = ws.split();
    let (from_driver, to_driver) = tokio::io::split(pipe);
    let (end_tx, end_rx) = oneshot::channel();
    let inbound = async move {
        let end = inbound(stream, to_driver).await;
        let _ = end_tx.send(end);
    };
    let ends = Ends {
        inbound: end_rx,
        driver: driver_end,
    };
    let outbound = outbound(from_driver, sink, ends, shutdown, close_timeout);
    tokio::pin!(inbound, outbound);
    tokio::select! {
        () = &mut inbound => {
            let _ = tokio::time::timeout(close_timeout, outbound).await;
        }
        out = &mut outbound => {
            if out == Outbound::Closed
                && tokio::time::timeout(close_timeout, inbound).await.is_err()
            {
                tracing::debug!("no WebSocket close frame from the peer in time");
            }
        }
    }
}

/// WebSocket to driver. The driver sees EOF when this returns.
async fn inbound<R, W>(mut stream: R, mut to_driver: W) -> Inbound
where
    R: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
    W: AsyncWrite + Unpin,
{
    let end = loop {
        let msg = match stream.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => break read_error(e),
            None => break Inbound::PeerGone,
        };
        match msg {
            Message::Binary(data) => {
                if to_driver.write_all(&data).await.is_err() {
                    break Inbound::DriverGone;
                }
            }
            Message::Text(_) => {
                tracing::debug!("WebSocket text frame, Ice allows only binary");
                break Inbound::Violation(CloseCode::Protocol);
            }
            Message::Close(frame) => {
                tracing::debug!(code = ?frame.as_ref().map(|f| f.code), "WebSocket close frame received");
                // Keep polling: tungstenite writes its close reply while the stream winds
                // down, and only then reports the end.
                while let Some(Ok(_)) = stream.next().await {}
                break Inbound::PeerGone;
            }
            // tungstenite answers pings itself; a pong needs nothing.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    };
    let _ = to_driver.shutdown().await;
    end
}

fn read_error(e: WsError) -> Inbound {
    match e {
        WsError::Capacity(e) => {
            tracing::debug!(error = %e, "WebSocket frame too large");
            Inbound::Violation(CloseCode::Size)
        }
        WsError::Protocol(e) => {
            tracing::debug!(error = %e, "WebSocket protocol error");
            Inbound::Violation(CloseCode::Protocol)
        }
        WsError::Utf8 => Inbound::Violation(CloseCode::Invalid),
        e => {
            tracing::debug!(error = %e, "WebSocket read failed");
            Inbound::PeerGone
        }
    }
}

/// The Ice closes that end in a close frame: the peer's CloseConnection (Ice's receiver of
/// it sends the first close frame) and our own completed graceful close. Timeouts, protocol
/// errors and forceful closes just drop the socket, as Ice does.
fn sends_close_frame(reason: &CloseReason) -> bool {
    matches!(reason, CloseReason::Peer | CloseReason::Graceful)
}

/// How the outbound half ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outbound {
    /// Our close frame went out (or answered the peer's): the peer's may still come.
    Closed,
    /// The connection is simply dropped: a forceful close, or a write that failed or stalled.
    Dropped,
}

/// What the outbound half learns from the others.
struct Ends {
    inbound: oneshot::Receiver<Inbound>,
    /// Why the driver closed, sent once it is done.
    driver: oneshot::Receiver<CloseReason>,
}

/// Driver to WebSocket, then our close frame: 1000 when the connection ends normally, 1001
/// when the server shuts down, the violation's code when the peer broke the protocol. A
/// forceful close by the driver sends none: Ice just drops the socket then (spec §8.1).
/// A send that makes no progress for `write_limit` ends the connection, as a stalled socket
/// write does for tcp: the driver gives up on its pipe then, but a peer that neither reads
/// nor closes would otherwise hold this half forever.
async fn outbound<R, K>(
    mut from_driver: R,
    mut sink: K,
    ends: Ends,
    shutdown: CancellationToken,
    write_limit: Duration,
) -> Outbound
where
    R: AsyncRead + Unpin,
    K: futures_util::Sink<Message, Error = WsError> + Unpin,
{
    let Ends {
        inbound: mut end_rx,
        driver,
    } = ends;
    let mut buf = vec![0u8; FRAME_CHUNK];
    let mut inbound_open = true;
    let code = loop {
        tokio::select! {
            read = from_driver.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    if !driver.await.is_ok_and(|r| sends_close_frame(&r)) {
                        return Outbound::Dropped;
                    }
                    break if shutdown.is_cancelled() { CloseCode::Away } else { CloseCode::Normal };
                }
                Ok(n) => {
                    let frame = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
                    match tokio::time::timeout(write_limit, sink.send(frame)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "WebSocket write failed");
                            return Outbound::Dropped;
                        }
                        Err(_) => {
                            tracing::debug!("WebSocket write stalled, dropping the connection");
                            return Outbound::Dropped;
                        }
                    }
                }
            },
            end = &mut end_rx, if inbound_open => match end {
                Ok(Inbound::Violation(code)) => break code,
                Ok(Inbound::DriverGone) => inbound_open = false,
                // The peer closed: tungstenite already queued its reply; flush it.
                Ok(Inbound::PeerGone) | Err(_) => {
                    let _ = tokio::time::timeout(write_limit, sink.close()).await;
                    return Outbound::Closed;
                }
            },
        }
    };
    let frame = CloseFrame {
        code,
        reason: "".into(),
    };
    match tokio::time::timeout(write_limit, sink.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => Outbound::Closed,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "WebSocket close frame not sent");
            Outbound::Dropped
        }
        Err(_) => Outbound::Dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A WebSocket whose peer never reads: nothing can be sent, ever.
    struct StuckSink;

    impl futures_util::Sink<Message> for StuckSink {
        type Error = WsError;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), WsError> {
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_stalled_send_ends_the_outbound_half() {
        let (mut driver, pump_end) = pipe();
        driver.write_all(b"reply bytes").await.unwrap();
        let (from_driver, _to_driver) = tokio::io::split(pump_end);
        let (_end_tx, end_rx) = oneshot::channel();
        let (_driver_tx, driver_rx) = oneshot::channel();
        let ends = Ends {
            inbound: end_rx,
            driver: driver_rx,
        };
        let shutdown = CancellationToken::new();
        let write_limit = Duration::from_millis(50);
        let done = outbound(from_driver, StuckSink, ends, shutdown, write_limit);
        // The guard only catches a hang; the send gives up after `write_limit`.
        let guard = Duration::from_secs(20);
        let out = tokio::time::timeout(guard, done).await;
        assert_eq!(out.ok(), Some(Outbound::Dropped));
    }

    fn parse_and_check(text: &str) -> Result<Upgrade, Rejection> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(text.as_bytes()).unwrap().is_complete());
        check_request(&req)
    }

    const GOOD: &str = "GET /omero-ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Protocol: ice.zeroc.com\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    #[test]
    fn a_good_request_is_accepted_with_the_rfc_accept_key() {
        let u = parse_and_check(GOOD).unwrap();
        assert_eq!(u.resource, "/omero-ws");
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn bad_requests_are_refused_with_the_right_status() {
        let cases = [
            (GOOD.replace("GET", "POST"), 405),
            (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
            (GOOD.replace("Upgrade: websocket\r\n", ""), 426),
            (GOOD.replace("keep-alive, Upgrade", "keep-alive"), 426),
            (GOOD.replace("Version: 13", "Version: 8"), 426),
            (
                GOOD.replace("Sec-WebSocket-Protocol: ice.zeroc.com\r\n", ""),
                400,
            ),
            (GOOD.replace("ice.zeroc.com", "ice.zeroc.com, chat"), 400),
            (GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), 400),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
        ];
        for (text, status) in cases {
            let r = parse_and_check(&text).unwrap_err();
            assert_eq!(r.status, status, "{text}: {}", r.message);
        }
    }

    #[test]
    fn refusals_are_complete_http_responses() {
        let text = refusal(&Rejection::new(426, "no"));
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = resp.parse(text.as_bytes()).unwrap() else {
            panic!("incomplete response");
        };
        assert_eq!(resp.code, Some(426));
        assert_eq!(&text[len..], r#"{"error":"no"}"#);
    }
}

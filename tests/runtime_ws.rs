//! The ws listener over real sockets on 127.0.0.1, with a hand-written WebSocket client so
//! that frame boundaries, masking and control frames are exactly what each test says.
//! Timeouts here only guard against hangs.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use omero_sessiond::config::ServerConfig;
use omero_sessiond::encoding::{Context, Encoding, Identity};
use omero_sessiond::protocol::{IceCodec, Message, ReplyBody, Request, CLOSE_CONNECTION};
use omero_sessiond::runtime::{ObjectAdapter, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Decoder;

const GUARD: Duration = Duration::from_secs(20);
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

struct Fixture {
    server: Server,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::local(dir.path());
    config.tcp = None;
    config.ssl = None;
    config.ws = Some("127.0.0.1:0".into());
    let server = Server::bind(config, ObjectAdapter::new()).await.unwrap();
    Fixture { server, _dir: dir }
}

fn upgrade_request(path: &str, protocol: Option<&str>) -> String {
    let protocol = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         {protocol}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    )
}

/// Sends `request` and reads the HTTP response head (and the body for refusals).
async fn http_exchange(f: &Fixture, request: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(f.server.ws_addr().unwrap())
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = timeout(GUARD, s.read(&mut byte)).await.unwrap().unwrap();
        assert_eq!(n, 1, "EOF inside the response head: {head:?}");
        head.push(byte[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

fn status(head: &str) -> u16 {
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// A client-to-server frame, masked as RFC 6455 requires.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// An upgraded connection; `ice` holds binary payload bytes not yet decoded.
struct Client {
    s: TcpStream,
    ice: BytesMut,
    codec: IceCodec,
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Client {
    async fn connect(f: &Fixture) -> Client {
        let (s, head) = http_exchange(f, &upgrade_request("/", Some("ice.zeroc.com"))).await;
        assert_eq!(status(&head), 101, "{head}");
        assert!(
            head.contains("Sec-WebSocket-Protocol: ice.zeroc.com\r\n"),
            "{head}"
        );
        // RFC 6455's example key and its accept value.
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        let mut c = Client {
            s,
            ice: BytesMut::new(),
            codec: IceCodec::new(1 << 24),
        };
        assert_eq!(c.next_ice().await, Message::ValidateConnection);
        c
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// The next server frame, or `None` at EOF.
    async fn next_frame(&mut self) -> Option<Frame> {
        timeout(GUARD, self.read_frame()).await.expect("hang guard")
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 2];
        self.s.read_exact(&mut head).await.ok()?;
        assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
        let len = match head[1] & 0x7f {
            126 => u64::from(self.s.read_u16().await.ok()?),
            127 => self.s.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        self.s.read_exact(&mut payload).await.ok()?;
        Some(Frame {
            fin: head[0] & 0x80 != 0,
            opcode: head[0] & 0x0f,
            payload,
        })
    }

    /// The next Ice message, from however many binary frames it takes.
    async fn next_ice(&mut self) -> Message {
        loop {
            if let Some(m) = self.codec.decode(&mut self.ice).unwrap() {
                return m.message;
            }
            let f = self.next_frame().await.expect("EOF before an Ice message");
            assert!(
                matches!(f.opcode, OP_BINARY | OP_CONT),
                "opcode {}",
                f.opcode
            );
            self.ice.extend_from_slice(&f.payload);
        }
    }

    async fn next_reply(&mut self) -> (i32, ReplyBody) {
        loop {
            match self.next_ice().await {
                Message::Reply(r) => return (r.request_id, r.body),
                Message::ValidateConnection => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Skips data frames up to the server's close frame; returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let f = self.next_frame().await.expect("EOF without a close frame");
            if f.opcode == OP_CLOSE {
                assert!(f.payload.len() >= 2, "close frame without a code");
                return u16::from_be_bytes([f.payload[0], f.payload[1]]);
            }
        }
    }

    async fn expect_eof(&mut self) {
        while let Some(f) = self.next_frame().await {
            assert_ne!(f.opcode, OP_BINARY, "data after the close handshake");
        }
    }
}

fn ping_request(id: i32) -> Vec<u8> {
    Request {
        request_id: id,
        id: Identity::new("", "nobody"),
        facet: String::new(),
        operation: "ice_ping".into(),
        mode: 1,
        context: Context::new(),
        encoding: Encoding::V1_1.into(),
        params: Bytes::new(),
    }
    .encode()
}

fn assert_not_exist(reply: (i32, ReplyBody), id: i32) {
    assert_eq!(reply.0, id);
    assert!(
        matches!(reply.1, ReplyBody::ObjectNotExist(_)),
        "{:?}",
        reply.1
    );
}

#[tokio::test]
async fn upgrade_then_requests_in_binary_frames() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    c.send(&frame(true, OP_BINARY, &ping_request(1))).await;
    assert_not_exist(c.next_reply().await, 1);
}

#[tokio::test]
async fn any_resource_is_served_like_zeroc_does() {
    let f = start().await;
    let (_, head) = http_exchange(&f, &upgrade_request("/omero-ws", Some("ice.zeroc.com"))).await;
    assert_eq!(status(&head), 101, "{head}");
}

#[tokio::test]
async fn bad_upgrades_get_an_http_4xx_and_the_connection_closes() {
    let f = start().await;
    let cases = [
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 426),
        (upgrade_request("/", None), 400),
        (upgrade_request("/", Some("chat")), 400),
        (
            upgrade_request("/", Some("ice.zeroc.com")).replace("GET", "PUT"),
            405,
        ),
        ("hello there\r\n\r\n".to_string(), 400),
    ];
    for (request, expected) in cases {
        let (mut s, head) = http_exchange(&f, &request).await;
        assert_eq!(status(&head), expected, "{request:?} -> {head}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        let mut rest = Vec::new();
        timeout(GUARD, s.read_to_end(&mut rest))
            .await
            .expect("refused connection left open")
            .unwrap();
        assert!(String::from_utf8_lossy(&rest).contains("\"error\""));
    }
}

#[tokio::test]
async fn one_ice_message_may_span_frames() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    // A fragmented WebSocket message: binary without FIN, then continuations.
    let req = ping_request(1);
    let mut bytes = frame(false, OP_BINARY, &req[..5]);
    bytes.extend(frame(false, OP_CONT, &req[5..20]));
    bytes.extend(frame(true, OP_CONT, &req[20..]));
    c.send(&bytes).await;
    assert_not_exist(c.next_reply().await, 1);
    // Two complete WebSocket messages that each carry part of one Ice message.
    let req = ping_request(2);
    c.send(&frame(true, OP_BINARY, &req[..3])).await;
    c.send(&frame(true, OP_BINARY, &req[3..])).await;
    assert_not_exist(c.next_reply().await, 2);
}

#[tokio::test]
async fn one_frame_may_hold_several_ice_messages() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    let mut payload = ping_request(1);
    payload.extend(ping_request(2));
    payload.extend(ping_request(3));
    c.send(&frame(true, OP_BINARY, &payload)).await;
    let mut ids: Vec<i32> = Vec::new();
    for _ in 0..3 {
        ids.push(c.next_reply().await.0);
    }
    ids.sort();
    assert_eq!(ids, [1, 2, 3]);
}

#[tokio::test]
async fn pings_are_answered_with_the_same_payload() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    c.send(&frame(true, OP_PING, b"are you there")).await;
    let pong = loop {
        let f = c.next_frame().await.expect("EOF before the pong");
        if f.opcode != OP_BINARY {
            break f;
        }
    };
    assert_eq!(pong.opcode, OP_PONG);
    assert!(pong.fin);
    assert_eq!(pong.payload, b"are you there");
    // An unsolicited pong is ignored and the connection keeps working.
    c.send(&frame(true, OP_PONG, b"")).await;
    c.send(&frame(true, OP_BINARY, &ping_request(7))).await;
    assert_not_exist(c.next_reply().await, 7);
}

#[tokio::test]
async fn close_connection_from_the_client_gets_a_normal_close_frame() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    c.send(&frame(true, OP_BINARY, &CLOSE_CONNECTION)).await;
    assert_eq!(c.close_code().await, 1000);
    c.send(&frame(true, OP_CLOSE, &1000u16.to_be_bytes())).await;
    c.expect_eof().await;
}

#[tokio::test]
async fn a_close_frame_from_the_client_is_answered_then_the_connection_ends() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    c.send(&frame(true, OP_CLOSE, &1000u16.to_be_bytes())).await;
    assert_eq!(c.close_code().await, 1000);
    c.expect_eof().await;
}

#[tokio::test]
async fn server_shutdown_sends_close_connection_then_answers_the_close_frame() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    let shutdown = tokio::spawn(f.server.shutdown(GUARD));
    // Ice's CloseConnection comes first, in a binary frame.
    assert_eq!(c.next_ice().await, Message::CloseConnection);
    // The client answers like Ice does: its close frame; the server replies and ends.
    c.send(&frame(true, OP_CLOSE, &1000u16.to_be_bytes())).await;
    let f = c.next_frame().await.expect("EOF without a close reply");
    assert_eq!(f.opcode, OP_CLOSE);
    c.expect_eof().await;
    timeout(GUARD, shutdown).await.unwrap().unwrap();
}

#[tokio::test]
async fn text_frames_are_a_protocol_error() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    c.send(&frame(true, OP_TEXT, b"hello")).await;
    assert_eq!(c.close_code().await, 1002);
}

#[tokio::test]
async fn unmasked_frames_are_a_protocol_error() {
    let f = start().await;
    let mut c = Client::connect(&f).await;
    let req = ping_request(1);
    let mut bytes = vec![0x80 | OP_BINARY, req.len() as u8];
    bytes.extend_from_slice(&req);
    c.send(&bytes).await;
    assert_eq!(c.close_code().await, 1002);
}

#[tokio::test]
async fn an_oversized_request_head_gets_431() {
    let f = start().await;
    let mut request = upgrade_request("/", Some("ice.zeroc.com"));
    let filler = format!("X-Filler: {}\r\n", "a".repeat(100));
    request.insert_str(request.len() - 2, &filler.repeat(100));
    let (_, head) = http_exchange(&f, &request).await;
    assert_eq!(status(&head), 431, "{head}");
}

#[tokio::test]
async fn a_stalled_upgrade_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::local(dir.path());
    config.tcp = None;
    config.ssl = None;
    config.ws = Some("127.0.0.1:0".into());
    config.connection.tls_handshake_timeout = Duration::from_millis(200);
    let server = Server::bind(config, ObjectAdapter::new()).await.unwrap();
    let mut s = TcpStream::connect(server.ws_addr().unwrap()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    timeout(GUARD, s.read_to_end(&mut rest))
        .await
        .expect("stalled upgrade left open")
        .unwrap();
    assert!(rest.is_empty());
}

#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// wss with an independent client (tungstenite's) over TLS, like a browser's Ice for JavaScript.
#[tokio::test]
async fn wss_serves_the_same_ice_stream_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::local(dir.path());
    config.tcp = None;
    config.ssl = None;
    config.wss = Some("127.0.0.1:0".into());
    let server = Server::bind(config, ObjectAdapter::new()).await.unwrap();
    let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnything))
    .with_no_client_auth();
    let tcp = TcpStream::connect(server.wss_addr().unwrap())
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut request = "wss://127.0.0.1/omero-ws".into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "ice.zeroc.com".parse().unwrap());
    let (mut ws, response) = timeout(GUARD, tokio_tungstenite::client_async(request, tls))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        "ice.zeroc.com"
    );
    ws.send(WsMessage::Binary(ping_request(5).into()))
        .await
        .unwrap();
    let mut codec = IceCodec::new(1 << 24);
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let Some(m) = codec.decode(&mut buf).unwrap() {
            seen.push(m.message);
            continue;
        }
        match timeout(GUARD, ws.next()).await.unwrap() {
            Some(Ok(WsMessage::Binary(b))) => buf.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen[0], Message::ValidateConnection);
    match &seen[1] {
        Message::Reply(r) => assert_eq!(r.request_id, 5),
        other => panic!("unexpected {other:?}"),
    }
    ws.close(None).await.unwrap();
    // The server answers our close frame, then ends the connection.
    while let Some(Ok(m)) = timeout(GUARD, ws.next()).await.unwrap() {
        assert!(matches!(m, WsMessage::Close(_)), "{m:?}");
    }
}

/// A peer that keeps sending requests but never reads their replies cannot hold its
/// connection open: the driver's stalled write ends it and the pump follows. (A peer that
/// also stops sending is covered by the outbound half's own write limit, unit-tested in
/// the ws module: loopback socket buffers are too large to stage it here reliably.)
#[tokio::test]
async fn a_peer_that_never_reads_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::local(dir.path());
    config.tcp = None;
    config.ssl = None;
    config.ws = Some("127.0.0.1:0".into());
    config.connection.close_timeout = Duration::from_millis(300);
    let server = Server::bind(config, ObjectAdapter::new()).await.unwrap();
    let mut s = TcpStream::connect(server.ws_addr().unwrap()).await.unwrap();
    s.write_all(upgrade_request("/", Some("ice.zeroc.com")).as_bytes())
        .await
        .unwrap();
    // Unknown identities are echoed in the ObjectNotExist replies, so each reply is as big
    // as its request: enough of them fill every buffer on the way back.
    let mut req = Request {
        request_id: 1,
        id: Identity::new("", "n".repeat(100_000)),
        facet: String::new(),
        operation: "ice_ping".into(),
        mode: 1,
        context: Context::new(),
        encoding: Encoding::V1_1.into(),
        params: Bytes::new(),
    };
    let (_rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for id in 1..=2000 {
            req.request_id = id;
            if wr
                .write_all(&frame(true, OP_BINARY, &req.encode()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    timeout(GUARD, async {
        while server.connection_count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("connection never accepted");
    let gone = timeout(GUARD, async {
        while server.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    writer.abort();
    assert!(gone.is_ok(), "the stalled connection is still open");
}

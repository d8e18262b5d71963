//! The runtime over real sockets on 127.0.0.1. Timeouts here only guard against hangs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use omero_sessiond::config::ServerConfig;
use omero_sessiond::encoding::{Context, Encoding, Identity, OutputStream, UserException};
use omero_sessiond::protocol::{
    compress_frame, encode_batch, IceCodec, Inbound, Message, Reply, ReplyBody, Request,
    CLOSE_CONNECTION, VALIDATE_CONNECTION,
};
use omero_sessiond::runtime::{
    ConnectionInfo, Current, Dispatch, DispatchError, Located, Locator, ObjectAdapter, Server,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

const GUARD: Duration = Duration::from_secs(20);

/// A servant with a few test operations.
#[derive(Default)]
struct TestServant {
    calls: AtomicUsize,
    gate: tokio::sync::Notify,
}

#[async_trait]
impl Dispatch for TestServant {
    fn type_ids(&self) -> &'static [&'static str] {
        &["::Ice::Object", "::Test::Servant"]
    }
    fn most_derived_type_id(&self) -> &'static str {
        "::Test::Servant"
    }
    async fn dispatch(&self, current: &Current, params: &[u8]) -> Result<Vec<u8>, DispatchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match current.operation.as_str() {
            "count" => {
                let mut w = OutputStream::new(current.encoding);
                w.write_i32(self.calls.load(Ordering::SeqCst) as i32);
                Ok(w.into_bytes())
            }
            "echo" => Ok(params.to_vec()),
            "big" => Ok(vec![b'x'; 5000]),
            "sleep" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(Vec::new())
            }
            "deny" => Err(DispatchError::User(Box::new(Denied))),
            "wait" => {
                self.gate.notified().await;
                Ok(Vec::new())
            }
            "release" => {
                self.gate.notify_waiters();
                Ok(Vec::new())
            }
            "kill" => {
                current.connection.handle.close(false);
                Ok(Vec::new())
            }
            "callback" => {
                // Calls back into the client over the same connection.
                let r = request(0, Identity::new("client", "cb"), "ice_ping", &[]);
                let reply = current.connection.handle.invoke(r).await;
                let mut w = OutputStream::new(current.encoding);
                w.write_bool(matches!(reply, Ok(ReplyBody::Ok { .. })));
                Ok(w.into_bytes())
            }
            "typed_callback" => {
                // The same through a proxy generated from Slice, with the connection as invoker.
                let prx = omero_sessiond::generated::omero::api::ClientCallbackPrx {
                    proxy: omero_sessiond::encoding::Proxy::new(Identity::new("client", "cb")),
                    invoker: Arc::new(current.connection.handle.clone()),
                };
                let ok = prx.request_heartbeat(&Default::default()).await.is_ok();
                let mut w = OutputStream::new(current.encoding);
                w.write_bool(ok);
                Ok(w.into_bytes())
            }
            "closeme" => {
                current.connection.handle.close(true);
                Ok(Vec::new())
            }
            _ => Err(DispatchError::OperationNotExist),
        }
    }
}

#[derive(Debug, Clone)]
struct Denied;

impl UserException for Denied {
    fn ice_id(&self) -> &'static str {
        "::Test::Denied"
    }
    fn find(&self, type_id: &str) -> Option<&dyn std::any::Any> {
        (type_id == self.ice_id()).then_some(self as &dyn std::any::Any)
    }
    fn encode_slices(&self, w: &mut OutputStream) {
        w.start_exception_slice(self.ice_id(), true);
        w.end_exception_slice();
    }
    fn uses_classes(&self) -> bool {
        false
    }
    fn clone_exception(&self) -> Box<dyn UserException> {
        Box::new(self.clone())
    }
}

struct Fixture {
    server: Server,
    servant: Arc<TestServant>,
    _dir: tempfile::TempDir,
}

async fn start_with(edit: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::local(dir.path());
    edit(&mut config);
    let adapter = ObjectAdapter::new();
    let servant = Arc::new(TestServant::default());
    adapter.add(Identity::new("test", "servant"), servant.clone());
    let server = Server::bind(config, adapter).await.unwrap();
    Fixture {
        server,
        servant,
        _dir: dir,
    }
}

async fn start() -> Fixture {
    start_with(|_| {}).await
}

type Client = Framed<TcpStream, IceCodec>;

/// Connects and reads the server's ValidateConnection.
async fn connect(f: &Fixture) -> Client {
    let tcp = TcpStream::connect(f.server.tcp_addr().unwrap())
        .await
        .unwrap();
    let mut client = Framed::new(tcp, IceCodec::new(1 << 24));
    let first = next(&mut client).await;
    assert_eq!(first.message, Message::ValidateConnection);
    client
}

async fn next(client: &mut Client) -> Inbound {
    timeout(GUARD, client.next())
        .await
        .expect("hang guard")
        .expect("connection closed")
        .expect("protocol error")
}

async fn next_reply(client: &mut Client) -> (u8, Reply) {
    loop {
        let m = next(client).await;
        match m.message {
            Message::Reply(r) => return (m.compression, r),
            Message::ValidateConnection => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn request(id: i32, identity: Identity, operation: &str, params: &[u8]) -> Request {
    Request {
        request_id: id,
        id: identity,
        facet: String::new(),
        operation: operation.into(),
        mode: 0,
        context: Context::new(),
        encoding: Encoding::V1_1.into(),
        params: Bytes::copy_from_slice(params),
    }
}

fn servant_id() -> Identity {
    Identity::new("test", "servant")
}

async fn send(client: &mut Client, frame: Vec<u8>) {
    client.send(Bytes::from(frame)).await.unwrap();
}

/// Reads until EOF (or an error), which is how a closed connection shows.
async fn expect_closed(client: &mut Client) {
    let end = timeout(GUARD, async {
        loop {
            match client.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "connection not closed");
}

#[tokio::test]
async fn validates_first_and_answers_ping_and_unknown_identity() {
    let f = start().await;
    let mut c = connect(&f).await;
    send(&mut c, request(1, servant_id(), "ice_ping", &[]).encode()).await;
    let (flag, reply) = next_reply(&mut c).await;
    assert_eq!(flag, 0);
    assert_eq!(reply.request_id, 1);
    assert!(matches!(reply.body, ReplyBody::Ok { ref payload, .. } if payload.is_empty()));

    send(
        &mut c,
        request(2, Identity::new("", "nobody"), "ice_ping", &[]).encode(),
    )
    .await;
    let (_, reply) = next_reply(&mut c).await;
    match reply.body {
        ReplyBody::ObjectNotExist(n) => {
            assert_eq!(n.id, Identity::new("", "nobody"));
            assert_eq!(n.operation, "ice_ping");
        }
        other => panic!("{other:?}"),
    }

    send(&mut c, request(3, servant_id(), "nope", &[]).encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    assert!(matches!(reply.body, ReplyBody::OperationNotExist(_)));
}

#[tokio::test]
async fn reply_uses_the_request_encoding() {
    let f = start().await;
    let mut c = connect(&f).await;
    let mut r = request(1, servant_id(), "ice_id", &[]);
    r.encoding = Encoding::V1_0.into();
    send(&mut c, r.encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    match reply.body {
        ReplyBody::Ok { encoding, payload } => {
            assert_eq!(encoding, Encoding::V1_0.into());
            assert_eq!(&payload[1..], b"::Test::Servant");
        }
        other => panic!("{other:?}"),
    }
    let mut r = request(2, servant_id(), "ice_ping", &[]);
    r.encoding.minor = 9;
    send(&mut c, r.encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    assert!(matches!(reply.body, ReplyBody::UnknownLocal(_)));
}

#[tokio::test]
async fn user_exceptions_are_status_one_in_the_request_encoding() {
    let f = start().await;
    let mut c = connect(&f).await;
    for (id, encoding) in [(1, Encoding::V1_1), (2, Encoding::V1_0)] {
        let mut r = request(id, servant_id(), "deny", &[]);
        r.encoding = encoding.into();
        send(&mut c, r.encode()).await;
        let (_, reply) = next_reply(&mut c).await;
        match reply.body {
            ReplyBody::UserException {
                encoding: e,
                payload,
            } => {
                assert_eq!(e, encoding.into());
                let mut expected = if encoding == Encoding::V1_1 {
                    vec![0x30, 14]
                } else {
                    vec![0x00, 14]
                };
                expected.extend_from_slice(b"::Test::Denied");
                expected.extend_from_slice(&[4, 0, 0, 0]);
                assert_eq!(&payload[..], &expected[..]);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn two_hundred_pipelined_requests_are_all_answered() {
    let f = start().await;
    let mut c = connect(&f).await;
    let mut wire = Vec::new();
    for id in 1..=200 {
        let op = if id % 3 == 0 { "sleep" } else { "ice_ping" };
        wire.extend(request(id, servant_id(), op, &[]).encode());
    }
    c.get_mut().write_all(&wire).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 200 {
        let (_, reply) = next_reply(&mut c).await;
        assert!(matches!(reply.body, ReplyBody::Ok { .. }));
        assert!(seen.insert(reply.request_id));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn oneways_and_batches_get_no_reply_but_run() {
    let f = start().await;
    let mut c = connect(&f).await;
    let mut wire = Vec::new();
    for _ in 0..300 {
        wire.extend(request(0, servant_id(), "echo", &[]).encode());
    }
    let batch: Vec<Request> = (0..50)
        .map(|_| request(0, servant_id(), "echo", &[]))
        .collect();
    wire.extend(encode_batch(&batch));
    // A batch entry for an unknown object is skipped without harm.
    wire.extend(encode_batch(&[request(
        0,
        Identity::new("", "gone"),
        "x",
        &[],
    )]));
    c.get_mut().write_all(&wire).await.unwrap();
    // Oneways run concurrently: poll until all 350 have been dispatched.
    timeout(GUARD, async {
        while f.servant.calls.load(Ordering::SeqCst) < 350 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    send(&mut c, request(7, servant_id(), "ice_ping", &[]).encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    assert_eq!(reply.request_id, 7, "the first reply is the twoway's");
}

#[tokio::test]
async fn compression_follows_the_request() {
    let f = start().await;
    let mut c = connect(&f).await;
    let plain = request(1, servant_id(), "big", &[0; 200]).encode();
    send(&mut c, compress_frame(&plain, 1).unwrap()).await;
    let (flag, reply) = next_reply(&mut c).await;
    assert_eq!(flag, 2);
    assert!(matches!(reply.body, ReplyBody::Ok { ref payload, .. } if payload.len() == 5000));

    send(&mut c, request(2, servant_id(), "big", &[]).encode()).await;
    let (flag, _) = next_reply(&mut c).await;
    assert_eq!(flag, 0, "never compress for a peer that sent 0");

    let mut small = request(3, servant_id(), "ice_ping", &[]).encode();
    small[9] = 1;
    send(&mut c, small).await;
    let (flag, reply) = next_reply(&mut c).await;
    assert_eq!((flag, reply.request_id), (1, 3));
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let f = start().await;
    let mut good = connect(&f).await;

    let mut bad = connect(&f).await;
    let mut garbage = vec![0u8; 4096];
    let mut x: u32 = 7;
    for b in garbage.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    bad.get_mut().write_all(&garbage).await.unwrap();
    expect_closed(&mut bad).await;

    let mut huge = connect(&f).await;
    let header = [
        0x49, 0x63, 0x65, 0x50, 1, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f,
    ];
    huge.get_mut().write_all(&header).await.unwrap();
    expect_closed(&mut huge).await;

    let mut bad_facet = connect(&f).await;
    let mut r = request(1, Identity::new("", "x"), "ice_ping", &[]);
    r.facet = "f".into();
    let mut frame = r.encode();
    frame[21] = 2;
    send(&mut bad_facet, frame).await;
    expect_closed(&mut bad_facet).await;

    send(
        &mut good,
        request(1, servant_id(), "ice_ping", &[]).encode(),
    )
    .await;
    let (_, reply) = next_reply(&mut good).await;
    assert_eq!(reply.request_id, 1);
}

#[tokio::test]
async fn half_open_connections_do_not_block_others() {
    let f = start().await;
    let mut idle = Vec::new();
    for _ in 0..25 {
        // Connected, never reading: and a header with no body following.
        let mut s = TcpStream::connect(f.server.tcp_addr().unwrap())
            .await
            .unwrap();
        s.write_all(&[0x49, 0x63, 0x65, 0x50, 1, 0, 1, 0, 0, 0, 100, 0, 0, 0])
            .await
            .unwrap();
        idle.push(s);
        // TLS connections that never start the handshake.
        idle.push(
            TcpStream::connect(f.server.ssl_addr().unwrap())
                .await
                .unwrap(),
        );
    }
    let mut c = connect(&f).await;
    send(&mut c, request(1, servant_id(), "ice_ping", &[]).encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    assert_eq!(reply.request_id, 1);
    drop(idle);
}

#[tokio::test]
async fn unfinished_message_times_out() {
    let f = start_with(|c| c.connection.message_timeout = Duration::from_millis(300)).await;
    let mut c = connect(&f).await;
    c.get_mut()
        .write_all(&[0x49, 0x63, 0x65, 0x50, 1, 0, 1, 0, 0, 0, 100, 0, 0, 0])
        .await
        .unwrap();
    expect_closed(&mut c).await;
}

#[tokio::test]
async fn close_connection_from_the_client_closes_at_once() {
    let f = start().await;
    let mut c = connect(&f).await;
    c.get_mut().write_all(&CLOSE_CONNECTION).await.unwrap();
    let mut buf = [0u8; 64];
    let n = timeout(GUARD, c.get_mut().read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "server closed without sending anything");
}

#[tokio::test]
async fn heartbeats_are_sent_and_accepted() {
    let f = start_with(|c| c.connection.heartbeat = Some(Duration::from_millis(100))).await;
    let mut c = connect(&f).await;
    c.get_mut().write_all(&VALIDATE_CONNECTION).await.unwrap();
    let m = next(&mut c).await;
    assert_eq!(m.message, Message::ValidateConnection);
    send(&mut c, request(1, servant_id(), "ice_ping", &[]).encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    assert_eq!(reply.request_id, 1);
}

#[tokio::test]
async fn idle_connections_are_dropped_when_configured() {
    let f = start_with(|c| {
        c.connection.idle_timeout = Some(Duration::from_millis(300));
        c.connection.heartbeat = None;
    })
    .await;
    let mut c = connect(&f).await;
    expect_closed(&mut c).await;
}

#[tokio::test]
async fn servant_closes_its_connection_gracefully() {
    let f = start().await;
    let mut c = connect(&f).await;
    let mut wire = request(1, servant_id(), "sleep", &[]).encode();
    wire.extend(request(2, servant_id(), "closeme", &[]).encode());
    c.get_mut().write_all(&wire).await.unwrap();
    let mut replies = Vec::new();
    loop {
        let m = next(&mut c).await;
        match m.message {
            Message::Reply(r) => replies.push(r.request_id),
            Message::CloseConnection => break,
            Message::ValidateConnection => {}
            other => panic!("{other:?}"),
        }
    }
    replies.sort();
    assert_eq!(
        replies,
        vec![1, 2],
        "every owed reply comes before CloseConnection"
    );
    // The server waits for our EOF.
    c.get_mut().shutdown().await.unwrap();
    expect_closed(&mut c).await;
}

#[tokio::test]
async fn shutdown_sends_owed_replies_then_close() {
    let f = start().await;
    let mut c = connect(&f).await;
    send(&mut c, request(1, servant_id(), "sleep", &[]).encode()).await;
    // Make sure the request is being dispatched before shutting down.
    timeout(GUARD, async {
        while f.servant.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let server = f.server;
    let stop = tokio::spawn(async move { server.shutdown(GUARD).await });
    let (_, reply) = next_reply(&mut c).await;
    assert_eq!(reply.request_id, 1);
    assert_eq!(next(&mut c).await.message, Message::CloseConnection);
    drop(c);
    timeout(GUARD, stop).await.unwrap().unwrap();
}

#[tokio::test]
async fn messages_split_into_single_bytes_still_work() {
    let f = start().await;
    let mut c = connect(&f).await;
    let frame = request(5, servant_id(), "ice_ping", &[]).encode();
    for b in frame {
        c.get_mut().write_all(&[b]).await.unwrap();
        c.get_mut().flush().await.unwrap();
    }
    let (_, reply) = next_reply(&mut c).await;
    assert_eq!(reply.request_id, 5);
}

#[tokio::test]
async fn a_slow_dispatch_does_not_block_later_replies() {
    let f = start().await;
    let mut c = connect(&f).await;
    send(&mut c, request(1, servant_id(), "wait", &[]).encode()).await;
    timeout(GUARD, async {
        while f.servant.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    send(&mut c, request(2, servant_id(), "ice_ping", &[]).encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    assert_eq!(reply.request_id, 2, "answered while 1 is still running");
    send(&mut c, request(3, servant_id(), "release", &[]).encode()).await;
    let mut ids = vec![
        next_reply(&mut c).await.1.request_id,
        next_reply(&mut c).await.1.request_id,
    ];
    ids.sort();
    assert_eq!(ids, vec![1, 3]);
}

#[tokio::test]
async fn servant_can_drop_its_connection() {
    let f = start().await;
    let mut c = connect(&f).await;
    send(&mut c, request(1, servant_id(), "kill", &[]).encode()).await;
    expect_closed(&mut c).await;
    let mut other = connect(&f).await;
    send(
        &mut other,
        request(1, servant_id(), "ice_ping", &[]).encode(),
    )
    .await;
    assert_eq!(next_reply(&mut other).await.1.request_id, 1);
}

#[tokio::test]
async fn servant_calls_back_into_the_client() {
    let f = start().await;
    let mut c = connect(&f).await;
    send(&mut c, request(1, servant_id(), "callback", &[]).encode()).await;
    let callback = loop {
        match next(&mut c).await.message {
            Message::Request(r) => break r,
            Message::ValidateConnection => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(callback.id, Identity::new("client", "cb"));
    assert_eq!(
        callback.request_id, 1,
        "the server's own id counter starts at 1"
    );
    let answer = Reply {
        request_id: callback.request_id,
        body: ReplyBody::Ok {
            encoding: Encoding::V1_1.into(),
            payload: Bytes::new(),
        },
    };
    send(&mut c, answer.encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    assert_eq!(reply.request_id, 1);
    assert!(matches!(reply.body, ReplyBody::Ok { ref payload, .. } if payload[..] == [1]));
}

#[tokio::test]
async fn generated_proxy_calls_back_over_the_connection() {
    let f = start().await;
    let mut c = connect(&f).await;
    send(
        &mut c,
        request(1, servant_id(), "typed_callback", &[]).encode(),
    )
    .await;
    let callback = loop {
        match next(&mut c).await.message {
            Message::Request(r) => break r,
            Message::ValidateConnection => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(callback.id, Identity::new("client", "cb"));
    assert_eq!(callback.operation, "requestHeartbeat");
    let answer = Reply {
        request_id: callback.request_id,
        body: ReplyBody::Ok {
            encoding: Encoding::V1_1.into(),
            payload: Bytes::new(),
        },
    };
    send(&mut c, answer.encode()).await;
    let (_, reply) = next_reply(&mut c).await;
    assert!(matches!(reply.body, ReplyBody::Ok { ref payload, .. } if payload[..] == [1]));
}

/// Lets only category "open" through and records closed connections.
#[derive(Default)]
struct Gatekeeper {
    closed: std::sync::Mutex<Vec<u64>>,
    servant: Arc<TestServant>,
}

impl Locator for Gatekeeper {
    fn find(&self, current: &Current) -> Located {
        if current.id.category == "open" {
            Located::Servant(self.servant.clone())
        } else {
            Located::Denied
        }
    }
    fn connection_closed(&self, connection: &ConnectionInfo) {
        self.closed.lock().unwrap().push(connection.id);
    }
}

#[tokio::test]
async fn locator_decides_and_hears_of_closed_connections() {
    let f = start().await;
    let keeper = Arc::new(Gatekeeper::default());
    f.server.adapter().set_locator(keeper.clone());
    let mut c = connect(&f).await;
    send(&mut c, request(1, servant_id(), "ice_ping", &[]).encode()).await;
    assert!(matches!(
        next_reply(&mut c).await.1.body,
        ReplyBody::ObjectNotExist(_)
    ));
    send(
        &mut c,
        request(2, Identity::new("open", "x"), "ice_ping", &[]).encode(),
    )
    .await;
    assert!(matches!(
        next_reply(&mut c).await.1.body,
        ReplyBody::Ok { .. }
    ));
    drop(c);
    timeout(GUARD, async {
        while keeper.closed.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stalled_tls_handshake_is_dropped() {
    let f = start_with(|c| c.connection.tls_handshake_timeout = Duration::from_millis(200)).await;
    let mut s = TcpStream::connect(f.server.ssl_addr().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = timeout(GUARD, s.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0);
}

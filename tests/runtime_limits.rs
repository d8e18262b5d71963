//! Connection admission (caps in total and per address) and the login deadline, over real
//! sockets on 127.0.0.1 with tiny limits. Timeouts here only guard against hangs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use omero_sessiond::auth::{NewExperimenter, Password};
use omero_sessiond::config::{ConnectionConfig, ServerConfig};
use omero_sessiond::encoding::{Context, Encoding, Identity, OutputStream};
use omero_sessiond::protocol::{IceCodec, Message, ReplyBody, Request};
use omero_sessiond::router::{install, RouterConfig};
use omero_sessiond::runtime::{Current, Dispatch, DispatchError, ObjectAdapter, Server};
use omero_sessiond::services::open_services;
use omero_sessiond::sessions::SessionConfig;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

mod log_capture;

const GUARD: Duration = Duration::from_secs(20);

struct Fixture {
    server: Server,
    _dir: tempfile::TempDir,
}

async fn start(edit: impl FnOnce(&mut ConnectionConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let services = open_services(dir.path(), &SessionConfig::default()).unwrap();
    services
        .directory
        .add_experimenter(NewExperimenter {
            ome_name: "alice".into(),
            first_name: None,
            last_name: None,
            email: None,
            password: Password::new("alicepw"),
            admin: false,
            groups: Vec::new(),
            owner_of: Vec::new(),
        })
        .unwrap();
    let adapter = ObjectAdapter::new();
    install(&adapter, RouterConfig::default(), services);
    let mut config = ServerConfig::local(dir.path());
    edit(&mut config.connection);
    let server = Server::bind(config, adapter).await.unwrap();
    Fixture { server, _dir: dir }
}

type Client = Framed<TcpStream, IceCodec>;

/// What became of a fresh connection.
enum Opened {
    /// The server validated it.
    Admitted(Client),
    /// The server closed it without a byte.
    Refused,
}

async fn open(f: &Fixture) -> Opened {
    let tcp = TcpStream::connect(f.server.tcp_addr().unwrap())
        .await
        .unwrap();
    let mut client = Framed::new(tcp, IceCodec::new(1 << 24));
    match timeout(GUARD, client.next()).await.expect("hang guard") {
        Some(Ok(m)) if m.message == Message::ValidateConnection => Opened::Admitted(client),
        Some(Ok(m)) => panic!("unexpected first message {:?}", m.message),
        None | Some(Err(_)) => Opened::Refused,
    }
}

async fn admitted(f: &Fixture) -> Client {
    match open(f).await {
        Opened::Admitted(c) => c,
        Opened::Refused => panic!("connection refused"),
    }
}

fn router_id() -> Identity {
    Identity::new("OMERO.Glacier2", "router")
}

async fn call(c: &mut Client, request_id: i32, operation: &str, params: Vec<u8>) -> ReplyBody {
    let mut ctx = Context::new();
    ctx.insert("omero.client.uuid".into(), format!("limits-{request_id}"));
    let request = Request {
        request_id,
        id: router_id(),
        facet: String::new(),
        operation: operation.into(),
        mode: 0,
        context: ctx,
        encoding: Encoding::V1_1.into(),
        params: Bytes::from(params),
    };
    c.send(Bytes::from(request.encode())).await.unwrap();
    loop {
        let m = timeout(GUARD, c.next())
            .await
            .expect("hang guard")
            .expect("connection closed")
            .expect("protocol error");
        match m.message {
            Message::Reply(r) if r.request_id == request_id => return r.body,
            _ => continue,
        }
    }
}

async fn ping(c: &mut Client, request_id: i32) -> bool {
    matches!(
        call(c, request_id, "ice_ping", Vec::new()).await,
        ReplyBody::Ok { .. }
    )
}

async fn login(c: &mut Client) {
    let mut w = OutputStream::new(Encoding::V1_1);
    w.write_string("alice");
    w.write_string("alicepw");
    let reply = call(c, 1, "createSession", w.into_bytes()).await;
    assert!(matches!(reply, ReplyBody::Ok { .. }), "{reply:?}");
}

/// Reads until the server closes: true for a CloseConnection (after which a client closes
/// its end, as Ice does, rather than wait for the server to give up on it), false for an
/// end without one.
async fn closed(c: &mut Client) -> bool {
    timeout(GUARD, async {
        loop {
            match c.next().await {
                None | Some(Err(_)) => return false,
                Some(Ok(m)) if m.message == Message::CloseConnection => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("connection not closed")
}

/// The server drops its count of a closed connection when the connection's task ends,
/// a moment after the client sees EOF.
async fn wait_until_open_is(f: &Fixture, n: usize) {
    timeout(GUARD, async {
        while f.server.admission().open() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the count never dropped");
}

#[tokio::test]
async fn per_address_cap_refuses_and_established_clients_go_on() {
    let f = start(|c| c.max_connections_per_address = Some(2)).await;
    let mut first = admitted(&f).await;
    let second = admitted(&f).await;
    assert!(matches!(open(&f).await, Opened::Refused));
    assert!(matches!(open(&f).await, Opened::Refused));
    assert!(ping(&mut first, 7).await, "established client still served");
    assert_eq!(f.server.admission().open(), 2);

    drop(second);
    wait_until_open_is(&f, 1).await;
    let mut third = admitted(&f).await;
    assert!(ping(&mut third, 8).await);
}

#[tokio::test]
async fn total_cap_counts_tcp_and_ssl_and_refuses_before_the_tls_handshake() {
    let f = start(|c| c.max_connections = Some(1)).await;
    let mut first = admitted(&f).await;
    // A refused ssl connection is closed before the server reads or writes a byte of TLS.
    let mut raw = TcpStream::connect(f.server.ssl_addr().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = timeout(GUARD, raw.read(&mut buf))
        .await
        .expect("hang guard")
        .unwrap_or(0);
    assert_eq!(n, 0, "refused ssl connection is closed at once");
    assert!(matches!(open(&f).await, Opened::Refused));
    assert!(ping(&mut first, 3).await);
}

#[tokio::test]
async fn a_connection_that_never_logs_in_is_closed_and_a_logged_in_one_is_not() {
    // Long enough for the login request to arrive on a busy machine; a login still being
    // served at the deadline is waited for.
    let f = start(|c| c.login_timeout = Some(Duration::from_secs(3))).await;
    let mut logged_in = admitted(&f).await;
    login(&mut logged_in).await;
    let mut idle = admitted(&f).await;
    assert!(closed(&mut idle).await, "closed with CloseConnection");
    // `logged_in` opened before `idle`, so its deadline has passed as well.
    assert!(ping(&mut logged_in, 2).await, "logged-in connection kept");
    drop(idle);
    wait_until_open_is(&f, 1).await;
}

#[tokio::test]
async fn without_a_login_deadline_an_idle_connection_stays() {
    let f = start(|c| c.login_timeout = None).await;
    let mut idle = admitted(&f).await;
    // Another connection that does time out shows the clock has moved far enough.
    let other = start(|c| c.login_timeout = Some(Duration::from_millis(200))).await;
    let mut timed = admitted(&other).await;
    assert!(closed(&mut timed).await);
    assert!(ping(&mut idle, 1).await);
}

#[test]
fn caps_default_to_generous_values() {
    let c = ConnectionConfig::default();
    assert!(c.max_connections.is_some_and(|n| n >= 1000));
    assert!(c.max_connections_per_address.is_some_and(|n| n >= 100));
    assert_eq!(c.login_timeout, Some(Duration::from_secs(60)));
}

#[tokio::test(flavor = "current_thread")]
async fn runtime_logs_show_no_password_even_at_trace() {
    let (logs, _guard) = log_capture::capture("omero_sessiond::runtime=trace");
    let f = start(|_| {}).await;
    let mut c = admitted(&f).await;
    login(&mut c).await;
    drop(c);
    wait_until_open_is(&f, 0).await;
    let text = logs.text();
    assert!(
        text.contains("inbound request") && text.contains("createSession"),
        "nothing captured: {text}"
    );
    assert!(!text.contains("alicepw"), "{text}");
}

/// A login that takes as long as the test wants: `login` waits for the gate, then marks the
/// connection logged in if `succeeds`.
struct SlowLogin {
    entered: tokio::sync::Notify,
    gate: tokio::sync::Notify,
    succeeds: bool,
}

#[async_trait]
impl Dispatch for SlowLogin {
    fn type_ids(&self) -> &'static [&'static str] {
        &["::Ice::Object", "::Test::SlowLogin"]
    }
    fn most_derived_type_id(&self) -> &'static str {
        "::Test::SlowLogin"
    }
    async fn dispatch(&self, current: &Current, _params: &[u8]) -> Result<Vec<u8>, DispatchError> {
        if current.operation == "login" {
            self.entered.notify_one();
            self.gate.notified().await;
            if self.succeeds {
                current.connection.handle.mark_logged_in();
            }
        }
        Ok(Vec::new())
    }
}

async fn slow_login_server(succeeds: bool) -> (Fixture, Arc<SlowLogin>) {
    let dir = tempfile::tempdir().unwrap();
    let adapter = ObjectAdapter::new();
    let servant = Arc::new(SlowLogin {
        entered: tokio::sync::Notify::new(),
        gate: tokio::sync::Notify::new(),
        succeeds,
    });
    adapter.add(router_id(), servant.clone());
    let mut config = ServerConfig::local(dir.path());
    config.connection.login_timeout = Some(Duration::from_millis(200));
    let server = Server::bind(config, adapter).await.unwrap();
    (Fixture { server, _dir: dir }, servant)
}

/// Sends `login` and, once a later connection has been closed by its own deadline (so this
/// one's has passed too, with the login still running), lets the login finish.
/// Nothing here depends on how fast the machine is.
async fn login_across_the_deadline(f: &Fixture, servant: &SlowLogin) -> Client {
    let mut c = admitted(f).await;
    let request = Request {
        request_id: 1,
        id: router_id(),
        facet: String::new(),
        operation: "login".into(),
        mode: 0,
        context: Context::new(),
        encoding: Encoding::V1_1.into(),
        params: Bytes::new(),
    };
    c.send(Bytes::from(request.encode())).await.unwrap();
    timeout(GUARD, servant.entered.notified())
        .await
        .expect("login dispatched");
    let mut later = admitted(f).await;
    assert!(closed(&mut later).await);
    servant.gate.notify_one();
    let reply = loop {
        let m = timeout(GUARD, c.next())
            .await
            .expect("hang guard")
            .expect("connection closed before the login reply")
            .expect("protocol error");
        if let Message::Reply(r) = m.message {
            break r;
        }
    };
    assert!(matches!(reply.body, ReplyBody::Ok { .. }));
    c
}

#[tokio::test]
async fn a_login_still_running_at_the_deadline_is_waited_for() {
    let (f, servant) = slow_login_server(true).await;
    let mut c = login_across_the_deadline(&f, &servant).await;
    assert!(ping(&mut c, 2).await, "logged in, so kept");
}

#[tokio::test]
async fn a_failed_login_running_at_the_deadline_closes_the_connection_after_it() {
    let (f, servant) = slow_login_server(false).await;
    let mut c = login_across_the_deadline(&f, &servant).await;
    assert!(closed(&mut c).await);
}

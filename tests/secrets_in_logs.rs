//! Passwords given to Glacier2's `createSession` never reach the logs, even at TRACE, where
//! the runtime logs every inbound request.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use omero_sessiond::auth::{NewExperimenter, Password};
use omero_sessiond::config::ServerConfig;
use omero_sessiond::encoding::{Context, Encoding, Identity, OutputStream};
use omero_sessiond::protocol::{IceCodec, Message, ReplyBody, Request};
use omero_sessiond::router::{install, RouterConfig};
use omero_sessiond::runtime::{ObjectAdapter, Server};
use omero_sessiond::services::open_services;
use omero_sessiond::sessions::SessionConfig;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

mod log_capture;

const GUARD: Duration = Duration::from_secs(20);
const GOOD: &str = "Al1ceSecretPw";
const BAD: &str = "Wr0ngHunter2";

async fn create_session(
    framed: &mut Framed<TcpStream, IceCodec>,
    request_id: i32,
    password: &str,
) -> ReplyBody {
    let mut w = OutputStream::new(Encoding::V1_1);
    w.write_string("alice");
    w.write_string(password);
    let request = Request {
        request_id,
        id: Identity::new("OMERO.Glacier2", "router"),
        facet: String::new(),
        operation: "createSession".into(),
        mode: 0,
        context: Context::from([(
            "omero.client.uuid".to_string(),
            "3f1c2a9e-secrets-test".to_string(),
        )]),
        encoding: Encoding::V1_1.into(),
        params: Bytes::from(w.into_bytes()),
    };
    framed.send(Bytes::from(request.encode())).await.unwrap();
    loop {
        let m = timeout(GUARD, framed.next())
            .await
            .expect("hang guard")
            .expect("connection closed")
            .expect("protocol error");
        if let Message::Reply(r) = m.message {
            if r.request_id == request_id {
                return r.body;
            }
        }
    }
}

#[tokio::test]
async fn create_session_passwords_are_not_logged_at_trace() {
    // The test's runtime is single-threaded, so the server's tasks log through it too.
    let (capture, _guard) = log_capture::capture("trace");

    let dir = tempfile::tempdir().unwrap();
    let services = open_services(dir.path(), &SessionConfig::default()).unwrap();
    services
        .directory
        .add_experimenter(NewExperimenter {
            ome_name: "alice".into(),
            first_name: None,
            last_name: None,
            email: None,
            password: Password::new(GOOD),
            admin: false,
            groups: Vec::new(),
            owner_of: Vec::new(),
        })
        .unwrap();
    let adapter = ObjectAdapter::new();
    install(&adapter, RouterConfig::default(), services.clone());
    let server = Server::bind(ServerConfig::local(dir.path()), adapter)
        .await
        .unwrap();
    let tcp = TcpStream::connect(server.tcp_addr().unwrap())
        .await
        .unwrap();
    let mut framed = Framed::new(tcp, IceCodec::new(1 << 24));
    let first = timeout(GUARD, framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.message, Message::ValidateConnection);

    let refused = create_session(&mut framed, 1, BAD).await;
    assert!(
        matches!(refused, ReplyBody::UserException { .. }),
        "{refused:?}"
    );
    let accepted = create_session(&mut framed, 2, GOOD).await;
    assert!(matches!(accepted, ReplyBody::Ok { .. }), "{accepted:?}");

    let logs = capture.text();
    assert!(
        logs.contains("inbound request") && logs.contains("createSession"),
        "the TRACE log of requests is captured: {logs}"
    );
    for secret in [GOOD, BAD] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
    }
}

//! `--metrics`: the Prometheus endpoint over a real socket on 127.0.0.1, scraped after a
//! wrong password, a login, a join and a few calls through the Glacier2 router.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use omero_sessiond::auth::{NewExperimenter, Password};
use omero_sessiond::config::ServerConfig;
use omero_sessiond::encoding::{Encoding, Identity, InputStream, OutputStream, Proxy};
use omero_sessiond::protocol::{IceCodec, Message, ReplyBody, Request};
use omero_sessiond::router::{install, RouterConfig};
use omero_sessiond::runtime::{ObjectAdapter, Server};
use omero_sessiond::services::{open_services, SessionsFileConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::Framed;

const GUARD: Duration = Duration::from_secs(20);

struct Client {
    framed: Framed<TcpStream, IceCodec>,
    next_id: i32,
    client_uuid: String,
}

impl Client {
    async fn connect(server: &Server, client_uuid: &str) -> Client {
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
        Client {
            framed,
            next_id: 1,
            client_uuid: client_uuid.to_string(),
        }
    }

    async fn call(
        &mut self,
        id: &Identity,
        operation: &str,
        mode: u8,
        params: Vec<u8>,
    ) -> ReplyBody {
        let request_id = self.next_id;
        self.next_id += 1;
        let mut context = HashMap::new();
        context.insert("omero.client.uuid".to_string(), self.client_uuid.clone());
        let request = Request {
            request_id,
            id: id.clone(),
            facet: String::new(),
            operation: operation.into(),
            mode,
            context,
            encoding: Encoding::V1_1.into(),
            params: Bytes::from(params),
        };
        self.framed
            .send(Bytes::from(request.encode()))
            .await
            .unwrap();
        loop {
            let m = timeout(GUARD, self.framed.next())
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

    async fn login(&mut self, user: &str, password: &str) -> ReplyBody {
        let mut w = OutputStream::new(Encoding::V1_1);
        w.write_string(user);
        w.write_string(password);
        let router = Identity::new("OMERO.Glacier2", "router");
        self.call(&router, "createSession", 0, w.into_bytes()).await
    }
}

fn proxy_of(body: ReplyBody) -> Proxy {
    match body {
        ReplyBody::Ok { payload, .. } => InputStream::new(&payload, Encoding::V1_1)
            .read_proxy()
            .unwrap()
            .expect("non-null proxy"),
        other => panic!("expected a proxy, got {other:?}"),
    }
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    timeout(GUARD, s.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    text
}

/// The value of the sample line `name` (with its labels), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn counters_move_with_logins_joins_and_calls() {
    let dir = tempfile::tempdir().unwrap();
    let services = open_services(dir.path(), &SessionsFileConfig::default()).unwrap();
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
    omero_sessiond::metrics::attach(&services.metrics, &adapter, services.sessions.clone());
    install(&adapter, RouterConfig::default(), services.clone());
    let server = Server::bind(ServerConfig::local(dir.path()), adapter)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    tokio::spawn(omero_sessiond::metrics::serve(
        listener,
        services.metrics.clone(),
    ));

    let before = scrape(metrics_addr).await;
    assert_eq!(
        sample(&before, "omero_sessiond_logins_total{outcome=\"ok\"}"),
        Some(0.0)
    );
    assert_eq!(sample(&before, "omero_sessiond_sessions_live"), Some(0.0));

    let mut a = Client::connect(&server, "client-a").await;
    assert!(matches!(
        a.login("alice", "wrong").await,
        ReplyBody::UserException { .. }
    ));
    let sf = proxy_of(a.login("alice", "alicepw").await);
    let admin = proxy_of(a.call(&sf.identity, "getAdminService", 0, Vec::new()).await);
    let ec = a
        .call(&admin.identity, "getEventContext", 2, Vec::new())
        .await;
    assert!(matches!(ec, ReplyBody::Ok { .. }), "{ec:?}");
    let uuid = sf.identity.name.clone();
    let mut b = Client::connect(&server, "client-b").await;
    proxy_of(b.login(&uuid, &uuid).await);

    let text = scrape(metrics_addr).await;
    let get = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    assert_eq!(get("omero_sessiond_logins_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(
        get("omero_sessiond_logins_total{outcome=\"bad_password\"}"),
        1.0
    );
    assert_eq!(get("omero_sessiond_session_joins_total"), 1.0);
    assert_eq!(get("omero_sessiond_sessions_live"), 1.0);
    assert_eq!(
        get("omero_sessiond_connections_open{transport=\"tcp\"}"),
        2.0
    );
    assert_eq!(
        get("omero_sessiond_connections_accepted_total{transport=\"tcp\"}"),
        2.0
    );
    let histogram = "omero_sessiond_dispatch_duration_seconds";
    assert_eq!(
        get(&format!("{histogram}_count{{operation=\"createSession\"}}")),
        3.0
    );
    assert_eq!(
        get(&format!(
            "{histogram}_count{{operation=\"getEventContext\"}}"
        )),
        1.0
    );
    assert_eq!(
        get(&format!(
            "{histogram}_bucket{{operation=\"getEventContext\",le=\"+Inf\"}}"
        )),
        1.0
    );

    // Other paths are not served.
    let mut s = TcpStream::connect(metrics_addr).await.unwrap();
    s.write_all(b"GET /other HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    timeout(GUARD, s.read_to_string(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
}

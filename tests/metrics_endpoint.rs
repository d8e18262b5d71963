//! `--metrics`: the Prometheus endpoint over a real socket on 127.0.0.1, scraped after a
//! wrong password, a login, a join and a few calls through the Glacier2 router.

use omero_sessiond::auth::{NewExperimenter, Password};
use omero_sessiond::config::ServerConfig;
use omero_sessiond::protocol::ReplyBody;
use omero_sessiond::router::{install, RouterConfig};
use omero_sessiond::runtime::{ObjectAdapter, Server};
use omero_sessiond::services::open_services;
use omero_sessiond::sessions::SessionConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

mod router_client;
use router_client::{proxy_of, Client, GUARD};

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

    let mut a = Client::connect(server.tcp_addr().unwrap(), "client-a").await;
    assert!(matches!(
        a.login("alice", "wrong").await,
        ReplyBody::UserException { .. }
    ));
    let sf = proxy_of(a.login("alice", "alicepw").await);
    let admin = proxy_of(a.call(&sf.identity, "getAdminService", Vec::new()).await);
    let ec = a.call(&admin.identity, "getEventContext", Vec::new()).await;
    assert!(matches!(ec, ReplyBody::Ok { .. }), "{ec:?}");
    let uuid = sf.identity.name.clone();
    let mut b = Client::connect(server.tcp_addr().unwrap(), "client-b").await;
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

//! The session endpoint's bounds over a real socket (the plain listener, which shares the
//! connection handling with HTTPS): oversize bodies get 413 even when the client writes the
//! whole body before reading, slow bodies get 408, slow headers a closed connection.
//! Timeouts here only guard against hangs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use omero_sessiond::auth::{
    Authenticator, Directory, NewExperimenter, Password, Throttle, ThrottleConfig,
};
use omero_sessiond::http::{HttpConfig, HttpDeps, HttpService, CREATE_PATH};
use omero_sessiond::sessions::{MemorySessionStore, SessionConfig, SessionManager, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

mod log_capture;

const GUARD: Duration = Duration::from_secs(30);

struct Fixture {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _data: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> Fixture {
    start_with(HttpConfig {
        body_limit: 1024,
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    })
    .await
}

async fn start_with(config: HttpConfig) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let directory = Directory::open(data.path()).unwrap();
    directory
        .add_experimenter(NewExperimenter {
            ome_name: "alice".into(),
            first_name: None,
            last_name: None,
            email: None,
            password: Password::new("alicepw"),
            admin: false,
            groups: vec![],
            owner_of: vec![],
        })
        .unwrap();
    let clock = Arc::new(SystemClock);
    let sessions = Arc::new(SessionManager::<()>::new(
        SessionConfig::default(),
        clock.clone(),
        Arc::new(MemorySessionStore::default()),
    ));
    let throttle = Arc::new(Throttle::new(ThrottleConfig::default(), clock));
    let service = HttpService::new(
        HttpDeps {
            sessions,
            auth: Authenticator::new(directory, throttle),
        },
        config,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        service
            .serve_http(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    Fixture {
        addr,
        stop: Some(stop),
        _data: data,
    }
}

fn head(content_length: usize) -> String {
    format!(
        "POST {CREATE_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// Reads the answer to the end; status and JSON body.
async fn answer(stream: &mut TcpStream) -> (u16, serde_json::Value) {
    let mut raw = Vec::new();
    timeout(GUARD, stream.read_to_end(&mut raw))
        .await
        .expect("hang guard")
        .expect("the answer arrives, not a reset");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    (status, json)
}

/// Writes the whole request before reading anything, as Python's urllib does.
async fn send_all_then_read(f: &Fixture, body_len: usize) -> (u16, serde_json::Value) {
    let mut stream = TcpStream::connect(f.addr).await.unwrap();
    let mut request = head(body_len).into_bytes();
    request.extend(std::iter::repeat_n(b' ', body_len));
    timeout(GUARD, stream.write_all(&request))
        .await
        .expect("hang guard")
        .expect("the server reads the body it refuses");
    answer(&mut stream).await
}

#[tokio::test]
async fn oversize_bodies_get_413_even_when_sent_whole_before_reading() {
    let f = start().await;
    // Within what the handler drains, and beyond it (answered at once, drained on close).
    for len in [200 * 1024, 3 * 1024 * 1024] {
        let (status, json) = send_all_then_read(&f, len).await;
        assert_eq!(status, 413, "{len} bytes");
        assert!(json["reason"]
            .as_str()
            .unwrap()
            .contains("larger than 1024"));
    }
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let f = start().await;
    let mut stream = TcpStream::connect(f.addr).await.unwrap();
    stream.write_all(head(100).as_bytes()).await.unwrap();
    stream.write_all(b"{\"omeroHost\"").await.unwrap();
    let (status, json) = answer(&mut stream).await;
    assert_eq!(status, 408);
    assert!(json["reason"].as_str().unwrap().contains("did not arrive"));
}

#[tokio::test]
async fn slow_headers_end_the_connection() {
    let f = start().await;
    let mut stream = TcpStream::connect(f.addr).await.unwrap();
    stream.write_all(b"POST /omero/session/cr").await.unwrap();
    let mut rest = Vec::new();
    let end = timeout(GUARD, stream.read_to_end(&mut rest))
        .await
        .expect("connection closed");
    // Closed, with or without an error status; never a hang.
    let _ = end;
}

/// Whether the server answers a request on a fresh connection (404 for a made-up path).
async fn served(f: &Fixture) -> bool {
    let mut stream = TcpStream::connect(f.addr).await.unwrap();
    let request = "GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut raw = Vec::new();
    let _ = timeout(GUARD, stream.read_to_end(&mut raw))
        .await
        .expect("hang guard");
    raw.starts_with(b"HTTP/1.1 404")
}

#[tokio::test]
async fn the_per_address_cap_closes_extra_connections_at_once() {
    let f = start_with(HttpConfig {
        max_connections_per_address: Some(1),
        header_read_timeout: Duration::from_secs(60),
        ..HttpConfig::default()
    })
    .await;
    // Accepted first, it holds the only place while it sends nothing.
    let holder = TcpStream::connect(f.addr).await.unwrap();
    assert!(!served(&f).await, "second connection refused");
    drop(holder);
    timeout(GUARD, async {
        while !served(&f).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the place was never freed");
}

#[tokio::test(flavor = "current_thread")]
async fn http_logs_show_no_password_and_no_whole_session_key() {
    let (logs, _guard) = log_capture::capture("omero_sessiond::http=trace");
    let f = start_with(HttpConfig::default()).await;
    let body = r#"{"omeroHost":"h","username":"alice","password":"alicepw"}"#;
    let mut stream = TcpStream::connect(f.addr).await.unwrap();
    let mut request = head(body.len()).into_bytes();
    request.extend_from_slice(body.as_bytes());
    stream.write_all(&request).await.unwrap();
    let (status, json) = answer(&mut stream).await;
    assert_eq!(status, 200, "{json}");
    let key = json["sessionKey"].as_str().unwrap();
    let text = logs.text();
    assert!(
        text.contains("session created over HTTP"),
        "nothing captured: {text}"
    );
    assert!(text.contains(&key[..8]));
    assert!(!text.contains("alicepw"), "{text}");
    for line in logs.info_and_above() {
        assert!(!line.contains(key), "{line}");
    }
}

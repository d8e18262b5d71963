//! The endpoint itself: the axum router, the create-session handler, and the HTTPS and plain
//! HTTP listeners that feed connections to hyper.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONTENT_LENGTH, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::keepalive::KeepAlives;
use super::media::{accepts_json, is_json_content};
use super::request::{parse_request, CreateSessionRequest};
use crate::auth::context::{check_group_usable, has_user_role, login_group};
use crate::auth::{AuthError, Authenticator};
use crate::runtime::admission::{admit, Admission, AdmissionLimits};
use crate::runtime::config::de;
use crate::sessions::{short, NewSession, SessionError, SessionManager};

/// The endpoint's path, as in Smuggler.
pub const CREATE_PATH: &str = "/omero/session/create";
/// `Session.agent` of the sessions this endpoint makes.
pub const DEFAULT_AGENT: &str = "omero-sessiond.rest";
/// Reason of every failure to make a session for valid input (Smuggler's text).
pub const CANNOT_CREATE: &str = "cannot create session";

/// Settings of the endpoint; `Default` gives sensible values, and the `[http_limits]`
/// section of the config file deserializes straight into it (keys left out keep them).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted; larger ones get 413.
    #[serde(rename = "max_body_bytes")]
    pub body_limit: usize,
    /// Stored as the new sessions' agent.
    #[serde(skip)]
    pub agent: String,
    #[serde(skip)]
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a request's headers, also for idle kept-alive connections.
    #[serde(
        rename = "header_read_timeout_secs",
        deserialize_with = "de::secs_at_least_one"
    )]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's body once its headers are in; a slower one
    /// gets 408.
    #[serde(
        rename = "body_read_timeout_secs",
        deserialize_with = "de::secs_at_least_one"
    )]
    pub body_read_timeout: Duration,
    /// Connections served at once per listener; further ones wait in the accept queue.
    #[serde(deserialize_with = "de::at_least_one")]
    pub max_connections: usize,
    /// Connections from one client address (IPv6: one /64) at once, over both listeners;
    /// more are closed at once. `None` = no cap (0 in the file).
    #[serde(deserialize_with = "de::cap_or_off")]
    pub max_connections_per_address: Option<usize>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit: 16 * 1024,
            agent: DEFAULT_AGENT.to_string(),
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 256,
            max_connections_per_address: Some(64),
        }
    }
}

/// What the endpoint works on.
pub struct HttpDeps<V> {
    pub sessions: Arc<SessionManager<V>>,
    pub auth: Authenticator,
}

/// Failures of the listeners.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The session endpoint; clones share state (and the keep-alive tasks' cancel switch).
pub struct HttpService<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for HttpService<V> {
    fn clone(&self) -> Self {
        HttpService {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<V> {
    sessions: Arc<SessionManager<V>>,
    auth: Authenticator,
    /// The same admission step as the Ice listeners', with the endpoint's own caps.
    admission: Arc<Admission>,
    config: HttpConfig,
    keep_alives: KeepAlives,
}

/// The client's address, put on each request by the listener.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

impl<V: crate::sessions::EnvValue> HttpService<V> {
    pub fn new(deps: HttpDeps<V>, config: HttpConfig) -> Self {
        HttpService {
            inner: Arc::new(Inner {
                sessions: deps.sessions,
                auth: deps.auth,
                admission: Admission::new(AdmissionLimits {
                    max_connections: None,
                    max_per_address: config.max_connections_per_address,
                }),
                config,
                keep_alives: KeepAlives::new(),
            }),
        }
    }

    /// The routes: `POST /omero/session/create`; JSON 405 and 404 for everything else.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                CREATE_PATH,
                post(create_session::<V>).fallback(method_not_allowed),
            )
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// Stops every keep-alive task (server shutdown); the sessions themselves stay.
    pub fn stop_keep_alives(&self) {
        self.inner.keep_alives.stop_all();
    }

    /// Sessions this endpoint is currently keeping alive.
    pub fn active_keep_alives(&self) -> usize {
        self.inner.keep_alives.active()
    }

    /// Serves HTTPS on `listener` until `shutdown` completes. `tls` is the server
    /// certificate's config (the Ice `ssl` listener's); only HTTP/1.1 is offered over it.
    pub async fn serve_https(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) {
        let acceptor = TlsAcceptor::from(http1_tls_config(&tls));
        let timeout = self.inner.config.tls_handshake_timeout;
        self.accept_loop(listener, shutdown, move |svc, tcp, peer| {
            let acceptor = acceptor.clone();
            async move {
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => svc.serve_connection(tls, peer).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        })
        .await
    }

    /// Serves plain HTTP on `listener` until `shutdown` completes: for loopback behind a
    /// proxy that terminates TLS, never for a public address (passwords travel in the body).
    pub async fn serve_http(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.accept_loop(listener, shutdown, |svc, tcp, peer| async move {
            svc.serve_connection(tcp, peer).await
        })
        .await
    }

    async fn accept_loop<F, Fut>(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        handle: F,
    ) where
        F: Fn(Self, TcpStream, SocketAddr) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let limit = Arc::new(Semaphore::new(self.inner.config.max_connections.max(1)));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                _ = &mut shutdown => return,
                permit = limit.clone().acquire_owned() => match permit {
                    Ok(permit) => tokio::select! {
                        _ = &mut shutdown => return,
                        accepted = listener.accept() => accepted.map(|a| (a, permit)),
                    },
                    Err(_) => return,
                },
            };
            match accepted {
                Ok(((tcp, peer), permit)) => {
                    // Refused before the TLS handshake; the socket and permit go at once.
                    let Some(place) = admit(&self.inner.admission, peer) else {
                        continue;
                    };
                    let work = handle(self.clone(), tcp, peer);
                    tokio::spawn(async move {
                        work.await;
                        drop(place);
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Usually out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn serve_connection<IO>(self, io: IO, peer: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router();
        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(Peer(peer));
            router.clone().oneshot(req)
        });
        // hyper gets the socket by reference, so that it is closed lingering afterwards
        // however hyper ended (a refused body often ends it with an error).
        let mut io = TokioIo::new(io);
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.config.header_read_timeout)
            .serve_connection(&mut io, service)
            .await;
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
        linger(io.into_inner()).await;
    }

    async fn create(&self, req: CreateSessionRequest, peer: Option<IpAddr>) -> Response {
        let CreateSessionRequest {
            username,
            password,
            keep_alive,
            ..
        } = req;
        // Checked before the password: a refused request should cost no hash.
        let max_keep_alive = self.inner.sessions.config().max_keep_alive_ms;
        if keep_alive.as_millis() > u128::try_from(max_keep_alive).unwrap_or(0) {
            return reason(
                StatusCode::BAD_REQUEST,
                format!(
                    "keepAliveDuration: more than this server's limit of {max_keep_alive} ms\n"
                ),
            );
        }
        // The password moves into the check and is dropped there.
        let user = match self.inner.auth.login(&username, password, peer).await {
            Ok(user) => user,
            Err(AuthError::Throttled(delay)) => {
                let secs = delay.retry_after.as_secs().max(1);
                let mut resp = reason(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{CANNOT_CREATE}: too many failed logins; try again in {secs} s"),
                );
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs));
                return resp;
            }
            Err(AuthError::Busy) => {
                let mut resp = reason(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{CANNOT_CREATE}: {}", crate::auth::BUSY_REASON),
                );
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(1u64));
                return resp;
            }
            Err(e) => {
                tracing::info!(user = %username, ?peer, error = %e, "HTTP session refused");
                return reason(StatusCode::BAD_REQUEST, CANNOT_CREATE);
            }
        };
        // As the Glacier2 login plus createUserSession (which needs the user role) would.
        let group = login_group(self.inner.auth.directory(), &user, None)
            .and_then(|g| check_group_usable(&user, &g).map(|()| g));
        let group = match group {
            Ok(group) if has_user_role(&user) => group,
            Ok(_) => {
                tracing::info!(user = %username, "HTTP session refused: no user role");
                return reason(StatusCode::BAD_REQUEST, CANNOT_CREATE);
            }
            Err(e) => {
                tracing::warn!(user = %username, error = %e, "HTTP session refused: no group");
                return reason(StatusCode::BAD_REQUEST, CANNOT_CREATE);
            }
        };
        let sessions = &self.inner.sessions;
        let new = NewSession {
            agent: Some(self.inner.config.agent.clone()),
            ip: peer.map(|ip| ip.to_string()),
            ..NewSession::new(user.id, group.id)
        };
        // As Smuggler's CLI: createUserSession(ttl 0, the server's default idle timeout),
        // so a configured max_user_time_to_live refuses it as OMERO would.
        let tti = sessions.config().default_time_to_idle;
        let info = match sessions.create_user_session(new, 0, tti).await {
            Ok(info) => info,
            // A per-user cap: say which, so the caller can close sessions it no longer needs.
            Err(e @ SessionError::ApiUsage(_)) => {
                tracing::warn!(user = %username, error = %e, "HTTP session not created");
                return reason(StatusCode::BAD_REQUEST, format!("{CANNOT_CREATE}: {e}"));
            }
            // The session store failed (its database is down): the caller may retry soon.
            Err(e @ SessionError::Internal(_)) => {
                tracing::warn!(user = %username, error = %e, "HTTP session not created");
                let mut resp = reason(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{CANNOT_CREATE}: {e}"),
                );
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(1u64));
                return resp;
            }
            Err(e) => {
                tracing::warn!(user = %username, error = %e, "HTTP session not created");
                return reason(StatusCode::BAD_REQUEST, CANNOT_CREATE);
            }
        };
        self.inner.keep_alives.start(
            sessions.clone(),
            info.uuid.clone(),
            info.started,
            keep_alive,
        );
        tracing::info!(
            user = %username, session = %short(&info.uuid), ?peer,
            keep_alive_ms = keep_alive.as_millis() as u64, "session created over HTTP"
        );
        (StatusCode::OK, Json(json!({ "sessionKey": info.uuid }))).into_response()
    }
}

async fn create_session<V: crate::sessions::EnvValue>(
    State(svc): State<HttpService<V>>,
    req: Request,
) -> Response {
    let headers = req.headers();
    if !is_json_content(headers) {
        return reason(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    if !accepts_json(headers) {
        return reason(
            StatusCode::NOT_ACCEPTABLE,
            "this endpoint only produces application/json",
        );
    }
    let limit = svc.inner.config.body_limit;
    if declared_length(headers).is_some_and(|n| n > limit.max(DRAIN_LIMIT)) {
        // Too much to drain: answer at once and let the connection close.
        return too_large(limit);
    }
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    let deadline = svc.inner.config.body_read_timeout;
    let read = tokio::time::timeout(deadline, read_body(req.into_body(), limit)).await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge)) => return too_large(limit),
        Ok(Err(BodyError::Broken)) => {
            return reason(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )
        }
        Err(_) => {
            tracing::debug!(?peer, "request body too slow");
            return reason(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    deadline.as_secs_f64()
                ),
            );
        }
    };
    match parse_request(&body) {
        Ok(parsed) => svc.create(parsed, peer).await,
        Err(e) => reason(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Reads at most this many bytes of a refused body, so a client that sends its whole body
/// before reading the answer still gets the 413 rather than a reset connection.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Bounds on what [`linger`] reads and how long it waits.
const LINGER_BYTES: usize = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(5);

/// Closes a connection the way Apache's lingering close does. Closing a socket with unread
/// input makes the kernel send a reset, and the reset can destroy our answer (a 413, a 408)
/// before the client reads it: clients such as Python's urllib send their whole body before
/// reading. So: end our side, then read and drop what the client still sends, until it
/// closes or a bound on bytes or time is reached.
async fn linger<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO) {
    let drain = async {
        // hyper may have ended our side already; a second shutdown failing changes nothing.
        let _ = io.shutdown().await;
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match io.read(&mut buf).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Collects up to `limit` bytes. A longer body is read on (and dropped) up to
/// [`DRAIN_LIMIT`], then refused; past that the connection is left to close.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut kept = BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(kept.freeze())
    }
}

async fn method_not_allowed() -> Response {
    let mut resp = reason(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("only POST is supported on {CREATE_PATH}"),
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    resp
}

async fn not_found() -> Response {
    reason(
        StatusCode::NOT_FOUND,
        format!("no such endpoint; sessions are made by POST {CREATE_PATH}"),
    )
}

fn too_large(limit: usize) -> Response {
    reason(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {limit} bytes"),
    )
}

/// Every error body: Smuggler's `{"reason": ...}`.
fn reason(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({ "reason": text.into() }))).into_response()
}

// The Ice listener's config may offer no ALPN or other protocols; this endpoint speaks
// HTTP/1.1 only, so say so to clients that ask.
fn http1_tls_config(base: &Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
    let mut config = (**base).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Binds a listener for `--https`/`--http`.
pub async fn bind(addr: &str) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: addr.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Directory, NewExperimenter, Password, Throttle, ThrottleConfig};
    use crate::sessions::{MemorySessionStore, SessionConfig, SystemClock};
    use axum::http::header::{ACCEPT, CONTENT_TYPE};

    fn service(tmp: &std::path::Path) -> HttpService<()> {
        service_with(tmp, SessionConfig::default())
    }

    fn service_with(tmp: &std::path::Path, config: SessionConfig) -> HttpService<()> {
        service_on(tmp, config, Arc::new(MemorySessionStore::default()))
    }

    fn service_on(
        tmp: &std::path::Path,
        config: SessionConfig,
        store: Arc<MemorySessionStore>,
    ) -> HttpService<()> {
        let dir = Directory::open(tmp).unwrap();
        dir.add_experimenter(NewExperimenter {
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
        let throttle = Arc::new(Throttle::new(ThrottleConfig::default(), clock.clone()));
        let sessions = Arc::new(SessionManager::new(config, clock, store));
        HttpService::new(
            HttpDeps {
                sessions,
                auth: Authenticator::new(dir, throttle),
            },
            HttpConfig::default(),
        )
    }

    async fn call(svc: &HttpService<()>, req: Request) -> (StatusCode, serde_json::Value) {
        let resp = svc.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn post_json(body: &str) -> Request {
        axum::http::Request::post(CREATE_PATH)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn creates_a_session_with_the_documented_shape() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path());
        let (status, body) = call(
            &svc,
            post_json(r#"{"omeroHost":"h","username":"alice","password":"alicepw"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let key = body["sessionKey"].as_str().unwrap();
        let info = svc.inner.sessions.lookup(key, true).unwrap();
        assert_eq!(info.refcount, 1);
        assert_eq!(info.time_to_live, 0);
        assert_eq!(info.time_to_idle, 600_000);
        assert_eq!(info.agent.as_deref(), Some(DEFAULT_AGENT));
        svc.stop_keep_alives();
    }

    #[tokio::test]
    async fn a_session_store_that_is_down_gets_503_with_its_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(MemorySessionStore::default());
        store.set_unavailable(true);
        let svc = service_on(tmp.path(), SessionConfig::default(), store);
        let resp = svc
            .router()
            .oneshot(post_json(
                r#"{"omeroHost":"h","username":"alice","password":"alicepw"}"#,
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(RETRY_AFTER));
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("unavailable"), "{text}");
    }

    #[tokio::test]
    async fn saturated_password_checks_get_503_with_a_json_reason() {
        use crate::auth::{CheckerConfig, PasswordChecker};
        let tmp = tempfile::tempdir().unwrap();
        let base = service(tmp.path());
        let checker = Arc::new(PasswordChecker::new(CheckerConfig {
            workers: 1,
            queue: 0,
            max_wait: Duration::from_secs(600),
        }));
        let throttle = Arc::new(Throttle::new(
            ThrottleConfig::default(),
            Arc::new(SystemClock),
        ));
        let auth = Authenticator::with_checker(
            base.inner.auth.directory().clone(),
            throttle,
            checker.clone(),
        );
        let svc = HttpService::new(
            HttpDeps {
                sessions: base.inner.sessions.clone(),
                auth,
            },
            HttpConfig::default(),
        );
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let blocker = tokio::spawn(async move {
            checker
                .run(move |_| {
                    let _ = started_tx.send(());
                    let _ = hold.recv();
                })
                .await
        });
        started.await.unwrap();
        let resp = svc
            .router()
            .oneshot(post_json(
                r#"{"omeroHost":"h","username":"alice","password":"alicepw"}"#,
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(RETRY_AFTER));
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["reason"].as_str(),
            Some(format!("{CANNOT_CREATE}: server busy, retry").as_str())
        );
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        let (status, _) = call(
            &svc,
            post_json(r#"{"omeroHost":"h","username":"alice","password":"alicepw"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        svc.stop_keep_alives();
        base.stop_keep_alives();
    }

    #[tokio::test]
    async fn refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let svc = service(tmp.path());
        let (status, body) = call(
            &svc,
            post_json(r#"{"omeroHost":"h","username":"alice","password":"no"}"#),
        )
        .await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (StatusCode::BAD_REQUEST, Some(CANNOT_CREATE))
        );
        let (status, body) = call(
            &svc,
            post_json(r#"{"omeroHost":"h","username":"zed","password":"no"}"#),
        )
        .await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (StatusCode::BAD_REQUEST, Some(CANNOT_CREATE))
        );
        let get = axum::http::Request::get(CREATE_PATH)
            .body(Body::empty())
            .unwrap();
        let resp = svc.router().oneshot(get).await.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[ALLOW], "POST");
        let (status, _) = call(
            &svc,
            axum::http::Request::get("/x").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let big = format!(r#"{{"omeroHost":"{}"}}"#, "h".repeat(20_000));
        let (status, _) = call(&svc, post_json(&big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        // A declared length beyond what is worth draining is refused before reading.
        let mut huge = post_json("");
        huge.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(10 * DRAIN_LIMIT));
        let (status, _) = call(&svc, huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_capped_time_to_live_refuses_like_create_user_session() {
        let tmp = tempfile::tempdir().unwrap();
        let config = SessionConfig {
            max_user_time_to_live: 60_000,
            ..SessionConfig::default()
        };
        let svc = service_with(tmp.path(), config);
        let body = r#"{"omeroHost":"h","username":"alice","password":"alicepw"}"#;
        let (status, body) = call(&svc, post_json(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["reason"], CANNOT_CREATE);
        assert!(svc.inner.sessions.is_empty());
    }

    #[test]
    fn tls_config_offers_http1_only() {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = key.cert.der().clone();
        let pkey =
            rustls::pki_types::PrivateKeyDer::try_from(key.key_pair.serialize_der()).unwrap();
        let base = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], pkey)
            .unwrap();
        let config = http1_tls_config(&Arc::new(base));
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn http_limits_section_deserializes_into_the_config() {
        let c: HttpConfig = toml::from_str("").unwrap();
        let d = HttpConfig::default();
        assert_eq!(
            (c.body_limit, c.max_connections),
            (d.body_limit, d.max_connections)
        );
        assert_eq!(c.agent, DEFAULT_AGENT);
        assert_eq!(c.tls_handshake_timeout, d.tls_handshake_timeout);
        let c: HttpConfig = toml::from_str(
            "max_body_bytes = 100\nheader_read_timeout_secs = 0\nbody_read_timeout_secs = 7\n\
             max_connections = 0\nmax_connections_per_address = 0\n",
        )
        .unwrap();
        assert_eq!(c.body_limit, 100);
        assert_eq!(c.header_read_timeout, Duration::from_secs(1));
        assert_eq!(c.body_read_timeout, Duration::from_secs(7));
        assert_eq!(c.max_connections, 1);
        assert_eq!(c.max_connections_per_address, None);
        assert!(toml::from_str::<HttpConfig>("agent = \"x\"").is_err());
        assert!(toml::from_str::<HttpConfig>("bogus = 1").is_err());
    }
}

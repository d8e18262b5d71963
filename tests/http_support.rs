//! Shared by the `http_*` tests: a server on 127.0.0.1 port 0 with a self-signed certificate,
//! and a small HTTP/1.1 client over tokio-rustls that trusts exactly that certificate.
//! (The crate has no HTTP client; requests are written by hand, answers read to the close.)
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use omero_sessiond::auth::{
    Authenticator, Directory, NewExperimenter, Password, Throttle, ThrottleConfig,
};
use omero_sessiond::http::{HttpConfig, HttpDeps, HttpService, CREATE_PATH};
use omero_sessiond::sessions::{MemorySessionStore, SessionConfig, SessionManager, SystemClock};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

pub const ALICE_PW: &str = "alicepw";

pub struct TestServer {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub sessions: Arc<SessionManager<()>>,
    pub service: HttpService<()>,
    pub directory: Directory,
    cert: CertificateDer<'static>,
    stop: Vec<oneshot::Sender<()>>,
    _data: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        self.service.stop_keep_alives();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap().to_string()
    }
}

/// Starts both listeners with sessions idling out after `time_to_idle` ms.
pub async fn start(time_to_idle: i64, throttle: ThrottleConfig) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let directory = Directory::open(data.path()).unwrap();
    add_user(&directory, "alice", ALICE_PW, &[]);
    let clock = Arc::new(SystemClock);
    let sessions = Arc::new(SessionManager::new(
        SessionConfig {
            default_time_to_idle: time_to_idle,
            ..SessionConfig::default()
        },
        clock.clone(),
        Arc::new(MemorySessionStore::default()),
    ));
    let auth = Authenticator::new(directory.clone(), Arc::new(Throttle::new(throttle, clock)));
    let service = HttpService::new(
        HttpDeps {
            sessions: sessions.clone(),
            auth,
        },
        HttpConfig::default(),
    );
    let (tls, cert) = self_signed();
    let https_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = https_listener.local_addr().unwrap();
    let http = http_listener.local_addr().unwrap();
    let (stop_https, stopped_https) = oneshot::channel::<()>();
    let (stop_http, stopped_http) = oneshot::channel::<()>();
    let svc = service.clone();
    tokio::spawn(async move {
        svc.serve_https(https_listener, tls, async {
            let _ = stopped_https.await;
        })
        .await
    });
    let svc = service.clone();
    tokio::spawn(async move {
        svc.serve_http(http_listener, async {
            let _ = stopped_http.await;
        })
        .await
    });
    TestServer {
        https,
        http,
        sessions,
        service,
        directory,
        cert,
        stop: vec![stop_https, stop_http],
        _data: data,
    }
}

pub fn add_user(directory: &Directory, name: &str, password: &str, groups: &[&str]) {
    directory
        .add_experimenter(NewExperimenter {
            ome_name: name.to_string(),
            first_name: None,
            last_name: None,
            email: None,
            password: Password::new(password),
            admin: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            owner_of: vec![],
        })
        .unwrap();
}

fn self_signed() -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = made.cert.der().clone();
    let key = PrivateKeyDer::try_from(made.key_pair.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    (Arc::new(config), cert)
}

impl TestServer {
    /// A well-formed JSON POST to the endpoint over HTTPS.
    pub async fn post(&self, body: &str) -> Reply {
        self.https_request(
            "POST",
            CREATE_PATH,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json"),
            ],
            body.as_bytes(),
        )
        .await
    }

    /// Creates a session for alice and returns its key.
    pub async fn create_key(&self, keep_alive_ms: u64) -> String {
        let body = format!(
            r#"{{"omeroHost":"localhost","username":"alice","password":"{ALICE_PW}",
                "keepAliveDuration":"{keep_alive_ms}"}}"#
        );
        let reply = self.post(&body).await;
        assert_eq!(
            reply.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["sessionKey"].as_str().unwrap().to_string()
    }

    pub async fn https_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut roots = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ExactCert(self.cert.clone())))
            .with_no_client_auth();
        roots.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(self.https).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(Arc::new(roots))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        exchange(tls, method, path, headers, Body::Fixed(body)).await
    }

    pub async fn https_chunked(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ExactCert(self.cert.clone())))
            .with_no_client_auth();
        let tcp = TcpStream::connect(self.https).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        exchange(tls, "POST", path, headers, Body::Chunked(body)).await
    }

    pub async fn http_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let tcp = TcpStream::connect(self.http).await.unwrap();
        exchange(tcp, method, path, headers, Body::Fixed(body)).await
    }
}

pub enum Body<'a> {
    Fixed(&'a [u8]),
    Chunked(&'a [u8]),
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let payload = match body {
        Body::Fixed(b) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            b.to_vec()
        }
        Body::Chunked(b) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            let mut out = Vec::new();
            for chunk in b.chunks(1000) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
    };
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) and close before taking the whole body.
    let _ = stream.write_all(&payload).await;
    let _ = stream.flush().await;
    let mut raw = Vec::new();
    // A peer closing without TLS close_notify is an error here, not for the test.
    let _ = stream.read_to_end(&mut raw).await;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete reply: {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
}

/// Trusts the test certificate and nothing else; signatures are still checked.
#[derive(Debug)]
struct ExactCert(CertificateDer<'static>);

impl ServerCertVerifier for ExactCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the test certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

fn algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

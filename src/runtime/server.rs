//! Listeners and the server's lifetime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::adapter::ObjectAdapter;
use super::admission::{self, Admission, AdmissionLimits, Admitted};
use super::connection::{self, Shared};
use super::dispatch::ConnectionInfo;
use super::handle::ConnectionHandle;
use super::tls::{self, TlsError};
use crate::config::ServerConfig;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// Live connections, so that shutdown can wait for them.
#[derive(Default)]
struct Tracker {
    live: AtomicUsize,
    gone: Notify,
}

struct Guard(Arc<Tracker>);

impl Guard {
    fn new(t: &Arc<Tracker>) -> Self {
        t.live.fetch_add(1, Ordering::SeqCst);
        Guard(t.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
        self.0.gone.notify_waiters();
    }
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// A running server: tcp and ssl listeners dispatching into one object adapter.
pub struct Server {
    adapter: Arc<ObjectAdapter>,
    tcp_addr: Option<SocketAddr>,
    ssl_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    tracker: Arc<Tracker>,
    admission: Arc<Admission>,
}

impl Server {
    /// Binds the configured listeners and starts accepting at once; port 0 picks a free
    /// port (see [`Server::tcp_addr`]).
    pub async fn bind(
        config: ServerConfig,
        adapter: Arc<ObjectAdapter>,
    ) -> Result<Server, ServerError> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            adapter: adapter.clone(),
            config: config.connection.clone(),
            shutdown: shutdown_rx.clone(),
        });
        let tracker = Arc::new(Tracker::default());
        // One admission for every listener: the caps count tcp and ssl connections together.
        let admission = Admission::new(AdmissionLimits {
            max_connections: config.connection.max_connections,
            max_per_address: config.connection.max_connections_per_address,
        });
        let mut server = Server {
            adapter,
            tcp_addr: None,
            ssl_addr: None,
            shutdown,
            listeners: Vec::new(),
            tracker: tracker.clone(),
            admission: admission.clone(),
        };
        let listening = Listening {
            shared,
            tracker,
            admission,
            shutdown: shutdown_rx,
        };
        if let Some(addr) = &config.tcp {
            let listener = bind(addr).await?;
            server.tcp_addr = listener.local_addr().ok();
            let accept = accept_loop(listener, None, listening.clone());
            server.listeners.push(tokio::spawn(accept));
        }
        if let Some(addr) = &config.ssl {
            let acceptor = TlsAcceptor::from(tls::server_config(&config.tls)?);
            let listener = bind(addr).await?;
            server.ssl_addr = listener.local_addr().ok();
            let accept = accept_loop(listener, Some(acceptor), listening);
            server.listeners.push(tokio::spawn(accept));
        }
        Ok(server)
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn ssl_addr(&self) -> Option<SocketAddr> {
        self.ssl_addr
    }

    pub fn adapter(&self) -> &Arc<ObjectAdapter> {
        &self.adapter
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.tracker.live.load(Ordering::SeqCst)
    }

    /// The admission the listeners share (its counts include connections still in their
    /// TLS handshake).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Stops accepting, closes every connection gracefully (owed replies are sent first)
    /// and waits for them, at most `grace`; whatever is left is then dropped.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for l in &self.listeners {
            l.abort();
        }
        let tracker = self.tracker.clone();
        let wait = async move {
            loop {
                let gone = tracker.gone.notified();
                if tracker.live.load(Ordering::SeqCst) == 0 {
                    return;
                }
                gone.await;
            }
        };
        if tokio::time::timeout(grace, wait).await.is_err() {
            tracing::warn!(
                left = self.connection_count(),
                "connections still open at shutdown"
            );
        }
    }
}

/// Dropping a server without [`Server::shutdown`] stops its listeners and asks every
/// connection to close gracefully, without waiting.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for l in &self.listeners {
            l.abort();
        }
    }
}

async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// What every accept loop shares.
#[derive(Clone)]
struct Listening {
    shared: Arc<Shared>,
    tracker: Arc<Tracker>,
    admission: Arc<Admission>,
    shutdown: watch::Receiver<bool>,
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, mut l: Listening) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = l.shutdown.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE or a connection reset before accept; pause so a persistent
                // error does not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Refused sockets are dropped here, before a TLS handshake or a task is spent on them.
        let Some(place) = admission::admit(&l.admission, remote) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let guard = Guard::new(&l.tracker);
        let shared = l.shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, tls, shared).await;
            drop(guard);
            drop::<Admitted>(place);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let local = stream.local_addr().ok();
    match tls {
        None => start(stream, remote, local, "tcp", shared).await,
        Some(acceptor) => {
            let limit = shared.config.tls_handshake_timeout;
            match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => start(tls_stream, remote, local, "ssl", shared).await,
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        }
    }
}

async fn start<S>(
    stream: S,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    transport: &'static str,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (handle, parts) = ConnectionHandle::new(connection::OUTGOING_QUEUE);
    let info = Arc::new(ConnectionInfo {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        remote: Some(remote),
        local,
        transport,
        handle,
    });
    tracing::debug!(connection = info.id, %remote, transport, "connection accepted");
    connection::run(stream, info, parts, shared).await;
}

//! Listeners and the server's lifetime.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::adapter::ObjectAdapter;
use super::admission::{self, Admission, AdmissionLimits, Admitted};
use super::config::ServerConfig;
use super::connection::{self, Shared};
use super::dispatch::ConnectionInfo;
use super::handle::ConnectionHandle;
use super::tls::{self, TlsError};
use super::ws;

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

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// How a listener's connections get to the Ice byte stream.
#[derive(Clone)]
enum Transport {
    Tcp,
    Ssl(TlsAcceptor),
    Ws,
    Wss(TlsAcceptor),
}

/// A running server: tcp, ssl, ws and wss listeners dispatching into one object adapter.
pub struct Server {
    adapter: Arc<ObjectAdapter>,
    tcp_addr: Option<SocketAddr>,
    ssl_addr: Option<SocketAddr>,
    ws_addr: Option<SocketAddr>,
    wss_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    /// What the connections share; its registry of open connections closes them.
    shared: Arc<Shared>,
    listeners: Vec<JoinHandle<()>>,
    /// The connections' tasks, so that shutdown can wait for them.
    tracker: TaskTracker,
    admission: Arc<Admission>,
}

impl Server {
    /// Binds the configured listeners and starts accepting at once; port 0 picks a free
    /// port (see [`Server::tcp_addr`]).
    pub async fn bind(
        config: ServerConfig,
        adapter: Arc<ObjectAdapter>,
    ) -> Result<Server, ServerError> {
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            adapter: adapter.clone(),
            config: config.connection.clone(),
            shutdown: shutdown.clone(),
            open: Default::default(),
        });
        let tracker = TaskTracker::new();
        // One admission for every listener: the caps count tcp and ssl connections together.
        let admission = Admission::new(AdmissionLimits {
            max_connections: config.connection.max_connections,
            max_per_address: config.connection.max_connections_per_address,
        });
        let mut server = Server {
            adapter,
            tcp_addr: None,
            ssl_addr: None,
            ws_addr: None,
            wss_addr: None,
            shutdown,
            shared: shared.clone(),
            listeners: Vec::new(),
            tracker: tracker.clone(),
            admission: admission.clone(),
        };
        let listening = Listening {
            shared,
            tracker,
            admission,
        };
        if let Some(addr) = &config.tcp {
            let listener = bind(addr).await?;
            server.tcp_addr = listener.local_addr().ok();
            let accept = accept_loop(listener, Transport::Tcp, listening.clone());
            server.listeners.push(tokio::spawn(accept));
        }
        let tls_config = match (&config.ssl, &config.wss) {
            (None, None) => None,
            _ => Some(tls::server_config(&config.tls)?),
        };
        if let (Some(addr), Some(tls)) = (&config.ssl, &tls_config) {
            let listener = bind(addr).await?;
            server.ssl_addr = listener.local_addr().ok();
            let transport = Transport::Ssl(TlsAcceptor::from(tls.clone()));
            let accept = accept_loop(listener, transport, listening.clone());
            server.listeners.push(tokio::spawn(accept));
        }
        if let Some(addr) = &config.ws {
            let listener = bind(addr).await?;
            server.ws_addr = listener.local_addr().ok();
            let accept = accept_loop(listener, Transport::Ws, listening.clone());
            server.listeners.push(tokio::spawn(accept));
        }
        if let (Some(addr), Some(tls)) = (&config.wss, &tls_config) {
            let listener = bind(addr).await?;
            server.wss_addr = listener.local_addr().ok();
            let transport = Transport::Wss(TlsAcceptor::from(tls.clone()));
            let accept = accept_loop(listener, transport, listening);
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

    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.wss_addr
    }

    pub fn adapter(&self) -> &Arc<ObjectAdapter> {
        &self.adapter
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.tracker.len()
    }

    /// The admission the listeners share (its counts include connections still in their
    /// TLS handshake).
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Stops accepting, closes every connection gracefully (owed replies are sent first)
    /// and waits for them, at most `grace`; whatever is left is then dropped.
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown.cancel();
        self.shared.open.close_all();
        for l in &self.listeners {
            l.abort();
        }
        // No connection is tracked after this; the listeners, aborted, start none.
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
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
        self.shutdown.cancel();
        self.shared.open.close_all();
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
    tracker: TaskTracker,
    admission: Arc<Admission>,
}

async fn accept_loop(listener: TcpListener, transport: Transport, l: Listening) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = l.shared.shutdown.cancelled() => return,
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
        let shared = l.shared.clone();
        let transport = transport.clone();
        l.tracker.spawn(async move {
            serve_connection(stream, remote, transport, shared).await;
            drop::<Admitted>(place);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    transport: Transport,
    shared: Arc<Shared>,
) {
    let local = stream.local_addr().ok();
    // The TLS and WebSocket paths are boxed: a task is as large as its largest path, and
    // they would make every plain tcp connection carry ~9 KiB it never uses.
    match transport {
        Transport::Tcp => {
            start(stream, remote, local, "tcp", shared).await;
        }
        Transport::Ssl(acceptor) => {
            Box::pin(serve_ssl(acceptor, stream, remote, local, shared)).await
        }
        Transport::Ws => Box::pin(start_ws(stream, remote, local, "ws", shared)).await,
        Transport::Wss(acceptor) => {
            Box::pin(async move {
                if let Some(tls_stream) = tls_handshake(acceptor, stream, remote, &shared).await {
                    start_ws(tls_stream, remote, local, "wss", shared).await;
                }
            })
            .await
        }
    }
}

async fn serve_ssl(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    shared: Arc<Shared>,
) {
    if let Some(tls_stream) = tls_handshake(acceptor, stream, remote, &shared).await {
        start(tls_stream, remote, local, "ssl", shared).await;
    }
}

async fn tls_handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    remote: SocketAddr,
    shared: &Shared,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let limit = shared.config.tls_handshake_timeout;
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => Some(tls_stream),
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            None
        }
    }
}

/// The HTTP upgrade (bounded like the TLS handshake), then the driver on one end of a pipe
/// and the WebSocket pump on the other.
async fn start_ws<S>(
    stream: S,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    transport: &'static str,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let limit = shared.config.tls_handshake_timeout;
    let max = shared.config.max_message_size;
    let websocket = match tokio::time::timeout(limit, ws::accept(stream, max)).await {
        Ok(Ok((upgrade, websocket))) => {
            tracing::debug!(%remote, transport, resource = %upgrade.resource, "WebSocket upgrade accepted");
            websocket
        }
        Ok(Err(e)) => {
            tracing::debug!(%remote, transport, error = %e, "WebSocket upgrade failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, transport, "WebSocket upgrade timed out");
            return;
        }
    };
    let (driver_end, pump_end) = ws::pipe();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let pump = ws::pump(
        websocket,
        pump_end,
        ended_rx,
        shared.config.close_timeout,
        shared.shutdown.clone(),
    );
    let driver = async move {
        let reason = start(driver_end, remote, local, transport, shared).await;
        let _ = ended_tx.send(reason);
    };
    tokio::join!(driver, pump);
}

async fn start<S>(
    stream: S,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    transport: &'static str,
    shared: Arc<Shared>,
) -> crate::protocol::CloseReason
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (handle, parts) = ConnectionHandle::new(connection::OUTGOING_QUEUE);
    let info = Arc::new(ConnectionInfo {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        remote: Some(remote),
        local,
        transport,
        handle,
        slot: Default::default(),
    });
    tracing::debug!(connection = info.id, %remote, transport, "connection accepted");
    connection::run(stream, info, parts, shared).await
}
#[cfg(test)]
mod tests {
    use super::*;

    /// A plain tcp connection's task must not be sized for the TLS or WebSocket paths.
    #[tokio::test]
    async fn a_tcp_connection_task_is_sized_for_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            adapter: ObjectAdapter::new(),
            config: Default::default(),
            shutdown: CancellationToken::new(),
            open: Default::default(),
        });
        let whole = serve_connection(
            TcpStream::connect(addr).await.unwrap(),
            addr,
            Transport::Tcp,
            shared.clone(),
        );
        let tcp_only = start(
            TcpStream::connect(addr).await.unwrap(),
            addr,
            None,
            "tcp",
            shared,
        );
        let (whole, tcp_only) = (
            std::mem::size_of_val(&whole),
            std::mem::size_of_val(&tcp_only),
        );
        assert!(
            whole <= tcp_only + 1024,
            "a tcp connection's future is {whole} bytes, its tcp part {tcp_only}"
        );
    }
}

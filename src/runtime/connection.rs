//! The task that drives one connection: a reader loop that dispatches requests concurrently
//! and one writer task that owns the write half, batches replies and sends heartbeats.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::adapter::ObjectAdapter;
use super::dispatch::{ConnectionInfo, Current, OperationMode};
use super::handle::{CloseRequest, HandleParts, Outgoing};
use crate::config::ConnectionConfig;
use crate::protocol::{
    prepare_reply, IceCodec, Inbound, Message, ProtocolError, Reply, ReplyBody, Request,
    CLOSE_CONNECTION, VALIDATE_CONNECTION,
};

/// Replies queued towards the writer; when full, dispatches wait (bounded memory).
pub(crate) const OUTGOING_QUEUE: usize = 256;
/// Messages written before one flush.
const WRITE_BATCH: usize = 64;

/// What the connection task needs from the server.
pub(crate) struct Shared {
    pub adapter: Arc<ObjectAdapter>,
    pub config: ConnectionConfig,
    pub shutdown: watch::Receiver<bool>,
}

/// Why the read loop stopped.
#[derive(Debug)]
enum End {
    /// EOF or CloseConnection from the peer: close at once.
    Peer,
    /// Our graceful close: every owed reply has been queued.
    Graceful,
    Forceful(String),
}

/// Runs a connection after its transport handshake, until it is closed.
pub(crate) async fn run<S>(
    stream: S,
    info: Arc<ConnectionInfo>,
    parts: HandleParts,
    shared: Arc<Shared>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let cfg = &shared.config;
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FramedRead::new(rd, IceCodec::new(cfg.max_message_size));
    let HandleParts { close_rx, out_rx } = parts;
    let Some(out_tx) = info.handle.sender() else {
        return;
    };
    let sink = FramedWrite::new(wr, IceCodec::new(cfg.max_message_size));
    let mut writer = tokio::spawn(write_loop(sink, out_rx, cfg.heartbeat, cfg.close_timeout));
    // The queue is empty, so this cannot wait; the writer sends it before anything else.
    let validate = Outgoing::Frame(Bytes::from_static(&VALIDATE_CONNECTION));
    let _ = out_tx.try_send(validate);

    let mut conn = Conn {
        info: info.clone(),
        shared: shared.clone(),
        out_tx,
        dispatches: JoinSet::new(),
        permits: Arc::new(Semaphore::new(cfg.max_dispatches)),
        closing: false,
    };
    let end = conn.read_loop(&mut reader, &mut writer, close_rx).await;
    tracing::debug!(connection = info.id, remote = ?info.remote, reason = ?end, "connection ending");
    match &end {
        End::Graceful => {
            // Wait for CloseConnection to be written, then for the peer's EOF (spec §1.4).
            let drain = async {
                let _ = conn.out_tx.send(Outgoing::Close).await;
                let _ = (&mut writer).await;
                while let Some(Ok(_)) = reader.next().await {}
            };
            if timeout(cfg.close_timeout, drain).await.is_err() {
                writer.abort();
            }
        }
        End::Peer | End::Forceful(_) => {
            if let End::Forceful(reason) = &end {
                tracing::debug!(connection = info.id, %reason, "closing forcefully");
            }
            writer.abort();
            // Servants already running finish their work; their replies go nowhere.
            conn.dispatches.detach_all();
        }
    }
    info.handle.connection_ended();
    shared.adapter.connection_closed(&info);
}

struct Conn {
    info: Arc<ConnectionInfo>,
    shared: Arc<Shared>,
    out_tx: mpsc::Sender<Outgoing>,
    dispatches: JoinSet<()>,
    permits: Arc<Semaphore>,
    /// Set by a graceful close: requests arriving from now on are dropped unanswered.
    closing: bool,
}

impl Conn {
    async fn read_loop<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FramedRead<R, IceCodec>,
        writer: &mut JoinHandle<Result<(), ProtocolError>>,
        mut close_rx: watch::Receiver<CloseRequest>,
    ) -> End {
        let cfg = self.shared.config.clone();
        let mut shutdown = self.shared.shutdown.clone();
        let mut shutdown_open = !*shutdown.borrow();
        if !shutdown_open {
            self.closing = true;
        }
        let mut close_open = true;
        let mut last_inbound = Instant::now();
        let mut partial_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(tick_period(&cfg));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if self.closing && self.dispatches.is_empty() {
                return End::Graceful;
            }
            tokio::select! {
                res = &mut *writer => {
                    return End::Forceful(match res {
                        Ok(Err(e)) => format!("write failed: {e}"),
                        _ => "writer stopped".into(),
                    });
                }
                changed = close_rx.changed(), if close_open => {
                    if changed.is_err() {
                        close_open = false;
                        continue;
                    }
                    match *close_rx.borrow_and_update() {
                        CloseRequest::Forceful => return End::Forceful("closed by the server".into()),
                        CloseRequest::Graceful => self.closing = true,
                        CloseRequest::None => {}
                    }
                }
                changed = shutdown.changed(), if shutdown_open => {
                    shutdown_open = false;
                    if changed.is_ok() {
                        self.closing = true;
                    }
                }
                Some(_) = self.dispatches.join_next(), if !self.dispatches.is_empty() => {}
                item = reader.next() => {
                    let inbound = match item {
                        None => return End::Peer,
                        Some(Err(e)) => {
                            tracing::warn!(connection = self.info.id, remote = ?self.info.remote, error = %e, "protocol error, closing connection");
                            return End::Forceful(e.to_string());
                        }
                        Some(Ok(inbound)) => inbound,
                    };
                    last_inbound = Instant::now();
                    partial_since = None;
                    if self.on_message(inbound).await {
                        return End::Peer;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if cfg.idle_timeout.is_some_and(|t| now - last_inbound > t) {
                        return End::Forceful("idle timeout".into());
                    }
                    if reader.read_buffer().is_empty() {
                        partial_since = None;
                    } else if now - *partial_since.get_or_insert(now) > cfg.message_timeout {
                        return End::Forceful("message not completed in time".into());
                    }
                }
            }
        }
    }

    /// Handles one message; true when the peer asked to close.
    async fn on_message(&mut self, inbound: Inbound) -> bool {
        tracing::trace!(connection = self.info.id, compression = inbound.compression, message = ?inbound.message, "inbound");
        match inbound.message {
            Message::Request(r) => self.start_dispatch(r, inbound.compression).await,
            Message::BatchRequest(requests) => {
                for r in requests {
                    self.start_dispatch(r, inbound.compression).await;
                }
            }
            Message::Reply(r) => {
                let id = r.request_id;
                if !self.info.handle.deliver_reply(id, r.body) {
                    tracing::debug!(
                        connection = self.info.id,
                        request_id = id,
                        "reply without a request, ignored"
                    );
                }
            }
            Message::ValidateConnection => self.shared.adapter.heartbeat(&self.info),
            Message::CloseConnection => return true,
        }
        false
    }

    async fn start_dispatch(&mut self, request: Request, compression: u8) {
        if self.closing {
            return;
        }
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let adapter = self.shared.adapter.clone();
        let info = self.info.clone();
        let out_tx = self.out_tx.clone();
        let level = self.shared.config.compression_level;
        self.dispatches.spawn(async move {
            let request_id = request.request_id;
            let body = dispatch(&adapter, info, request).await;
            drop(permit);
            if request_id != 0 {
                let frame = Reply { request_id, body }.encode();
                let frame = prepare_reply(frame, compression, level);
                let _ = out_tx.send(Outgoing::Frame(Bytes::from(frame))).await;
            }
        });
    }
}

async fn dispatch(
    adapter: &ObjectAdapter,
    connection: Arc<ConnectionInfo>,
    r: Request,
) -> ReplyBody {
    let Some(encoding) = r.encoding.supported() else {
        return ReplyBody::UnknownLocal(format!(
            "UnsupportedEncodingException: encoding {} is not supported",
            r.encoding
        ));
    };
    let current = Current {
        id: r.id,
        facet: r.facet,
        operation: r.operation,
        mode: OperationMode::from_byte(r.mode).unwrap_or(OperationMode::Normal),
        ctx: r.context,
        request_id: r.request_id,
        encoding,
        connection,
    };
    adapter.dispatch(&current, &r.params).await
}

/// Often enough to notice timeouts within a fraction of them.
fn tick_period(cfg: &ConnectionConfig) -> Duration {
    let shortest = cfg
        .idle_timeout
        .map_or(cfg.message_timeout, |t| t.min(cfg.message_timeout));
    (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// Writes queued messages in batches; sends a heartbeat whenever nothing was written for
/// `heartbeat`. Ends after writing CloseConnection, when every sender is gone, or on error.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut sink: FramedWrite<W, IceCodec>,
    mut rx: mpsc::Receiver<Outgoing>,
    heartbeat: Option<Duration>,
    write_timeout: Duration,
) -> Result<(), ProtocolError> {
    loop {
        let next = match heartbeat {
            Some(h) => match timeout(h, rx.recv()).await {
                Ok(m) => m,
                Err(_) => Some(Outgoing::Frame(Bytes::from_static(&VALIDATE_CONNECTION))),
            },
            None => rx.recv().await,
        };
        let Some(mut item) = next else {
            return Ok(());
        };
        let mut written = 0;
        let mut close = false;
        loop {
            let frame = match item {
                Outgoing::Frame(b) => b,
                Outgoing::Close => {
                    close = true;
                    Bytes::from_static(&CLOSE_CONNECTION)
                }
            };
            bounded(write_timeout, sink.feed(frame)).await?;
            written += 1;
            if close || written >= WRITE_BATCH {
                break;
            }
            match rx.try_recv() {
                Ok(m) => item = m,
                Err(_) => break,
            }
        }
        bounded(write_timeout, sink.flush()).await?;
        if close {
            return Ok(());
        }
    }
}

async fn bounded<F>(limit: Duration, f: F) -> Result<(), ProtocolError>
where
    F: std::future::Future<Output = Result<(), ProtocolError>>,
{
    match timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "write timed out",
        ))),
    }
}

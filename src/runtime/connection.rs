//! The tokio driver of one connection: it reads bytes into the protocol state machine
//! ([`ConnectionState`]), writes what it queues, runs the dispatches it asks for and sleeps
//! until its next deadline. Every protocol decision lives in the state machine.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::adapter::ObjectAdapter;
use super::config::ConnectionConfig;
use super::dispatch::{ConnectionInfo, Current, OperationMode};
use super::handle::{CloseRequest, HandleParts, Outgoing};
use crate::protocol::{
    Action, CloseReason, ConnectionState, DispatchDone, Limits, ReplyBody, Request,
};

/// Frames queued by other tasks towards the connection; when full, they wait.
pub(crate) const OUTGOING_QUEUE: usize = 256;
/// The most bytes taken from the socket in one read.
const READ_CHUNK: usize = 16 * 1024;

/// What the connection task needs from the server.
pub(crate) struct Shared {
    pub adapter: Arc<ObjectAdapter>,
    pub config: ConnectionConfig,
    pub shutdown: watch::Receiver<bool>,
}

/// Runs a connection after its transport handshake, until it is closed; why it closed (a
/// transport with its own closing handshake, like ws, needs to know).
pub(crate) async fn run<S>(
    stream: S,
    info: Arc<ConnectionInfo>,
    parts: HandleParts,
    shared: Arc<Shared>,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    shared.adapter.connection_opened(&info);
    let (rd, wr) = tokio::io::split(stream);
    let mut driver = Driver {
        state: ConnectionState::new(limits(&shared.config), now()),
        info: info.clone(),
        shared: shared.clone(),
        dispatches: JoinSet::new(),
        login_deadline: shared
            .config
            .login_timeout
            .map(|t| tokio::time::Instant::now() + t),
        login_deferred: false,
    };
    let reason = driver.drive(rd, wr, parts).await;
    if reason.is_graceful() {
        tracing::debug!(connection = info.id, remote = ?info.remote, %reason, "connection ending");
    } else {
        tracing::debug!(connection = info.id, remote = ?info.remote, %reason, "closing at once");
        // Servants already running finish their work; their replies go nowhere.
        driver.dispatches.detach_all();
    }
    info.handle.connection_ended();
    shared.adapter.connection_closed(&info);
    reason
}

fn limits(cfg: &ConnectionConfig) -> Limits {
    Limits {
        max_message_size: cfg.max_message_size,
        heartbeat: cfg.heartbeat,
        idle_timeout: cfg.idle_timeout,
        message_timeout: cfg.message_timeout,
        close_timeout: cfg.close_timeout,
        max_dispatches: cfg.max_dispatches,
        compression_level: cfg.compression_level,
    }
}

/// The clock tokio sleeps by (so paused test time applies to the state machine too).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

enum Wrote {
    Bytes(usize),
    Flushed,
}

/// One write, or a flush when there is nothing to write; cancel-safe, so it can sit in a
/// `select!` beside the read.
async fn write_or_flush<W: AsyncWrite + Unpin>(wr: &mut W, chunk: &[u8]) -> std::io::Result<Wrote> {
    if chunk.is_empty() {
        wr.flush().await?;
        return Ok(Wrote::Flushed);
    }
    match wr.write(chunk).await? {
        0 => Err(std::io::ErrorKind::WriteZero.into()),
        n => Ok(Wrote::Bytes(n)),
    }
}

struct Driver {
    state: ConnectionState,
    info: Arc<ConnectionInfo>,
    shared: Arc<Shared>,
    dispatches: JoinSet<DispatchDone>,
    /// When the login deadline acts next; `None` once it is settled.
    login_deadline: Option<tokio::time::Instant>,
    /// The deadline passed while requests (perhaps the login itself, slow on a busy
    /// server) were being served: decided as soon as none is.
    login_deferred: bool,
}

impl Driver {
    async fn drive<R, W>(&mut self, mut rd: R, mut wr: W, parts: HandleParts) -> CloseReason
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let HandleParts {
            mut close_rx,
            mut out_rx,
        } = parts;
        let mut shutdown = self.shared.shutdown.clone();
        let mut shutdown_open = true;
        let mut close_open = true;
        let mut frames_open = true;
        let mut buf = vec![0u8; READ_CHUNK];
        if *shutdown.borrow_and_update() {
            shutdown_open = false;
            self.state.begin_close(true, now());
        }
        loop {
            let deadline = self
                .state
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let writing = !self.state.output().is_empty() || self.state.wants_flush();
            let actions = tokio::select! {
                res = write_or_flush(&mut wr, self.state.output()), if writing => match res {
                    Ok(Wrote::Bytes(n)) => {
                        self.state.on_written(n, now());
                        Vec::new()
                    }
                    Ok(Wrote::Flushed) => {
                        self.state.on_flushed(now());
                        Vec::new()
                    }
                    Err(e) => self.state.on_write_error(e.to_string()),
                },
                res = rd.read(&mut buf), if self.state.wants_read() => match res {
                    Ok(0) => self.state.on_eof(),
                    Ok(n) => self.state.on_data(&buf[..n], now()),
                    Err(e) => self.state.on_read_error(e.to_string()),
                },
                Some(done) = self.dispatches.join_next(), if !self.dispatches.is_empty() => {
                    let mut actions = self.state.on_dispatch_finished(done.ok(), now());
                    if self.login_deferred && self.dispatches.is_empty() {
                        actions.extend(self.settle_login());
                    }
                    actions
                }
                frame = out_rx.recv(), if frames_open && self.state.accepts_frames() => {
                    match frame {
                        Some(Outgoing::Frame(bytes)) => {
                            self.state.send_frame(&bytes, now());
                        }
                        None => frames_open = false,
                    }
                    Vec::new()
                }
                changed = close_rx.changed(), if close_open => {
                    if changed.is_err() {
                        close_open = false;
                        Vec::new()
                    } else {
                        let request = *close_rx.borrow_and_update();
                        match request {
                            CloseRequest::Forceful => self.state.begin_close(false, now()),
                            CloseRequest::Graceful => self.state.begin_close(true, now()),
                            CloseRequest::None => Vec::new(),
                        }
                    }
                }
                changed = shutdown.changed(), if shutdown_open => {
                    shutdown_open = false;
                    if changed.is_ok() {
                        self.state.begin_close(true, now())
                    } else {
                        Vec::new()
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => self.state.on_tick(now()),
                () = sleep_until(self.login_deadline), if self.login_deadline.is_some() => {
                    self.login_deadline_passed()
                }
            };
            if let Some(reason) = self.perform(actions) {
                return reason;
            }
        }
    }

    /// A connection that never logged in holds a socket and a task for nothing (or for a
    /// password guesser): it is closed, gracefully. Requests being served at the deadline
    /// (perhaps the login itself) are waited for: the decision comes the moment none is
    /// left. Keeping one in flight all along takes back-to-back logins, which the login
    /// throttle refuses quickly, and the per-address cap bounds such connections anyway.
    fn login_deadline_passed(&mut self) -> Vec<Action> {
        if !self.dispatches.is_empty() && !self.info.handle.is_logged_in() {
            self.login_deferred = true;
            self.login_deadline = None;
            return Vec::new();
        }
        self.settle_login()
    }

    /// Ends the login watch: nothing more if the connection logged in, else a close.
    fn settle_login(&mut self) -> Vec<Action> {
        self.login_deadline = None;
        self.login_deferred = false;
        if self.info.handle.is_logged_in() {
            return Vec::new();
        }
        tracing::info!(
            connection = self.info.id,
            remote = ?self.info.remote,
            "no login before the deadline, closing connection"
        );
        self.state.begin_close(true, now())
    }

    /// Carries out the state machine's actions; the close reason when it closed.
    fn perform(&mut self, actions: Vec<Action>) -> Option<CloseReason> {
        for action in actions {
            match action {
                Action::Dispatch {
                    request,
                    compression,
                } => self.spawn_dispatch(request, compression),
                Action::DeliverReply { request_id, body } => {
                    if !self.info.handle.deliver_reply(request_id, body) {
                        tracing::debug!(
                            connection = self.info.id,
                            request_id,
                            "reply without a request, ignored"
                        );
                    }
                }
                Action::Heartbeat => self.shared.adapter.heartbeat(&self.info),
                Action::Close(reason) => {
                    if let CloseReason::Protocol(e) = &reason {
                        tracing::warn!(connection = self.info.id, remote = ?self.info.remote, error = %e, "protocol error, closing connection");
                    }
                    return Some(reason);
                }
            }
        }
        None
    }

    fn spawn_dispatch(&mut self, request: Request, compression: u8) {
        // Never the parameters: createSession carries a password in them.
        tracing::trace!(
            connection = self.info.id,
            request_id = request.request_id,
            id = %request.id,
            operation = %request.operation,
            params_len = request.params.len(),
            compression,
            "inbound request"
        );
        let adapter = self.shared.adapter.clone();
        let info = self.info.clone();
        self.dispatches.spawn(async move {
            let request_id = request.request_id;
            let body = dispatch(&adapter, info, request).await;
            DispatchDone {
                request_id,
                compression,
                body,
            }
        });
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
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

//! The tokio driver of one connection: it reads bytes into the protocol state machine
//! ([`ConnectionState`]), writes what it queues, runs the dispatches it asks for and sleeps
//! until its next deadline. Every protocol decision lives in the state machine.
//!
//! The task does IO and little else: reads land straight in the state machine's buffer,
//! a request the adapter answers without waiting (`ice_ping`, a missing object) is
//! answered inline, and every other one runs in a task of its own that also encodes (and
//! compresses) its reply. Replies that are ready together go out in one write.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use std::collections::VecDeque;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::adapter::{self, ObjectAdapter, Prepared};
use super::config::ConnectionConfig;
use super::dispatch::{ConnectionInfo, Current, OperationMode};
use super::handle::{CloseRequest, HandleParts, Mail, OpenConnections};
use crate::protocol::{
    encode_reply, Action, CloseReason, ConnectionState, DispatchDone, Limits, ReplyBody, Request,
};

/// Frames queued by other tasks towards the connection; when full, they wait.
pub(crate) const OUTGOING_QUEUE: usize = 256;
/// Room made in the input buffer before a read when it has less: enough for a few small
/// requests (a burst doubles it read by read), small enough that an idle connection holds
/// little.
const READ_MIN: usize = 512;
/// Where a timer with nothing to wait for points (never polled then).
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
/// The most room a read asks for at once; a larger message grows the buffer read by read.
const READ_MAX: usize = 64 * 1024;

/// What the connection task needs from the server.
pub(crate) struct Shared {
    pub adapter: Arc<ObjectAdapter>,
    pub config: ConnectionConfig,
    /// Cancelled when the server shuts down (the listeners and WebSocket pumps watch it).
    pub shutdown: CancellationToken,
    /// Asked to close, gracefully, when the server shuts down.
    pub open: OpenConnections,
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
    shared.open.add(info.id, &info.handle);
    let (rd, wr) = tokio::io::split(stream);
    let mut driver = Driver {
        state: ConnectionState::new(limits(&shared.config), now()),
        info: info.clone(),
        shared: shared.clone(),
        dispatches: JoinSet::new(),
        read_room: READ_MIN,
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
    shared.open.remove(info.id);
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

/// What woke the connection's loop.
enum Event {
    Wrote(std::io::Result<Wrote>),
    Read(std::io::Result<usize>),
    /// A dispatch task finished, with its reply frame (`None` for oneway).
    Dispatched(Option<Vec<u8>>),
    Mail(Mail),
    Tick,
    LoginDeadline,
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
    /// Running dispatches; each yields its encoded reply frame (`None` for oneway).
    dispatches: JoinSet<Option<Vec<u8>>>,
    /// Room the next read asks for: doubled while reads fill it, back to the minimum once
    /// the buffer empties.
    read_room: usize,
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
        let mut mailbox = parts;
        // One timer for the connection's life, moved as its next deadline moves: a new
        // timer per loop turn costs a registration and a removal in tokio's timer wheel,
        // while moving a registered one later is an atomic store.
        let far = tokio::time::Instant::now() + FAR_FUTURE;
        let timer = tokio::time::sleep_until(far);
        tokio::pin!(timer);
        let mut armed: Option<tokio::time::Instant> = None;
        let login_timer = tokio::time::sleep_until(self.login_deadline.unwrap_or(far));
        tokio::pin!(login_timer);
        loop {
            // Logged in: the deadline is settled, and its timer no longer polled every turn.
            if self.login_deadline.is_some()
                && !self.login_deferred
                && self.info.handle.is_logged_in()
            {
                self.login_deadline = None;
            }
            let deadline = self
                .state
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            if let Some(d) = deadline.filter(|d| armed != Some(*d)) {
                timer.as_mut().reset(d);
                armed = Some(d);
            }
            let writing = !self.state.output().is_empty() || self.state.wants_flush();
            let reading = self.state.wants_read();
            let mut input = self.state.take_input();
            if reading {
                self.make_room(&mut input);
            }
            let event = tokio::select! {
                res = write_or_flush(&mut wr, self.state.output()), if writing => Event::Wrote(res),
                res = rd.read_buf(&mut input), if reading => Event::Read(res),
                Some(done) = self.dispatches.join_next(), if !self.dispatches.is_empty() => {
                    Event::Dispatched(done.ok().flatten())
                }
                mail = mailbox.mail(self.state.accepts_frames()) => Event::Mail(mail),
                () = &mut timer, if deadline.is_some() => {
                    armed = None;
                    Event::Tick
                }
                () = &mut login_timer, if self.login_deadline.is_some() => Event::LoginDeadline,
            };
            // One clock read per turn: everything this turn does happens "now".
            let t = now();
            let actions = self.on_event(event, &mut input, t);
            // Whatever did not take the lent buffer gives it back (a read took it).
            if input.capacity() > 0 {
                self.state.return_input(input);
            }
            if let Some(reason) = self.perform(actions, t) {
                return reason;
            }
            // Replies made this turn leave now, not on the next turn of the loop.
            let actions = self.write_eagerly(&mut wr, t).await;
            if let Some(reason) = self.perform(actions, t) {
                return reason;
            }
        }
    }

    fn on_event(&mut self, event: Event, input: &mut BytesMut, t: Instant) -> Vec<Action> {
        match event {
            Event::Wrote(Ok(Wrote::Bytes(n))) => {
                self.state.on_written(n, t);
                Vec::new()
            }
            Event::Wrote(Ok(Wrote::Flushed)) => {
                self.state.on_flushed(t);
                Vec::new()
            }
            Event::Wrote(Err(e)) => self.state.on_write_error(e.to_string()),
            Event::Read(Ok(0)) => self.state.on_eof(),
            Event::Read(Ok(_)) => {
                let filled = input.capacity() == input.len();
                self.adjust_room(filled);
                self.state.on_input(std::mem::take(input), t)
            }
            Event::Read(Err(e)) => self.state.on_read_error(e.to_string()),
            Event::Dispatched(frame) => self.dispatches_finished(frame, t),
            Event::Mail(Mail::Frames(frames)) => {
                for frame in frames {
                    self.state.send_frame(&frame, t);
                }
                Vec::new()
            }
            Event::Mail(Mail::Close(CloseRequest::Forceful)) => self.state.begin_close(false, t),
            Event::Mail(Mail::Close(CloseRequest::Graceful)) => self.state.begin_close(true, t),
            Event::Mail(Mail::Close(CloseRequest::None)) => Vec::new(),
            Event::Tick => self.state.on_tick(t),
            Event::LoginDeadline => self.login_deadline_passed(t),
        }
    }

    /// Writes and flushes what is queued as far as the transport takes it without waiting;
    /// what it does not take waits for the loop's write branch.
    async fn write_eagerly<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        t: Instant,
    ) -> Vec<Action> {
        std::future::poll_fn(|cx| loop {
            let polled = if !self.state.output().is_empty() {
                match Pin::new(&mut *wr).poll_write(cx, self.state.output()) {
                    Poll::Ready(Ok(0)) => Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        self.state.on_written(n, t);
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            } else if self.state.wants_flush() {
                match Pin::new(&mut *wr).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.state.on_flushed(t);
                        Poll::Ready(Ok(()))
                    }
                    other => other,
                }
            } else {
                return Poll::Ready(Vec::new());
            };
            match polled {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(self.state.on_write_error(e.to_string()))
                }
                Poll::Pending => return Poll::Ready(Vec::new()),
            }
        })
        .await
    }

    /// Makes sure the next read has room, without copying what is buffered.
    fn make_room(&self, input: &mut BytesMut) {
        if input.capacity() - input.len() < READ_MIN {
            input.reserve(self.read_room);
        }
    }

    /// Grows the room asked for while reads fill it (a large message, a burst); a read
    /// that drained the socket sets it back to the minimum.
    fn adjust_room(&mut self, filled: bool) {
        self.read_room = if filled {
            (self.read_room * 2).min(READ_MAX)
        } else {
            READ_MIN
        };
    }

    /// One dispatch finished, and every other one already finished with it: their
    /// replies are queued together, so they leave in one write.
    fn dispatches_finished(&mut self, first: Option<Vec<u8>>, t: Instant) -> Vec<Action> {
        let mut actions = self.state.on_reply_ready(first.as_deref(), t);
        while let Some(done) = self.dispatches.try_join_next() {
            let frame = done.ok().flatten();
            actions.extend(self.state.on_reply_ready(frame.as_deref(), t));
        }
        if self.login_deferred && self.dispatches.is_empty() {
            actions.extend(self.settle_login(t));
        }
        actions
    }

    /// A connection that never logged in holds a socket and a task for nothing (or for a
    /// password guesser): it is closed, gracefully. Requests being served at the deadline
    /// (perhaps the login itself) are waited for: the decision comes the moment none is
    /// left. Keeping one in flight all along takes back-to-back logins, which the login
    /// throttle refuses quickly, and the per-address cap bounds such connections anyway.
    fn login_deadline_passed(&mut self, t: Instant) -> Vec<Action> {
        if !self.dispatches.is_empty() && !self.info.handle.is_logged_in() {
            self.login_deferred = true;
            self.login_deadline = None;
            return Vec::new();
        }
        self.settle_login(t)
    }

    /// Ends the login watch: nothing more if the connection logged in, else a close.
    fn settle_login(&mut self, t: Instant) -> Vec<Action> {
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
        self.state.begin_close(true, t)
    }

    /// Carries out the state machine's actions, and those that answering a request inline
    /// brings (a waiting request started); the close reason when it closed.
    fn perform(&mut self, actions: Vec<Action>, t: Instant) -> Option<CloseReason> {
        if actions.is_empty() {
            return None;
        }
        let mut work = VecDeque::from(actions);
        while let Some(action) = work.pop_front() {
            match action {
                Action::Dispatch {
                    request,
                    compression,
                } => {
                    if let Some(frame) = self.dispatch(request, compression, t) {
                        work.extend(self.state.on_reply_ready(frame.as_deref(), t));
                    }
                }
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

    /// Answers the request inline when that cannot block (returns its reply frame,
    /// `Some(None)` for oneway); otherwise starts a task for it and returns `None`.
    fn dispatch(
        &mut self,
        request: Request,
        compression: u8,
        t: Instant,
    ) -> Option<Option<Vec<u8>>> {
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
        let request_id = request.request_id;
        let (current, params) = match current_of(self.info.clone(), request, t) {
            Ok(c) => c,
            Err(body) => return Some(self.reply(request_id, compression, body)),
        };
        let servant = match self.shared.adapter.prepare(&current, &params) {
            Prepared::Done(body) => {
                self.shared
                    .adapter
                    .dispatched(&current.operation, current.received);
                return Some(self.reply(request_id, compression, body));
            }
            Prepared::Run(servant) => servant,
        };
        let level = self.shared.config.compression_level;
        let adapter = self.shared.adapter.clone();
        self.dispatches.spawn(async move {
            let body = adapter::run(servant.as_ref(), &current, &params).await;
            adapter.dispatched(&current.operation, current.received);
            // Encoded (and compressed) here, not on the connection's task.
            encode_reply(
                DispatchDone {
                    request_id,
                    compression,
                    body,
                },
                level,
            )
        });
        None
    }

    fn reply(&self, request_id: i32, compression: u8, body: ReplyBody) -> Option<Vec<u8>> {
        self.state.encode_reply(DispatchDone {
            request_id,
            compression,
            body,
        })
    }
}

/// The request as a servant sees it, and its parameters; a reply body instead when its
/// encoding is not one we speak.
fn current_of(
    connection: Arc<ConnectionInfo>,
    r: Request,
    received: Instant,
) -> Result<(Current, bytes::Bytes), ReplyBody> {
    let Some(encoding) = r.encoding.supported() else {
        return Err(ReplyBody::UnknownLocal(format!(
            "UnsupportedEncodingException: encoding {} is not supported",
            r.encoding
        )));
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
        received,
    };
    Ok((current, r.params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoding, Identity};
    use crate::facade::{async_trait, DispatchError};
    use crate::protocol::{Reply, HEADER_SIZE, VALIDATE_CONNECTION};
    use crate::runtime::Dispatch;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncWriteExt, DuplexStream, ReadBuf};

    /// A servant whose own operations never finish: only what is answered inline is.
    struct Stuck;

    #[async_trait]
    impl Dispatch for Stuck {
        fn type_ids(&self) -> &'static [&'static str] {
            &["::Ice::Object"]
        }
        fn most_derived_type_id(&self) -> &'static str {
            "::Ice::Object"
        }
        async fn dispatch(&self, _: &Current, _: &[u8]) -> Result<Vec<u8>, DispatchError> {
            std::future::pending().await
        }
    }

    /// The server's end of the pipe, recording the size of every write.
    struct Recording {
        inner: DuplexStream,
        writes: Arc<Mutex<Vec<usize>>>,
    }

    impl AsyncRead for Recording {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Recording {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let res = Pin::new(&mut self.inner).poll_write(cx, buf);
            if let Poll::Ready(Ok(n)) = res {
                self.writes.lock().unwrap().push(n);
            }
            res
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    fn ping(id: i32) -> Vec<u8> {
        Request {
            request_id: id,
            id: Identity::new("", "stuck"),
            facet: String::new(),
            operation: "ice_ping".into(),
            mode: 1,
            context: Default::default(),
            encoding: Encoding::V1_1.into(),
            params: bytes::Bytes::new(),
        }
        .encode()
    }

    #[tokio::test]
    async fn pings_are_answered_inline_and_their_replies_leave_together() {
        let adapter = ObjectAdapter::new();
        adapter.add(Identity::new("", "stuck"), Arc::new(Stuck));
        let config = ConnectionConfig {
            // One slot: a ping that needed a task of its own would wait behind the stuck call.
            max_dispatches: 1,
            ..ConnectionConfig::default()
        };
        let shared = Arc::new(Shared {
            adapter,
            config,
            shutdown: CancellationToken::new(),
            open: Default::default(),
        });
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let writes = Arc::new(Mutex::new(Vec::new()));
        let server = Recording {
            inner: server,
            writes: writes.clone(),
        };
        let mut burst = Vec::new();
        for id in 1..=10 {
            burst.extend(ping(id));
        }
        client.write_all(&burst).await.unwrap();
        let (handle, parts) = super::super::handle::ConnectionHandle::new(4);
        let mut info = ConnectionInfo::detached(1, "tcp");
        info.handle = handle;
        let task = tokio::spawn(run(server, Arc::new(info), parts, shared));
        let mut got = vec![0u8; VALIDATE_CONNECTION.len()];
        client.read_exact(&mut got).await.unwrap();
        let reply_len = Reply {
            request_id: 1,
            body: ReplyBody::Ok {
                encoding: Encoding::V1_1.into(),
                payload: bytes::Bytes::new(),
            },
        }
        .encode()
        .len();
        let mut replies = vec![0u8; 10 * reply_len];
        client.read_exact(&mut replies).await.unwrap();
        for (i, frame) in replies.chunks(reply_len).enumerate() {
            let id = i32::from_le_bytes(frame[HEADER_SIZE..HEADER_SIZE + 4].try_into().unwrap());
            assert_eq!(id, i as i32 + 1);
        }
        let writes = writes.lock().unwrap().clone();
        assert!(
            writes.iter().any(|n| *n >= 10 * reply_len),
            "ten replies to one read went out in one write: {writes:?}"
        );
        drop(client);
        task.await.unwrap();
    }
}

//! The decisions of one server-side connection, without sockets and without a clock: bytes
//! and the current time go in, bytes to write and [`Action`]s come out (the quinn-proto
//! style; `runtime::connection` is the tokio driver). States follow ZeroC's `ConnectionI`:
//! Active, Closing (new requests dropped, owed replies still sent), ClosingPending
//! (CloseConnection queued, waiting for the peer's EOF, bounded) and Closed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::{
    prepare_reply, IceCodec, Inbound, Message, Reply, ReplyBody, Request, CLOSE_CONNECTION,
    DEFAULT_MAX_MESSAGE_SIZE, VALIDATE_CONNECTION,
};

/// Above this much unwritten output the driver stops reading and stops taking frames from
/// other tasks, so a peer that does not read cannot make us buffer without bound.
pub const OUTPUT_HIGH_WATER: usize = 1 << 20;

/// The limits and timeouts the state machine enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_message_size: usize,
    /// Send a ValidateConnection after this long without writing anything.
    pub heartbeat: Option<Duration>,
    /// Close forcefully after this long without a complete inbound message.
    pub idle_timeout: Option<Duration>,
    /// Close forcefully when a started message is not complete after this long.
    pub message_timeout: Duration,
    /// Bounds the wait for the peer's EOF after CloseConnection, and any stalled write.
    pub close_timeout: Duration,
    pub max_dispatches: usize,
    pub compression_level: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            heartbeat: Some(Duration::from_secs(15)),
            idle_timeout: None,
            message_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(10),
            max_dispatches: 100,
            compression_level: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Active,
    /// A graceful close has begun: requests are dropped, dispatches still running finish.
    Closing,
    /// CloseConnection is queued; we wait for the peer to close its end.
    ClosingPending,
    Closed,
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent CloseConnection or closed its end.
    Peer,
    /// Our graceful close completed with the peer's EOF.
    Graceful,
    /// The server asked for a forceful close.
    Server,
    Protocol(String),
    Io(String),
    IdleTimeout,
    MessageTimeout,
    /// The peer did not close within the close timeout after our CloseConnection.
    CloseTimeout,
    WriteTimeout,
}

impl CloseReason {
    /// Whether the socket is dropped with nothing owed: every other reason abandons
    /// dispatches still running.
    pub fn is_graceful(&self) -> bool {
        *self == CloseReason::Graceful
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Peer => f.write_str("closed by the peer"),
            CloseReason::Graceful => f.write_str("closed gracefully"),
            CloseReason::Server => f.write_str("closed by the server"),
            CloseReason::Protocol(e) => write!(f, "protocol error: {e}"),
            CloseReason::Io(e) => write!(f, "connection I/O: {e}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::MessageTimeout => f.write_str("message not completed in time"),
            CloseReason::CloseTimeout => f.write_str("peer did not close in time"),
            CloseReason::WriteTimeout => f.write_str("write timed out"),
        }
    }
}

/// What the driver must do; frames to write are not actions but [`ConnectionState::output`].
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Run this request; report the result with [`ConnectionState::on_dispatch_finished`].
    Dispatch { request: Request, compression: u8 },
    /// The peer answered one of our invocations (unknown ids are the driver's to ignore).
    DeliverReply { request_id: i32, body: ReplyBody },
    /// The peer sent a heartbeat.
    Heartbeat,
    /// Drop the socket now; nothing more will come from this state machine.
    Close(CloseReason),
}

/// The result of a dispatch started by [`Action::Dispatch`].
#[derive(Debug)]
pub struct DispatchDone {
    pub request_id: i32,
    /// The compression byte of the request (the reply mirrors it).
    pub compression: u8,
    pub body: ReplyBody,
}

#[derive(Debug)]
pub struct ConnectionState {
    limits: Limits,
    phase: Phase,
    codec: IceCodec,
    input: BytesMut,
    output: BytesMut,
    /// Bytes handed to the transport but not yet flushed.
    unflushed: bool,
    last_inbound: Instant,
    /// When output was last queued or fully flushed; heartbeats count from here.
    last_outbound: Instant,
    /// When the current unfinished inbound message began to arrive.
    partial_since: Option<Instant>,
    /// Since when output has waited without progress.
    stalled_since: Option<Instant>,
    close_deadline: Option<Instant>,
    dispatching: usize,
    /// Requests beyond `max_dispatches`, started as running ones finish.
    waiting: VecDeque<(Request, u8)>,
}

impl ConnectionState {
    /// A freshly accepted connection; the server speaks first with ValidateConnection.
    pub fn new(limits: Limits, now: Instant) -> Self {
        let mut state = ConnectionState {
            codec: IceCodec::new(limits.max_message_size),
            limits,
            phase: Phase::Active,
            input: BytesMut::new(),
            output: BytesMut::new(),
            unflushed: false,
            last_inbound: now,
            last_outbound: now,
            partial_since: None,
            stalled_since: None,
            close_deadline: None,
            dispatching: 0,
            waiting: VecDeque::new(),
        };
        state.queue(&VALIDATE_CONNECTION, now);
        state
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Dispatches started and not yet finished.
    pub fn dispatching(&self) -> usize {
        self.dispatching
    }

    /// Bytes waiting to be written.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Whether the transport should be flushed (all output was written, not yet flushed).
    pub fn wants_flush(&self) -> bool {
        self.output.is_empty() && self.unflushed
    }

    /// Whether the driver should read: not while requests wait for a dispatch slot or too
    /// much output is pending.
    pub fn wants_read(&self) -> bool {
        self.phase != Phase::Closed
            && self.waiting.is_empty()
            && self.output.len() < OUTPUT_HIGH_WATER
    }

    /// Whether frames from other tasks (invocations on the peer) are accepted now.
    pub fn accepts_frames(&self) -> bool {
        matches!(self.phase, Phase::Active | Phase::Closing)
            && self.output.len() < OUTPUT_HIGH_WATER
    }

    /// Bytes read from the peer.
    pub fn on_data(&mut self, data: &[u8], now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.phase {
            Phase::Active | Phase::Closing => {}
            // Ice discards whatever arrives while it waits for the peer's EOF.
            Phase::ClosingPending | Phase::Closed => return actions,
        }
        self.input.extend_from_slice(data);
        while self.phase != Phase::Closed {
            match self.codec.decode(&mut self.input) {
                Ok(Some(inbound)) => {
                    self.last_inbound = now;
                    self.partial_since = None;
                    self.on_message(inbound, &mut actions);
                }
                Ok(None) => break,
                Err(e) => self.close(CloseReason::Protocol(e.to_string()), &mut actions),
            }
        }
        if self.input.is_empty() {
            self.partial_since = None;
        } else {
            self.partial_since.get_or_insert(now);
        }
        actions
    }

    /// The peer closed its end (or the read failed).
    pub fn on_eof(&mut self) -> Vec<Action> {
        let reason = match self.phase {
            Phase::ClosingPending => CloseReason::Graceful,
            _ => CloseReason::Peer,
        };
        self.close_with(reason)
    }

    pub fn on_read_error(&mut self, error: String) -> Vec<Action> {
        let reason = match self.phase {
            // The peer dropped the socket instead of closing it: our side is done anyway.
            Phase::ClosingPending => CloseReason::Graceful,
            _ => CloseReason::Io(error),
        };
        self.close_with(reason)
    }

    pub fn on_write_error(&mut self, error: String) -> Vec<Action> {
        self.close_with(CloseReason::Io(error))
    }

    /// `n` bytes of [`Self::output`] were accepted by the transport.
    pub fn on_written(&mut self, n: usize, now: Instant) {
        let n = n.min(self.output.len());
        self.output.advance(n);
        if n > 0 {
            self.unflushed = true;
            self.stalled_since = Some(now);
        }
    }

    /// The transport flushed everything written so far.
    pub fn on_flushed(&mut self, now: Instant) {
        self.unflushed = false;
        if self.output.is_empty() {
            self.stalled_since = None;
            self.last_outbound = now;
        }
    }

    /// Queues an already-framed message from another task (a request to the peer); false
    /// when the connection no longer writes.
    pub fn send_frame(&mut self, frame: &[u8], now: Instant) -> bool {
        if !matches!(self.phase, Phase::Active | Phase::Closing) {
            return false;
        }
        self.queue(frame, now);
        true
    }

    /// A dispatch finished (`None` when it was lost, e.g. its task panicked): queue its
    /// reply if one is owed, start a waiting request, and finish a graceful close.
    pub fn on_dispatch_finished(
        &mut self,
        done: Option<DispatchDone>,
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        self.dispatching = self.dispatching.saturating_sub(1);
        if !matches!(self.phase, Phase::Active | Phase::Closing) {
            return actions;
        }
        if let Some(done) = done.filter(|d| d.request_id != 0) {
            let frame = Reply {
                request_id: done.request_id,
                body: done.body,
            }
            .encode();
            let frame = prepare_reply(frame, done.compression, self.limits.compression_level);
            self.queue(&frame, now);
        }
        if let Some((request, compression)) = self.waiting.pop_front() {
            self.start(request, compression, &mut actions);
            if self.waiting.is_empty() && self.partial_since.is_some() {
                // The unfinished message could not be read while we were not reading.
                self.partial_since = Some(now);
            }
        }
        self.finish_closing(now);
        actions
    }

    /// Closes at once (`graceful == false`) or starts a graceful close: requests arriving
    /// from now on are dropped; CloseConnection follows the last owed reply (spec §1.4).
    pub fn begin_close(&mut self, graceful: bool, now: Instant) -> Vec<Action> {
        if !graceful {
            return self.close_with(CloseReason::Server);
        }
        if self.phase == Phase::Active {
            self.phase = Phase::Closing;
        }
        self.finish_closing(now);
        Vec::new()
    }

    /// Time passed: send a heartbeat or close on an expired timeout.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let expired = |deadline: Option<Instant>| deadline.is_some_and(|d| now >= d);
        let reason = if self.phase == Phase::Closed {
            return Vec::new();
        } else if expired(self.write_deadline()) {
            CloseReason::WriteTimeout
        } else if expired(self.close_deadline) {
            CloseReason::CloseTimeout
        } else if expired(self.idle_deadline()) {
            CloseReason::IdleTimeout
        } else if expired(self.message_deadline()) {
            CloseReason::MessageTimeout
        } else {
            if expired(self.heartbeat_deadline()) {
                self.queue(&VALIDATE_CONNECTION, now);
            }
            return Vec::new();
        };
        self.close_with(reason)
    }

    /// The next moment [`Self::on_tick`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        [
            self.write_deadline(),
            self.close_deadline,
            self.idle_deadline(),
            self.message_deadline(),
            self.heartbeat_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn open(&self) -> bool {
        matches!(self.phase, Phase::Active | Phase::Closing)
    }

    fn write_deadline(&self) -> Option<Instant> {
        self.stalled_since.map(|t| t + self.limits.close_timeout)
    }

    fn idle_deadline(&self) -> Option<Instant> {
        let idle = self.limits.idle_timeout.filter(|_| self.open())?;
        Some(self.last_inbound + idle)
    }

    fn message_deadline(&self) -> Option<Instant> {
        if !self.open() || !self.waiting.is_empty() {
            return None;
        }
        self.partial_since.map(|t| t + self.limits.message_timeout)
    }

    fn heartbeat_deadline(&self) -> Option<Instant> {
        let period = self.limits.heartbeat.filter(|_| self.open())?;
        if !self.output.is_empty() || self.unflushed {
            return None;
        }
        Some(self.last_outbound + period)
    }

    fn on_message(&mut self, inbound: Inbound, actions: &mut Vec<Action>) {
        match inbound.message {
            Message::Request(r) => self.on_request(r, inbound.compression, actions),
            Message::BatchRequest(requests) => {
                for r in requests {
                    self.on_request(r, inbound.compression, actions);
                }
            }
            Message::Reply(r) => actions.push(Action::DeliverReply {
                request_id: r.request_id,
                body: r.body,
            }),
            Message::ValidateConnection => actions.push(Action::Heartbeat),
            Message::CloseConnection => self.close(CloseReason::Peer, actions),
        }
    }

    fn on_request(&mut self, request: Request, compression: u8, actions: &mut Vec<Action>) {
        if self.phase != Phase::Active {
            // The peer retries it on a new connection after our CloseConnection.
            return;
        }
        if self.dispatching < self.limits.max_dispatches.max(1) {
            self.start(request, compression, actions);
        } else {
            self.waiting.push_back((request, compression));
        }
    }

    fn start(&mut self, request: Request, compression: u8, actions: &mut Vec<Action>) {
        self.dispatching += 1;
        actions.push(Action::Dispatch {
            request,
            compression,
        });
    }

    fn finish_closing(&mut self, now: Instant) {
        if self.phase == Phase::Closing && self.dispatching == 0 && self.waiting.is_empty() {
            self.queue(&CLOSE_CONNECTION, now);
            self.phase = Phase::ClosingPending;
            self.close_deadline = Some(now + self.limits.close_timeout);
        }
    }

    fn queue(&mut self, frame: &[u8], now: Instant) {
        if self.output.is_empty() {
            self.stalled_since = Some(now);
        }
        self.output.extend_from_slice(frame);
        self.last_outbound = now;
    }

    fn close(&mut self, reason: CloseReason, actions: &mut Vec<Action>) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.waiting.clear();
            actions.push(Action::Close(reason));
        }
    }

    fn close_with(&mut self, reason: CloseReason) -> Vec<Action> {
        let mut actions = Vec::new();
        self.close(reason, &mut actions);
        actions
    }
}

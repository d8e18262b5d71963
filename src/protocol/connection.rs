//! The decisions of one server-side connection, without sockets and without a clock: bytes
//! and the current time go in, bytes to write and [`Action`]s come out (the quinn-proto
//! style; `runtime::connection` is the tokio driver). States follow ZeroC's `ConnectionI`:
//! Active, Closing (new requests dropped, owed replies still sent), ClosingPending
//! (CloseConnection queued, waiting for the peer's EOF, bounded) and Closed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};

use super::{
    prepare_reply, Batch, FrameDecoder, Inbound, Message, Reply, ReplyBody, Request,
    CLOSE_CONNECTION, DEFAULT_MAX_MESSAGE_SIZE, VALIDATE_CONNECTION,
};

/// Above this much unwritten output the driver stops reading and stops taking frames from
/// other tasks, so a peer that does not read cannot make us buffer without bound.
pub const OUTPUT_HIGH_WATER: usize = 1 << 20;

/// An emptied input or output buffer larger than this is released rather than kept.
pub const IDLE_INPUT_CAPACITY: usize = 4 * 1024;

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

/// The reply frame of `done` (compressed when its request was and it pays), `None` for a
/// oneway request.
pub fn encode_reply(done: DispatchDone, compression_level: u32) -> Option<Vec<u8>> {
    if done.request_id == 0 {
        return None;
    }
    let frame = Reply {
        request_id: done.request_id,
        body: done.body,
    }
    .encode();
    Some(prepare_reply(frame, done.compression, compression_level))
}

#[derive(Debug)]
pub struct ConnectionState {
    limits: Limits,
    phase: Phase,
    codec: FrameDecoder,
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
    waiting: VecDeque<(Waiting, u8)>,
}

/// A request waiting for a dispatch slot, or the rest of a batch, still undecoded.
#[derive(Debug)]
enum Waiting {
    Request(Request),
    Batch(Batch),
}

impl ConnectionState {
    /// A freshly accepted connection; the server speaks first with ValidateConnection.
    pub fn new(limits: Limits, now: Instant) -> Self {
        let mut state = ConnectionState {
            codec: FrameDecoder::new(limits.max_message_size),
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
        if self.open() {
            self.input.extend_from_slice(data);
        }
        self.decode_input(now)
    }

    /// Lends the input buffer, so the driver reads straight into it (no copy through a
    /// scratch buffer); hand it back with [`Self::on_input`] or [`Self::return_input`].
    pub fn take_input(&mut self) -> BytesMut {
        std::mem::take(&mut self.input)
    }

    /// The lent buffer is back with more bytes read into it.
    pub fn on_input(&mut self, input: BytesMut, now: Instant) -> Vec<Action> {
        self.input = input;
        self.decode_input(now)
    }

    /// The lent buffer is back unchanged (nothing was read).
    pub fn return_input(&mut self, input: BytesMut) {
        self.input = input;
    }

    fn decode_input(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match self.phase {
            Phase::Active | Phase::Closing => {}
            // Ice discards whatever arrives while it waits for the peer's EOF.
            Phase::ClosingPending | Phase::Closed => {
                self.input.clear();
                return actions;
            }
        }
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
            // An idle connection keeps no large buffer from the last big message.
            if self.input.capacity() > IDLE_INPUT_CAPACITY {
                self.input = BytesMut::new();
            }
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
        if self.output.is_empty() && self.output.capacity() > IDLE_INPUT_CAPACITY {
            self.output = BytesMut::new();
        }
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
        let frame = done.and_then(|d| self.encode_reply(d));
        self.on_reply_ready(frame.as_deref(), now)
    }

    /// The reply frame of a finished dispatch, compressed as its request was; `None` for
    /// a oneway request. Pure, so a dispatch task can run it (bzip2 is costly) and hand
    /// the frame to [`Self::on_reply_ready`].
    pub fn encode_reply(&self, done: DispatchDone) -> Option<Vec<u8>> {
        encode_reply(done, self.limits.compression_level)
    }

    /// Like [`Self::on_dispatch_finished`], with the reply already encoded (`None` when
    /// none is owed or the dispatch was lost).
    pub fn on_reply_ready(&mut self, frame: Option<&[u8]>, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.dispatching = self.dispatching.saturating_sub(1);
        if !matches!(self.phase, Phase::Active | Phase::Closing) {
            return actions;
        }
        if let Some(frame) = frame {
            self.queue(frame, now);
        }
        if let Some((request, compression)) = self.next_waiting(&mut actions) {
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
            Message::BatchRequest(batch) => self.on_batch(batch, inbound.compression, actions),
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
            self.waiting
                .push_back((Waiting::Request(request), compression));
        }
    }

    /// Starts a batch's requests while dispatch slots are free, decoding each only then;
    /// the rest waits undecoded.
    fn on_batch(&mut self, mut batch: Batch, compression: u8, actions: &mut Vec<Action>) {
        if self.phase != Phase::Active {
            return;
        }
        while self.waiting.is_empty() && self.dispatching < self.limits.max_dispatches.max(1) {
            match batch.next() {
                None => return,
                Some(Ok(request)) => self.start(request, compression, actions),
                Some(Err(e)) => {
                    self.close(CloseReason::Protocol(e.to_string()), actions);
                    return;
                }
            }
        }
        if batch.remaining() > 0 {
            self.waiting.push_back((Waiting::Batch(batch), compression));
        }
    }

    /// The next waiting request, decoding it from a waiting batch if that is first; a
    /// batch request that does not decode closes the connection.
    fn next_waiting(&mut self, actions: &mut Vec<Action>) -> Option<(Request, u8)> {
        loop {
            let (waiting, compression) = self.waiting.front_mut()?;
            let compression = *compression;
            let Waiting::Batch(batch) = waiting else {
                return match self.waiting.pop_front() {
                    Some((Waiting::Request(request), c)) => Some((request, c)),
                    _ => None,
                };
            };
            let next = batch.next();
            if batch.remaining() == 0 {
                self.waiting.pop_front();
            }
            match next {
                None => continue,
                Some(Ok(request)) => return Some((request, compression)),
                Some(Err(e)) => {
                    self.close(CloseReason::Protocol(e.to_string()), actions);
                    return None;
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoding, Identity};
    use crate::protocol::encode_batch;
    use bytes::Bytes;

    const MS: Duration = Duration::from_millis(1);

    fn limits() -> Limits {
        Limits {
            heartbeat: Some(100 * MS),
            idle_timeout: Some(300 * MS),
            message_timeout: 200 * MS,
            close_timeout: 500 * MS,
            ..Limits::default()
        }
    }

    fn request(id: i32) -> Request {
        Request {
            request_id: id,
            id: Identity::new("", "servant"),
            facet: String::new(),
            operation: "ice_ping".into(),
            mode: 1,
            context: Default::default(),
            encoding: Encoding::V1_1.into(),
            params: Bytes::new(),
        }
    }

    fn ok() -> ReplyBody {
        ReplyBody::Ok {
            encoding: Encoding::V1_1.into(),
            payload: Bytes::new(),
        }
    }

    fn done(request_id: i32) -> Option<DispatchDone> {
        Some(DispatchDone {
            request_id,
            compression: 0,
            body: ok(),
        })
    }

    fn reply_frame(request_id: i32) -> Vec<u8> {
        Reply {
            request_id,
            body: ok(),
        }
        .encode()
    }

    /// A connection at `t0` whose ValidateConnection has been written and flushed.
    fn started(limits: Limits) -> (ConnectionState, Instant) {
        let t0 = Instant::now();
        let mut c = ConnectionState::new(limits, t0);
        assert_eq!(c.output(), &VALIDATE_CONNECTION[..]);
        drain(&mut c, t0);
        (c, t0)
    }

    /// Writes and flushes all output at `now`; returns what was written.
    fn drain(c: &mut ConnectionState, now: Instant) -> Vec<u8> {
        let out = c.output().to_vec();
        c.on_written(out.len(), now);
        assert!(c.wants_flush() || out.is_empty());
        c.on_flushed(now);
        out
    }

    fn dispatched(actions: &[Action]) -> Vec<i32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Dispatch { request, .. } => Some(request.request_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn validates_first_then_heartbeats_when_nothing_was_written() {
        let (mut c, t0) = started(limits());
        assert_eq!(c.poll_timeout(), Some(t0 + 100 * MS));
        assert!(c.on_tick(t0 + 99 * MS).is_empty());
        assert!(c.output().is_empty());
        assert!(c.on_tick(t0 + 100 * MS).is_empty());
        assert_eq!(drain(&mut c, t0 + 101 * MS), VALIDATE_CONNECTION);
        assert_eq!(c.poll_timeout(), Some(t0 + 201 * MS));
    }

    #[test]
    fn replies_postpone_the_heartbeat() {
        let (mut c, t0) = started(Limits {
            idle_timeout: None,
            ..limits()
        });
        let actions = c.on_data(&request(7).encode(), t0 + 50 * MS);
        assert_eq!(dispatched(&actions), vec![7]);
        c.on_dispatch_finished(done(7), t0 + 60 * MS);
        // Nothing is due while output waits; the write timeout is the only deadline then.
        assert_eq!(c.poll_timeout(), Some(t0 + 60 * MS + 500 * MS));
        assert_eq!(drain(&mut c, t0 + 70 * MS), reply_frame(7));
        assert_eq!(c.poll_timeout(), Some(t0 + 170 * MS));
    }

    #[test]
    fn heartbeats_can_be_off() {
        let (c, _) = started(Limits {
            heartbeat: None,
            idle_timeout: None,
            ..limits()
        });
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn idle_connection_closes_after_the_idle_timeout() {
        let (mut c, t0) = started(Limits {
            heartbeat: None,
            ..limits()
        });
        assert_eq!(c.poll_timeout(), Some(t0 + 300 * MS));
        assert!(c.on_tick(t0 + 299 * MS).is_empty());
        assert_eq!(
            c.on_tick(t0 + 300 * MS),
            vec![Action::Close(CloseReason::IdleTimeout)]
        );
        assert_eq!(c.phase(), Phase::Closed);
        assert_eq!(c.poll_timeout(), None);
        assert!(c.on_tick(t0 + 900 * MS).is_empty(), "closes only once");
    }

    #[test]
    fn a_received_heartbeat_counts_as_activity() {
        let (mut c, t0) = started(Limits {
            heartbeat: None,
            ..limits()
        });
        let actions = c.on_data(&VALIDATE_CONNECTION, t0 + 200 * MS);
        assert_eq!(actions, vec![Action::Heartbeat]);
        assert!(c.output().is_empty(), "a heartbeat is not answered");
        assert!(c.on_tick(t0 + 400 * MS).is_empty());
        assert_eq!(c.poll_timeout(), Some(t0 + 500 * MS));
        assert_eq!(
            c.on_tick(t0 + 500 * MS),
            vec![Action::Close(CloseReason::IdleTimeout)]
        );
    }

    #[test]
    fn close_connection_from_the_peer_closes_at_once() {
        let (mut c, t0) = started(limits());
        let _ = c.on_data(&request(1).encode(), t0);
        let actions = c.on_data(&CLOSE_CONNECTION, t0);
        assert_eq!(actions, vec![Action::Close(CloseReason::Peer)]);
        assert_eq!(c.phase(), Phase::Closed);
        // The reply of the running dispatch goes nowhere.
        assert!(c.on_dispatch_finished(done(1), t0).is_empty());
        assert!(c.output().is_empty());
        assert!(!c.wants_read());
    }

    #[test]
    fn eof_from_the_peer_closes() {
        let (mut c, _) = started(limits());
        assert_eq!(c.on_eof(), vec![Action::Close(CloseReason::Peer)]);
    }

    #[test]
    fn graceful_close_sends_owed_replies_then_close_connection() {
        let (mut c, t0) = started(limits());
        let mut wire = request(1).encode();
        wire.extend(request(2).encode());
        assert_eq!(dispatched(&c.on_data(&wire, t0)), vec![1, 2]);
        assert!(c.begin_close(true, t0 + 10 * MS).is_empty());
        assert_eq!(c.phase(), Phase::Closing);
        assert!(c.output().is_empty(), "replies are still owed");

        // Requests arriving now are dropped unanswered: the peer retries them.
        let actions = c.on_data(&request(3).encode(), t0 + 20 * MS);
        assert!(actions.is_empty());
        assert_eq!(c.dispatching(), 2);

        c.on_dispatch_finished(done(2), t0 + 30 * MS);
        assert_eq!(c.phase(), Phase::Closing);
        c.on_dispatch_finished(done(1), t0 + 40 * MS);
        assert_eq!(c.phase(), Phase::ClosingPending);
        let mut expected = reply_frame(2);
        expected.extend(reply_frame(1));
        expected.extend(CLOSE_CONNECTION);
        assert_eq!(drain(&mut c, t0 + 50 * MS), expected);

        // Whatever arrives now is discarded; no heartbeats; the peer's EOF ends it.
        assert!(c.on_data(&request(4).encode(), t0 + 60 * MS).is_empty());
        assert!(c.on_tick(t0 + 400 * MS).is_empty());
        assert!(c.output().is_empty());
        assert_eq!(c.on_eof(), vec![Action::Close(CloseReason::Graceful)]);
    }

    #[test]
    fn graceful_close_without_dispatches_sends_close_connection_at_once() {
        let (mut c, t0) = started(limits());
        assert!(c.begin_close(true, t0).is_empty());
        assert_eq!(c.phase(), Phase::ClosingPending);
        assert_eq!(drain(&mut c, t0), CLOSE_CONNECTION);
        assert!(c.begin_close(true, t0).is_empty());
        assert!(c.output().is_empty(), "sent once");
    }

    #[test]
    fn peer_that_never_closes_is_dropped_after_the_close_timeout() {
        let (mut c, t0) = started(limits());
        let _ = c.begin_close(true, t0 + 10 * MS);
        drain(&mut c, t0 + 10 * MS);
        assert_eq!(c.poll_timeout(), Some(t0 + 510 * MS));
        assert!(c.on_tick(t0 + 509 * MS).is_empty());
        assert_eq!(
            c.on_tick(t0 + 510 * MS),
            vec![Action::Close(CloseReason::CloseTimeout)]
        );
    }

    #[test]
    fn forceful_close_closes_at_once() {
        let (mut c, t0) = started(limits());
        let _ = c.on_data(&request(1).encode(), t0);
        let _ = c.begin_close(true, t0);
        assert_eq!(
            c.begin_close(false, t0),
            vec![Action::Close(CloseReason::Server)]
        );
        assert!(c.output().is_empty());
    }

    #[test]
    fn unfinished_message_times_out() {
        let (mut c, t0) = started(Limits {
            idle_timeout: None,
            heartbeat: None,
            ..limits()
        });
        let frame = request(1).encode();
        assert!(c.on_data(&frame[..20], t0 + 10 * MS).is_empty());
        assert_eq!(c.poll_timeout(), Some(t0 + 210 * MS));
        // More bytes of the same message do not extend the deadline.
        assert!(c.on_data(&frame[20..25], t0 + 100 * MS).is_empty());
        assert_eq!(c.poll_timeout(), Some(t0 + 210 * MS));
        assert_eq!(
            c.on_tick(t0 + 210 * MS),
            vec![Action::Close(CloseReason::MessageTimeout)]
        );
    }

    #[test]
    fn completed_message_clears_the_message_deadline() {
        let (mut c, t0) = started(Limits {
            idle_timeout: None,
            heartbeat: None,
            ..limits()
        });
        let frame = request(1).encode();
        let _ = c.on_data(&frame[..20], t0);
        assert_eq!(dispatched(&c.on_data(&frame[20..], t0 + 50 * MS)), vec![1]);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn protocol_errors_close_forcefully() {
        let (mut c, t0) = started(limits());
        let actions = c.on_data(b"GET / HTTP/1.1\r\n", t0);
        assert!(matches!(
            actions.as_slice(),
            [Action::Close(CloseReason::Protocol(_))]
        ));
        assert!(c.output().is_empty());
    }

    #[test]
    fn replies_from_the_peer_are_delivered_whatever_their_id() {
        // Matching ids to invocations is the connection handle's job; unknown ones are
        // ignored there, and the connection carries on.
        let (mut c, t0) = started(limits());
        let actions = c.on_data(&reply_frame(42), t0);
        assert_eq!(
            actions,
            vec![Action::DeliverReply {
                request_id: 42,
                body: ok()
            }]
        );
        assert_eq!(c.phase(), Phase::Active);
        assert!(c.output().is_empty());
    }

    #[test]
    fn oneway_and_batch_requests_get_no_reply() {
        let (mut c, t0) = started(limits());
        let actions = c.on_data(&request(0).encode(), t0);
        assert_eq!(dispatched(&actions), vec![0]);
        let batch = encode_batch(&[request(0), request(0)]);
        let actions = c.on_data(&batch, t0);
        assert_eq!(dispatched(&actions), vec![0, 0]);
        for _ in 0..3 {
            let _ = c.on_dispatch_finished(done(0), t0);
        }
        assert_eq!(c.dispatching(), 0);
        assert!(c.output().is_empty());
    }

    #[test]
    fn requests_beyond_the_dispatch_limit_wait_and_pause_reading() {
        let (mut c, t0) = started(Limits {
            max_dispatches: 1,
            ..limits()
        });
        let mut wire = request(1).encode();
        wire.extend(request(2).encode());
        assert_eq!(dispatched(&c.on_data(&wire, t0)), vec![1]);
        assert!(!c.wants_read());
        assert_eq!(dispatched(&c.on_dispatch_finished(done(1), t0)), vec![2]);
        assert!(c.wants_read());
    }

    #[test]
    fn a_waiting_batch_is_decoded_one_request_at_a_time() {
        let (mut c, t0) = started(Limits {
            max_dispatches: 1,
            ..limits()
        });
        let batch = encode_batch(&[request(0), request(0), request(0)]);
        assert_eq!(dispatched(&c.on_data(&batch, t0)), vec![0]);
        assert!(!c.wants_read());
        // the two others wait undecoded, as one entry
        assert_eq!(c.waiting.len(), 1);
        assert!(matches!(&c.waiting[0].0, Waiting::Batch(b) if b.remaining() == 2));
        assert_eq!(dispatched(&c.on_dispatch_finished(done(0), t0)), vec![0]);
        assert_eq!(dispatched(&c.on_dispatch_finished(done(0), t0)), vec![0]);
        assert!(c.wants_read());
        assert!(c.on_dispatch_finished(done(0), t0).is_empty());
        assert_eq!(c.dispatching(), 0);
    }

    #[test]
    fn a_bad_request_late_in_a_waiting_batch_closes_the_connection() {
        let (mut c, t0) = started(Limits {
            max_dispatches: 1,
            ..limits()
        });
        let mut batch = encode_batch(&[request(0), request(0)]);
        batch.truncate(batch.len() - 3);
        let size = batch.len() as i32;
        batch[10..14].copy_from_slice(&size.to_le_bytes());
        assert_eq!(dispatched(&c.on_data(&batch, t0)), vec![0]);
        let actions = c.on_dispatch_finished(done(0), t0);
        assert!(actions.iter().any(|a| matches!(a, Action::Close(_))));
        assert_eq!(c.phase(), Phase::Closed);
    }

    #[test]
    fn stalled_writes_time_out() {
        let (mut c, t0) = started(Limits {
            idle_timeout: None,
            ..limits()
        });
        let _ = c.on_data(&request(1).encode(), t0);
        let _ = c.on_dispatch_finished(done(1), t0);
        c.on_written(3, t0 + 100 * MS);
        assert_eq!(c.poll_timeout(), Some(t0 + 600 * MS), "progress resets it");
        assert_eq!(
            c.on_tick(t0 + 600 * MS),
            vec![Action::Close(CloseReason::WriteTimeout)]
        );
    }

    #[test]
    fn frames_from_other_tasks_are_written_until_close_connection() {
        let (mut c, t0) = started(limits());
        assert!(c.send_frame(&request(5).encode(), t0));
        assert_eq!(drain(&mut c, t0), request(5).encode());
        let _ = c.begin_close(true, t0);
        assert!(!c.send_frame(&request(6).encode(), t0));
        assert!(!c.accepts_frames());
    }

    #[test]
    fn compressed_requests_get_compressed_replies() {
        let (mut c, t0) = started(limits());
        let _ = c.on_data(&request(1).encode(), t0);
        let body = ReplyBody::Ok {
            encoding: Encoding::V1_1.into(),
            payload: Bytes::from(vec![b'x'; 4000]),
        };
        let done = DispatchDone {
            request_id: 1,
            compression: 1,
            body: body.clone(),
        };
        let _ = c.on_dispatch_finished(Some(done), t0);
        let expected = prepare_reply(
            Reply {
                request_id: 1,
                body,
            }
            .encode(),
            1,
            1,
        );
        assert_eq!(c.output(), &expected[..]);
        assert_eq!(c.output()[9], 2, "compressed");
    }

    #[test]
    fn a_lent_buffer_decodes_like_on_data_and_big_ones_are_released() {
        let (mut c, t0) = started(limits());
        let mut input = c.take_input();
        input.extend_from_slice(&request(1).encode());
        input.extend_from_slice(&request(2).encode()[..5]);
        assert_eq!(dispatched(&c.on_input(input, t0)), vec![1]);
        let mut input = c.take_input();
        assert_eq!(input.len(), 5, "the partial message stays in the buffer");
        input.extend_from_slice(&request(2).encode()[5..]);
        assert_eq!(dispatched(&c.on_input(input, t0)), vec![2]);
        // A large message leaves no large buffer behind once it is decoded.
        let mut big = request(3);
        big.params = Bytes::from(vec![0u8; 64 * 1024]);
        let mut input = c.take_input();
        input.extend_from_slice(&big.encode());
        assert_eq!(dispatched(&c.on_input(input, t0)), vec![3]);
        assert!(c.take_input().capacity() <= IDLE_INPUT_CAPACITY);
        // Nothing read: the buffer comes back as it was.
        let mut input = BytesMut::with_capacity(100);
        input.extend_from_slice(b"\x49");
        c.return_input(input);
        assert_eq!(&c.take_input()[..], b"\x49");
    }

    #[test]
    fn a_reply_encoded_elsewhere_is_queued_as_is() {
        let (mut c, t0) = started(limits());
        let actions = c.on_data(&request(4).encode(), t0);
        assert_eq!(dispatched(&actions), vec![4]);
        let frame = c.encode_reply(done(4).unwrap());
        assert_eq!(frame.as_deref(), Some(&reply_frame(4)[..]));
        assert!(c.on_reply_ready(frame.as_deref(), t0).is_empty());
        assert_eq!(c.dispatching(), 0);
        assert_eq!(drain(&mut c, t0), reply_frame(4));
        // Oneway: no frame.
        assert_eq!(c.encode_reply(done(0).unwrap()), None);
    }

    #[test]
    fn a_big_written_output_is_released() {
        let (mut c, t0) = started(limits());
        let frame = vec![0u8; 3 * IDLE_INPUT_CAPACITY];
        assert!(c.send_frame(&frame, t0));
        assert_eq!(drain(&mut c, t0).len(), frame.len());
        assert!(c.output.capacity() <= IDLE_INPUT_CAPACITY);
    }
}

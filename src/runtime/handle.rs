//! A handle through which code outside a connection's task closes it or sends requests to
//! the peer over it (callbacks on a bidirectional connection, spec §1.3).
//!
//! Everything the task must hear from outside (a close request, frames to send) goes
//! through one small mailbox with one waker. A channel per purpose would cost an idle
//! connection about a kilobyte (tokio's mpsc allocates a block of 32 slots up front, its
//! watch eight notifiers), and polling each of them on every turn of the task's loop takes
//! locks a flag check does not.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use thiserror::Error;
use tokio::sync::{oneshot, Semaphore};

use crate::protocol::{ReplyBody, Request};

/// What has been asked of a connection; a later, stronger request wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CloseRequest {
    None = 0,
    /// Stop dispatching, send the outstanding replies, then CloseConnection (spec §1.4).
    Graceful = 1,
    /// Drop the socket now.
    Forceful = 2,
}

impl CloseRequest {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => CloseRequest::None,
            1 => CloseRequest::Graceful,
            _ => CloseRequest::Forceful,
        }
    }
}

/// What the connection's task finds in its mailbox.
pub(crate) enum Mail {
    /// A close stronger than the last one it saw.
    Close(CloseRequest),
    /// Encoded frames to write, oldest first.
    Frames(VecDeque<Box<[u8]>>),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The connection is gone (or was never driven by the runtime); the request may or may
    /// not have reached the peer if it was already sent.
    #[error("connection closed")]
    ConnectionClosed,
}

/// Frames waiting to be written, and the twoway requests we sent whose replies we await.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Box<[u8]>>,
    /// The last request id used; ids run 1..=i32::MAX and wrap back to 1.
    last_id: i32,
    waiting: HashMap<i32, oneshot::Sender<ReplyBody>>,
    /// Set when the connection has ended: no new invocations.
    closed: bool,
}

struct Mailbox {
    /// A [`CloseRequest`]; it only rises.
    close: AtomicU8,
    /// Set by the router after a successful login; the task reads it at its login deadline.
    logged_in: AtomicBool,
    /// Whether `queue.frames` holds anything, so that the task looks without the lock.
    has_frames: AtomicBool,
    /// The connection task's.
    waker: AtomicWaker,
    queue: Mutex<Queue>,
    /// Places left in `queue.frames`: a sender waits for one (backpressure).
    room: Semaphore,
}

#[derive(Clone)]
pub struct ConnectionHandle {
    mailbox: Option<Arc<Mailbox>>,
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("closing", &self.is_closing())
            .field("logged_in", &self.is_logged_in())
            .finish_non_exhaustive()
    }
}

/// The connection task's end of a handle.
pub(crate) struct HandleParts {
    mailbox: Arc<Mailbox>,
    /// The strongest close request already handed to the task.
    seen_close: CloseRequest,
}

impl HandleParts {
    /// Ready with what arrived since the last call: a stronger close first, then the
    /// queued frames if `want_frames`.
    pub(crate) fn poll_mail(&mut self, cx: &mut Context<'_>, want_frames: bool) -> Poll<Mail> {
        let m = &self.mailbox;
        // Registered before looking, so that a sender arriving in between still wakes us.
        m.waker.register(cx.waker());
        let close = CloseRequest::from_u8(m.close.load(Ordering::Acquire));
        if close > self.seen_close {
            self.seen_close = close;
            return Poll::Ready(Mail::Close(close));
        }
        if want_frames && m.has_frames.load(Ordering::Acquire) {
            let frames = {
                let mut q = m.lock();
                m.has_frames.store(false, Ordering::Release);
                std::mem::take(&mut q.frames)
            };
            m.room.add_permits(frames.len());
            return Poll::Ready(Mail::Frames(frames));
        }
        Poll::Pending
    }

    /// The next mail, as a future.
    pub(crate) async fn mail(&mut self, want_frames: bool) -> Mail {
        std::future::poll_fn(|cx| self.poll_mail(cx, want_frames)).await
    }
}

impl ConnectionHandle {
    /// A handle and the task's end of it; at most `queue` frames wait to be written.
    pub(crate) fn new(queue: usize) -> (Self, HandleParts) {
        let mailbox = Arc::new(Mailbox {
            close: AtomicU8::new(CloseRequest::None as u8),
            logged_in: AtomicBool::new(false),
            has_frames: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            queue: Mutex::new(Queue::default()),
            room: Semaphore::new(queue.max(1)),
        });
        let parts = HandleParts {
            mailbox: mailbox.clone(),
            seen_close: CloseRequest::None,
        };
        let handle = ConnectionHandle {
            mailbox: Some(mailbox),
        };
        (handle, parts)
    }

    /// A handle that nothing listens to: closing does nothing and invocations fail.
    pub fn detached() -> Self {
        ConnectionHandle { mailbox: None }
    }

    /// Tells the runtime that this connection has logged in, so the login deadline no
    /// longer applies to it. Called by the router after a successful `createSession`.
    pub fn mark_logged_in(&self) {
        if let Some(m) = &self.mailbox {
            m.logged_in.store(true, Ordering::Release);
        }
    }

    /// Whether [`Self::mark_logged_in`] was called.
    pub fn is_logged_in(&self) -> bool {
        self.mailbox
            .as_ref()
            .is_some_and(|m| m.logged_in.load(Ordering::Acquire))
    }

    /// Asks the connection to close: gracefully (replies already owed are still sent, the
    /// client retries what it sent afterwards) or at once.
    pub fn close(&self, graceful: bool) {
        let Some(m) = &self.mailbox else {
            return;
        };
        let wanted = if graceful {
            CloseRequest::Graceful
        } else {
            CloseRequest::Forceful
        };
        if m.close.fetch_max(wanted as u8, Ordering::AcqRel) < wanted as u8 {
            m.waker.wake();
        }
    }

    /// Whether a close has been asked for.
    pub fn is_closing(&self) -> bool {
        self.mailbox
            .as_ref()
            .is_some_and(|m| m.close.load(Ordering::Acquire) != CloseRequest::None as u8)
    }

    /// Sends a twoway request to the peer and waits for its reply. `request.request_id`
    /// is replaced by this connection's own counter. Wrap it in a timeout if the peer may
    /// not answer; dropping the future forgets the request.
    pub async fn invoke(&self, mut request: Request) -> Result<ReplyBody, InvokeError> {
        let mailbox = self.mailbox.as_ref().ok_or(InvokeError::ConnectionClosed)?;
        let (tx, rx) = oneshot::channel();
        let id = mailbox.register(tx)?;
        let _forget = ForgetOnDrop { mailbox, id };
        request.request_id = id;
        mailbox.send(request.encode().into_boxed_slice()).await?;
        rx.await.map_err(|_| InvokeError::ConnectionClosed)
    }

    /// Sends a oneway request (its id is set to 0); returns once it is queued for writing.
    pub async fn send_oneway(&self, mut request: Request) -> Result<(), InvokeError> {
        let mailbox = self.mailbox.as_ref().ok_or(InvokeError::ConnectionClosed)?;
        request.request_id = 0;
        mailbox.send(request.encode().into_boxed_slice()).await
    }

    /// Hands a reply from the peer to the invocation waiting for it; unknown ids are
    /// ignored, as Ice does.
    pub(crate) fn deliver_reply(&self, request_id: i32, body: ReplyBody) -> bool {
        let Some(mailbox) = &self.mailbox else {
            return false;
        };
        let waiter = mailbox.lock().waiting.remove(&request_id);
        waiter.is_some_and(|tx| tx.send(body).is_ok())
    }

    /// Fails every waiting invocation and refuses new ones.
    pub(crate) fn connection_ended(&self) {
        if let Some(m) = &self.mailbox {
            let mut q = m.lock();
            q.closed = true;
            q.waiting.clear();
            q.frames.clear();
            m.room.close();
        }
    }
}

impl Mailbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame once there is room, and wakes the task.
    async fn send(&self, frame: Box<[u8]>) -> Result<(), InvokeError> {
        let place = self
            .room
            .acquire()
            .await
            .map_err(|_| InvokeError::ConnectionClosed)?;
        {
            let mut q = self.lock();
            if q.closed {
                return Err(InvokeError::ConnectionClosed);
            }
            // The task gives the place back when it takes the frame.
            place.forget();
            q.frames.push_back(frame);
            self.has_frames.store(true, Ordering::Release);
        }
        self.waker.wake();
        Ok(())
    }

    fn register(&self, tx: oneshot::Sender<ReplyBody>) -> Result<i32, InvokeError> {
        let mut p = self.lock();
        if p.closed {
            return Err(InvokeError::ConnectionClosed);
        }
        loop {
            p.last_id = if p.last_id == i32::MAX {
                1
            } else {
                p.last_id + 1
            };
            if !p.waiting.contains_key(&p.last_id) {
                break;
            }
        }
        let id = p.last_id;
        p.waiting.insert(id, tx);
        Ok(id)
    }
}

/// Every open connection's handle, so that a server shutting down asks each one to close
/// (one flag in its mailbox, rather than a waiter on a shared token that every connection
/// would poll, under one lock, on every turn of its loop).
#[derive(Default)]
pub(crate) struct OpenConnections {
    inner: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    handles: HashMap<u64, ConnectionHandle>,
    closing: bool,
}

impl OpenConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection; once the server is closing, it is asked to close at once.
    pub(crate) fn add(&self, id: u64, handle: &ConnectionHandle) {
        let mut open = self.lock();
        if open.closing {
            handle.close(true);
        } else {
            open.handles.insert(id, handle.clone());
        }
    }

    pub(crate) fn remove(&self, id: u64) {
        self.lock().handles.remove(&id);
    }

    /// Asks every open connection, and every later one, to close gracefully.
    pub(crate) fn close_all(&self) {
        let handles = {
            let mut open = self.lock();
            open.closing = true;
            std::mem::take(&mut open.handles)
        };
        for handle in handles.values() {
            handle.close(true);
        }
    }
}

struct ForgetOnDrop<'a> {
    mailbox: &'a Mailbox,
    id: i32,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.mailbox.lock().waiting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encoding, Identity};

    fn mailbox(h: &ConnectionHandle) -> &Mailbox {
        h.mailbox.as_deref().unwrap()
    }

    fn oneway() -> Request {
        Request {
            request_id: 0,
            id: Identity::new("", "callback"),
            facet: String::new(),
            operation: "ping".into(),
            mode: 0,
            context: Default::default(),
            encoding: Encoding::V1_1.into(),
            params: bytes::Bytes::new(),
        }
    }

    fn poll_now(parts: &mut HandleParts, want_frames: bool) -> Poll<Mail> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        parts.poll_mail(&mut cx, want_frames)
    }

    #[test]
    fn ids_start_at_one_and_skip_waiting_ones() {
        let (h, _parts) = ConnectionHandle::new(4);
        let o = mailbox(&h);
        assert_eq!(o.register(oneshot::channel().0).unwrap(), 1);
        o.lock().last_id = i32::MAX - 1;
        assert_eq!(o.register(oneshot::channel().0).unwrap(), i32::MAX);
        assert_eq!(
            o.register(oneshot::channel().0).unwrap(),
            2,
            "1 is still waiting"
        );
        h.connection_ended();
        assert!(o.register(oneshot::channel().0).is_err());
    }

    #[test]
    fn replies_to_unknown_ids_are_ignored() {
        let (h, _parts) = ConnectionHandle::new(4);
        let (tx, mut rx) = oneshot::channel();
        let id = mailbox(&h).register(tx).unwrap();
        assert!(!h.deliver_reply(id + 1, ReplyBody::Unknown("x".into())));
        assert!(rx.try_recv().is_err(), "the waiting invocation got nothing");
        assert!(h.deliver_reply(id, ReplyBody::Unknown("x".into())));
        assert_eq!(rx.try_recv().unwrap(), ReplyBody::Unknown("x".into()));
        assert!(
            !h.deliver_reply(id, ReplyBody::Unknown("x".into())),
            "only once"
        );
    }

    #[test]
    fn close_requests_only_escalate_and_are_told_once() {
        let (h, mut parts) = ConnectionHandle::new(4);
        assert!(poll_now(&mut parts, true).is_pending());
        h.close(true);
        assert!(h.is_closing());
        assert!(matches!(
            poll_now(&mut parts, true),
            Poll::Ready(Mail::Close(CloseRequest::Graceful))
        ));
        assert!(poll_now(&mut parts, true).is_pending(), "told once");
        h.close(false);
        h.close(true);
        assert!(matches!(
            poll_now(&mut parts, true),
            Poll::Ready(Mail::Close(CloseRequest::Forceful))
        ));
        assert!(poll_now(&mut parts, true).is_pending());
        ConnectionHandle::detached().close(true);
        assert!(!ConnectionHandle::detached().is_closing());
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_wait_for_room() {
        let (h, mut parts) = ConnectionHandle::new(2);
        h.send_oneway(oneway()).await.unwrap();
        h.send_oneway(oneway()).await.unwrap();
        // The queue is full: the third sender waits until the task takes the first two.
        let third = tokio::spawn({
            let h = h.clone();
            async move { h.send_oneway(oneway()).await }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        assert!(
            poll_now(&mut parts, false).is_pending(),
            "frames wait while the task does not want them"
        );
        match parts.mail(true).await {
            Mail::Frames(f) => assert_eq!(f.len(), 2),
            Mail::Close(_) => panic!("no close was asked"),
        }
        third.await.unwrap().unwrap();
        match parts.mail(true).await {
            Mail::Frames(f) => assert_eq!(f.len(), 1),
            Mail::Close(_) => panic!("no close was asked"),
        }
    }

    #[tokio::test]
    async fn senders_fail_once_the_connection_ended() {
        let (h, _parts) = ConnectionHandle::new(1);
        h.send_oneway(oneway()).await.unwrap();
        let waiting = tokio::spawn({
            let h = h.clone();
            async move { h.send_oneway(oneway()).await }
        });
        tokio::task::yield_now().await;
        h.connection_ended();
        assert_eq!(waiting.await.unwrap(), Err(InvokeError::ConnectionClosed));
        assert_eq!(
            h.send_oneway(oneway()).await,
            Err(InvokeError::ConnectionClosed)
        );
        assert_eq!(h.invoke(oneway()).await, Err(InvokeError::ConnectionClosed));
    }

    #[test]
    fn closing_all_reaches_open_and_later_connections() {
        let open = OpenConnections::default();
        let (a, _pa) = ConnectionHandle::new(1);
        let (b, _pb) = ConnectionHandle::new(1);
        open.add(1, &a);
        open.add(2, &b);
        open.remove(2);
        open.close_all();
        assert!(a.is_closing());
        assert!(!b.is_closing(), "removed before the shutdown");
        let (c, _pc) = ConnectionHandle::new(1);
        open.add(3, &c);
        assert!(c.is_closing(), "opened during the shutdown");
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_a_sender() {
        let (h, mut parts) = ConnectionHandle::new(4);
        let task = tokio::spawn(async move { matches!(parts.mail(true).await, Mail::Frames(_)) });
        tokio::task::yield_now().await;
        h.send_oneway(oneway()).await.unwrap();
        assert!(task.await.unwrap());
    }
}

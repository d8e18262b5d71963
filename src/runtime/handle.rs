//! A handle through which code outside a connection's task closes it or sends requests to
//! the peer over it (callbacks on a bidirectional connection, spec §1.3).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::{ReplyBody, Request};

/// What has been asked of a connection; a later, stronger request wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CloseRequest {
    None,
    /// Stop dispatching, send the outstanding replies, then CloseConnection (spec §1.4).
    Graceful,
    /// Drop the socket now.
    Forceful,
}

/// A frame for the connection to write. Kept to two words: the queue allocates room for
/// 32 of them per connection up front, used or not.
pub(crate) enum Outgoing {
    Frame(Box<[u8]>),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The connection is gone (or was never driven by the runtime); the request may or may
    /// not have reached the peer if it was already sent.
    #[error("connection closed")]
    ConnectionClosed,
}

/// Twoway requests we sent and whose replies we await, by request id.
#[derive(Default)]
struct Pending {
    /// The last id used; ids run 1..=i32::MAX and wrap back to 1.
    last_id: i32,
    waiting: HashMap<i32, oneshot::Sender<ReplyBody>>,
    /// Set when the connection has ended: no new invocations.
    closed: bool,
}

struct Outbound {
    out_tx: mpsc::Sender<Outgoing>,
    pending: Mutex<Pending>,
}

#[derive(Clone)]
pub struct ConnectionHandle {
    close_tx: watch::Sender<CloseRequest>,
    outbound: Option<Arc<Outbound>>,
    /// Set by the router after a successful login; the connection task reads it at its
    /// login deadline.
    logged_in: Arc<AtomicBool>,
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("closing", &self.is_closing())
            .field("logged_in", &self.is_logged_in())
            .finish_non_exhaustive()
    }
}

/// The connection task's ends of a handle.
pub(crate) struct HandleParts {
    pub close_rx: watch::Receiver<CloseRequest>,
    pub out_rx: mpsc::Receiver<Outgoing>,
}

impl ConnectionHandle {
    pub(crate) fn new(queue: usize) -> (Self, HandleParts) {
        let (close_tx, close_rx) = watch::channel(CloseRequest::None);
        let (out_tx, out_rx) = mpsc::channel(queue.max(1));
        let outbound = Arc::new(Outbound {
            out_tx,
            pending: Mutex::new(Pending::default()),
        });
        let handle = ConnectionHandle {
            close_tx,
            outbound: Some(outbound),
            logged_in: Arc::default(),
        };
        (handle, HandleParts { close_rx, out_rx })
    }

    /// A handle that nothing listens to: closing does nothing and invocations fail.
    pub fn detached() -> Self {
        let (close_tx, _) = watch::channel(CloseRequest::None);
        ConnectionHandle {
            close_tx,
            outbound: None,
            logged_in: Arc::default(),
        }
    }

    /// Tells the runtime that this connection has logged in, so the login deadline no
    /// longer applies to it. Called by the router after a successful `createSession`.
    pub fn mark_logged_in(&self) {
        self.logged_in.store(true, Ordering::Release);
    }

    /// Whether [`Self::mark_logged_in`] was called.
    pub fn is_logged_in(&self) -> bool {
        self.logged_in.load(Ordering::Acquire)
    }

    /// Asks the connection to close: gracefully (replies already owed are still sent, the
    /// client retries what it sent afterwards) or at once.
    pub fn close(&self, graceful: bool) {
        let wanted = if graceful {
            CloseRequest::Graceful
        } else {
            CloseRequest::Forceful
        };
        self.close_tx.send_if_modified(|current| {
            if wanted > *current {
                *current = wanted;
                true
            } else {
                false
            }
        });
    }

    /// Whether a close has been asked for.
    pub fn is_closing(&self) -> bool {
        *self.close_tx.borrow() != CloseRequest::None
    }

    /// Sends a twoway request to the peer and waits for its reply. `request.request_id`
    /// is replaced by this connection's own counter. Wrap it in a timeout if the peer may
    /// not answer; dropping the future forgets the request.
    pub async fn invoke(&self, mut request: Request) -> Result<ReplyBody, InvokeError> {
        let outbound = self
            .outbound
            .as_ref()
            .ok_or(InvokeError::ConnectionClosed)?;
        let (tx, rx) = oneshot::channel();
        let id = outbound.register(tx)?;
        let _forget = ForgetOnDrop { outbound, id };
        request.request_id = id;
        let frame = Outgoing::Frame(request.encode().into_boxed_slice());
        outbound
            .out_tx
            .send(frame)
            .await
            .map_err(|_| InvokeError::ConnectionClosed)?;
        rx.await.map_err(|_| InvokeError::ConnectionClosed)
    }

    /// Sends a oneway request (its id is set to 0); returns once it is queued for writing.
    pub async fn send_oneway(&self, mut request: Request) -> Result<(), InvokeError> {
        let outbound = self
            .outbound
            .as_ref()
            .ok_or(InvokeError::ConnectionClosed)?;
        request.request_id = 0;
        outbound
            .out_tx
            .send(Outgoing::Frame(request.encode().into_boxed_slice()))
            .await
            .map_err(|_| InvokeError::ConnectionClosed)
    }

    /// Hands a reply from the peer to the invocation waiting for it; unknown ids are
    /// ignored, as Ice does.
    pub(crate) fn deliver_reply(&self, request_id: i32, body: ReplyBody) -> bool {
        let Some(outbound) = &self.outbound else {
            return false;
        };
        let waiter = outbound.lock().waiting.remove(&request_id);
        waiter.is_some_and(|tx| tx.send(body).is_ok())
    }

    /// Fails every waiting invocation and refuses new ones.
    pub(crate) fn connection_ended(&self) {
        if let Some(outbound) = &self.outbound {
            let mut p = outbound.lock();
            p.closed = true;
            p.waiting.clear();
        }
    }
}

impl Outbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
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

struct ForgetOnDrop<'a> {
    outbound: &'a Outbound,
    id: i32,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.outbound.lock().waiting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_at_one_and_skip_waiting_ones() {
        let (h, _parts) = ConnectionHandle::new(4);
        let o = h.outbound.as_ref().unwrap();
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
        let id = h.outbound.as_ref().unwrap().register(tx).unwrap();
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
    fn queued_frames_stay_two_words() {
        // The outgoing queue reserves 32 of these per connection, even an idle one.
        assert!(std::mem::size_of::<Outgoing>() <= 2 * std::mem::size_of::<usize>());
    }

    #[test]
    fn close_requests_only_escalate() {
        let (h, parts) = ConnectionHandle::new(4);
        h.close(false);
        h.close(true);
        assert_eq!(*parts.close_rx.borrow(), CloseRequest::Forceful);
        ConnectionHandle::detached().close(true);
    }
}

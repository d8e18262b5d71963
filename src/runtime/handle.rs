//! A handle through which code outside a connection's task asks it to close.

use tokio::sync::watch;

/// What has been asked of a connection; a later, stronger request wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CloseRequest {
    None,
    /// Stop dispatching, send the outstanding replies, then CloseConnection (spec §1.4).
    Graceful,
    /// Drop the socket now.
    Forceful,
}

#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    tx: watch::Sender<CloseRequest>,
}

impl ConnectionHandle {
    pub(crate) fn new() -> (Self, watch::Receiver<CloseRequest>) {
        let (tx, rx) = watch::channel(CloseRequest::None);
        (ConnectionHandle { tx }, rx)
    }

    /// A handle that nothing listens to.
    pub fn detached() -> Self {
        ConnectionHandle::new().0
    }

    /// Asks the connection to close: gracefully (replies already owed are still sent, the
    /// client retries what it sent afterwards) or at once.
    pub fn close(&self, graceful: bool) {
        let wanted = if graceful {
            CloseRequest::Graceful
        } else {
            CloseRequest::Forceful
        };
        self.tx.send_if_modified(|current| {
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
        *self.tx.borrow() != CloseRequest::None
    }
}

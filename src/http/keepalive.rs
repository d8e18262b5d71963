//! Keeping a created session alive for the caller's `keepAliveDuration`.
//!
//! Smuggler pings the session every half idle timeout until the duration since creation has
//! passed (spec §9). Here a task does a refreshing lookup at the same pace, reading the idle
//! timeout from each lookup so a changed timeout is followed, and makes a last refresh exactly
//! at the deadline: the session is then never idle-expired before `created + duration`, and
//! after that ordinary idle expiry applies. The task ends early when the session is closed
//! (its `SessionEvent`), when a lookup no longer finds it live, or when cancelled.
//!
//! Deadlines are in the session manager's clock (so they agree with its expiry test); the
//! pauses between refreshes are tokio sleeps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::sessions::{SessionEvent, SessionManager};

/// Pause used while the session has no idle timeout: only the deadline matters then, but a
/// timeout set later should still be noticed.
const NO_IDLE_TIMEOUT_PAUSE_MS: i64 = 60_000;
/// Lower bound on the pause, so an absurdly short idle timeout cannot make a busy loop.
const MIN_PAUSE_MS: i64 = 10;

/// Why a keep-alive task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAliveEnd {
    /// The duration has passed; the session lives on under ordinary idle expiry.
    Elapsed,
    /// The session was closed or is no longer live.
    SessionGone,
    /// The server is stopping.
    Cancelled,
}

/// The keep-alive tasks of one endpoint: how many run, and a switch that stops them all.
#[derive(Debug, Clone, Default)]
pub struct KeepAlives {
    cancel: CancellationToken,
    active: Arc<AtomicUsize>,
}

impl KeepAlives {
    pub fn new() -> Self {
        KeepAlives::default()
    }

    /// Tasks still running.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Ends every task; the sessions themselves stay.
    pub fn stop_all(&self) {
        self.cancel.cancel();
    }

    /// Starts keeping `uuid` (created at `started`, manager clock in ms) alive for `duration`.
    /// Call it right after creating the session, before its uuid is handed to anyone who
    /// could close it, so the close event cannot be missed.
    pub fn start<V: crate::sessions::EnvValue>(
        &self,
        sessions: Arc<SessionManager<V>>,
        uuid: String,
        started: i64,
        duration: Duration,
    ) -> JoinHandle<KeepAliveEnd> {
        let events = sessions.subscribe();
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let deadline = started.saturating_add(millis);
        let cancel = self.cancel.child_token();
        let counted = Counted::new(self.active.clone());
        tokio::spawn(async move {
            let _counted = counted;
            let end = run(&sessions, &uuid, deadline, events, &cancel).await;
            tracing::debug!(session = %uuid, ?end, "keep-alive ended");
            end
        })
    }
}

// Counts a task while it exists, also when it is aborted.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Counted(count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn run<V: crate::sessions::EnvValue>(
    sessions: &SessionManager<V>,
    uuid: &str,
    deadline: i64,
    mut events: broadcast::Receiver<SessionEvent>,
    cancel: &CancellationToken,
) -> KeepAliveEnd {
    let mut time_to_idle = match sessions.lookup(uuid, true) {
        Ok(info) => info.time_to_idle,
        Err(_) => return KeepAliveEnd::SessionGone,
    };
    loop {
        let now = sessions.now_ms();
        let pause = next_pause(time_to_idle, deadline - now);
        let sleep = tokio::time::sleep(Duration::from_millis(pause.unsigned_abs()));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = cancel.cancelled() => return KeepAliveEnd::Cancelled,
                event = events.recv() => match event {
                    Ok(SessionEvent::Closed { uuid: closed, .. }) if closed == uuid => {
                        return KeepAliveEnd::SessionGone;
                    }
                    // Missed events are harmless: the next lookup finds a dead session.
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return KeepAliveEnd::SessionGone,
                },
            }
        }
        match sessions.lookup(uuid, false) {
            Ok(info) => time_to_idle = info.time_to_idle,
            Err(e) => {
                tracing::debug!(session = %uuid, error = %e, "kept-alive session is gone");
                return KeepAliveEnd::SessionGone;
            }
        }
        if sessions.now_ms() >= deadline {
            return KeepAliveEnd::Elapsed;
        }
    }
}

/// Half the idle timeout, never past the deadline (the last refresh lands on it).
fn next_pause(time_to_idle: i64, until_deadline: i64) -> i64 {
    let pace = if time_to_idle > 0 {
        time_to_idle / 2
    } else {
        NO_IDLE_TIMEOUT_PAUSE_MS
    };
    pace.min(until_deadline).max(MIN_PAUSE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::{
        MemorySessionStore, NewSession, SessionConfig, SessionError, SystemClock,
    };

    // Real time (tokio's test clock is not enabled in this crate): timeouts are short but
    // leave room for a busy machine.
    fn manager(tti: i64) -> Arc<SessionManager<()>> {
        let config = SessionConfig {
            default_time_to_idle: tti,
            ..SessionConfig::default()
        };
        Arc::new(SessionManager::new(
            config,
            Arc::new(SystemClock),
            Arc::new(MemorySessionStore::default()),
        ))
    }

    async fn sleep_ms(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    #[test]
    fn pauses() {
        assert_eq!(next_pause(1000, 10_000), 500);
        assert_eq!(next_pause(1000, 300), 300);
        assert_eq!(next_pause(0, 10_000), 10_000);
        assert_eq!(next_pause(0, 100_000), NO_IDLE_TIMEOUT_PAUSE_MS);
        assert_eq!(next_pause(1000, -5), MIN_PAUSE_MS);
        assert_eq!(next_pause(4, 10_000), MIN_PAUSE_MS);
    }

    #[tokio::test]
    async fn holds_the_session_until_the_deadline_then_lets_it_idle_out() {
        let sessions = manager(600);
        let info = sessions.create(NewSession::new(2, 3)).await.unwrap();
        let keep = KeepAlives::new();
        let task = keep.start(
            sessions.clone(),
            info.uuid.clone(),
            info.started,
            Duration::from_millis(2000),
        );
        assert_eq!(keep.active(), 1);
        sleep_ms(1500).await;
        assert!(sessions.is_live(&info.uuid), "held past two idle timeouts");
        assert_eq!(task.await.unwrap(), KeepAliveEnd::Elapsed);
        assert_eq!(keep.active(), 0);
        let last = sessions.lookup(&info.uuid, true).unwrap().last_access;
        assert!(last >= info.started + 2000, "last refresh at the deadline");
        sleep_ms(900).await;
        assert!(matches!(
            sessions.lookup(&info.uuid, true),
            Err(SessionError::Timeout(_))
        ));
    }

    #[tokio::test]
    async fn stops_when_the_session_is_closed() {
        let sessions = manager(60_000);
        let info = sessions.create(NewSession::new(2, 3)).await.unwrap();
        let task = KeepAlives::new().start(
            sessions.clone(),
            info.uuid.clone(),
            info.started,
            Duration::from_secs(3600),
        );
        sleep_ms(50).await;
        assert_eq!(sessions.close_session(&info.uuid).await, Ok(-2));
        let end = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(end.unwrap().unwrap(), KeepAliveEnd::SessionGone);
    }

    #[tokio::test]
    async fn stops_on_cancel_and_on_unknown_sessions() {
        let sessions = manager(60_000);
        let info = sessions.create(NewSession::new(2, 3)).await.unwrap();
        let keep = KeepAlives::new();
        let task = keep.start(
            sessions.clone(),
            info.uuid.clone(),
            info.started,
            Duration::from_secs(3600),
        );
        keep.stop_all();
        assert_eq!(task.await.unwrap(), KeepAliveEnd::Cancelled);
        assert_eq!(keep.active(), 0);
        let task = keep.start(
            sessions,
            "no-such-session".to_string(),
            0,
            Duration::from_secs(3600),
        );
        assert_eq!(task.await.unwrap(), KeepAliveEnd::SessionGone);
    }
}

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

/// Starts the keep-alive of `uuid`, created at `started` (manager clock, ms), for `duration`.
/// Subscribe before the session can be closed by anyone else; here the caller has just
/// created it and nobody else knows its uuid yet.
pub fn spawn_keep_alive<V: Clone + Send + Sync + 'static>(
    sessions: Arc<SessionManager<V>>,
    uuid: String,
    started: i64,
    duration: Duration,
    cancel: CancellationToken,
) -> JoinHandle<KeepAliveEnd> {
    let events = sessions.subscribe();
    let deadline = started.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
    tokio::spawn(async move {
        let end = run(&sessions, &uuid, deadline, events, &cancel).await;
        tracing::debug!(session = %uuid, ?end, "keep-alive ended");
        end
    })
}

async fn run<V: Clone + Send + Sync + 'static>(
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
        let info = sessions.create(NewSession::new(2, 3)).unwrap();
        let task = spawn_keep_alive(
            sessions.clone(),
            info.uuid.clone(),
            info.started,
            Duration::from_millis(2000),
            CancellationToken::new(),
        );
        sleep_ms(1500).await;
        assert!(sessions.is_live(&info.uuid), "held past two idle timeouts");
        assert_eq!(task.await.unwrap(), KeepAliveEnd::Elapsed);
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
        let info = sessions.create(NewSession::new(2, 3)).unwrap();
        let task = spawn_keep_alive(
            sessions.clone(),
            info.uuid.clone(),
            info.started,
            Duration::from_secs(3600),
            CancellationToken::new(),
        );
        sleep_ms(50).await;
        assert_eq!(sessions.close_session(&info.uuid), -2);
        let end = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(end.unwrap().unwrap(), KeepAliveEnd::SessionGone);
    }

    #[tokio::test]
    async fn stops_on_cancel_and_on_unknown_sessions() {
        let sessions = manager(60_000);
        let info = sessions.create(NewSession::new(2, 3)).unwrap();
        let cancel = CancellationToken::new();
        let task = spawn_keep_alive(
            sessions.clone(),
            info.uuid.clone(),
            info.started,
            Duration::from_secs(3600),
            cancel.clone(),
        );
        cancel.cancel();
        assert_eq!(task.await.unwrap(), KeepAliveEnd::Cancelled);
        let task = spawn_keep_alive(
            sessions,
            "no-such-session".to_string(),
            0,
            Duration::from_secs(3600),
            CancellationToken::new(),
        );
        assert_eq!(task.await.unwrap(), KeepAliveEnd::SessionGone);
    }
}

//! Which Glacier2 session each connection has. Sessions are keyed by connection, as Glacier2
//! keys them, so a connection reaches only its own session's objects.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;

use super::manager::BackendSession;

/// Length of the per-session callback category (Glacier2 uses 20 characters).
pub const CATEGORY_LEN: usize = 20;

/// A random category for callback objects. Alphanumeric only, so nobody has to escape it in
/// stringified proxies.
pub fn random_category() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(CATEGORY_LEN)
        .map(char::from)
        .collect()
}

/// The Glacier2 session of one connection. It also hangs in the connection's slot, where a
/// routed request finds it without any process-wide lock.
pub struct RouterSession {
    /// Category of the client's callback objects (`getCategoryForClient`).
    pub category: String,
    pub backend: Arc<dyn BackendSession>,
    /// Milliseconds since [`epoch`] at the last activity: written on every routed request,
    /// so an atomic rather than a lock.
    last_activity: AtomicU64,
    /// Set once the router has ended this session; a stale copy in a slot then routes
    /// nothing.
    ended: AtomicBool,
}

/// The instant activity times count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis_since_epoch(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX)
}

impl RouterSession {
    pub fn new(backend: Arc<dyn BackendSession>) -> Self {
        RouterSession {
            category: random_category(),
            backend,
            last_activity: AtomicU64::new(millis_since_epoch(Instant::now())),
            ended: AtomicBool::new(false),
        }
    }

    /// Records activity on the session (a routed request, refreshSession, a heartbeat).
    pub fn touch(&self) {
        self.touch_at(Instant::now());
    }

    pub fn touch_at(&self, now: Instant) {
        // fetch_max: a request that read the clock earlier never moves the time back.
        self.last_activity
            .fetch_max(millis_since_epoch(now), Ordering::Relaxed);
    }

    pub fn idle_for(&self, now: Instant) -> Duration {
        let last = self.last_activity.load(Ordering::Relaxed);
        Duration::from_millis(millis_since_epoch(now).saturating_sub(last))
    }

    /// Whether requests may still be routed through this session: not ended by the
    /// router, its backend neither destroyed by the client nor dead.
    pub fn is_routable(&self) -> bool {
        !self.ended.load(Ordering::Acquire)
            && !self.backend.is_gone()
            && !self.backend.is_destroyed()
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }
}

enum Slot {
    /// A createSession is running on this connection.
    Creating,
    Active(Arc<RouterSession>),
}

/// Refusal of a second createSession on one connection.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionExists;

/// Connection id → its Glacier2 session.
#[derive(Default)]
pub struct Connections {
    slots: Mutex<HashMap<u64, Slot>>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Slot>> {
        // Updates are single inserts and removes: a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves the connection for a createSession; refused while one runs or exists.
    pub fn begin_create(&self, conn: u64) -> Result<(), SessionExists> {
        let mut slots = self.lock();
        if slots.contains_key(&conn) {
            return Err(SessionExists);
        }
        slots.insert(conn, Slot::Creating);
        Ok(())
    }

    /// The createSession failed: the connection may try again.
    pub fn abort_create(&self, conn: u64) {
        let mut slots = self.lock();
        if matches!(slots.get(&conn), Some(Slot::Creating)) {
            slots.remove(&conn);
        }
    }

    /// Installs the new session; false when the connection went away meanwhile (the caller
    /// then destroys the session it made).
    pub fn finish_create(&self, conn: u64, session: Arc<RouterSession>) -> bool {
        let mut slots = self.lock();
        match slots.get(&conn) {
            Some(Slot::Creating) => {
                slots.insert(conn, Slot::Active(session));
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, conn: u64) -> Option<Arc<RouterSession>> {
        match self.lock().get(&conn) {
            Some(Slot::Active(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Forgets the connection; returns its session if it had one.
    pub fn remove(&self, conn: u64) -> Option<Arc<RouterSession>> {
        match self.lock().remove(&conn) {
            Some(Slot::Active(s)) => {
                s.end();
                Some(s)
            }
            _ => None,
        }
    }

    /// Removes the session of `conn` only if it is still `session`.
    pub fn remove_if(&self, conn: u64, session: &Arc<RouterSession>) -> bool {
        let mut slots = self.lock();
        let same = matches!(slots.get(&conn), Some(Slot::Active(s)) if Arc::ptr_eq(s, session));
        if same {
            slots.remove(&conn);
            session.end();
        }
        same
    }

    /// Removes and returns every session idle for longer than `timeout`.
    pub fn take_idle(&self, now: Instant, timeout: Duration) -> Vec<Arc<RouterSession>> {
        let mut slots = self.lock();
        let idle: Vec<u64> = slots
            .iter()
            .filter_map(|(conn, slot)| match slot {
                Slot::Active(s) if s.idle_for(now) > timeout => Some(*conn),
                _ => None,
            })
            .collect();
        idle.iter()
            .filter_map(|conn| match slots.remove(conn) {
                Some(Slot::Active(s)) => {
                    s.end();
                    Some(s)
                }
                _ => None,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|s| matches!(s, Slot::Active(_)))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::manager::tests::FakeBackend;

    fn session(client: &str) -> Arc<RouterSession> {
        Arc::new(RouterSession::new(FakeBackend::new(client)))
    }

    #[test]
    fn categories_are_random_alphanumeric() {
        let a = random_category();
        assert_eq!(a.len(), CATEGORY_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_category());
    }

    #[test]
    fn one_session_per_connection() {
        let c = Connections::default();
        assert_eq!(c.begin_create(1), Ok(()));
        assert_eq!(c.begin_create(1), Err(SessionExists));
        assert!(c.get(1).is_none());
        let s = session("a");
        assert!(c.finish_create(1, s.clone()));
        assert_eq!(c.begin_create(1), Err(SessionExists));
        assert!(c.get(1).is_some_and(|g| Arc::ptr_eq(&g, &s)));
        assert_eq!(c.len(), 1);
        assert!(s.is_routable());
        assert!(c.remove(1).is_some());
        assert!(c.is_empty());
        assert!(!s.is_routable(), "an ended session routes nothing");
        assert_eq!(c.begin_create(1), Ok(()));
        c.abort_create(1);
        assert_eq!(c.begin_create(1), Ok(()));
    }

    #[test]
    fn a_connection_that_closed_during_login_gets_no_session() {
        let c = Connections::default();
        c.begin_create(7).unwrap();
        assert!(c.remove(7).is_none());
        assert!(!c.finish_create(7, session("a")));
        assert!(c.get(7).is_none());
    }

    #[test]
    fn remove_if_only_removes_the_same_session() {
        let c = Connections::default();
        let (s1, s2) = (session("a"), session("b"));
        c.begin_create(1).unwrap();
        c.finish_create(1, s1.clone());
        assert!(!c.remove_if(1, &s2));
        assert!(s2.is_routable());
        assert!(c.remove_if(1, &s1));
        assert!(c.get(1).is_none());
        assert!(s1.is_ended());
    }

    #[test]
    fn activity_only_moves_forward() {
        let s = session("a");
        let now = Instant::now();
        s.touch_at(now + Duration::from_secs(10));
        s.touch_at(now);
        assert_eq!(
            s.idle_for(now + Duration::from_secs(15)),
            Duration::from_secs(5)
        );
        assert_eq!(s.idle_for(now), Duration::ZERO);
    }

    #[test]
    fn a_gone_backend_routes_nothing() {
        let backend = FakeBackend::new("a");
        let s = RouterSession::new(backend.clone());
        assert!(s.is_routable());
        backend.gone.store(true, Ordering::SeqCst);
        assert!(!s.is_routable());
        assert!(!s.is_ended(), "the router has not ended it yet");
    }

    #[test]
    fn idle_sessions_are_taken() {
        let c = Connections::default();
        c.begin_create(1).unwrap();
        c.finish_create(1, session("a"));
        c.begin_create(2).unwrap();
        let now = Instant::now();
        assert!(c.take_idle(now, Duration::from_secs(60)).is_empty());
        let later = now + Duration::from_secs(61);
        let idle = c.take_idle(later, Duration::from_secs(60));
        assert_eq!(idle.len(), 1);
        assert!(idle[0].is_ended());
        assert!(c.get(1).is_none());
        // A login still running is not a session yet.
        assert_eq!(c.begin_create(2), Err(SessionExists));
    }
}

//! Which Glacier2 session each connection has. Sessions are keyed by connection, as Glacier2
//! keys them, so a connection reaches only its own session's objects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::facade::{Dispatch, Identity};
use crate::services::{factory_identity, Factory};

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

/// The Glacier2 session of one connection.
pub struct RouterSession {
    /// Category of the client's callback objects (`getCategoryForClient`).
    pub category: String,
    pub factory: Arc<Factory>,
    /// Dispatcher of the ServiceFactory servant.
    pub factory_servant: Arc<dyn Dispatch>,
    pub factory_identity: Identity,
    last_activity: Mutex<Instant>,
}

impl RouterSession {
    pub fn new(factory: Arc<Factory>, factory_servant: Arc<dyn Dispatch>) -> Self {
        RouterSession {
            category: random_category(),
            factory_identity: factory_identity(&factory.client_uuid, &factory.session_uuid),
            factory,
            factory_servant,
            last_activity: Mutex::new(Instant::now()),
        }
    }

    /// Records activity on the session (a routed request, refreshSession).
    pub fn touch(&self) {
        *self.activity() = Instant::now();
    }

    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*self.activity())
    }

    fn activity(&self) -> MutexGuard<'_, Instant> {
        self.last_activity.lock().unwrap_or_else(|e| e.into_inner())
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
            Some(Slot::Active(s)) => Some(s),
            _ => None,
        }
    }

    /// Removes the session of `conn` only if it is still `session`.
    pub fn remove_if(&self, conn: u64, session: &Arc<RouterSession>) -> bool {
        let mut slots = self.lock();
        let same = matches!(slots.get(&conn), Some(Slot::Active(s)) if Arc::ptr_eq(s, session));
        if same {
            slots.remove(&conn);
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
                Some(Slot::Active(s)) => Some(s),
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

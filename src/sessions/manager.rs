//! The session cache: the authority on which sessions are alive on this node, backed by a
//! [`SessionStore`] that makes them outlive the process (and, on a shared store, the node).
//!
//! Values of the input/output environments are a type parameter `V` so this layer stays free
//! of Ice: the services layer instantiates `SessionManager<its RType>`. Locks are std locks,
//! never held across an `.await`; the map lock is taken only to find or remove an entry, and each
//! entry has its own lock so calls of different sessions do not contend.
//!
//! Every durable change (create, join, detach, close, timeouts, group, environment) is awaited
//! in the store before the caller gets its answer; the cache is updated after it, with what the
//! store says (reference counts are the store's, so they are global across nodes). Lookups on
//! routed calls touch only the cache; their access times reach the store in batches
//! ([`SessionManager::flush_accesses`], see `tasks.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::broadcast;
use uuid::Uuid;

use super::clock::Clock;
use super::env::{EnvMap, EnvValue};
use super::error::SessionError;
use super::store::{SessionRow, SessionStore, StoredSession};
use crate::store::StoreError;

pub use super::types::*;

pub(super) struct Entry<V> {
    pub(super) info: SessionInfo,
    pub(super) closed: bool,
    /// The last access the store is known to have.
    pub(super) written_access: i64,
    /// The input and output maps, made by the first value set: most sessions never hold
    /// one, and two empty maps would cost every session about a hundred bytes.
    envs: Option<Box<[EnvMap<V>; 2]>>,
}

fn env_index(env: Env) -> usize {
    match env {
        Env::Input => 0,
        Env::Output => 1,
    }
}

impl<V> Entry<V> {
    fn env(&mut self, env: Env) -> &mut EnvMap<V> {
        let maps = self
            .envs
            .get_or_insert_with(|| Box::new([EnvMap::new(), EnvMap::new()]));
        &mut maps[env_index(env)]
    }

    fn env_ref(&self, env: Env) -> Option<&EnvMap<V>> {
        self.envs.as_deref().map(|maps| &maps[env_index(env)])
    }

    // Marks the entry dead and drops its environment; the caller then unlinks it.
    pub(super) fn kill(&mut self) {
        self.closed = true;
        self.envs = None;
    }
}

pub(super) type Shared<V> = Arc<Mutex<Entry<V>>>;

/// The session cache. Share it as `Arc<SessionManager<V>>`.
pub struct SessionManager<V> {
    sessions: RwLock<HashMap<String, Shared<V>>>,
    /// Sessions per owner in `sessions`, for the per-user cap.
    per_owner: Mutex<HashMap<i64, usize>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) store: Arc<dyn SessionStore>,
    config: SessionConfig,
    events: broadcast::Sender<SessionEvent>,
    /// Position in the store's feed of closes (see `tasks.rs`).
    pub(super) close_cursor: Mutex<i64>,
    /// Set when the server stops: releases no longer change sessions.
    stopping: AtomicBool,
}

impl<V> std::fmt::Debug for SessionManager<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("sessions", &self.read_map().len())
            .field("config", &self.config)
            .finish()
    }
}

pub(super) fn lock<V>(entry: &Shared<V>) -> MutexGuard<'_, Entry<V>> {
    // Entry updates are single assignments, so a poisoned entry is still consistent.
    entry.lock().unwrap_or_else(|e| e.into_inner())
}

/// A store failure as the client sees it: the session layer cannot promise anything.
fn unavailable(what: &str, uuid: &str, e: StoreError) -> SessionError {
    tracing::error!(session = %super::short(uuid), error = %e, "cannot record {what}");
    SessionError::Internal(format!("cannot record {what}: {e}"))
}

impl<V: EnvValue> SessionManager<V> {
    pub fn new(config: SessionConfig, clock: Arc<dyn Clock>, store: Arc<dyn SessionStore>) -> Self {
        let (events, _) = broadcast::channel(1024);
        SessionManager {
            sessions: RwLock::new(HashMap::new()),
            per_owner: Mutex::new(HashMap::new()),
            clock,
            store,
            config,
            events,
            close_cursor: Mutex::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The durable side (for the `sessions` command line and tests).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// Notifications of dying sessions.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    /// Number of sessions in the cache (expired but unreaped ones included).
    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a session with reference count 1, committed in the store before it returns.
    pub async fn create(&self, new: NewSession) -> Result<SessionInfo, SessionError> {
        let owner = new.owner_id;
        self.reserve_slot(owner)?;
        let created = self.create_reserved(new).await;
        if created.is_err() {
            self.free_slot(owner);
        }
        created
    }

    /// Counts a new session of `owner`, or refuses it at the per-user cap.
    fn reserve_slot(&self, owner: i64) -> Result<(), SessionError> {
        let mut counts = self.owner_counts();
        let count = counts.entry(owner).or_insert(0);
        if *count >= self.config.max_sessions_per_user {
            return Err(SessionError::ApiUsage(format!(
                "User {owner} already has {} sessions, the most allowed; close some first",
                count
            )));
        }
        *count += 1;
        Ok(())
    }

    fn free_slot(&self, owner: i64) {
        let mut counts = self.owner_counts();
        if let Some(count) = counts.get_mut(&owner) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&owner);
            }
        }
    }

    fn owner_counts(&self) -> MutexGuard<'_, HashMap<i64, usize>> {
        // Single increments and decrements: a poisoned map is still consistent.
        self.per_owner.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn create_reserved(&self, new: NewSession) -> Result<SessionInfo, SessionError> {
        let now = self.clock.now_ms();
        let uuid = Uuid::new_v4().to_string();
        let row = SessionRow {
            id: 0,
            uuid: uuid.clone(),
            owner_id: new.owner_id,
            group_id: new.group_id,
            started: now,
            closed: None,
            time_to_idle: new.time_to_idle.unwrap_or(self.config.default_time_to_idle),
            time_to_live: new.time_to_live.unwrap_or(self.config.default_time_to_live),
            agent: new.agent,
            ip: new.ip,
            event_type: new.event_type.to_string(),
            sudoer_id: new.sudoer_id,
            group_sudo: new.group_sudo,
        };
        let row = self
            .store
            .insert(row)
            .await
            .map_err(|e| unavailable("new session", &uuid, e))?;
        let info = info_from_row(row, now, 1);
        let entry = new_entry(info.clone(), now);
        self.write_map().insert(info.uuid.clone(), entry);
        tracing::info!(session = %super::short(&info.uuid), id = info.id, owner = info.owner_id, "session created");
        Ok(info)
    }

    /// createUserSession (§1.4): checks the user-chosen timeouts, then creates with them verbatim.
    pub async fn create_user_session(
        &self,
        mut new: NewSession,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<SessionInfo, SessionError> {
        self.check_user_timeouts(time_to_live, time_to_idle)?;
        new.time_to_live = Some(time_to_live);
        new.time_to_idle = Some(time_to_idle);
        self.create(new).await
    }

    /// OMERO's untrusted-update rules, including its quirk that the timeToIdle check is gated on
    /// the timeToLive maximum.
    pub fn check_user_timeouts(
        &self,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<(), SessionError> {
        let max_ttl = self.config.max_user_time_to_live;
        let max_tti = self.config.max_user_time_to_idle;
        if max_ttl != 0 && (time_to_live == 0 || time_to_live > max_ttl) {
            return Err(SessionError::SecurityViolation(format!(
                "Cannot modify timeToLive beyond maximum: {max_ttl}"
            )));
        }
        if max_ttl != 0 && (time_to_idle == 0 || time_to_idle > max_tti) {
            return Err(SessionError::SecurityViolation(format!(
                "Cannot modify timeToIdle beyond maximum: {max_tti}"
            )));
        }
        Ok(())
    }

    /// Looks a session up; non-quiet lookups refresh its idle time and count a hit.
    pub fn lookup(&self, uuid: &str, quiet: bool) -> Result<SessionInfo, SessionError> {
        self.with_live(uuid, !quiet, |e| e.info.clone())
    }

    /// True when the uuid names an unexpired session; refreshes nothing.
    pub fn is_live(&self, uuid: &str) -> bool {
        self.lookup(uuid, true).is_ok()
    }

    /// Joins a live session: refreshes it and adds one reference, in the store first. A uuid
    /// this cache lacks (made on another node) is loaded from the store.
    pub async fn join(&self, uuid: &str) -> Result<SessionInfo, SessionError> {
        if self.entry(uuid).is_none() {
            // Only a uuid can name a session: passwords tried as one never reach the store.
            if Uuid::parse_str(uuid).is_err() {
                return Err(SessionError::no_context(uuid));
            }
            self.check_stored_expiry(uuid).await?;
        } else {
            self.with_live(uuid, false, |_| ())?;
        }
        let now = self.clock.now_ms();
        let stored = self
            .store
            .join(uuid, now)
            .await
            .map_err(|e| unavailable("join", uuid, e))?;
        let Some(stored) = stored else {
            self.forget_closed_elsewhere(uuid);
            return Err(SessionError::no_context(uuid));
        };
        let entry = self.adopt(stored, now);
        let mut e = lock(&entry);
        if e.closed {
            return Err(SessionError::no_context(uuid));
        }
        touch(&mut e.info, now);
        Ok(e.info.clone())
    }

    /// Refuses a uuid whose stored row is unknown, closed or expired (by its latest stored
    /// access), before a join adds a reference to it.
    async fn check_stored_expiry(&self, uuid: &str) -> Result<(), SessionError> {
        let row = self
            .store
            .find(uuid)
            .await
            .map_err(|e| unavailable("join", uuid, e))?;
        let last = self
            .store
            .last_access(uuid)
            .await
            .map_err(|e| unavailable("join", uuid, e))?;
        let (Some(row), Some(last)) = (row, last) else {
            return Err(SessionError::no_context(uuid));
        };
        let info = info_from_row(row, last, 0);
        match expiry_message(&info, self.clock.now_ms()) {
            Some(message) => Err(SessionError::Timeout(message)),
            None => Ok(()),
        }
    }

    /// Puts a stored session into the cache (or refreshes the cached one with the store's
    /// count and access) and returns its entry.
    pub(super) fn adopt(&self, stored: StoredSession, now: i64) -> Shared<V> {
        if let Some(entry) = self.entry(&stored.row.uuid) {
            let mut e = lock(&entry);
            e.info.refcount = stored.refcount;
            e.info.last_access = e.info.last_access.max(stored.last_access);
            e.written_access = e.written_access.max(stored.last_access);
            drop(e);
            return entry;
        }
        let owner = stored.row.owner_id;
        let mut info = info_from_row(stored.row, stored.last_access, stored.refcount);
        info.hits = 0;
        let mut entry = Entry {
            written_access: stored.last_access,
            ..entry_parts(info, now)
        };
        self.fill_env(&mut entry, Env::Input, stored.input);
        self.fill_env(&mut entry, Env::Output, stored.output);
        let entry = Arc::new(Mutex::new(entry));
        let uuid = lock(&entry).info.uuid.clone();
        let mut map = self.write_map();
        if let Some(existing) = map.get(&uuid) {
            // Another task adopted it between our lookup and now.
            return Arc::clone(existing);
        }
        map.insert(uuid, Arc::clone(&entry));
        drop(map);
        *self.owner_counts().entry(owner).or_insert(0) += 1;
        entry
    }

    fn fill_env(&self, entry: &mut Entry<V>, env: Env, values: super::store::EncodedEnv) {
        let uuid = entry.info.uuid.clone();
        for (key, bytes) in values {
            match V::decode(&bytes) {
                Ok(value) => {
                    // Caps are not re-checked: the values were accepted when set.
                    let map = entry.env(env);
                    map.bytes = map.bytes.saturating_add(key.len() + bytes.len());
                    map.values.insert(key, (value, bytes.len()));
                }
                Err(why) => tracing::warn!(
                    session = %super::short(&uuid),
                    env = env.name(),
                    key = %key,
                    error = %why,
                    "stored environment value cannot be read; dropped from the cache"
                ),
            }
        }
    }

    /// getReferenceCount: a refreshing lookup returning the count.
    pub fn reference_count(&self, uuid: &str) -> Result<i64, SessionError> {
        self.with_live(uuid, true, |e| e.info.refcount)
    }

    /// [`Self::reference_count`] as the store counts it: on a store shared by several nodes
    /// the cache misses joins and detaches made elsewhere. While the store cannot answer,
    /// the cached count serves.
    pub async fn current_reference_count(&self, uuid: &str) -> Result<i64, SessionError> {
        let cached = self.reference_count(uuid)?;
        match self.store.refcount(uuid).await {
            Ok(Some(stored)) => {
                if let Some(entry) = self.entry(uuid) {
                    lock(&entry).info.refcount = stored;
                }
                Ok(stored)
            }
            // Closed elsewhere just now: the close feed drops it from the cache shortly.
            Ok(None) => Ok(cached),
            Err(e) => {
                tracing::warn!(session = %super::short(uuid), error = %e, "stored reference count unavailable; answering from the cache");
                Ok(cached)
            }
        }
    }

    /// ISession.closeSession: -1 when unknown or expired, -2 when this call destroyed the
    /// session, else the remaining reference count.
    pub async fn close_session(&self, uuid: &str) -> Result<i64, SessionError> {
        let Some(entry) = self.entry(uuid) else {
            return self.close_uncached(uuid).await;
        };
        let now = self.clock.now_ms();
        {
            let e = lock(&entry);
            if e.closed || expiry_message(&e.info, now).is_some() {
                return Ok(-1);
            }
        }
        let remaining = self
            .store
            .detach(uuid, Some(now))
            .await
            .map_err(|e| unavailable("session close", uuid, e))?;
        match remaining {
            None => {
                self.kill_and_forget(uuid, &entry, CloseReason::Closed);
                Ok(-1)
            }
            Some(n) if n < 1 => {
                self.kill_and_forget(uuid, &entry, CloseReason::Closed);
                Ok(-2)
            }
            Some(n) => {
                lock(&entry).info.refcount = n;
                Ok(n)
            }
        }
    }

    /// From now on ServiceFactories destroyed because the server closes their connections
    /// leave their sessions as they are, so the next start finds them open.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// closeSession of a session this cache lacks (made on another node sharing the store):
    /// the store's row decides, with the same answers as for a cached one.
    async fn close_uncached(&self, uuid: &str) -> Result<i64, SessionError> {
        if Uuid::parse_str(uuid).is_err() {
            return Ok(-1);
        }
        match self.check_stored_expiry(uuid).await {
            Ok(()) => {}
            Err(SessionError::Removed(_) | SessionError::Timeout(_)) => return Ok(-1),
            Err(e) => return Err(e),
        }
        let now = self.clock.now_ms();
        let remaining = self
            .store
            .detach(uuid, Some(now))
            .await
            .map_err(|e| unavailable("session close", uuid, e))?;
        Ok(match remaining {
            None => -1,
            Some(n) if n < 1 => -2,
            Some(n) => n,
        })
    }

    /// A ServiceFactory of this session was destroyed (§2.3).
    pub async fn release(&self, uuid: &str, mode: DestroyMode) -> ReleaseOutcome {
        let Some(entry) = self.entry(uuid) else {
            return ReleaseOutcome::AlreadyGone;
        };
        if self.stopping.load(Ordering::SeqCst) {
            let remaining = lock(&entry).info.refcount;
            return ReleaseOutcome::Detached { remaining };
        }
        let now = self.clock.now_ms();
        let expired = {
            let e = lock(&entry);
            if e.closed {
                return ReleaseOutcome::AlreadyGone;
            }
            expiry_message(&e.info, now).is_some()
        };
        if expired {
            if let Err(e) = self.store.close(uuid, now).await {
                let _ = unavailable("session close", uuid, e);
            }
            self.kill_and_forget(uuid, &entry, CloseReason::Timeout);
            return ReleaseOutcome::Destroyed;
        }
        let close_at = (mode == DestroyMode::Close).then_some(now);
        match self.store.detach(uuid, close_at).await {
            Ok(None) => {
                self.kill_and_forget(uuid, &entry, CloseReason::Closed);
                ReleaseOutcome::AlreadyGone
            }
            Ok(Some(n)) if n < 1 && close_at.is_some() => {
                self.kill_and_forget(uuid, &entry, CloseReason::Closed);
                ReleaseOutcome::Destroyed
            }
            Ok(Some(remaining)) => {
                lock(&entry).info.refcount = remaining;
                ReleaseOutcome::Detached { remaining }
            }
            Err(e) => {
                // The client is leaving either way; the session stays as the store has it.
                let _ = unavailable("detach", uuid, e);
                let remaining = lock(&entry).info.refcount;
                ReleaseOutcome::Detached { remaining }
            }
        }
    }

    /// getInput/getOutput: the value or `None`; does not refresh the target.
    pub fn get_env(&self, uuid: &str, env: Env, key: &str) -> Result<Option<V>, SessionError> {
        self.with_live(uuid, false, |e| {
            e.env_ref(env)
                .and_then(|map| map.values.get(key))
                .map(|(v, _)| v.clone())
        })
    }

    /// setInput/setOutput: `None` removes the key; does not refresh the target. `size` is the
    /// value's size in bytes as the caller measures it; the map's caps are checked with it.
    pub async fn set_env(
        &self,
        uuid: &str,
        env: Env,
        key: &str,
        value: Option<V>,
        size: usize,
    ) -> Result<(), SessionError> {
        let config = self.config;
        if value.is_some() {
            self.with_live(uuid, false, |e| {
                let empty = EnvMap::new();
                let map = e.env_ref(env).unwrap_or(&empty);
                map.check(key, size, &config, env).map(|_| ())
            })??;
        } else {
            self.with_live(uuid, false, |_| ())?;
        }
        let bytes = value.as_ref().map(EnvValue::encode);
        self.store
            .set_env(uuid, env, key, bytes)
            .await
            .map_err(|e| unavailable("environment change", uuid, e))?;
        self.with_live(uuid, false, |e| {
            let map = e.env(env);
            match value {
                Some(v) => map.insert(key, v, size, &config, env),
                None => {
                    map.remove(key);
                    Ok(())
                }
            }
        })?
    }

    /// getInputKeys/getOutputKeys (sorted); refreshes the target.
    pub fn env_keys(&self, uuid: &str, env: Env) -> Result<Vec<String>, SessionError> {
        self.with_live(uuid, true, |e| {
            let mut keys: Vec<String> = e
                .env_ref(env)
                .map(|map| map.values.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort();
            keys
        })
    }

    /// getInputs/getOutputs: a copy; refreshes the target.
    pub fn env_copy(&self, uuid: &str, env: Env) -> Result<HashMap<String, V>, SessionError> {
        self.with_live(uuid, true, |e| {
            e.env_ref(env)
                .map(|map| {
                    map.values
                        .iter()
                        .map(|(k, (v, _))| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// getMyOpen*Sessions: live sessions of `owner_id` passing the filters, newest first; every
    /// listed session is refreshed.
    pub fn open_sessions(
        &self,
        owner_id: i64,
        sudoer: SudoerFilter,
        agent: &AgentFilter,
    ) -> Vec<SessionInfo> {
        let now = self.clock.now_ms();
        let mut found: Vec<SessionInfo> = self
            .all_entries()
            .into_iter()
            .filter_map(|entry| {
                let mut e = lock(&entry);
                let wanted = !e.closed
                    && e.info.owner_id == owner_id
                    && match sudoer {
                        SudoerFilter::Any => true,
                        SudoerFilter::Equals(s) => e.info.sudoer_id == s,
                    }
                    && agent.matches(e.info.agent.as_deref())
                    && expiry_message(&e.info, now).is_none();
                if !wanted {
                    return None;
                }
                touch(&mut e.info, now);
                Some(e.info.clone())
            })
            .collect();
        found.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
        found
    }

    /// Every open, unexpired session, oldest first; refreshes nothing (CurrentSessionsRequest).
    pub fn live_sessions(&self) -> Vec<SessionInfo> {
        let now = self.clock.now_ms();
        let mut found: Vec<SessionInfo> = self
            .all_entries()
            .into_iter()
            .filter_map(|entry| {
                let e = lock(&entry);
                let live = !e.closed && expiry_message(&e.info, now).is_none();
                live.then(|| e.info.clone())
            })
            .collect();
        found.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        found
    }

    /// The session part of setSecurityContext(ExperimenterGroup): switches the current group and
    /// returns the previous one. `member_or_admin` is whether the owner may use `group_id`.
    /// Checks on running methods and open stateful services belong to the caller.
    pub async fn switch_group(
        &self,
        uuid: &str,
        group_id: i64,
        member_or_admin: bool,
    ) -> Result<i64, SessionError> {
        self.with_live(uuid, true, |e| {
            if e.info.group_sudo {
                return Err(SessionError::SecurityViolation(
                    "Group-sudo session cannot change context!".to_string(),
                ));
            }
            if !member_or_admin {
                return Err(SessionError::SecurityViolation(format!(
                    "User {} is not a member of group {}",
                    e.info.owner_id, group_id
                )));
            }
            Ok(())
        })??;
        self.store
            .set_group(uuid, group_id)
            .await
            .map_err(|e| unavailable("group change", uuid, e))?;
        self.with_live(uuid, false, |e| {
            std::mem::replace(&mut e.info.group_id, group_id)
        })
    }

    /// UpdateSessionTimeoutRequest (§3.5). Non-admins get values above the maxima clamped and
    /// may not disable a dimension (value ≤ 0).
    pub async fn update_timeouts(
        &self,
        uuid: &str,
        time_to_live: Option<i64>,
        time_to_idle: Option<i64>,
        caller_is_admin: bool,
    ) -> Result<SessionInfo, TimeoutUpdateError> {
        let entry = self.entry(uuid).ok_or(TimeoutUpdateError::NoSession)?;
        let (ttl, tti) = {
            let e = lock(&entry);
            if e.closed {
                return Err(TimeoutUpdateError::NoSession);
            }
            if time_to_live.is_none() && time_to_idle.is_none() {
                return Err(TimeoutUpdateError::NoUpdatePerformed);
            }
            let ttl = self.untrusted_value(
                "timeToLive",
                time_to_live,
                e.info.time_to_live,
                self.config.max_user_time_to_live,
                caller_is_admin,
                true,
            )?;
            let tti = self.untrusted_value(
                "timeToIdle",
                time_to_idle,
                e.info.time_to_idle,
                self.config.max_user_time_to_idle,
                caller_is_admin,
                false,
            )?;
            (ttl, tti)
        };
        self.store
            .set_timeouts(uuid, ttl, tti)
            .await
            .map_err(|e| TimeoutUpdateError::Store(e.to_string()))?;
        let mut e = lock(&entry);
        if e.closed {
            return Err(TimeoutUpdateError::NoSession);
        }
        e.info.time_to_live = ttl;
        e.info.time_to_idle = tti;
        Ok(e.info.clone())
    }

    fn untrusted_value(
        &self,
        field: &'static str,
        wanted: Option<i64>,
        current: i64,
        max: i64,
        admin: bool,
        zero_max_means_unlimited: bool,
    ) -> Result<i64, TimeoutUpdateError> {
        let Some(target) = wanted else {
            return Ok(current);
        };
        if admin {
            return Ok(target);
        }
        if target <= 0 {
            return Err(TimeoutUpdateError::NonAdminDisabling {
                field,
                target,
                current,
            });
        }
        // OMERO guards the timeToLive clamp with "max != 0" but not the timeToIdle one.
        if (max != 0 || !zero_max_means_unlimited) && target > max {
            return Ok(max);
        }
        Ok(target)
    }

    /// Destroys every expired session (reason Timeout) and returns their uuids. Before closing
    /// one, asks the store for its latest access, so a session used on another node (or whose
    /// access this cache has not seen) lives on.
    pub async fn reap_expired(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        let mut reaped = Vec::new();
        for entry in self.all_entries() {
            let uuid = {
                let e = lock(&entry);
                if e.closed || expiry_message(&e.info, now).is_none() {
                    continue;
                }
                e.info.uuid.clone()
            };
            match self.store.last_access(&uuid).await {
                Ok(Some(stored)) => {
                    let mut e = lock(&entry);
                    e.info.last_access = e.info.last_access.max(stored);
                    if expiry_message(&e.info, now).is_none() {
                        continue;
                    }
                }
                // Closed elsewhere: it goes below all the same.
                Ok(None) => {}
                Err(e) => {
                    // Retried at the next pass; a session is never closed on a guess.
                    tracing::warn!(session = %super::short(&uuid), error = %e, "cannot check a session before reaping it");
                    continue;
                }
            }
            if let Err(e) = self.store.close(&uuid, now).await {
                tracing::warn!(session = %super::short(&uuid), error = %e, "cannot record an expired session's close");
                continue;
            }
            self.kill_and_forget(&uuid, &entry, CloseReason::Timeout);
            reaped.push(uuid);
        }
        reaped
    }

    /// Destroys every session in this cache, in the store too; returns how many.
    pub async fn close_all(&self) -> usize {
        let mut count = 0;
        let now = self.clock.now_ms();
        for entry in self.all_entries() {
            let uuid = {
                let e = lock(&entry);
                if e.closed {
                    continue;
                }
                e.info.uuid.clone()
            };
            if let Err(e) = self.store.close(&uuid, now).await {
                let _ = unavailable("session close", &uuid, e);
            }
            self.kill_and_forget(&uuid, &entry, CloseReason::Shutdown);
            count += 1;
        }
        count
    }

    /// A stored row by uuid, also for recently closed sessions (join-refusal messages); `None`
    /// also when the store cannot answer (logged).
    pub async fn find_row(&self, uuid: &str) -> Option<SessionRow> {
        match self.store.find(uuid).await {
            Ok(row) => row,
            Err(e) => {
                tracing::warn!(session = %super::short(uuid), error = %e, "cannot read a session row");
                None
            }
        }
    }

    fn with_live<R>(
        &self,
        uuid: &str,
        refresh: bool,
        f: impl FnOnce(&mut Entry<V>) -> R,
    ) -> Result<R, SessionError> {
        let entry = self
            .entry(uuid)
            .ok_or_else(|| SessionError::no_context(uuid))?;
        let now = self.clock.now_ms();
        let mut e = lock(&entry);
        if e.closed {
            return Err(SessionError::no_context(uuid));
        }
        if let Some(message) = expiry_message(&e.info, now) {
            return Err(SessionError::Timeout(message));
        }
        if refresh {
            touch(&mut e.info, now);
        }
        Ok(f(&mut e))
    }

    /// A session the store says is closed: drop it from the cache, if there.
    pub(super) fn forget_closed_elsewhere(&self, uuid: &str) {
        if let Some(entry) = self.entry(uuid) {
            self.kill_and_forget(uuid, &entry, CloseReason::Closed);
        }
    }

    // Kills the entry, removes it from the map and announces its death (once, whoever of a
    // local close and the feed of closes gets here first).
    pub(super) fn kill_and_forget(&self, uuid: &str, entry: &Shared<V>, reason: CloseReason) {
        let owner = {
            let mut e = lock(entry);
            e.kill();
            e.info.owner_id
        };
        let removed = {
            let mut map = self.write_map();
            let same = map.get(uuid).is_some_and(|e| Arc::ptr_eq(e, entry));
            if same {
                map.remove(uuid);
            }
            same
        };
        if !removed {
            return;
        }
        self.free_slot(owner);
        tracing::info!(session = %super::short(uuid), ?reason, "session destroyed");
        // No subscriber is not an error: nothing needs cleaning then.
        let _ = self.events.send(SessionEvent::Closed {
            uuid: uuid.to_string(),
            reason,
        });
    }

    pub(super) fn entry(&self, uuid: &str) -> Option<Shared<V>> {
        self.read_map().get(uuid).cloned()
    }

    pub(super) fn all_entries(&self) -> Vec<Shared<V>> {
        self.read_map().values().cloned().collect()
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Shared<V>>> {
        self.sessions.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<V> SessionManager<V> {
    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Shared<V>>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn info_from_row(row: SessionRow, last_access: i64, refcount: i64) -> SessionInfo {
    SessionInfo {
        id: row.id,
        uuid: row.uuid,
        owner_id: row.owner_id,
        group_id: row.group_id,
        started: row.started,
        last_access,
        hits: 1,
        time_to_idle: row.time_to_idle,
        time_to_live: row.time_to_live,
        refcount,
        agent: row.agent,
        ip: row.ip,
        event_type: stored_event_type(&row.event_type),
        sudoer_id: row.sudoer_id,
        group_sudo: row.group_sudo,
    }
}

fn entry_parts<V>(info: SessionInfo, written_access: i64) -> Entry<V> {
    Entry {
        info,
        closed: false,
        written_access,
        envs: None,
    }
}

fn new_entry<V>(info: SessionInfo, written_access: i64) -> Shared<V> {
    Arc::new(Mutex::new(entry_parts(info, written_access)))
}

fn touch(info: &mut SessionInfo, now: i64) {
    info.last_access = now;
    info.hits = info.hits.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::clock::ManualClock;
    use crate::sessions::store::{MemorySessionStore, SessionStore};
    use std::time::Duration;

    const T0: i64 = 1_700_000_000_000;

    fn setup() -> (
        Arc<SessionManager<String>>,
        ManualClock,
        Arc<MemorySessionStore>,
    ) {
        setup_with(SessionConfig::default())
    }

    fn setup_with(
        config: SessionConfig,
    ) -> (
        Arc<SessionManager<String>>,
        ManualClock,
        Arc<MemorySessionStore>,
    ) {
        let clock = ManualClock::new(T0);
        let store = Arc::new(MemorySessionStore::default());
        let m = SessionManager::new(config, Arc::new(clock.clone()), store.clone());
        (Arc::new(m), clock, store)
    }

    async fn new_session(m: &SessionManager<String>) -> SessionInfo {
        m.create(NewSession::new(5, 3)).await.unwrap()
    }

    #[tokio::test]
    async fn create_sets_defaults_and_unique_ids() {
        let (m, _, store) = setup();
        let a = new_session(&m).await;
        let b = new_session(&m).await;
        assert_eq!((a.id, b.id), (1, 2));
        assert_ne!(a.uuid, b.uuid);
        assert_eq!(a.refcount, 1);
        assert_eq!(a.hits, 1);
        assert_eq!((a.time_to_idle, a.time_to_live), (600_000, 0));
        assert_eq!((a.started, a.last_access), (T0, T0));
        assert!(store.find(&a.uuid).await.unwrap().unwrap().closed.is_none());
        assert_eq!(m.len(), 2);
    }

    #[tokio::test]
    async fn explicit_timeouts_are_stored_verbatim() {
        let (m, _, _) = setup();
        let mut n = NewSession::new(5, 3);
        n.time_to_live = Some(-4);
        n.time_to_idle = Some(0);
        let s = m.create(n).await.unwrap();
        assert_eq!((s.time_to_live, s.time_to_idle), (-4, 0));
    }

    #[tokio::test]
    async fn unknown_uuid_is_removed_with_omero_message() {
        let (m, _, _) = setup();
        assert_eq!(
            m.lookup("nope", false),
            Err(SessionError::Removed("No context for nope".into()))
        );
        assert_eq!(
            m.lookup("", true),
            Err(SessionError::Removed("No context for ".into()))
        );
    }

    #[tokio::test]
    async fn idle_expiry_is_strict_and_message_exact() {
        let (m, clock, _) = setup();
        let s = new_session(&m).await;
        clock.advance(600_000);
        assert!(
            m.lookup(&s.uuid, true).is_ok(),
            "equal to tti is still alive"
        );
        clock.advance(1);
        let err = m.lookup(&s.uuid, false).unwrap_err();
        assert_eq!(
            err,
            SessionError::Timeout(
                "Session (started=2023-11-14 22:13:20.0, hits=1, last access=2023-11-14 \
                 22:13:20.0) exceeded timeToIdle (600000) by 1 ms"
                    .into()
            )
        );
        // The lookup does not remove it: it keeps answering timeout until reaped.
        assert!(matches!(
            m.lookup(&s.uuid, true),
            Err(SessionError::Timeout(_))
        ));
        assert_eq!(m.len(), 1);
    }

    #[tokio::test]
    async fn ttl_is_checked_before_tti() {
        let (m, clock, _) = setup();
        let mut n = NewSession::new(5, 3);
        n.time_to_live = Some(1000);
        n.time_to_idle = Some(500);
        let s = m.create(n).await.unwrap();
        clock.advance(1001);
        let SessionError::Timeout(msg) = m.lookup(&s.uuid, true).unwrap_err() else {
            panic!("expected timeout");
        };
        assert!(msg.ends_with("exceeded timeToLive (1000) by 1 ms"), "{msg}");
    }

    #[tokio::test]
    async fn zero_and_negative_timeouts_never_expire() {
        let (m, clock, _) = setup();
        for (ttl, tti) in [(0, 0), (-1, -1)] {
            let mut n = NewSession::new(5, 3);
            n.time_to_live = Some(ttl);
            n.time_to_idle = Some(tti);
            let s = m.create(n).await.unwrap();
            clock.advance(10_000_000_000);
            assert!(m.lookup(&s.uuid, false).is_ok());
        }
    }

    #[tokio::test]
    async fn non_quiet_lookup_refreshes_quiet_does_not() {
        let (m, clock, _) = setup();
        let s = new_session(&m).await;
        clock.advance(400_000);
        let q = m.lookup(&s.uuid, true).unwrap();
        assert_eq!((q.last_access, q.hits), (T0, 1));
        let r = m.lookup(&s.uuid, false).unwrap();
        assert_eq!((r.last_access, r.hits), (T0 + 400_000, 2));
        clock.advance(400_000);
        assert!(m.lookup(&s.uuid, true).is_ok(), "refreshed 400 s ago");
        clock.advance(200_001);
        assert!(m.lookup(&s.uuid, true).is_err());
    }

    #[tokio::test]
    async fn join_and_reference_count() {
        let (m, _, _) = setup();
        let s = new_session(&m).await;
        assert_eq!(m.join(&s.uuid).await.unwrap().refcount, 2);
        assert_eq!(m.reference_count(&s.uuid).unwrap(), 2);
        assert!(m.join("missing").await.is_err());
    }

    #[tokio::test]
    async fn join_of_expired_session_fails_with_timeout() {
        let (m, clock, _) = setup();
        let s = new_session(&m).await;
        clock.advance(600_001);
        assert!(matches!(
            m.join(&s.uuid).await,
            Err(SessionError::Timeout(_))
        ));
    }

    #[tokio::test]
    async fn close_session_counts_down_then_destroys() {
        let (m, _, store) = setup();
        let mut events = m.subscribe();
        let s = new_session(&m).await;
        m.join(&s.uuid).await.unwrap();
        assert_eq!(m.close_session(&s.uuid).await.unwrap(), 1);
        assert_eq!(m.close_session(&s.uuid).await.unwrap(), -2);
        assert_eq!(m.close_session(&s.uuid).await.unwrap(), -1);
        assert!(matches!(
            m.lookup(&s.uuid, true),
            Err(SessionError::Removed(_))
        ));
        assert!(store.find(&s.uuid).await.unwrap().unwrap().closed.is_some());
        assert_eq!(
            events.try_recv().unwrap(),
            SessionEvent::Closed {
                uuid: s.uuid.clone(),
                reason: CloseReason::Closed
            }
        );
    }

    #[tokio::test]
    async fn close_session_on_expired_returns_minus_one_and_leaves_it() {
        let (m, clock, _) = setup();
        let s = new_session(&m).await;
        clock.advance(600_001);
        assert_eq!(m.close_session(&s.uuid).await.unwrap(), -1);
        assert_eq!(m.len(), 1);
        assert_eq!(m.close_session("unknown").await.unwrap(), -1);
    }

    #[tokio::test]
    async fn release_close_mode_destroys_at_zero() {
        let (m, _, _) = setup();
        let s = new_session(&m).await;
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Close).await,
            ReleaseOutcome::Destroyed
        );
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Close).await,
            ReleaseOutcome::AlreadyGone
        );
    }

    #[tokio::test]
    async fn release_detach_keeps_session_at_zero() {
        let (m, _, _) = setup();
        let s = new_session(&m).await;
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Detach).await,
            ReleaseOutcome::Detached { remaining: 0 }
        );
        // Floor at 0, and the session lives until closed or expired.
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Detach).await,
            ReleaseOutcome::Detached { remaining: 0 }
        );
        assert_eq!(m.reference_count(&s.uuid).unwrap(), 0);
        assert_eq!(m.close_session(&s.uuid).await.unwrap(), -2);
    }

    #[tokio::test]
    async fn release_with_other_references_detaches_even_in_close_mode() {
        let (m, _, _) = setup();
        let s = new_session(&m).await;
        m.join(&s.uuid).await.unwrap();
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Close).await,
            ReleaseOutcome::Detached { remaining: 1 }
        );
    }

    #[tokio::test]
    async fn release_of_expired_session_forces_close() {
        let (m, clock, _) = setup();
        let mut events = m.subscribe();
        let s = new_session(&m).await;
        m.join(&s.uuid).await.unwrap();
        clock.advance(600_001);
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Detach).await,
            ReleaseOutcome::Destroyed
        );
        assert_eq!(
            events.try_recv().unwrap(),
            SessionEvent::Closed {
                uuid: s.uuid,
                reason: CloseReason::Timeout
            }
        );
    }

    #[tokio::test]
    async fn test1018_creation_destruction_closing() {
        // A logs in and detaches; B joins (close mode) and leaves; A leaves; C joins and kills.
        let (m, _, _) = setup();
        let a = new_session(&m).await;
        m.join(&a.uuid).await.unwrap();
        assert_eq!(
            m.release(&a.uuid, DestroyMode::Close).await,
            ReleaseOutcome::Detached { remaining: 1 }
        );
        assert_eq!(
            m.release(&a.uuid, DestroyMode::Detach).await,
            ReleaseOutcome::Detached { remaining: 0 }
        );
        m.join(&a.uuid).await.unwrap();
        let mut last = m.close_session(&a.uuid).await.unwrap();
        while last > 0 {
            last = m.close_session(&a.uuid).await.unwrap();
        }
        assert_eq!(last, -2);
        assert!(m.join(&a.uuid).await.is_err());
    }

    #[tokio::test]
    async fn environment_maps() {
        let (m, clock, _) = setup();
        let s = new_session(&m).await;
        clock.advance(100);
        m.set_env(&s.uuid, Env::Input, "a", Some("1".into()), 1)
            .await
            .unwrap();
        m.set_env(&s.uuid, Env::Input, "b", Some("2".into()), 1)
            .await
            .unwrap();
        m.set_env(&s.uuid, Env::Output, "x", Some("9".into()), 1)
            .await
            .unwrap();
        assert_eq!(
            m.get_env(&s.uuid, Env::Input, "a").unwrap(),
            Some("1".into())
        );
        assert_eq!(m.get_env(&s.uuid, Env::Input, "zz").unwrap(), None);
        assert_eq!(
            m.lookup(&s.uuid, true).unwrap().last_access,
            T0,
            "get/set do not refresh"
        );
        assert_eq!(m.env_keys(&s.uuid, Env::Input).unwrap(), vec!["a", "b"]);
        assert_eq!(
            m.lookup(&s.uuid, true).unwrap().last_access,
            T0 + 100,
            "keys refresh"
        );
        m.set_env(&s.uuid, Env::Input, "a", None, 0).await.unwrap();
        let copy = m.env_copy(&s.uuid, Env::Input).unwrap();
        assert_eq!(copy.len(), 1);
        assert_eq!(copy.get("b"), Some(&"2".to_string()));
        assert_eq!(m.env_copy(&s.uuid, Env::Output).unwrap().len(), 1);
        assert!(matches!(
            m.get_env("gone", Env::Input, "a"),
            Err(SessionError::Removed(_))
        ));
        clock.advance(600_001);
        assert!(matches!(
            m.set_env(&s.uuid, Env::Output, "k", None, 0).await,
            Err(SessionError::Timeout(_))
        ));
    }

    #[tokio::test]
    async fn maps_are_made_by_the_first_value_only() {
        let (m, _, _) = setup();
        let s = new_session(&m).await;
        let has_maps = |m: &SessionManager<String>| {
            let entry = m.entry(&s.uuid).unwrap();
            let made = lock(&entry).envs.is_some();
            made
        };
        assert_eq!(m.get_env(&s.uuid, Env::Input, "a").unwrap(), None);
        assert!(m.env_keys(&s.uuid, Env::Output).unwrap().is_empty());
        assert!(m.env_copy(&s.uuid, Env::Input).unwrap().is_empty());
        assert!(!has_maps(&m), "reads make no maps");
        m.set_env(&s.uuid, Env::Output, "k", Some("v".into()), 1)
            .await
            .unwrap();
        assert!(has_maps(&m));
        assert_eq!(m.get_env(&s.uuid, Env::Input, "k").unwrap(), None);
        assert_eq!(
            m.get_env(&s.uuid, Env::Output, "k").unwrap(),
            Some("v".into())
        );
    }

    #[tokio::test]
    async fn environment_dies_with_session() {
        let (m, _, _) = setup();
        let s = new_session(&m).await;
        m.set_env(&s.uuid, Env::Input, "a", Some("1".into()), 1)
            .await
            .unwrap();
        assert_eq!(m.close_session(&s.uuid).await.unwrap(), -2);
        assert!(m.get_env(&s.uuid, Env::Input, "a").is_err());
    }

    #[tokio::test]
    async fn open_sessions_filters_sorts_and_refreshes() {
        let (m, clock, _) = setup();
        let mut web = NewSession::new(5, 3);
        web.agent = Some("OMERO.web".into());
        let first = m.create(web).await.unwrap();
        clock.advance(10);
        let mut py = NewSession::new(5, 3);
        py.agent = Some("OMERO.py".into());
        let second = m.create(py).await.unwrap();
        clock.advance(10);
        let mut sudo = NewSession::new(5, 3);
        sudo.sudoer_id = Some(0);
        let third = m.create(sudo).await.unwrap();
        m.create(NewSession::new(6, 3)).await.unwrap();
        clock.advance(10);

        let all = m.open_sessions(5, SudoerFilter::Any, &AgentFilter::Any);
        let uuids: Vec<_> = all.iter().map(|s| s.uuid.clone()).collect();
        assert_eq!(
            uuids,
            vec![third.uuid.clone(), second.uuid.clone(), first.uuid.clone()]
        );
        assert!(all.iter().all(|s| s.last_access == T0 + 30));

        let mine = m.open_sessions(5, SudoerFilter::Equals(None), &AgentFilter::Any);
        assert_eq!(mine.len(), 2);
        let sudoed = m.open_sessions(5, SudoerFilter::Equals(Some(0)), &AgentFilter::Any);
        assert_eq!(sudoed.len(), 1);

        let clients = m.open_sessions(5, SudoerFilter::Any, &AgentFilter::clients());
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].uuid, first.uuid);
        let py_only = m.open_sessions(
            5,
            SudoerFilter::Any,
            &AgentFilter::Exactly(Some("OMERO.py".into())),
        );
        assert_eq!(py_only[0].uuid, second.uuid);
        let no_agent = m.open_sessions(5, SudoerFilter::Any, &AgentFilter::Exactly(None));
        assert_eq!(no_agent[0].uuid, third.uuid);
    }

    #[tokio::test]
    async fn open_sessions_skips_expired() {
        let (m, clock, _) = setup();
        let s = new_session(&m).await;
        clock.advance(600_001);
        assert!(m
            .open_sessions(5, SudoerFilter::Any, &AgentFilter::Any)
            .is_empty());
        assert!(m.lookup(&s.uuid, true).is_err());
    }

    #[tokio::test]
    async fn reaper_destroys_only_expired() {
        let (m, clock, store) = setup();
        let mut events = m.subscribe();
        let old = new_session(&m).await;
        clock.advance(300_000);
        let young = new_session(&m).await;
        clock.advance(300_001);
        assert_eq!(m.reap_expired().await, vec![old.uuid.clone()]);
        assert!(matches!(
            m.lookup(&old.uuid, true),
            Err(SessionError::Removed(_))
        ));
        assert!(m.lookup(&young.uuid, true).is_ok());
        assert!(store
            .find(&old.uuid)
            .await
            .unwrap()
            .unwrap()
            .closed
            .is_some());
        assert_eq!(
            events.try_recv().unwrap(),
            SessionEvent::Closed {
                uuid: old.uuid,
                reason: CloseReason::Timeout
            }
        );
    }

    #[tokio::test]
    async fn spawned_reaper_runs() {
        let (m, clock, _) = setup();
        let mut events = m.subscribe();
        let s = new_session(&m).await;
        clock.advance(600_001);
        let handle = m.spawn_reaper(Duration::from_millis(2));
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            event,
            SessionEvent::Closed {
                uuid: s.uuid,
                reason: CloseReason::Timeout
            }
        );
        handle.abort();
    }

    #[tokio::test]
    async fn close_all_on_shutdown() {
        let (m, _, _) = setup();
        new_session(&m).await;
        new_session(&m).await;
        assert_eq!(m.close_all().await, 2);
        assert!(m.is_empty());
    }

    #[tokio::test]
    async fn user_session_rules_with_defaults_accept_anything() {
        let (m, _, _) = setup();
        for (ttl, tti) in [(0, 0), (-5, -5), (i64::MAX, i64::MAX)] {
            let s = m
                .create_user_session(NewSession::new(5, 3), ttl, tti)
                .await
                .unwrap();
            assert_eq!((s.time_to_live, s.time_to_idle), (ttl, tti));
            assert_eq!(s.refcount, 1);
        }
    }

    #[tokio::test]
    async fn user_session_rules_with_ttl_maximum() {
        let config = SessionConfig {
            max_user_time_to_live: 1000,
            max_user_time_to_idle: 500,
            ..SessionConfig::default()
        };
        let (m, _, _) = setup_with(config);
        let ttl_err =
            SessionError::SecurityViolation("Cannot modify timeToLive beyond maximum: 1000".into());
        let tti_err =
            SessionError::SecurityViolation("Cannot modify timeToIdle beyond maximum: 500".into());
        assert_eq!(m.check_user_timeouts(0, 100), Err(ttl_err.clone()));
        assert_eq!(m.check_user_timeouts(1001, 100), Err(ttl_err));
        assert_eq!(m.check_user_timeouts(1000, 0), Err(tti_err.clone()));
        assert_eq!(m.check_user_timeouts(1000, 501), Err(tti_err));
        assert_eq!(m.check_user_timeouts(1000, 500), Ok(()));
        assert_eq!(m.check_user_timeouts(-1, -1), Ok(()));
    }

    #[tokio::test]
    async fn tti_maximum_alone_is_not_enforced() {
        // OMERO gates the timeToIdle check on the timeToLive maximum.
        let config = SessionConfig {
            max_user_time_to_idle: 10,
            ..SessionConfig::default()
        };
        let (m, _, _) = setup_with(config);
        assert_eq!(m.check_user_timeouts(0, 1_000_000), Ok(()));
    }

    #[tokio::test]
    async fn group_switching() {
        let (m, _, _) = setup();
        let s = new_session(&m).await;
        assert_eq!(
            m.switch_group(&s.uuid, 9, false).await,
            Err(SessionError::SecurityViolation(
                "User 5 is not a member of group 9".into()
            ))
        );
        assert_eq!(m.switch_group(&s.uuid, 9, true).await, Ok(3));
        assert_eq!(m.lookup(&s.uuid, true).unwrap().group_id, 9);

        let mut n = NewSession::new(5, 3);
        n.group_sudo = true;
        let g = m.create(n).await.unwrap();
        assert_eq!(
            m.switch_group(&g.uuid, 9, true).await,
            Err(SessionError::SecurityViolation(
                "Group-sudo session cannot change context!".into()
            ))
        );
    }

    #[tokio::test]
    async fn update_timeouts_rules() {
        let (m, _, store) = setup();
        let s = new_session(&m).await;
        assert_eq!(
            m.update_timeouts("x", Some(1), None, false)
                .await
                .unwrap_err(),
            TimeoutUpdateError::NoSession
        );
        assert_eq!(
            m.update_timeouts(&s.uuid, None, None, false)
                .await
                .unwrap_err()
                .name(),
            "no-update-performed"
        );
        assert_eq!(
            m.update_timeouts(&s.uuid, None, Some(0), false)
                .await
                .unwrap_err(),
            TimeoutUpdateError::NonAdminDisabling {
                field: "timeToIdle",
                target: 0,
                current: 600_000
            }
        );
        let u = m
            .update_timeouts(&s.uuid, Some(5_000), Some(99_000_000), false)
            .await
            .unwrap();
        assert_eq!((u.time_to_live, u.time_to_idle), (5_000, 6_000_000));
        let row = store.find(&s.uuid).await.unwrap().unwrap();
        assert_eq!((row.time_to_live, row.time_to_idle), (5_000, 6_000_000));
        let a = m
            .update_timeouts(&s.uuid, Some(0), Some(0), true)
            .await
            .unwrap();
        assert_eq!((a.time_to_live, a.time_to_idle), (0, 0));
    }

    #[tokio::test]
    async fn event_types_and_sudo_check() {
        assert_eq!(normalize_event_type("").unwrap(), "User");
        assert_eq!(normalize_event_type("Import").unwrap(), "Import");
        assert_eq!(
            normalize_event_type("Bogus"),
            Err(SessionError::Authentication(
                "Error creating session.".into()
            ))
        );
        assert_eq!(stored_event_type("Import"), "Import");
        assert_eq!(stored_event_type("Bogus"), "User");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_joins_and_closes_keep_count_consistent() {
        let (m, _, _) = setup();
        let s = new_session(&m).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                let uuid = s.uuid.clone();
                tokio::spawn(async move {
                    for _ in 0..100 {
                        m.join(&uuid).await.unwrap();
                        assert!(m.close_session(&uuid).await.unwrap() >= 1);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(m.reference_count(&s.uuid).unwrap(), 1);
    }

    #[tokio::test]
    async fn environment_caps_refuse_with_api_usage() {
        let (m, _, _) = setup_with(SessionConfig {
            max_env_keys: 2,
            max_env_bytes: 100,
            ..SessionConfig::default()
        });
        let s = m.create(NewSession::new(1, 1)).await.unwrap();
        m.set_env(&s.uuid, Env::Input, "a", Some("1".into()), 10)
            .await
            .unwrap();
        m.set_env(&s.uuid, Env::Input, "b", Some("2".into()), 10)
            .await
            .unwrap();
        let third = m
            .set_env(&s.uuid, Env::Input, "c", Some("3".into()), 1)
            .await;
        assert!(matches!(third, Err(SessionError::ApiUsage(m)) if m.contains("2 keys")));
        // Replacing a key adds none; the other map has its own budget.
        m.set_env(&s.uuid, Env::Input, "a", Some("9".into()), 50)
            .await
            .unwrap();
        m.set_env(&s.uuid, Env::Output, "c", Some("3".into()), 1)
            .await
            .unwrap();
        let big = m
            .set_env(&s.uuid, Env::Input, "b", Some("2".into()), 60)
            .await;
        assert!(matches!(big, Err(SessionError::ApiUsage(m)) if m.contains("100 bytes")));
        assert_eq!(
            m.get_env(&s.uuid, Env::Input, "b").unwrap().as_deref(),
            Some("2")
        );
        // Removing frees room.
        m.set_env(&s.uuid, Env::Input, "a", None, 0).await.unwrap();
        m.set_env(&s.uuid, Env::Input, "b", Some("2".into()), 60)
            .await
            .unwrap();
        m.set_env(&s.uuid, Env::Input, "c", Some("3".into()), 30)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn sessions_per_user_are_capped_and_freed_on_close() {
        let (m, _, _) = setup_with(SessionConfig {
            max_sessions_per_user: 2,
            ..SessionConfig::default()
        });
        let a = m.create(NewSession::new(7, 1)).await.unwrap();
        m.create(NewSession::new(7, 1)).await.unwrap();
        assert!(matches!(
            m.create(NewSession::new(7, 1)).await,
            Err(SessionError::ApiUsage(_))
        ));
        // Another user is not affected.
        m.create(NewSession::new(8, 1)).await.unwrap();
        assert_eq!(m.close_session(&a.uuid).await.unwrap(), -2);
        m.create(NewSession::new(7, 1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_store_that_is_down_refuses_changes_but_the_cache_still_answers() {
        let (m, _, store) = setup_with(SessionConfig {
            max_sessions_per_user: 1,
            ..SessionConfig::default()
        });
        let s = new_session(&m).await;
        m.set_env(&s.uuid, Env::Input, "k", Some("v".into()), 1)
            .await
            .unwrap();
        store.set_unavailable(true);

        let refused = m.create(NewSession::new(6, 3)).await.unwrap_err();
        assert!(matches!(&refused, SessionError::Internal(msg) if msg.contains("unavailable")));
        assert!(matches!(
            m.join(&s.uuid).await,
            Err(SessionError::Internal(_))
        ));
        assert!(m
            .set_env(&s.uuid, Env::Input, "k", Some("w".into()), 1)
            .await
            .is_err());
        assert!(m.close_session(&s.uuid).await.is_err());
        // Routed calls on the open session keep working from the cache, unchanged.
        let info = m.lookup(&s.uuid, false).unwrap();
        assert_eq!(info.refcount, 1);
        assert_eq!(
            m.get_env(&s.uuid, Env::Input, "k").unwrap(),
            Some("v".into())
        );

        store.set_unavailable(false);
        // The refused create gave its per-user slot back.
        m.create(NewSession::new(6, 3)).await.unwrap();
        assert_eq!(m.join(&s.uuid).await.unwrap().refcount, 2);
    }

    #[tokio::test]
    async fn accesses_are_written_behind_and_never_backwards() {
        let (m, clock, store) = setup();
        let s = new_session(&m).await;
        assert_eq!(m.flush_accesses().await.unwrap(), 0);
        clock.advance(1_000);
        m.lookup(&s.uuid, false).unwrap();
        assert_eq!(store.last_access(&s.uuid).await.unwrap(), Some(T0));
        assert_eq!(m.flush_accesses().await.unwrap(), 1);
        assert_eq!(store.last_access(&s.uuid).await.unwrap(), Some(T0 + 1_000));
        assert_eq!(m.flush_accesses().await.unwrap(), 0, "nothing new to write");
    }

    #[tokio::test]
    async fn the_reaper_spares_a_session_used_elsewhere() {
        let (m, clock, store) = setup();
        let s = new_session(&m).await;
        clock.advance(600_001);
        // Another node saw the session a moment ago.
        store
            .touch_many(&[(s.uuid.clone(), T0 + 600_000)])
            .await
            .unwrap();
        assert!(m.reap_expired().await.is_empty());
        assert!(m.lookup(&s.uuid, true).is_ok());
        clock.advance(600_001);
        assert_eq!(m.reap_expired().await, vec![s.uuid.clone()]);
        assert!(store.find(&s.uuid).await.unwrap().unwrap().closed.is_some());
    }
}

//! The session cache: the authority on which sessions are alive.
//!
//! Values of the input/output environments are a type parameter `V` so this layer stays free
//! of Ice: the services layer instantiates `SessionManager<its RType>`. Locks are std locks,
//! never held across an `.await`; the map lock is taken only to find or remove an entry, and each
//! entry has its own lock so calls of different sessions do not contend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::clock::{java_timestamp, Clock};
use super::error::SessionError;
use super::rowlog::{RowLog, SessionRow};
pub use super::store::Env;

/// `omero.sessions.timeout`: default timeToIdle of a new session.
pub const DEFAULT_TIME_TO_IDLE: i64 = 600_000;
/// `omero.sessions.maximum`: default timeToLive (0 = never).
pub const DEFAULT_TIME_TO_LIVE: i64 = 0;
/// `omero.sessions.max_user_time_to_idle`.
pub const DEFAULT_MAX_USER_TIME_TO_IDLE: i64 = 6_000_000;
/// `omero.sessions.max_user_time_to_live`.
pub const DEFAULT_MAX_USER_TIME_TO_LIVE: i64 = 0;

/// `omero.sessions.sync_interval`: a sensible period for [`SessionManager::spawn_reaper`].
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_millis(120_000);

/// Agent stored by ISession.createSession and createUserSession when the context has none.
pub const AGENT_CREATE_SESSION: &str = "createSession";
/// Agent stored by createSessionWithTimeout(s) when the context has none.
pub const AGENT_SUDO: &str = "OMERO.sudo";
/// Agents matched by getMyOpenClientSessions.
pub const CLIENT_AGENTS: [&str; 3] = ["OMERO.insight", "OMERO.web", "OMERO.importer"];
/// `Session.message` of a regular session.
pub const INITIAL_MESSAGE: &str = "Initial message.";
/// Values of OMERO's EventType enumeration accepted as a session's event type.
pub const EVENT_TYPES: [&str; 10] = [
    "Bootstrap",
    "Import",
    "Internal",
    "Shoola",
    "User",
    "Task",
    "Test",
    "Processing",
    "FullText",
    "Sessions",
];

/// Timeout settings, all in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    pub default_time_to_idle: i64,
    pub default_time_to_live: i64,
    pub max_user_time_to_idle: i64,
    pub max_user_time_to_live: i64,
    /// Keys one environment map (input or output) of one session may hold.
    pub max_env_keys: usize,
    /// Bytes (keys plus encoded values) one environment map of one session may hold.
    pub max_env_bytes: usize,
    /// Sessions one user may have in the cache at once (expired ones count until reaped).
    pub max_sessions_per_user: usize,
    /// Longest `keepAliveDuration` the HTTPS endpoint accepts, in milliseconds.
    pub max_keep_alive_ms: i64,
}

/// Generous caps: far beyond what OMERO clients do, small enough that one user cannot
/// exhaust the server's memory.
pub const DEFAULT_MAX_ENV_KEYS: usize = 10_000;
pub const DEFAULT_MAX_ENV_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 10_000;
/// One day.
pub const DEFAULT_MAX_KEEP_ALIVE_MS: i64 = 86_400_000;

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            default_time_to_idle: DEFAULT_TIME_TO_IDLE,
            default_time_to_live: DEFAULT_TIME_TO_LIVE,
            max_user_time_to_idle: DEFAULT_MAX_USER_TIME_TO_IDLE,
            max_user_time_to_live: DEFAULT_MAX_USER_TIME_TO_LIVE,
            max_env_keys: DEFAULT_MAX_ENV_KEYS,
            max_env_bytes: DEFAULT_MAX_ENV_BYTES,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            max_keep_alive_ms: DEFAULT_MAX_KEEP_ALIVE_MS,
        }
    }
}

/// What the caller decided about a session to create (the password is already checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub owner_id: i64,
    pub group_id: i64,
    pub agent: Option<String>,
    pub ip: Option<String>,
    /// Already validated, see [`normalize_event_type`].
    pub event_type: String,
    pub sudoer_id: Option<i64>,
    /// Made by a group owner's sudo: may never change group.
    pub group_sudo: bool,
    /// `None` takes the configured default; a value is stored verbatim.
    pub time_to_idle: Option<i64>,
    pub time_to_live: Option<i64>,
}

impl NewSession {
    /// A plain session of `owner_id` in `group_id` with event type "User" and default timeouts.
    pub fn new(owner_id: i64, group_id: i64) -> Self {
        NewSession {
            owner_id,
            group_id,
            agent: None,
            ip: None,
            event_type: "User".to_string(),
            sudoer_id: None,
            group_sudo: false,
            time_to_idle: None,
            time_to_live: None,
        }
    }
}

/// A copy of one session's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Id of the stored row (`Session.id`, `EventContext.sessionId`).
    pub id: i64,
    pub uuid: String,
    pub owner_id: i64,
    /// The session's current group.
    pub group_id: i64,
    pub started: i64,
    pub last_access: i64,
    pub hits: i64,
    pub time_to_idle: i64,
    pub time_to_live: i64,
    pub refcount: i64,
    pub agent: Option<String>,
    pub ip: Option<String>,
    pub event_type: String,
    pub sudoer_id: Option<i64>,
    pub group_sudo: bool,
}

/// A ServiceFactory's mode when destroyed (§2.3); OMERO's default is `Close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DestroyMode {
    #[default]
    Close,
    Detach,
}

/// What a ServiceFactory destroy did to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The session died now: remove every servant of it (all clients, stateful included).
    Destroyed,
    /// The session was already gone: remove every servant of it.
    AlreadyGone,
    /// The session lives on: remove only this client's stateless servants.
    Detached { remaining: i64 },
}

/// Why a session died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its reference count reached 0 (closeSession or a close-mode ServiceFactory destroy).
    Closed,
    /// It expired (timeToLive or timeToIdle).
    Timeout,
    /// The server is stopping.
    Shutdown,
}

/// Published whenever a session dies, so the router can drop its ServiceFactories and servants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Closed { uuid: String, reason: CloseReason },
}

/// Sudoer restriction of getMyOpen*Sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SudoerFilter {
    /// Caller holds the ReadSession privilege.
    Any,
    /// Only sessions whose sudoer equals the caller's session's sudoer (`None` = not sudo'd).
    Equals(Option<i64>),
}

/// Agent restriction of getMyOpen*Sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentFilter {
    /// getMyOpenSessions.
    Any,
    /// getMyOpenAgentSessions(agent); `None` matches sessions without agent.
    Exactly(Option<String>),
    /// getMyOpenClientSessions uses [`CLIENT_AGENTS`].
    OneOf(Vec<String>),
}

impl AgentFilter {
    /// The filter of getMyOpenClientSessions.
    pub fn clients() -> Self {
        AgentFilter::OneOf(CLIENT_AGENTS.iter().map(|a| a.to_string()).collect())
    }

    fn matches(&self, agent: Option<&str>) -> bool {
        match self {
            AgentFilter::Any => true,
            AgentFilter::Exactly(want) => want.as_deref() == agent,
            AgentFilter::OneOf(list) => agent.is_some_and(|a| list.iter().any(|w| w == a)),
        }
    }
}

/// Failures of UpdateSessionTimeoutRequest (§3.5); `name()` is the `omero.cmd.ERR` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutUpdateError {
    #[error("no session with that uuid")]
    NoSession,
    #[error("a non-admin may not disable {field} (target {target}, current {current})")]
    NonAdminDisabling {
        field: &'static str,
        target: i64,
        current: i64,
    },
    #[error("neither timeToLive nor timeToIdle given")]
    NoUpdatePerformed,
    #[error("{0}")]
    Store(String),
}

impl TimeoutUpdateError {
    pub fn name(&self) -> &'static str {
        match self {
            TimeoutUpdateError::NoSession => "no-session",
            TimeoutUpdateError::NonAdminDisabling { .. } => "non-admin-disabling",
            TimeoutUpdateError::NoUpdatePerformed => "no-update-performed",
            TimeoutUpdateError::Store(_) => "store-failure",
        }
    }
}

/// The event type of a new session: empty means "User"; unknown values are refused with the
/// message OMERO's create methods give.
pub fn normalize_event_type(value: &str) -> Result<String, SessionError> {
    if value.is_empty() {
        return Ok("User".to_string());
    }
    if EVENT_TYPES.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(SessionError::Authentication(
            "Error creating session.".to_string(),
        ))
    }
}

/// The SessionTimeoutException message when `info` is expired at `now`, else `None`.
/// timeToLive is tested first; a value of 0 or less disables that dimension; comparisons are strict.
pub fn expiry_message(info: &SessionInfo, now: i64) -> Option<String> {
    let alive = now.saturating_sub(info.started);
    let idle = now.saturating_sub(info.last_access);
    let (why, setting, elapsed) = if 0 < info.time_to_live && info.time_to_live < alive {
        ("timeToLive", info.time_to_live, alive)
    } else if 0 < info.time_to_idle && info.time_to_idle < idle {
        ("timeToIdle", info.time_to_idle, idle)
    } else {
        return None;
    };
    Some(format!(
        "Session (started={}, hits={}, last access={}) exceeded {} ({}) by {} ms",
        java_timestamp(info.started),
        info.hits,
        java_timestamp(info.last_access),
        why,
        setting,
        elapsed - setting
    ))
}

/// One environment map with the size of each value, so its total stays known.
struct EnvMap<V> {
    values: HashMap<String, (V, usize)>,
    /// Sum of key lengths and value sizes.
    bytes: usize,
}

impl<V> EnvMap<V> {
    fn new() -> Self {
        EnvMap {
            values: HashMap::new(),
            bytes: 0,
        }
    }

    fn clear(&mut self) {
        self.values.clear();
        self.bytes = 0;
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, size)) = self.values.remove(key) {
            self.bytes = self.bytes.saturating_sub(key.len().saturating_add(size));
        }
    }

    /// Sets `key`, unless the map would then exceed `config`'s caps.
    fn insert(
        &mut self,
        key: &str,
        value: V,
        size: usize,
        config: &SessionConfig,
        env: Env,
    ) -> Result<(), SessionError> {
        let old = self
            .values
            .get(key)
            .map(|(_, s)| key.len().saturating_add(*s));
        let keys = self.values.len() + usize::from(old.is_none());
        let bytes = (self.bytes - old.unwrap_or(0)).saturating_add(key.len().saturating_add(size));
        if keys > config.max_env_keys {
            return Err(SessionError::ApiUsage(format!(
                "The {} map of this session may hold at most {} keys",
                env.name(),
                config.max_env_keys
            )));
        }
        if bytes > config.max_env_bytes {
            return Err(SessionError::ApiUsage(format!(
                "The {} map of this session may hold at most {} bytes",
                env.name(),
                config.max_env_bytes
            )));
        }
        self.values.insert(key.to_string(), (value, size));
        self.bytes = bytes;
        Ok(())
    }
}

struct Entry<V> {
    info: SessionInfo,
    closed: bool,
    input: EnvMap<V>,
    output: EnvMap<V>,
}

impl<V> Entry<V> {
    fn env(&mut self, env: Env) -> &mut EnvMap<V> {
        match env {
            Env::Input => &mut self.input,
            Env::Output => &mut self.output,
        }
    }

    // Marks the entry dead and drops its environment; the caller then unlinks it.
    fn kill(&mut self) {
        self.closed = true;
        self.input.clear();
        self.output.clear();
    }
}

type Shared<V> = Arc<Mutex<Entry<V>>>;

/// The session cache. Share it as `Arc<SessionManager<V>>`.
pub struct SessionManager<V> {
    sessions: RwLock<HashMap<String, Shared<V>>>,
    /// Sessions per owner in `sessions`, for the per-user cap.
    per_owner: Mutex<HashMap<i64, usize>>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn RowLog>,
    config: SessionConfig,
    events: broadcast::Sender<SessionEvent>,
}

impl<V> std::fmt::Debug for SessionManager<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("sessions", &self.read_map().len())
            .field("config", &self.config)
            .finish()
    }
}

fn lock<V>(entry: &Shared<V>) -> MutexGuard<'_, Entry<V>> {
    // Entry updates are single assignments, so a poisoned entry is still consistent.
    entry.lock().unwrap_or_else(|e| e.into_inner())
}

impl<V: Clone + Send + Sync + 'static> SessionManager<V> {
    pub fn new(config: SessionConfig, clock: Arc<dyn Clock>, store: Arc<dyn RowLog>) -> Self {
        let (events, _) = broadcast::channel(1024);
        SessionManager {
            sessions: RwLock::new(HashMap::new()),
            per_owner: Mutex::new(HashMap::new()),
            clock,
            store,
            config,
            events,
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
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

    /// Creates a session with reference count 1.
    pub fn create(&self, new: NewSession) -> Result<SessionInfo, SessionError> {
        let owner = new.owner_id;
        self.reserve_slot(owner)?;
        let created = self.create_reserved(new);
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

    fn create_reserved(&self, new: NewSession) -> Result<SessionInfo, SessionError> {
        let now = self.clock.now_ms();
        let row = SessionRow {
            id: 0,
            uuid: Uuid::new_v4().to_string(),
            owner_id: new.owner_id,
            group_id: new.group_id,
            started: now,
            closed: None,
            time_to_idle: new.time_to_idle.unwrap_or(self.config.default_time_to_idle),
            time_to_live: new.time_to_live.unwrap_or(self.config.default_time_to_live),
            agent: new.agent,
            ip: new.ip,
            event_type: new.event_type,
            sudoer_id: new.sudoer_id,
        };
        let row = self.store.insert(row).map_err(|e| {
            tracing::error!(error = %e, "cannot record new session");
            SessionError::Internal(format!("cannot record new session: {e}"))
        })?;
        let info = SessionInfo {
            id: row.id,
            uuid: row.uuid,
            owner_id: row.owner_id,
            group_id: row.group_id,
            started: now,
            last_access: now,
            hits: 1,
            time_to_idle: row.time_to_idle,
            time_to_live: row.time_to_live,
            refcount: 1,
            agent: row.agent,
            ip: row.ip,
            event_type: row.event_type,
            sudoer_id: row.sudoer_id,
            group_sudo: new.group_sudo,
        };
        let entry = Arc::new(Mutex::new(Entry {
            info: info.clone(),
            closed: false,
            input: EnvMap::new(),
            output: EnvMap::new(),
        }));
        self.write_map().insert(info.uuid.clone(), entry);
        tracing::info!(session = %super::short(&info.uuid), id = info.id, owner = info.owner_id, "session created");
        Ok(info)
    }

    /// createUserSession (§1.4): checks the user-chosen timeouts, then creates with them verbatim.
    pub fn create_user_session(
        &self,
        mut new: NewSession,
        time_to_live: i64,
        time_to_idle: i64,
    ) -> Result<SessionInfo, SessionError> {
        self.check_user_timeouts(time_to_live, time_to_idle)?;
        new.time_to_live = Some(time_to_live);
        new.time_to_idle = Some(time_to_idle);
        self.create(new)
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

    /// Joins a live session: refreshes it and adds one reference.
    pub fn join(&self, uuid: &str) -> Result<SessionInfo, SessionError> {
        self.with_live(uuid, true, |e| {
            e.info.refcount = e.info.refcount.saturating_add(1);
            e.info.clone()
        })
    }

    /// getReferenceCount: a refreshing lookup returning the count.
    pub fn reference_count(&self, uuid: &str) -> Result<i64, SessionError> {
        self.with_live(uuid, true, |e| e.info.refcount)
    }

    /// ISession.closeSession: -1 when unknown or expired, -2 when this call destroyed the
    /// session, else the remaining reference count.
    pub fn close_session(&self, uuid: &str) -> i64 {
        let Some(entry) = self.entry(uuid) else {
            return -1;
        };
        let now = self.clock.now_ms();
        let remaining = {
            let mut e = lock(&entry);
            if e.closed || expiry_message(&e.info, now).is_some() {
                return -1;
            }
            e.info.refcount = (e.info.refcount - 1).max(0);
            if e.info.refcount < 1 {
                e.kill();
            }
            e.info.refcount
        };
        if remaining < 1 {
            self.unlink(uuid, &entry, CloseReason::Closed);
            -2
        } else {
            remaining
        }
    }

    /// A ServiceFactory of this session was destroyed (§2.3).
    pub fn release(&self, uuid: &str, mode: DestroyMode) -> ReleaseOutcome {
        let Some(entry) = self.entry(uuid) else {
            return ReleaseOutcome::AlreadyGone;
        };
        let now = self.clock.now_ms();
        let (outcome, reason) = {
            let mut e = lock(&entry);
            if e.closed {
                return ReleaseOutcome::AlreadyGone;
            }
            e.info.refcount = (e.info.refcount - 1).max(0);
            let expired = expiry_message(&e.info, now).is_some();
            if expired || (mode == DestroyMode::Close && e.info.refcount < 1) {
                e.kill();
                let reason = if expired {
                    CloseReason::Timeout
                } else {
                    CloseReason::Closed
                };
                (ReleaseOutcome::Destroyed, reason)
            } else {
                let remaining = e.info.refcount;
                return ReleaseOutcome::Detached { remaining };
            }
        };
        self.unlink(uuid, &entry, reason);
        outcome
    }

    /// getInput/getOutput: the value or `None`; does not refresh the target.
    pub fn get_env(&self, uuid: &str, env: Env, key: &str) -> Result<Option<V>, SessionError> {
        self.with_live(uuid, false, |e| {
            e.env(env).values.get(key).map(|(v, _)| v.clone())
        })
    }

    /// setInput/setOutput: `None` removes the key; does not refresh the target. `size` is the
    /// value's size in bytes as the caller measures it; the map's caps are checked with it.
    pub fn set_env(
        &self,
        uuid: &str,
        env: Env,
        key: &str,
        value: Option<V>,
        size: usize,
    ) -> Result<(), SessionError> {
        let config = self.config;
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
            let mut keys: Vec<String> = e.env(env).values.keys().cloned().collect();
            keys.sort();
            keys
        })
    }

    /// getInputs/getOutputs: a copy; refreshes the target.
    pub fn env_copy(&self, uuid: &str, env: Env) -> Result<HashMap<String, V>, SessionError> {
        self.with_live(uuid, true, |e| {
            e.env(env)
                .values
                .iter()
                .map(|(k, (v, _))| (k.clone(), v.clone()))
                .collect()
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
    pub fn switch_group(
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
            Ok(std::mem::replace(&mut e.info.group_id, group_id))
        })?
    }

    /// UpdateSessionTimeoutRequest (§3.5). Non-admins get values above the maxima clamped and
    /// may not disable a dimension (value ≤ 0).
    pub fn update_timeouts(
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

    /// Destroys every expired session (reason Timeout) and returns their uuids.
    pub fn reap_expired(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        let mut reaped = Vec::new();
        for entry in self.all_entries() {
            let uuid = {
                let mut e = lock(&entry);
                if e.closed || expiry_message(&e.info, now).is_none() {
                    continue;
                }
                e.kill();
                e.info.uuid.clone()
            };
            self.unlink(&uuid, &entry, CloseReason::Timeout);
            reaped.push(uuid);
        }
        reaped
    }

    /// Destroys every session (server shutdown); returns how many.
    pub fn close_all(&self) -> usize {
        let mut count = 0;
        for entry in self.all_entries() {
            let uuid = {
                let mut e = lock(&entry);
                if e.closed {
                    continue;
                }
                e.kill();
                e.info.uuid.clone()
            };
            self.unlink(&uuid, &entry, CloseReason::Shutdown);
            count += 1;
        }
        count
    }

    /// A stored row by uuid, also for recently closed sessions (join-refusal messages).
    pub fn find_row(&self, uuid: &str) -> Option<SessionRow> {
        self.store.find(uuid)
    }

    /// Runs [`Self::reap_expired`] every `interval` until the manager is dropped.
    pub fn spawn_reaper(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                let reaped = manager.reap_expired();
                if !reaped.is_empty() {
                    tracing::info!(count = reaped.len(), "reaped expired sessions");
                }
            }
        })
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

    // Removes a killed entry from the map, then records and announces its death.
    fn unlink(&self, uuid: &str, entry: &Shared<V>, reason: CloseReason) {
        let removed = {
            let mut map = self.write_map();
            let same = map.get(uuid).is_some_and(|e| Arc::ptr_eq(e, entry));
            if same {
                map.remove(uuid);
            }
            same
        };
        if removed {
            let owner = lock(entry).info.owner_id;
            self.free_slot(owner);
        }
        if let Err(e) = self.store.close(uuid, self.clock.now_ms()) {
            tracing::error!(session = %super::short(uuid), error = %e, "cannot record session close");
        }
        tracing::info!(session = %super::short(uuid), ?reason, "session destroyed");
        // No subscriber is not an error: nothing needs cleaning then.
        let _ = self.events.send(SessionEvent::Closed {
            uuid: uuid.to_string(),
            reason,
        });
    }

    fn entry(&self, uuid: &str) -> Option<Shared<V>> {
        self.read_map().get(uuid).cloned()
    }

    fn all_entries(&self) -> Vec<Shared<V>> {
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

fn touch(info: &mut SessionInfo, now: i64) {
    info.last_access = now;
    info.hits = info.hits.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::clock::ManualClock;
    use crate::sessions::rowlog::MemoryRowLog;

    const T0: i64 = 1_700_000_000_000;

    fn setup() -> (Arc<SessionManager<String>>, ManualClock, Arc<MemoryRowLog>) {
        setup_with(SessionConfig::default())
    }

    fn setup_with(
        config: SessionConfig,
    ) -> (Arc<SessionManager<String>>, ManualClock, Arc<MemoryRowLog>) {
        let clock = ManualClock::new(T0);
        let store = Arc::new(MemoryRowLog::default());
        let m = SessionManager::new(config, Arc::new(clock.clone()), store.clone());
        (Arc::new(m), clock, store)
    }

    fn new_session(m: &SessionManager<String>) -> SessionInfo {
        m.create(NewSession::new(5, 3)).unwrap()
    }

    #[test]
    fn create_sets_defaults_and_unique_ids() {
        let (m, _, store) = setup();
        let a = new_session(&m);
        let b = new_session(&m);
        assert_eq!((a.id, b.id), (1, 2));
        assert_ne!(a.uuid, b.uuid);
        assert_eq!(a.refcount, 1);
        assert_eq!(a.hits, 1);
        assert_eq!((a.time_to_idle, a.time_to_live), (600_000, 0));
        assert_eq!((a.started, a.last_access), (T0, T0));
        assert!(store.find(&a.uuid).unwrap().closed.is_none());
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn explicit_timeouts_are_stored_verbatim() {
        let (m, _, _) = setup();
        let mut n = NewSession::new(5, 3);
        n.time_to_live = Some(-4);
        n.time_to_idle = Some(0);
        let s = m.create(n).unwrap();
        assert_eq!((s.time_to_live, s.time_to_idle), (-4, 0));
    }

    #[test]
    fn unknown_uuid_is_removed_with_omero_message() {
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

    #[test]
    fn idle_expiry_is_strict_and_message_exact() {
        let (m, clock, _) = setup();
        let s = new_session(&m);
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

    #[test]
    fn ttl_is_checked_before_tti() {
        let (m, clock, _) = setup();
        let mut n = NewSession::new(5, 3);
        n.time_to_live = Some(1000);
        n.time_to_idle = Some(500);
        let s = m.create(n).unwrap();
        clock.advance(1001);
        let SessionError::Timeout(msg) = m.lookup(&s.uuid, true).unwrap_err() else {
            panic!("expected timeout");
        };
        assert!(msg.ends_with("exceeded timeToLive (1000) by 1 ms"), "{msg}");
    }

    #[test]
    fn zero_and_negative_timeouts_never_expire() {
        let (m, clock, _) = setup();
        for (ttl, tti) in [(0, 0), (-1, -1)] {
            let mut n = NewSession::new(5, 3);
            n.time_to_live = Some(ttl);
            n.time_to_idle = Some(tti);
            let s = m.create(n).unwrap();
            clock.advance(10_000_000_000);
            assert!(m.lookup(&s.uuid, false).is_ok());
        }
    }

    #[test]
    fn non_quiet_lookup_refreshes_quiet_does_not() {
        let (m, clock, _) = setup();
        let s = new_session(&m);
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

    #[test]
    fn join_and_reference_count() {
        let (m, _, _) = setup();
        let s = new_session(&m);
        assert_eq!(m.join(&s.uuid).unwrap().refcount, 2);
        assert_eq!(m.reference_count(&s.uuid).unwrap(), 2);
        assert!(m.join("missing").is_err());
    }

    #[test]
    fn join_of_expired_session_fails_with_timeout() {
        let (m, clock, _) = setup();
        let s = new_session(&m);
        clock.advance(600_001);
        assert!(matches!(m.join(&s.uuid), Err(SessionError::Timeout(_))));
    }

    #[test]
    fn close_session_counts_down_then_destroys() {
        let (m, _, store) = setup();
        let mut events = m.subscribe();
        let s = new_session(&m);
        m.join(&s.uuid).unwrap();
        assert_eq!(m.close_session(&s.uuid), 1);
        assert_eq!(m.close_session(&s.uuid), -2);
        assert_eq!(m.close_session(&s.uuid), -1);
        assert!(matches!(
            m.lookup(&s.uuid, true),
            Err(SessionError::Removed(_))
        ));
        assert!(store.find(&s.uuid).unwrap().closed.is_some());
        assert_eq!(
            events.try_recv().unwrap(),
            SessionEvent::Closed {
                uuid: s.uuid.clone(),
                reason: CloseReason::Closed
            }
        );
    }

    #[test]
    fn close_session_on_expired_returns_minus_one_and_leaves_it() {
        let (m, clock, _) = setup();
        let s = new_session(&m);
        clock.advance(600_001);
        assert_eq!(m.close_session(&s.uuid), -1);
        assert_eq!(m.len(), 1);
        assert_eq!(m.close_session("unknown"), -1);
    }

    #[test]
    fn release_close_mode_destroys_at_zero() {
        let (m, _, _) = setup();
        let s = new_session(&m);
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Close),
            ReleaseOutcome::Destroyed
        );
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Close),
            ReleaseOutcome::AlreadyGone
        );
    }

    #[test]
    fn release_detach_keeps_session_at_zero() {
        let (m, _, _) = setup();
        let s = new_session(&m);
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Detach),
            ReleaseOutcome::Detached { remaining: 0 }
        );
        // Floor at 0, and the session lives until closed or expired.
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Detach),
            ReleaseOutcome::Detached { remaining: 0 }
        );
        assert_eq!(m.reference_count(&s.uuid).unwrap(), 0);
        assert_eq!(m.close_session(&s.uuid), -2);
    }

    #[test]
    fn release_with_other_references_detaches_even_in_close_mode() {
        let (m, _, _) = setup();
        let s = new_session(&m);
        m.join(&s.uuid).unwrap();
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Close),
            ReleaseOutcome::Detached { remaining: 1 }
        );
    }

    #[test]
    fn release_of_expired_session_forces_close() {
        let (m, clock, _) = setup();
        let mut events = m.subscribe();
        let s = new_session(&m);
        m.join(&s.uuid).unwrap();
        clock.advance(600_001);
        assert_eq!(
            m.release(&s.uuid, DestroyMode::Detach),
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

    #[test]
    fn test1018_creation_destruction_closing() {
        // A logs in and detaches; B joins (close mode) and leaves; A leaves; C joins and kills.
        let (m, _, _) = setup();
        let a = new_session(&m);
        m.join(&a.uuid).unwrap();
        assert_eq!(
            m.release(&a.uuid, DestroyMode::Close),
            ReleaseOutcome::Detached { remaining: 1 }
        );
        assert_eq!(
            m.release(&a.uuid, DestroyMode::Detach),
            ReleaseOutcome::Detached { remaining: 0 }
        );
        m.join(&a.uuid).unwrap();
        let mut last = m.close_session(&a.uuid);
        while last > 0 {
            last = m.close_session(&a.uuid);
        }
        assert_eq!(last, -2);
        assert!(m.join(&a.uuid).is_err());
    }

    #[test]
    fn environment_maps() {
        let (m, clock, _) = setup();
        let s = new_session(&m);
        clock.advance(100);
        m.set_env(&s.uuid, Env::Input, "a", Some("1".into()), 1)
            .unwrap();
        m.set_env(&s.uuid, Env::Input, "b", Some("2".into()), 1)
            .unwrap();
        m.set_env(&s.uuid, Env::Output, "x", Some("9".into()), 1)
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
        m.set_env(&s.uuid, Env::Input, "a", None, 0).unwrap();
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
            m.set_env(&s.uuid, Env::Output, "k", None, 0),
            Err(SessionError::Timeout(_))
        ));
    }

    #[test]
    fn environment_dies_with_session() {
        let (m, _, _) = setup();
        let s = new_session(&m);
        m.set_env(&s.uuid, Env::Input, "a", Some("1".into()), 1)
            .unwrap();
        assert_eq!(m.close_session(&s.uuid), -2);
        assert!(m.get_env(&s.uuid, Env::Input, "a").is_err());
    }

    #[test]
    fn open_sessions_filters_sorts_and_refreshes() {
        let (m, clock, _) = setup();
        let mut web = NewSession::new(5, 3);
        web.agent = Some("OMERO.web".into());
        let first = m.create(web).unwrap();
        clock.advance(10);
        let mut py = NewSession::new(5, 3);
        py.agent = Some("OMERO.py".into());
        let second = m.create(py).unwrap();
        clock.advance(10);
        let mut sudo = NewSession::new(5, 3);
        sudo.sudoer_id = Some(0);
        let third = m.create(sudo).unwrap();
        m.create(NewSession::new(6, 3)).unwrap();
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

    #[test]
    fn open_sessions_skips_expired() {
        let (m, clock, _) = setup();
        let s = new_session(&m);
        clock.advance(600_001);
        assert!(m
            .open_sessions(5, SudoerFilter::Any, &AgentFilter::Any)
            .is_empty());
        assert!(m.lookup(&s.uuid, true).is_err());
    }

    #[test]
    fn reaper_destroys_only_expired() {
        let (m, clock, store) = setup();
        let mut events = m.subscribe();
        let old = new_session(&m);
        clock.advance(300_000);
        let young = new_session(&m);
        clock.advance(300_001);
        assert_eq!(m.reap_expired(), vec![old.uuid.clone()]);
        assert!(matches!(
            m.lookup(&old.uuid, true),
            Err(SessionError::Removed(_))
        ));
        assert!(m.lookup(&young.uuid, true).is_ok());
        assert!(store.find(&old.uuid).unwrap().closed.is_some());
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
        let s = new_session(&m);
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

    #[test]
    fn close_all_on_shutdown() {
        let (m, _, _) = setup();
        new_session(&m);
        new_session(&m);
        assert_eq!(m.close_all(), 2);
        assert!(m.is_empty());
    }

    #[test]
    fn user_session_rules_with_defaults_accept_anything() {
        let (m, _, _) = setup();
        for (ttl, tti) in [(0, 0), (-5, -5), (i64::MAX, i64::MAX)] {
            let s = m
                .create_user_session(NewSession::new(5, 3), ttl, tti)
                .unwrap();
            assert_eq!((s.time_to_live, s.time_to_idle), (ttl, tti));
            assert_eq!(s.refcount, 1);
        }
    }

    #[test]
    fn user_session_rules_with_ttl_maximum() {
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

    #[test]
    fn tti_maximum_alone_is_not_enforced() {
        // OMERO gates the timeToIdle check on the timeToLive maximum.
        let config = SessionConfig {
            max_user_time_to_idle: 10,
            ..SessionConfig::default()
        };
        let (m, _, _) = setup_with(config);
        assert_eq!(m.check_user_timeouts(0, 1_000_000), Ok(()));
    }

    #[test]
    fn group_switching() {
        let (m, _, _) = setup();
        let s = new_session(&m);
        assert_eq!(
            m.switch_group(&s.uuid, 9, false),
            Err(SessionError::SecurityViolation(
                "User 5 is not a member of group 9".into()
            ))
        );
        assert_eq!(m.switch_group(&s.uuid, 9, true), Ok(3));
        assert_eq!(m.lookup(&s.uuid, true).unwrap().group_id, 9);

        let mut n = NewSession::new(5, 3);
        n.group_sudo = true;
        let g = m.create(n).unwrap();
        assert_eq!(
            m.switch_group(&g.uuid, 9, true),
            Err(SessionError::SecurityViolation(
                "Group-sudo session cannot change context!".into()
            ))
        );
    }

    #[test]
    fn update_timeouts_rules() {
        let (m, _, store) = setup();
        let s = new_session(&m);
        assert_eq!(
            m.update_timeouts("x", Some(1), None, false).unwrap_err(),
            TimeoutUpdateError::NoSession
        );
        assert_eq!(
            m.update_timeouts(&s.uuid, None, None, false)
                .unwrap_err()
                .name(),
            "no-update-performed"
        );
        assert_eq!(
            m.update_timeouts(&s.uuid, None, Some(0), false)
                .unwrap_err(),
            TimeoutUpdateError::NonAdminDisabling {
                field: "timeToIdle",
                target: 0,
                current: 600_000
            }
        );
        let u = m
            .update_timeouts(&s.uuid, Some(5_000), Some(99_000_000), false)
            .unwrap();
        assert_eq!((u.time_to_live, u.time_to_idle), (5_000, 6_000_000));
        let row = store.find(&s.uuid).unwrap();
        assert_eq!((row.time_to_live, row.time_to_idle), (5_000, 6_000_000));
        let a = m.update_timeouts(&s.uuid, Some(0), Some(0), true).unwrap();
        assert_eq!((a.time_to_live, a.time_to_idle), (0, 0));
    }

    #[test]
    fn event_types_and_sudo_check() {
        assert_eq!(normalize_event_type("").unwrap(), "User");
        assert_eq!(normalize_event_type("Import").unwrap(), "Import");
        assert_eq!(
            normalize_event_type("Bogus"),
            Err(SessionError::Authentication(
                "Error creating session.".into()
            ))
        );
    }

    #[test]
    fn concurrent_joins_and_closes_keep_count_consistent() {
        let (m, _, _) = setup();
        let s = new_session(&m);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                let uuid = s.uuid.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        m.join(&uuid).unwrap();
                        assert!(m.close_session(&uuid) >= 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.reference_count(&s.uuid).unwrap(), 1);
    }

    #[test]
    fn environment_caps_refuse_with_api_usage() {
        let (m, _, _) = setup_with(SessionConfig {
            max_env_keys: 2,
            max_env_bytes: 100,
            ..SessionConfig::default()
        });
        let s = m.create(NewSession::new(1, 1)).unwrap();
        m.set_env(&s.uuid, Env::Input, "a", Some("1".into()), 10)
            .unwrap();
        m.set_env(&s.uuid, Env::Input, "b", Some("2".into()), 10)
            .unwrap();
        let third = m.set_env(&s.uuid, Env::Input, "c", Some("3".into()), 1);
        assert!(matches!(third, Err(SessionError::ApiUsage(m)) if m.contains("2 keys")));
        // Replacing a key adds none; the other map has its own budget.
        m.set_env(&s.uuid, Env::Input, "a", Some("9".into()), 50)
            .unwrap();
        m.set_env(&s.uuid, Env::Output, "c", Some("3".into()), 1)
            .unwrap();
        let big = m.set_env(&s.uuid, Env::Input, "b", Some("2".into()), 60);
        assert!(matches!(big, Err(SessionError::ApiUsage(m)) if m.contains("100 bytes")));
        assert_eq!(
            m.get_env(&s.uuid, Env::Input, "b").unwrap().as_deref(),
            Some("2")
        );
        // Removing frees room.
        m.set_env(&s.uuid, Env::Input, "a", None, 0).unwrap();
        m.set_env(&s.uuid, Env::Input, "b", Some("2".into()), 60)
            .unwrap();
        m.set_env(&s.uuid, Env::Input, "c", Some("3".into()), 30)
            .unwrap();
    }

    #[test]
    fn sessions_per_user_are_capped_and_freed_on_close() {
        let (m, _, _) = setup_with(SessionConfig {
            max_sessions_per_user: 2,
            ..SessionConfig::default()
        });
        let a = m.create(NewSession::new(7, 1)).unwrap();
        m.create(NewSession::new(7, 1)).unwrap();
        assert!(matches!(
            m.create(NewSession::new(7, 1)),
            Err(SessionError::ApiUsage(_))
        ));
        // Another user is not affected.
        m.create(NewSession::new(8, 1)).unwrap();
        assert_eq!(m.close_session(&a.uuid), -2);
        m.create(NewSession::new(7, 1)).unwrap();
    }
}

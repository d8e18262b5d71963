//! The session layer's vocabulary: settings, what a new session asks for, a session's state as
//! callers see it, and the outcomes and events of closing one.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::clock::java_timestamp;
use super::error::SessionError;

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

/// The session layer's settings. The `[sessions]` section of the config file deserializes
/// straight into them (times in milliseconds, as the key names say); keys left out keep the
/// `Default`, unknown ones are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// `omero.sessions.timeout`.
    #[serde(rename = "time_to_idle_ms")]
    pub default_time_to_idle: i64,
    /// `omero.sessions.maximum` (0 = never).
    #[serde(rename = "time_to_live_ms")]
    pub default_time_to_live: i64,
    #[serde(rename = "max_user_time_to_idle_ms")]
    pub max_user_time_to_idle: i64,
    /// 0 = no cap.
    #[serde(rename = "max_user_time_to_live_ms")]
    pub max_user_time_to_live: i64,
    /// Keys one environment map (input or output) of one session may hold.
    pub max_env_keys: usize,
    /// Bytes (keys plus encoded values) one environment map of one session may hold.
    pub max_env_bytes: usize,
    /// Sessions one user may have in the cache at once (expired ones count until reaped).
    pub max_sessions_per_user: usize,
    /// Longest `keepAliveDuration` the HTTPS endpoint accepts, in milliseconds.
    pub max_keep_alive_ms: i64,
    /// How often [`crate::sessions::SessionManager::spawn_tasks`] reaps expired sessions; at least
    /// [`MIN_REAP_INTERVAL`].
    #[serde(rename = "reaper_interval_ms", deserialize_with = "reap_interval")]
    pub reaper_interval: Duration,
}

/// A shorter period would keep the reaper busy for nothing.
pub const MIN_REAP_INTERVAL: Duration = Duration::from_millis(10);

fn reap_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(|ms| Duration::from_millis(ms).max(MIN_REAP_INTERVAL))
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
            reaper_interval: DEFAULT_REAP_INTERVAL,
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
    pub event_type: &'static str,
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
            event_type: "User",
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
    pub event_type: &'static str,
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

    pub(crate) fn matches(&self, agent: Option<&str>) -> bool {
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
///
/// The answer is one of OMERO's fixed names, so a session holds no string of its own for it.
pub fn normalize_event_type(value: &str) -> Result<&'static str, SessionError> {
    if value.is_empty() {
        return Ok("User");
    }
    EVENT_TYPES
        .iter()
        .find(|known| **known == value)
        .copied()
        .ok_or_else(|| SessionError::Authentication("Error creating session.".to_string()))
}

/// The event type of a stored row, validated when it was created; a row that names no known
/// type (written by hand, say) is read as "User".
pub(crate) fn stored_event_type(value: &str) -> &'static str {
    normalize_event_type(value).unwrap_or_else(|_| {
        tracing::warn!(
            event_type = value,
            "stored session has an unknown event type; read as User"
        );
        "User"
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SessionConfig {
        match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    #[test]
    fn missing_sessions_keys_keep_the_defaults() {
        assert_eq!(parse(""), SessionConfig::default());
        let c = parse("max_env_keys = 3\n");
        assert_eq!(c.max_env_keys, 3);
        assert_eq!(c.default_time_to_idle, DEFAULT_TIME_TO_IDLE);
        assert_eq!(c.max_env_bytes, DEFAULT_MAX_ENV_BYTES);
        assert_eq!(c.reaper_interval, DEFAULT_REAP_INTERVAL);
    }

    #[test]
    fn sessions_keys_mean_what_the_file_says() {
        let c = parse(
            "time_to_idle_ms = 2000\ntime_to_live_ms = 0\nmax_user_time_to_idle_ms = 9000\n\
             max_user_time_to_live_ms = 7\nreaper_interval_ms = 200\nmax_env_keys = 3\n\
             max_env_bytes = 4000\nmax_sessions_per_user = 2\nmax_keep_alive_ms = 1000\n",
        );
        assert_eq!(
            c,
            SessionConfig {
                default_time_to_idle: 2000,
                default_time_to_live: 0,
                max_user_time_to_idle: 9000,
                max_user_time_to_live: 7,
                max_env_keys: 3,
                max_env_bytes: 4000,
                max_sessions_per_user: 2,
                max_keep_alive_ms: 1000,
                reaper_interval: Duration::from_millis(200),
            }
        );
        assert_eq!(
            parse("reaper_interval_ms = 0").reaper_interval,
            MIN_REAP_INTERVAL
        );
    }

    #[test]
    fn unknown_and_mistyped_sessions_keys_are_refused() {
        for text in [
            "bogus = 1",
            "default_time_to_idle = 1",
            "reaper_interval = 1",
            "time_to_idle_ms = \"1\"",
            "reaper_interval_ms = -1",
            "max_env_keys = -1",
            "max_keep_alive_ms = 1.5",
        ] {
            assert!(toml::from_str::<SessionConfig>(text).is_err(), "{text}");
        }
    }
}

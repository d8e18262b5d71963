//! OMERO sessions without Ice: the in-memory cache that decides liveness, reference counts,
//! idle/live expiry, the reaper, the input/output environments, and the durable store behind
//! it (SQLite in the data directory, or any [`SessionStore`]).
//!
//! Rules follow `shared/spec/omero-sessions.md` §0–§3 and §8. Time is milliseconds since the
//! epoch from a [`Clock`], so tests drive expiry with a [`ManualClock`].

pub mod clock;
pub mod env;
pub mod error;
pub mod manager;
pub mod rowlog;
pub mod sqlite_store;
pub mod store;
pub mod store_contract;
mod tasks;
pub mod types;

pub use clock::{java_timestamp, Clock, ManualClock, SystemClock};
pub use env::EnvValue;
pub use error::SessionError;
pub use manager::{
    expiry_message, normalize_event_type, AgentFilter, CloseReason, DestroyMode, Env, NewSession,
    ReleaseOutcome, SessionConfig, SessionEvent, SessionInfo, SessionManager, SudoerFilter,
    TimeoutUpdateError,
};
pub use rowlog::JsonlSessionStore;
pub use sqlite_store::SqliteSessionStore;
pub use store::{
    ClosedFeed, EncodedEnv, MemorySessionStore, OpenRow, SessionRow, SessionStore, StoredSession,
};

/// The first eight characters of a session uuid, for logs at INFO and above: enough to tell
/// sessions apart, useless as the bearer token the whole uuid is.
pub fn short(uuid: &str) -> &str {
    match uuid.char_indices().nth(8) {
        Some((i, _)) => &uuid[..i],
        None => uuid,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn short_uuids() {
        assert_eq!(super::short("0123456789abcdef"), "01234567");
        assert_eq!(super::short("abc"), "abc");
        assert_eq!(super::short("ééééééééé"), "éééééééé");
    }
}

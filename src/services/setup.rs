//! Opening the services over a data directory, with the `[sessions]` and `[auth]` settings.

use std::path::Path;
use std::sync::Arc;

use crate::auth::{
    AuthConfig, Authenticator, Directory, DirectoryError, PasswordChecker, Throttle,
};
use crate::sessions::{
    Clock, SessionConfig, SessionManager, SessionStore, SqliteSessionStore, SystemClock,
};
use crate::store::directory::is_postgres_url;
use crate::store::postgres::sessions::PgSessionStore;
use crate::store::postgres::{PgDatabase, PgSettings};
use crate::store::{write_atomic, StoreError};

use super::config::ConfigValues;
use super::context::Services;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the user directory (giving root a first password if it has none) and the session
/// store in `data`, with the default `[auth]` settings. Blocking: call before serving.
pub fn open_services(data: &Path, config: &SessionConfig) -> Result<Services, SetupError> {
    open_services_with(data, config, &AuthConfig::default())
}

/// [`open_services`] with `[auth]` settings (password check admission, throttle allowances).
pub fn open_services_with(
    data: &Path,
    config: &SessionConfig,
    auth_config: &AuthConfig,
) -> Result<Services, SetupError> {
    open_services_on(data, None, config, auth_config)
}

/// [`open_services_with`] on the `database` setting (`None`: embedded in `data`).
pub fn open_services_on(
    data: &Path,
    database: Option<&str>,
    config: &SessionConfig,
    auth_config: &AuthConfig,
) -> Result<Services, SetupError> {
    let directory = Directory::open_database(data, database)?;
    if let Some(path) = directory.ensure_root_password()? {
        tracing::warn!(file = %path.display(), "root had no password; generated one");
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let throttle = Throttle::new(auth_config.throttle(), clock.clone());
    let checker = PasswordChecker::new(auth_config.checker());
    let auth = Authenticator::with_checker(directory, Arc::new(throttle), Arc::new(checker));
    let store = open_session_store(data, database, clock.now_ms())?;
    let sessions = SessionManager::new(*config, clock, store);
    let mut services = Services::new(auth, Arc::new(sessions));
    let uuid = database_uuid(data)?;
    services.config = Arc::new(ConfigValues::new(services.sessions.config(), &uuid));
    Ok(services)
}

/// The session store the `database` setting names (the directory checked the scheme).
/// PostgreSQL's store lives on the caller's tokio runtime: call from `spawn_blocking`.
fn open_session_store(
    data: &Path,
    database: Option<&str>,
    now_ms: i64,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    match database.map(str::trim).filter(|d| !d.is_empty()) {
        Some(url) if is_postgres_url(url) => {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                StoreError::Unavailable("PostgreSQL sessions need a tokio runtime".to_string())
            })?;
            let db = PgDatabase::new(PgSettings::new(url))?;
            Ok(Arc::new(runtime.block_on(PgSessionStore::open(db))?))
        }
        _ => Ok(Arc::new(SqliteSessionStore::open(data, now_ms)?)),
    }
}

/// The name of this data directory (IConfig.getDatabaseUuid, `omero.db.uuid`): made once,
/// then read back, so clients that key caches by it see the same server after a restart.
fn database_uuid(data: &Path) -> Result<String, StoreError> {
    let path = data.join(DATABASE_UUID_FILE);
    let io = |source| StoreError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            match uuid::Uuid::parse_str(text) {
                Ok(u) => Ok(u.to_string()),
                Err(e) => Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a uuid: {e}"),
                ))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let made = uuid::Uuid::new_v4().to_string();
            write_atomic(&path, made.as_bytes())?;
            Ok(made)
        }
        Err(e) => Err(io(e)),
    }
}

const DATABASE_UUID_FILE: &str = "database-uuid";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_uuid_survives_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let first = database_uuid(tmp.path()).unwrap();
        assert_eq!(database_uuid(tmp.path()).unwrap(), first);
        std::fs::write(tmp.path().join(DATABASE_UUID_FILE), "garbage").unwrap();
        assert!(database_uuid(tmp.path()).is_err());
    }
}

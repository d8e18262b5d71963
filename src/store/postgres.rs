//! PostgreSQL: one database shared by several omero-sessiond nodes.
//!
//! Why this shape:
//! - `tokio-postgres` with a `deadpool-postgres` pool: async like the rest of the server, well
//!   kept, and plain SQL we can read. Connections are checked before use (deadpool's
//!   "verified" recycling), so the first call after the database came back does not trip over a
//!   connection that died while it was away.
//! - Failing fast matters more than waiting: a login must not hang because the database is
//!   gone. Connecting, waiting for a pooled connection and every statement have short limits
//!   ([`PgSettings`]); an expired limit is [`PgError::Unavailable`] with the reason, which the
//!   session layer turns into `CannotCreateSessionException` (HTTP 503 on the HTTPS endpoint).
//! - The server creates and migrates its own tables (`schema_versions`, one row per component)
//!   under an advisory lock, so nodes starting together do not race; a database migrated by a
//!   newer program is refused by name rather than used.
//! - Nodes learn what others did through LISTEN/NOTIFY ([`listen`]): a notification is only a
//!   wake-up, the data is always read back from the tables, so a notification lost while a
//!   listener reconnects costs nothing but a re-read.
//!
//! TLS to the database is not supported yet: use a local socket, loopback or a private network.

pub mod directory;
pub mod listen;
pub mod sessions;

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

/// Limits of one node's use of the database.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://USER@HOST:PORT/DB` (any libpq-style URL tokio-postgres accepts).
    pub url: String,
    /// Opening a TCP connection and logging in.
    pub connect_timeout: Duration,
    /// One statement, or one whole operation of the stores (their deadline).
    pub statement_timeout: Duration,
    /// Waiting for a connection of the pool when all are busy.
    pub pool_wait: Duration,
    /// Connections kept by the pool.
    pub pool_size: usize,
}

impl PgSettings {
    /// The defaults for `url`: a couple of seconds at most before a caller hears "unavailable".
    pub fn new(url: &str) -> Self {
        PgSettings {
            url: url.to_string(),
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(3),
            pool_wait: Duration::from_secs(2),
            pool_size: 16,
        }
    }
}

/// Failures talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse; the message never repeats a password it might hold.
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    Url { url: String, reason: String },
    /// No answer in time, or no connection: the caller should refuse and try again later.
    #[error("the database at {target} is unavailable: {reason}")]
    Unavailable { target: String, reason: String },
    /// The database answered with an error.
    #[error("database error at {target} during {what}: {source}")]
    Query {
        target: String,
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The tables were migrated by a newer omero-sessiond.
    #[error(
        "the database at {target} holds schema version {found} of {component}; this program \
         knows up to version {known}: upgrade omero-sessiond"
    )]
    SchemaTooNew {
        target: String,
        component: String,
        found: i64,
        known: i64,
    },
    /// Data in the tables this program cannot read.
    #[error("the database at {target} holds bad data: {reason}")]
    Data { target: String, reason: String },
}

impl PgError {
    /// Whether the database could not be reached (as opposed to refusing a statement).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PgError::Unavailable { .. })
    }
}

/// A pool of connections to one database plus what is needed to open more (the listener).
#[derive(Clone)]
pub struct PgDatabase {
    pool: Pool,
    config: tokio_postgres::Config,
    settings: PgSettings,
    target: String,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase")
            .field("target", &self.target)
            .finish()
    }
}

impl PgDatabase {
    /// Builds the pool; no connection is opened until the first use ([`Self::migrate`] is
    /// normally that first use).
    pub fn new(settings: PgSettings) -> Result<Self, PgError> {
        let target = redacted_target(&settings.url);
        let mut config: tokio_postgres::Config =
            settings
                .url
                .parse()
                .map_err(|e: tokio_postgres::Error| PgError::Url {
                    url: target.clone(),
                    reason: e.to_string(),
                })?;
        config.connect_timeout(settings.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("omero-sessiond");
        }
        // The server gives up too, so a statement we stopped waiting for holds no locks. A
        // statement_timeout of the URL's own options comes later and wins.
        let statement_ms = settings.statement_timeout.as_millis();
        let options = match config.get_options() {
            Some(given) => format!("-c statement_timeout={statement_ms} {given}"),
            None => format!("-c statement_timeout={statement_ms}"),
        };
        config.options(options);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.pool_wait))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .build()
            .map_err(|e| PgError::Url {
                url: target.clone(),
                reason: e.to_string(),
            })?;
        Ok(PgDatabase {
            pool,
            config,
            settings,
            target,
        })
    }

    /// Host, port and database, without user or password: safe for logs and client messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Runs `op` on a pooled connection within the statement deadline. `what` names the
    /// operation in errors and logs.
    pub async fn with_client<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, PgError>
    where
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let deadline = self.settings.statement_timeout + self.settings.pool_wait;
        let work = async {
            let client = self.pool.get().await.map_err(|e| self.unavailable(e))?;
            op(client).await.map_err(|e| self.query_error(what, e))
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(PgError::Unavailable {
                target: self.target.clone(),
                reason: format!("no answer within {} ms ({what})", deadline.as_millis()),
            }),
        }
    }

    fn unavailable(&self, e: deadpool_postgres::PoolError) -> PgError {
        use deadpool_postgres::PoolError;
        let reason = match e {
            PoolError::Timeout(_) => "timed out waiting for a connection".to_string(),
            PoolError::Backend(e) => describe(&e),
            other => other.to_string(),
        };
        PgError::Unavailable {
            target: self.target.clone(),
            reason,
        }
    }

    fn query_error(&self, what: &'static str, e: tokio_postgres::Error) -> PgError {
        // A connection lost mid-operation is an outage, not a refusal of the statement.
        if e.is_closed() || e.as_db_error().is_none() && source_is_io(&e) {
            return PgError::Unavailable {
                target: self.target.clone(),
                reason: describe(&e),
            };
        }
        if let Some(db) = e.as_db_error() {
            // query_canceled: our statement_timeout expired on the server.
            if db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED {
                return PgError::Unavailable {
                    target: self.target.clone(),
                    reason: format!("statement timed out ({what})"),
                };
            }
        }
        PgError::Query {
            target: self.target.clone(),
            what,
            source: e,
        }
    }

    /// Brings `component`'s tables to the last of `steps` (step `n` moves version `n` to
    /// `n + 1`), all in one transaction under an advisory lock shared by every component.
    pub async fn migrate(&self, component: &str, steps: &[&str]) -> Result<(), PgError> {
        let known = steps.len() as i64;
        let component_name = component.to_string();
        let steps: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        let found = self
            .with_client("schema migration", move |mut client| async move {
                let tx = client.transaction().await?;
                tx.batch_execute(
                    "SELECT pg_advisory_xact_lock(7370656564); \
                     CREATE TABLE IF NOT EXISTS schema_versions ( \
                         component TEXT PRIMARY KEY, version BIGINT NOT NULL)",
                )
                .await?;
                let row = tx
                    .query_opt(
                        "SELECT version FROM schema_versions WHERE component = $1",
                        &[&component_name],
                    )
                    .await?;
                let found: i64 = row.map(|r| r.get(0)).unwrap_or(0);
                if found > known {
                    return Ok(found);
                }
                for step in steps.iter().skip(found.max(0) as usize) {
                    tx.batch_execute(step).await?;
                }
                tx.execute(
                    "INSERT INTO schema_versions (component, version) VALUES ($1, $2) \
                     ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
                    &[&component_name, &known],
                )
                .await?;
                tx.commit().await?;
                Ok(found)
            })
            .await?;
        if found > known {
            return Err(PgError::SchemaTooNew {
                target: self.target.clone(),
                component: component.to_string(),
                found,
                known,
            });
        }
        if found < known {
            tracing::info!(target = %self.target, component, from = found, to = known, "database schema migrated");
        }
        Ok(())
    }
}

fn source_is_io(e: &tokio_postgres::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// An error with its cause, on one line ("error connecting to server: Connection refused").
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// `host:port/db` of a URL, dropping user and password. Unparsable input gives a placeholder
/// rather than echoing what may be a secret.
pub fn redacted_target(url: &str) -> String {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return "<not a postgres:// URL>".to_string();
    };
    let without_query = rest.split('?').next().unwrap_or(rest);
    let host_and_db = match without_query.rfind('@') {
        Some(at) => &without_query[at + 1..],
        None => without_query,
    };
    format!("postgres://{host_and_db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_never_show_credentials() {
        assert_eq!(
            redacted_target("postgres://alice:s3cret@db.example:5433/omero?sslmode=disable"),
            "postgres://db.example:5433/omero"
        );
        assert_eq!(
            redacted_target("postgresql://127.0.0.1/x"),
            "postgres://127.0.0.1/x"
        );
        assert_eq!(
            redacted_target("mysql://u:p@h/db"),
            "<not a postgres:// URL>"
        );
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = PgDatabase::new(PgSettings::new("postgres://u:pw@host:notaport/db"))
            .expect_err("bad port");
        let text = err.to_string();
        assert!(text.contains("invalid PostgreSQL URL"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }

    #[tokio::test]
    async fn an_unreachable_database_fails_fast_as_unavailable() {
        // A port nobody listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut settings = PgSettings::new(&format!("postgres://u@127.0.0.1:{port}/db"));
        settings.connect_timeout = Duration::from_millis(500);
        let db = PgDatabase::new(settings).unwrap();
        let err = db
            .with_client("probe", |client| async move {
                client.simple_query("SELECT 1").await.map(|_| ())
            })
            .await
            .expect_err("nothing listens");
        assert!(err.is_unavailable(), "{err}");
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }
}

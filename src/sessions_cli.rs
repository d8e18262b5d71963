//! `omero-sessiond sessions list|close`: operators' view of the sessions in the durable store
//! of a data directory, beside (or without) a running server. A close is a change to the
//! store like any other; a running server learns of it through the store's feed of closes
//! (`SessionStore::closed_since`) and refuses the session from then on.
//!
//! Only a uuid prefix is ever printed: the whole uuid is the session's bearer token.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::auth::cli::DataDir;
use crate::auth::Directory;
use crate::sessions::rowlog::SESSION_LOG_FILE;
use crate::sessions::{java_timestamp, short, OpenRow, SessionStore, SqliteSessionStore};
use crate::store::directory::is_postgres_url;
use crate::store::postgres::sessions::PgSessionStore;
use crate::store::postgres::{PgDatabase, PgSettings};

/// The shortest prefix `sessions close` accepts: what `sessions list` prints.
pub const MIN_PREFIX: usize = 8;

#[derive(Debug, Clone, Subcommand)]
pub enum SessionsCommand {
    /// List open sessions: uuid prefix, user, group, agent, address, started, last access,
    /// reference count.
    List {
        /// Only the sessions of this user.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Close an open session, given its uuid or a unique prefix of at least 8 characters.
    Close {
        uuid: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// Runs one command, printing to standard output.
pub fn run(cmd: SessionsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cmd {
            SessionsCommand::List { user, data } => {
                let store = open_any_store(&data).await?;
                let directory = Directory::open_database(&data.data, data.database.as_deref())?;
                let rows = list(store.as_ref(), &directory, user.as_deref()).await?;
                print!("{}", render(&rows));
                Ok(())
            }
            SessionsCommand::Close { uuid, data } => {
                let store = open_any_store(&data).await?;
                let closed = close(store.as_ref(), &uuid, now_ms()).await?;
                println!("closed session {}", short(&closed));
                Ok(())
            }
        }
    })
}

fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The session store `--database` names: PostgreSQL for a `postgres://` URL, else the data
/// directory's embedded database.
async fn open_any_store(data: &DataDir) -> anyhow::Result<Box<dyn SessionStore>> {
    match data
        .database
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        Some(url) if is_postgres_url(url) => {
            let db = PgDatabase::new(PgSettings::new(url))?;
            let store = PgSessionStore::open(db)
                .await
                .context("cannot open the session database")?;
            Ok(Box::new(store))
        }
        Some(_) => bail!("--database takes a postgres:// URL (or nothing for the embedded one)"),
        None => Ok(Box::new(open_store(&data.data)?)),
    }
}

/// The data directory's session database. A directory still holding the JSON-lines log of an
/// earlier version is refused: opening the database would import (and rename) that log
/// under a server that may still be writing it.
pub fn open_store(data: &Path) -> anyhow::Result<SqliteSessionStore> {
    if !data.is_dir() {
        bail!("no data directory at {}", data.display());
    }
    let log: PathBuf = data.join(SESSION_LOG_FILE);
    if log.exists() {
        bail!(
            "{} holds sessions in {SESSION_LOG_FILE}, which only a server of this version \
             moves into the session database: start it once first",
            data.display()
        );
    }
    SqliteSessionStore::open(data, now_ms()).context("cannot open the session database")
}

/// One line of `sessions list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSession {
    pub uuid_prefix: String,
    pub user: String,
    pub group: String,
    pub agent: String,
    pub address: String,
    pub started: i64,
    pub last_access: i64,
    pub refcount: i64,
}

/// Open sessions, oldest first, optionally only those of `user`.
pub async fn list(
    store: &dyn SessionStore,
    directory: &Directory,
    user: Option<&str>,
) -> anyhow::Result<Vec<ListedSession>> {
    let owner = match user {
        None => None,
        Some(name) => match directory.experimenter_by_name(name) {
            Some(u) => Some(u.id),
            None => bail!("no such user: {name}"),
        },
    };
    let rows = store.list_open().await?;
    Ok(rows
        .iter()
        .filter(|r| owner.is_none_or(|id| r.row.owner_id == id))
        .map(|r| listed(r, directory))
        .collect())
}

fn listed(r: &OpenRow, directory: &Directory) -> ListedSession {
    let user = directory
        .experimenter(r.row.owner_id)
        .map_or_else(|| format!("#{}", r.row.owner_id), |u| u.ome_name);
    let group = directory
        .group(r.row.group_id)
        .map_or_else(|| format!("#{}", r.row.group_id), |g| g.name);
    ListedSession {
        uuid_prefix: short(&r.row.uuid).to_string(),
        user,
        group,
        agent: r.row.agent.clone().unwrap_or_default(),
        address: r.row.ip.clone().unwrap_or_default(),
        started: r.row.started,
        last_access: r.last_access,
        refcount: r.refcount,
    }
}

/// The table `sessions list` prints: a header, then one tab-separated line per session.
pub fn render(rows: &[ListedSession]) -> String {
    let mut out = String::from("uuid\tuser\tgroup\tagent\taddress\tstarted\tlast access\trefs\n");
    for r in rows {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            r.uuid_prefix,
            r.user,
            r.group,
            dash(&r.agent),
            dash(&r.address),
            java_timestamp(r.started),
            java_timestamp(r.last_access),
            r.refcount
        ));
    }
    out
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Closes the one open session whose uuid starts with `prefix`; returns its uuid.
pub async fn close(store: &dyn SessionStore, prefix: &str, now_ms: i64) -> anyhow::Result<String> {
    if prefix.chars().count() < MIN_PREFIX {
        bail!("give at least {MIN_PREFIX} characters of the session uuid");
    }
    let open = store.list_open().await?;
    let mut matching = open.iter().filter(|r| r.row.uuid.starts_with(prefix));
    let Some(found) = matching.next() else {
        bail!("no open session starts with {}", short(prefix));
    };
    if matching.next().is_some() {
        bail!("more than one open session starts with {prefix}: give more of the uuid");
    }
    let uuid = found.row.uuid.clone();
    if !store.close(&uuid, now_ms).await? {
        bail!("session {} was closed meanwhile", short(&uuid));
    }
    tracing::info!(session = %short(&uuid), "session closed from the command line");
    Ok(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{NewExperimenter, Password};
    use crate::sessions::SessionRow;

    fn row(uuid: &str, owner_id: i64, group_id: i64) -> SessionRow {
        SessionRow {
            id: 0,
            uuid: uuid.into(),
            owner_id,
            group_id,
            started: 1_700_000_000_000,
            closed: None,
            time_to_idle: 600_000,
            time_to_live: 0,
            agent: Some("OMERO.py".into()),
            ip: Some("127.0.0.1".into()),
            event_type: "User".into(),
            sudoer_id: None,
            group_sudo: false,
        }
    }

    async fn fixture() -> (tempfile::TempDir, SqliteSessionStore, Directory, i64) {
        let tmp = tempfile::tempdir().unwrap();
        let directory = Directory::open(tmp.path()).unwrap();
        let alice = directory
            .add_experimenter(NewExperimenter {
                ome_name: "alice".into(),
                first_name: None,
                last_name: None,
                email: None,
                password: Password::new("pw"),
                admin: false,
                groups: Vec::new(),
                owner_of: Vec::new(),
            })
            .unwrap();
        let store = open_store(tmp.path()).unwrap();
        store
            .insert(row("aaaaaaaa-1111-uuid", alice.id, 1))
            .await
            .unwrap();
        store.insert(row("aaaaaaaa-2222-uuid", 0, 0)).await.unwrap();
        store.insert(row("bbbbbbbb-3333-uuid", 0, 0)).await.unwrap();
        (tmp, store, directory, alice.id)
    }

    #[tokio::test]
    async fn lists_open_sessions_with_names_and_only_prefixes() {
        let (_t, store, directory, _) = fixture().await;
        let all = list(&store, &directory, None).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[0],
            ListedSession {
                uuid_prefix: "aaaaaaaa".into(),
                user: "alice".into(),
                group: "user".into(),
                agent: "OMERO.py".into(),
                address: "127.0.0.1".into(),
                started: 1_700_000_000_000,
                last_access: 1_700_000_000_000,
                refcount: 1,
            }
        );
        let text = render(&all);
        assert!(!text.contains("1111"), "whole uuids never printed: {text}");
        assert!(text.contains("aaaaaaaa\talice\tuser\tOMERO.py\t127.0.0.1\t2023-11-14 22:13:20.0"));
        let roots = list(&store, &directory, Some("root")).await.unwrap();
        assert_eq!(roots.len(), 2);
        assert!(roots
            .iter()
            .all(|r| r.user == "root" && r.group == "system"));
        assert!(list(&store, &directory, Some("nobody")).await.is_err());
    }

    #[tokio::test]
    async fn close_needs_a_unique_prefix_and_feeds_the_closes() {
        let (_t, store, directory, _) = fixture().await;
        let cursor = store.close_cursor().await.unwrap();
        assert!(close(&store, "aaaa", 5).await.is_err(), "too short");
        assert!(close(&store, "aaaaaaaa", 5).await.is_err(), "ambiguous");
        assert!(close(&store, "cccccccc", 5).await.is_err(), "unknown");
        let closed = close(&store, "aaaaaaaa-1", 5).await.unwrap();
        assert_eq!(closed, "aaaaaaaa-1111-uuid");
        assert_eq!(list(&store, &directory, None).await.unwrap().len(), 2);
        // The running server's feed reports it.
        let feed = store.closed_since(cursor).await.unwrap();
        assert_eq!(feed.uuids, vec!["aaaaaaaa-1111-uuid".to_string()]);
        // Now unique.
        assert_eq!(
            close(&store, "aaaaaaaa", 6).await.unwrap(),
            "aaaaaaaa-2222-uuid"
        );
    }

    #[test]
    fn refuses_a_directory_with_the_old_session_log() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(SESSION_LOG_FILE), "").unwrap();
        let err = open_store(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(SESSION_LOG_FILE), "{err}");
        assert!(open_store(&tmp.path().join("missing")).is_err());
    }
}

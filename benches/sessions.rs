//! Session manager throughput on the SQLite store against the in-memory one (issue 9).
//!
//! `cargo bench --bench sessions` prints, for each store: creations per second with many
//! concurrent callers (group commit at work), and join latency p50/p99 one join at a time
//! (each waits for its own commit). The database lives in a temporary directory on the
//! same file system as the system's temp dir; set TMPDIR to measure another disk.
//! `sqlite` commits with fsync (the server's setting), `sqlite-n` without (process-crash
//! safe only), to show what the disk's fsync costs. With `OMERO_TEST_POSTGRES` set
//! (`interop/pg run cargo bench --bench sessions`) the PostgreSQL store is measured too.
//! Figures are printed, never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use omero_sessiond::sessions::{
    MemorySessionStore, NewSession, SessionConfig, SessionManager, SessionStore,
    SqliteSessionStore, SystemClock,
};
use omero_sessiond::store::postgres::sessions::PgSessionStore;
use omero_sessiond::store::postgres::{PgDatabase, PgSettings};
use omero_sessiond::store::sqlite::Durability;

const CREATES: usize = 20_000;
const CONCURRENCY: usize = 256;
const JOINS: usize = 2_000;

fn manager(store: Arc<dyn SessionStore>) -> Arc<SessionManager<String>> {
    let config = SessionConfig {
        max_sessions_per_user: usize::MAX,
        ..SessionConfig::default()
    };
    Arc::new(SessionManager::new(config, Arc::new(SystemClock), store))
}

async fn creations_per_second(m: &Arc<SessionManager<String>>) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let m = Arc::clone(m);
        tasks.push(tokio::spawn(async move {
            for _ in (worker..CREATES).step_by(CONCURRENCY) {
                if let Err(e) = m.create(NewSession::new(2, 3)).await {
                    panic!("create failed: {e}");
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            panic!("worker failed: {e}");
        }
    }
    CREATES as f64 / started.elapsed().as_secs_f64()
}

async fn join_latencies(m: &Arc<SessionManager<String>>) -> (Duration, Duration, f64) {
    let uuid = match m.create(NewSession::new(2, 3)).await {
        Ok(info) => info.uuid,
        Err(e) => panic!("create failed: {e}"),
    };
    let mut times = Vec::with_capacity(JOINS);
    let started = Instant::now();
    for _ in 0..JOINS {
        let t = Instant::now();
        if let Err(e) = m.join(&uuid).await {
            panic!("join failed: {e}");
        }
        times.push(t.elapsed());
    }
    let rate = JOINS as f64 / started.elapsed().as_secs_f64();
    times.sort();
    (times[JOINS / 2], times[JOINS * 99 / 100], rate)
}

async fn run(name: &str, store: Arc<dyn SessionStore>) {
    let m = manager(store);
    let creates = creations_per_second(&m).await;
    let (p50, p99, joins) = join_latencies(&m).await;
    println!(
        "{name:<8} creates/s {creates:>9.0} (concurrency {CONCURRENCY})   joins/s {joins:>8.0}   \
         join p50 {:>8.3} ms   p99 {:>8.3} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => panic!("no runtime: {e}"),
    };
    runtime.block_on(async {
        run("memory", Arc::new(MemorySessionStore::default())).await;
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("no temp dir: {e}"),
        };
        for (name, durability) in [
            ("sqlite", Durability::Full),
            ("sqlite-n", Durability::Normal),
        ] {
            let sub = dir.path().join(name);
            if let Err(e) = std::fs::create_dir_all(&sub) {
                panic!("cannot make {}: {e}", sub.display());
            }
            let store = match SqliteSessionStore::open_with(&sub, 0, durability) {
                Ok(s) => s,
                Err(e) => panic!("cannot open the store: {e}"),
            };
            println!(
                "{name}: {} with {durability:?} durability",
                store.path().display()
            );
            run(name, Arc::new(store)).await;
        }
        run_postgres().await;
    });
}

/// The PostgreSQL store, when a database is named (e.g. `interop/pg run cargo bench --bench
/// sessions`, which names a throw-away one).
async fn run_postgres() {
    let Ok(url) = std::env::var("OMERO_TEST_POSTGRES") else {
        println!("postgres: not measured (no OMERO_TEST_POSTGRES; run under interop/pg run)");
        return;
    };
    // `pg-async` commits without waiting for the WAL flush (what the disk's fsync costs, as
    // sqlite-n shows for SQLite); the server never runs like that unless its URL says so.
    let separator = if url.contains('?') { '&' } else { '?' };
    let no_flush = format!("{url}{separator}options=-c%20synchronous_commit%3Doff");
    for (name, url) in [("postgres", url.as_str()), ("pg-async", no_flush.as_str())] {
        let db = match PgDatabase::new(PgSettings::new(url)) {
            Ok(db) => db,
            Err(e) => panic!("bad PostgreSQL URL: {e}"),
        };
        println!("{name}: {}", db.target());
        match PgSessionStore::open(db).await {
            Ok(store) => run(name, Arc::new(store)).await,
            Err(e) => panic!("cannot open the PostgreSQL store: {e}"),
        }
    }
}

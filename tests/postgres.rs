//! The PostgreSQL stores against a real database. Every test here needs one: interop/run starts
//! a throw-away cluster and runs them with `--ignored`; by hand:
//! `interop/pg run cargo test --test postgres -- --ignored`.
//! Without `OMERO_TEST_POSTGRES` they fail rather than pass.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omero_sessiond::sessions::store::{Env, SessionStore};
use omero_sessiond::sessions::store_contract;
use omero_sessiond::store::directory::contract;
use omero_sessiond::store::postgres::directory::PgDirectory;
use omero_sessiond::store::postgres::listen::{PgEvent, PgListener};
use omero_sessiond::store::postgres::sessions::PgSessionStore;
use omero_sessiond::store::postgres::{PgDatabase, PgError, PgSettings};
use omero_sessiond::store::StoreError;

const NEEDS: &str = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)";

/// A new, empty database in the test cluster, so tests neither see each other's rows nor
/// each other's notifications. Returns its URL.
async fn fresh_database() -> String {
    let base = std::env::var("OMERO_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "OMERO_TEST_POSTGRES is not set: start a cluster with interop/pg \
             (e.g. `interop/pg run cargo test --test postgres -- --ignored`)"
        )
    });
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
    tokio::spawn(connection);
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    with_database(&base, &name)
}

fn with_database(url: &str, name: &str) -> String {
    let cut = url.rfind('/').expect("a URL with a database");
    format!("{}/{name}", &url[..cut])
}

async fn open(url: &str) -> PgDatabase {
    PgDatabase::new(PgSettings::new(url)).unwrap()
}

/// Polls `check` until it holds; gives up after a generous bound (no timing is asserted).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)"]
async fn migrations_run_once_and_a_newer_schema_is_refused() {
    let url = fresh_database().await;
    let db = open(&url).await;
    let steps = ["CREATE TABLE t1 (x INT)", "ALTER TABLE t1 ADD COLUMN y INT"];
    db.migrate("test", &steps).await.expect(NEEDS);
    // Again: nothing to do (a second CREATE TABLE t1 would fail).
    db.migrate("test", &steps).await.unwrap();
    // Another component keeps its own version.
    db.migrate("other", &["CREATE TABLE t2 (x INT)"])
        .await
        .unwrap();
    // A program knowing fewer steps than the database holds must not use it.
    let err = db.migrate("test", &steps[..1]).await.unwrap_err();
    assert!(
        matches!(
            err,
            PgError::SchemaTooNew {
                found: 2,
                known: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade omero-sessiond"), "{err}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)"]
async fn nodes_migrating_together_do_not_race() {
    let url = fresh_database().await;
    let steps = ["CREATE TABLE t (x INT)"];
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let db = open(&url).await;
        nodes.push(tokio::spawn(
            async move { db.migrate("race", &steps).await },
        ));
    }
    for node in nodes {
        node.await.unwrap().expect(NEEDS);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)"]
async fn a_listener_hears_notifications_and_resyncs_after_losing_its_connection() {
    let url = fresh_database().await;
    let db = open(&url).await;
    let listener = PgListener::spawn(&db, &["omero_test"]);
    let mut events = listener.subscribe();
    listener.wait_listening().await;
    assert_eq!(events.recv().await.unwrap(), PgEvent::Resync);

    let notify = |payload: &'static str| {
        let db = db.clone();
        async move {
            db.with_client("notify", move |c| async move {
                c.execute("SELECT pg_notify('omero_test', $1)", &[&payload])
                    .await
                    .map(|_| ())
            })
            .await
            .expect(NEEDS)
        }
    };
    notify("first").await;
    assert_eq!(
        events.recv().await.unwrap(),
        PgEvent::Notified {
            channel: "omero_test".into(),
            payload: "first".into()
        }
    );

    // The database ends the listener's connection (as a restart would): it comes back.
    db.with_client("terminate", |c| async move {
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .map(|_| ())
    })
    .await
    .unwrap();
    let mut resynced = false;
    eventually("the listener reconnects", || {
        let got = matches!(events.try_recv(), Ok(PgEvent::Resync));
        resynced |= got;
        let done = resynced;
        async move { done }
    })
    .await;
    notify("second").await;
    assert_eq!(
        events.recv().await.unwrap(),
        PgEvent::Notified {
            channel: "omero_test".into(),
            payload: "second".into()
        }
    );
}

async fn session_store(url: &str) -> PgSessionStore {
    PgSessionStore::open(open(url).await).await.expect(NEEDS)
}

#[tokio::test]
#[ignore = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)"]
async fn the_session_store_keeps_the_contract() {
    let url = fresh_database().await;
    let store = session_store(&url).await;
    store_contract::check_all(&store).await;
    // A second node on the same tables keeps it too, with the first one's rows around.
    let other = session_store(&url).await;
    store_contract::check_all(&other).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)"]
async fn nodes_share_reference_counts_maps_and_closes() {
    let url = fresh_database().await;
    let a = session_store(&url).await;
    let b = session_store(&url).await;
    let row = a.insert(store_contract::sample_row(1_000)).await.unwrap();
    a.set_env(&row.uuid, Env::Input, "k", Some(vec![7]))
        .await
        .unwrap();
    // Joins on both nodes at once: every one of them counts.
    let mut joins = Vec::new();
    for i in 0..20 {
        let (a, b) = (&a, &b);
        let uuid = row.uuid.clone();
        joins.push(async move {
            let node = if i % 2 == 0 { a } else { b };
            node.join(&uuid, 2_000 + i).await.unwrap().unwrap()
        });
    }
    let joined = futures_util::future::join_all(joins).await;
    assert_eq!(joined.iter().map(|s| s.refcount).max(), Some(21));
    assert!(joined.iter().all(|s| s.input.get("k") == Some(&vec![7])));
    assert_eq!(b.detach(&row.uuid, None).await.unwrap(), Some(20));

    // Last access written by one node is what the other's reaper reads.
    a.touch_many(&[(row.uuid.clone(), 90_000)]).await.unwrap();
    assert_eq!(b.last_access(&row.uuid).await.unwrap(), Some(90_000));

    // A close on B wakes A's feed; A's next read reports it.
    let cursor = a.close_cursor().await.unwrap();
    let woken = a.wait_closed(Duration::from_secs(60));
    let closing = async {
        // Let A subscribe before B closes (the poll bound is the fallback otherwise).
        tokio::task::yield_now().await;
        assert!(b.close(&row.uuid, 95_000).await.unwrap());
    };
    tokio::join!(woken, closing);
    let feed = a.closed_since(cursor).await.unwrap();
    assert_eq!(feed.uuids, vec![row.uuid.clone()]);
    assert_eq!(a.join(&row.uuid, 96_000).await.unwrap(), None);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)"]
async fn concurrent_closes_reach_the_feed_in_order_and_none_is_skipped() {
    let url = fresh_database().await;
    let nodes = [session_store(&url).await, session_store(&url).await];
    let mut uuids = Vec::new();
    for _ in 0..40 {
        uuids.push(
            nodes[0]
                .insert(store_contract::sample_row(1))
                .await
                .unwrap()
                .uuid,
        );
    }
    let cursor = nodes[1].close_cursor().await.unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut reader_cursor = cursor;
    let closes = futures_util::future::join_all(uuids.iter().enumerate().map(|(i, u)| {
        let node = &nodes[i % 2];
        async move { assert!(node.close(u, 5).await.unwrap()) }
    }));
    // Reads interleaved with the closes must never jump over a close that commits later.
    let reader = async {
        for _ in 0..20 {
            let feed = nodes[1].closed_since(reader_cursor).await.unwrap();
            seen.extend(feed.uuids);
            reader_cursor = feed.cursor;
            tokio::task::yield_now().await;
        }
    };
    tokio::join!(closes, reader);
    let rest = nodes[1].closed_since(reader_cursor).await.unwrap();
    seen.extend(rest.uuids);
    let mut expected = uuids.clone();
    expected.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, expected, "each close once");
}

#[test]
#[ignore = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)"]
fn the_directory_backend_keeps_the_contract() {
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fresh_database());
    contract::check_backend(&|| Box::new(PgDirectory::open(&url).expect(NEEDS)));
}

/// A TCP relay in front of the database that a test can cut (every connection dropped, new
/// ones refused) and restore: an outage without stopping the cluster other tests share.
struct Relay {
    url: String,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(url: &str) -> Relay {
        let (head, tail) = url.split_once('@').expect("user@host in the test URL");
        let (upstream, db) = tail.split_once('/').expect("host/db in the test URL");
        let upstream = upstream.to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            url: format!("{head}@{}/{db}", listener.local_addr().unwrap()),
            up: Arc::new(AtomicBool::new(true)),
            links: Arc::default(),
        };
        let (up, links) = (relay.up.clone(), relay.links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close at once
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links.lock().unwrap().push(link.abort_handle());
            }
        });
        relay
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: interop/run starts one (OMERO_TEST_POSTGRES)"]
async fn an_outage_fails_fast_and_the_store_recovers_by_itself() {
    let url = fresh_database().await;
    let relay = Relay::start(&url).await;
    let store = session_store(&relay.url).await;
    let row = store
        .insert(store_contract::sample_row(1_000))
        .await
        .expect(NEEDS);
    eventually("the listener is up", || {
        let up = store.is_listening();
        async move { up }
    })
    .await;

    relay.cut();
    // Every operation answers (no hang) with an outage, naming the database.
    let err = store.join(&row.uuid, 2_000).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    let err = store
        .insert(store_contract::sample_row(2_000))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    eventually("the listener notices", || {
        let up = store.is_listening();
        async move { !up }
    })
    .await;

    relay.restore();
    // No restart: the pool and the listener come back on their own.
    eventually("joins work again", || async {
        matches!(store.join(&row.uuid, 3_000).await, Ok(Some(_)))
    })
    .await;
    eventually("the listener is back", || {
        let up = store.is_listening();
        async move { up }
    })
    .await;
    assert_eq!(store.last_access(&row.uuid).await.unwrap(), Some(3_000));
}

//! The PostgreSQL stores against a real database. Every test here needs one: interop/run starts
//! a throw-away cluster and runs them with `--ignored`; by hand:
//! `interop/pg run cargo test --test postgres -- --ignored`.
//! Without `OMERO_TEST_POSTGRES` they fail rather than pass.

use std::time::Duration;

use omero_sessiond::store::postgres::listen::{PgEvent, PgListener};
use omero_sessiond::store::postgres::{PgDatabase, PgError, PgSettings};

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

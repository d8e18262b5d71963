//! Sessions outlive the session manager (issue 9): a manager on the SQLite store is dropped and
//! a new one opened on the same data directory, as a restarting server does.

use std::sync::Arc;

use omero_sessiond::sessions::{
    Clock, CloseReason, DestroyMode, Env, ManualClock, NewSession, ReleaseOutcome, SessionConfig,
    SessionError, SessionEvent, SessionManager, SessionStore, SqliteSessionStore,
};

const T0: i64 = 1_700_000_000_000;

fn open(dir: &std::path::Path, clock: &ManualClock) -> Arc<SessionManager<String>> {
    let store = SqliteSessionStore::open(dir, clock.now_ms()).expect("open store");
    Arc::new(SessionManager::new(
        SessionConfig::default(),
        Arc::new(clock.clone()),
        Arc::new(store),
    ))
}

#[tokio::test]
async fn a_session_is_joined_back_with_its_count_and_maps_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let m = open(dir.path(), &clock);
    let s = m.create(NewSession::new(5, 3)).await.expect("create");
    m.join(&s.uuid).await.expect("join");
    m.set_env(&s.uuid, Env::Input, "k", Some("v".into()), 1)
        .await
        .expect("set input");
    m.set_env(&s.uuid, Env::Output, "o", Some("w".into()), 1)
        .await
        .expect("set output");
    m.switch_group(&s.uuid, 9, true)
        .await
        .expect("switch group");
    let gone = m.create(NewSession::new(5, 3)).await.expect("create");
    assert_eq!(m.close_session(&gone.uuid).await, Ok(-2));
    drop(m);

    let m = open(dir.path(), &clock);
    assert_eq!(m.load().await.expect("load"), 1);
    let back = m.join(&s.uuid).await.expect("join after restart");
    assert_eq!((back.id, back.refcount, back.group_id), (s.id, 3, 9));
    assert_eq!(
        m.get_env(&s.uuid, Env::Input, "k").expect("get"),
        Some("v".to_string())
    );
    assert_eq!(
        m.get_env(&s.uuid, Env::Output, "o").expect("get"),
        Some("w".to_string())
    );
    assert!(m.join(&gone.uuid).await.is_err(), "closed stays closed");
    for expected in [2, 1, -2] {
        assert_eq!(m.close_session(&s.uuid).await, Ok(expected));
    }
    drop(m);

    let m = open(dir.path(), &clock);
    assert_eq!(m.load().await.expect("load"), 0);
    let next = m.create(NewSession::new(5, 3)).await.expect("create");
    assert!(next.id > gone.id, "ids keep increasing across restarts");
}

#[tokio::test]
async fn sessions_that_expired_while_down_are_reaped_from_their_last_written_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let m = open(dir.path(), &clock);
    let idle = m.create(NewSession::new(5, 3)).await.expect("create");
    let used = m.create(NewSession::new(5, 3)).await.expect("create");
    clock.advance(500_000);
    m.lookup(&used.uuid, false).expect("refresh");
    assert_eq!(m.flush_accesses().await.expect("flush"), 1);
    drop(m);

    // 650 s after creation: `idle` is past its 600 s, `used` (seen at 500 s) is not.
    clock.advance(150_000);
    let m = open(dir.path(), &clock);
    assert_eq!(m.load().await.expect("load"), 1);
    assert!(m.lookup(&idle.uuid, true).is_err());
    let info = m.lookup(&used.uuid, true).expect("still live");
    assert_eq!(info.last_access, T0 + 500_000);
    let row = m.find_row(&idle.uuid).await.expect("row");
    assert_eq!(row.closed, Some(T0 + 650_000));
}

#[tokio::test]
async fn a_close_by_another_process_reaches_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let server = open(dir.path(), &clock);
    server.load().await.expect("load");
    let s = server.create(NewSession::new(5, 3)).await.expect("create");
    let mut events = server.subscribe();

    // The `sessions close` command line: its own store on the same file.
    let cli = SqliteSessionStore::open(dir.path(), clock.now_ms()).expect("second store");
    let closed = SessionStore::close(&cli, &s.uuid, T0 + 1)
        .await
        .expect("close");
    assert!(closed);

    assert_eq!(server.follow_closes().await.expect("feed"), 1);
    assert_eq!(
        events.try_recv().expect("event"),
        SessionEvent::Closed {
            uuid: s.uuid.clone(),
            reason: CloseReason::Closed
        }
    );
    assert!(matches!(
        server.lookup(&s.uuid, true),
        Err(SessionError::Removed(_))
    ));
    assert_eq!(
        server.release(&s.uuid, DestroyMode::Close).await,
        ReleaseOutcome::AlreadyGone
    );
}

#[tokio::test]
async fn a_session_made_by_another_manager_is_joined_from_the_store() {
    // Two nodes on one store: B has never seen the session A made.
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let a = open(dir.path(), &clock);
    let b = open(dir.path(), &clock);
    let s = a.create(NewSession::new(5, 3)).await.expect("create on A");
    a.set_env(&s.uuid, Env::Input, "k", Some("v".into()), 1)
        .await
        .expect("set on A");
    let joined = b.join(&s.uuid).await.expect("join on B");
    assert_eq!(joined.refcount, 2);
    assert_eq!(
        b.get_env(&s.uuid, Env::Input, "k").expect("get on B"),
        Some("v".to_string())
    );
    // A's count catches up at its next durable change.
    assert_eq!(a.close_session(&s.uuid).await, Ok(1));
    // A third node closes the last reference although its cache never held the session...
    let c = open(dir.path(), &clock);
    assert_eq!(c.close_session(&s.uuid).await, Ok(-2));
    assert_eq!(c.close_session(&s.uuid).await, Ok(-1));
    // ...and A and B learn it from the feed of closes.
    assert_eq!(a.follow_closes().await.expect("feed"), 1);
    assert_eq!(b.follow_closes().await.expect("feed"), 1);
    assert!(a.lookup(&s.uuid, true).is_err());
    assert!(b.lookup(&s.uuid, true).is_err());
}

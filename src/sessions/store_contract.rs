//! The [`SessionStore`] contract as executable checks, run against every implementation (the
//! in-memory, SQLite and PostgreSQL stores). Each check makes its own random uuids, so the
//! checks also pass on a database other tests (or nodes) use at the same time.
//!
//! Call [`check_all`] from a test with a fresh or shared store; a broken rule panics with what
//! was expected.

use super::store::{Env, SessionRow, SessionStore};

/// A new open row of owner 2 in group 3, started at `started`, with a random uuid.
pub fn sample_row(started: i64) -> SessionRow {
    SessionRow {
        id: 0,
        uuid: uuid::Uuid::new_v4().to_string(),
        owner_id: 2,
        group_id: 3,
        started,
        closed: None,
        time_to_idle: 600_000,
        time_to_live: 0,
        agent: Some("OMERO.py".to_string()),
        ip: Some("127.0.0.1".to_string()),
        event_type: "User".to_string(),
        sudoer_id: None,
        group_sudo: false,
    }
}

/// Runs every check below.
pub async fn check_all(store: &dyn SessionStore) {
    insert_assigns_increasing_ids(store).await;
    join_counts_references_and_returns_maps(store).await;
    detach_and_close_at_zero(store).await;
    closed_rows_stay_closed(store).await;
    timeouts_and_group_are_kept(store).await;
    last_access_never_moves_backwards(store).await;
    listing_shows_open_rows_only(store).await;
    closes_come_back_through_the_feed(store).await;
}

pub async fn insert_assigns_increasing_ids(store: &dyn SessionStore) {
    let a = store.insert(sample_row(1_000)).await.expect("insert a");
    let b = store.insert(sample_row(1_000)).await.expect("insert b");
    assert!(a.id > 0 && b.id > a.id, "ids {} then {}", a.id, b.id);
    assert_eq!(a.closed, None);
    let found = store.find(&a.uuid).await.expect("find").expect("row a");
    assert_eq!(found, a);
    assert_eq!(store.find("no-such-uuid").await.expect("find"), None);
    let listed = store.list_open().await.expect("list");
    let mine = listed
        .iter()
        .find(|r| r.row.uuid == a.uuid)
        .expect("a open");
    assert_eq!((mine.refcount, mine.last_access), (1, 1_000));
}

pub async fn join_counts_references_and_returns_maps(store: &dyn SessionStore) {
    let row = store.insert(sample_row(1_000)).await.expect("insert");
    store
        .set_env(&row.uuid, Env::Input, "a", Some(vec![1, 2, 3]))
        .await
        .expect("set a");
    store
        .set_env(&row.uuid, Env::Input, "gone", Some(vec![9]))
        .await
        .expect("set gone");
    store
        .set_env(&row.uuid, Env::Input, "gone", None)
        .await
        .expect("remove gone");
    store
        .set_env(&row.uuid, Env::Output, "b", Some(Vec::new()))
        .await
        .expect("set b");
    let joined = store
        .join(&row.uuid, 5_000)
        .await
        .expect("join")
        .expect("open row");
    assert_eq!(joined.row, row);
    assert_eq!((joined.refcount, joined.last_access), (2, 5_000));
    assert_eq!(joined.input.len(), 1);
    assert_eq!(joined.input.get("a"), Some(&vec![1, 2, 3]));
    assert_eq!(joined.output.get("b"), Some(&Vec::new()));
    // A join with an older clock (another node) adds a reference but keeps the later access.
    let again = store
        .join(&row.uuid, 4_000)
        .await
        .expect("join")
        .expect("open");
    assert_eq!((again.refcount, again.last_access), (3, 5_000));
    assert_eq!(store.refcount(&row.uuid).await.expect("refcount"), Some(3));
    assert_eq!(
        store.refcount("no-such-uuid").await.expect("refcount"),
        None
    );
    assert_eq!(store.join("no-such-uuid", 1).await.expect("join"), None);
}

pub async fn detach_and_close_at_zero(store: &dyn SessionStore) {
    let row = store.insert(sample_row(1_000)).await.expect("insert");
    store.join(&row.uuid, 1_000).await.expect("join");
    assert_eq!(
        store.detach(&row.uuid, None).await.expect("detach"),
        Some(1)
    );
    // Detach mode may leave an open session with no reference.
    assert_eq!(
        store.detach(&row.uuid, None).await.expect("detach"),
        Some(0)
    );
    assert_eq!(
        store.detach(&row.uuid, None).await.expect("detach"),
        Some(0)
    );
    assert_eq!(
        store
            .find(&row.uuid)
            .await
            .expect("find")
            .and_then(|r| r.closed),
        None
    );
    let row = store.insert(sample_row(1_000)).await.expect("insert");
    let closed = store.detach(&row.uuid, Some(7_000)).await.expect("detach");
    assert_eq!(closed, Some(0));
    let found = store.find(&row.uuid).await.expect("find").expect("row");
    assert_eq!(found.closed, Some(7_000));
    assert_eq!(
        store.detach(&row.uuid, Some(8_000)).await.expect("detach"),
        None
    );
    assert_eq!(
        store.detach("no-such-uuid", None).await.expect("detach"),
        None
    );
}

pub async fn closed_rows_stay_closed(store: &dyn SessionStore) {
    let row = store.insert(sample_row(1_000)).await.expect("insert");
    store
        .set_env(&row.uuid, Env::Input, "k", Some(vec![1]))
        .await
        .expect("set");
    assert!(store.close(&row.uuid, 2_000).await.expect("close"));
    assert!(!store.close(&row.uuid, 3_000).await.expect("close again"));
    assert!(!store
        .close("no-such-uuid", 3_000)
        .await
        .expect("close unknown"));
    let found = store.find(&row.uuid).await.expect("find").expect("row");
    assert_eq!(found.closed, Some(2_000), "the first close time stays");
    assert_eq!(store.join(&row.uuid, 2_500).await.expect("join"), None);
    assert_eq!(store.last_access(&row.uuid).await.expect("last"), None);
    // Changes to a closed row are ignored, not errors (a close from elsewhere may win a race).
    store
        .set_env(&row.uuid, Env::Input, "k2", Some(vec![2]))
        .await
        .expect("set on closed");
    store.set_timeouts(&row.uuid, 1, 1).await.expect("timeouts");
    store.set_group(&row.uuid, 9).await.expect("group");
    store
        .touch_many(&[(row.uuid.clone(), 9_000)])
        .await
        .expect("touch");
    let found = store.find(&row.uuid).await.expect("find").expect("row");
    assert_eq!((found.closed, found.group_id), (Some(2_000), 3));
    let open = store.load_open().await.expect("load");
    assert!(open.iter().all(|s| s.row.uuid != row.uuid));
}

pub async fn timeouts_and_group_are_kept(store: &dyn SessionStore) {
    let row = store.insert(sample_row(1_000)).await.expect("insert");
    store
        .set_timeouts(&row.uuid, 3_600_000, 60_000)
        .await
        .expect("timeouts");
    store.set_group(&row.uuid, 7).await.expect("group");
    let found = store.find(&row.uuid).await.expect("find").expect("row");
    assert_eq!(
        (found.time_to_live, found.time_to_idle, found.group_id),
        (3_600_000, 60_000, 7)
    );
}

pub async fn last_access_never_moves_backwards(store: &dyn SessionStore) {
    let a = store.insert(sample_row(1_000)).await.expect("insert");
    let b = store.insert(sample_row(1_000)).await.expect("insert");
    assert_eq!(store.last_access(&a.uuid).await.expect("last"), Some(1_000));
    store
        .touch_many(&[
            (a.uuid.clone(), 5_000),
            (b.uuid.clone(), 4_000),
            ("no-such-uuid".to_string(), 4_000),
        ])
        .await
        .expect("touch");
    store
        .touch_many(&[(a.uuid.clone(), 3_000), (b.uuid.clone(), 6_000)])
        .await
        .expect("touch");
    store.touch_many(&[]).await.expect("touch nothing");
    assert_eq!(store.last_access(&a.uuid).await.expect("last"), Some(5_000));
    assert_eq!(store.last_access(&b.uuid).await.expect("last"), Some(6_000));
    assert_eq!(store.last_access("no-such-uuid").await.expect("last"), None);
}

pub async fn listing_shows_open_rows_only(store: &dyn SessionStore) {
    let a = store.insert(sample_row(1_000)).await.expect("insert");
    let b = store.insert(sample_row(1_000)).await.expect("insert");
    let c = store.insert(sample_row(1_000)).await.expect("insert");
    store.join(&b.uuid, 2_000).await.expect("join");
    store
        .set_env(&b.uuid, Env::Output, "o", Some(vec![4]))
        .await
        .expect("set");
    store.close(&c.uuid, 2_000).await.expect("close");
    let listed = store.list_open().await.expect("list");
    let mine: Vec<_> = listed
        .iter()
        .filter(|r| [&a.uuid, &b.uuid, &c.uuid].contains(&&r.row.uuid))
        .collect();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert_eq!(mine[0].row.uuid, a.uuid, "oldest first");
    assert_eq!((mine[1].refcount, mine[1].last_access), (2, 2_000));
    let loaded = store.load_open().await.expect("load");
    let b_loaded = loaded
        .iter()
        .find(|s| s.row.uuid == b.uuid)
        .expect("b loaded");
    assert_eq!(b_loaded.refcount, 2);
    assert_eq!(b_loaded.output.get("o"), Some(&vec![4]));
    assert!(loaded.iter().all(|s| s.row.uuid != c.uuid));
    let ids: Vec<i64> = loaded.iter().map(|s| s.row.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
}

pub async fn closes_come_back_through_the_feed(store: &dyn SessionStore) {
    let before = store.insert(sample_row(1_000)).await.expect("insert");
    store.close(&before.uuid, 1_500).await.expect("close");
    let cursor = store.close_cursor().await.expect("cursor");
    let a = store.insert(sample_row(1_000)).await.expect("insert");
    let b = store.insert(sample_row(1_000)).await.expect("insert");
    store.close(&b.uuid, 2_000).await.expect("close b");
    store.detach(&a.uuid, Some(3_000)).await.expect("close a");
    let feed = store.closed_since(cursor).await.expect("feed");
    let mine: Vec<&String> = feed
        .uuids
        .iter()
        .filter(|u| [&a.uuid, &b.uuid, &before.uuid].contains(u))
        .collect();
    assert_eq!(mine, vec![&b.uuid, &a.uuid], "closing order, nothing older");
    assert!(feed.cursor > cursor);
    let next = store.closed_since(feed.cursor).await.expect("feed");
    assert!(next.uuids.iter().all(|u| u != &a.uuid && u != &b.uuid));
    assert!(next.cursor >= feed.cursor);
}

//! The behaviour every [`DirectoryBackend`] must show, as one function any backend's tests
//! call (the embedded database's unit tests, PostgreSQL's tests under `tests/`).
//!
//! It panics on the first broken rule, like an assertion, so call it from a test.

use std::time::{Duration, Instant};

use super::{
    Commit, DirectoryBackend, DirectoryChanges, DirectoryData, ExperimenterRecord, GroupRecord,
    Versioned,
};

/// Opens a new handle on one store, the same store on every call, empty before the first.
pub type OpenHandle<'a> = &'a dyn Fn() -> Box<dyn DirectoryBackend>;

/// How long a handle may take to hear of another handle's commit (PostgreSQL learns it by
/// notification). A bound on waiting, not a speed requirement.
const HEAR_BOUND: Duration = Duration::from_secs(30);

/// Runs every rule against a fresh store.
pub fn check_backend(open: OpenHandle<'_>) {
    let a = open();
    let b = open();
    let seeded = starts_empty_and_seeds_once(a.as_ref(), b.as_ref());
    let v = round_trips_every_field(a.as_ref(), b.as_ref(), seeded);
    let v = removals_take_memberships_along(a.as_ref(), b.as_ref(), v);
    other_handles_see_commits(a.as_ref(), b.as_ref(), v);
    concurrent_writers_lose_nothing(open);
}

fn commit_done(backend: &dyn DirectoryBackend, base: i64, changes: &DirectoryChanges) -> i64 {
    match backend.commit(base, changes) {
        Ok(Commit::Done(v)) => {
            assert!(v > base, "version must grow: {base} -> {v}");
            v
        }
        other => panic!(
            "commit on version {base} of {}: {other:?}",
            backend.location()
        ),
    }
}

fn load(backend: &dyn DirectoryBackend) -> Versioned {
    match backend.load() {
        Ok(v) => v,
        Err(e) => panic!("load {}: {e}", backend.location()),
    }
}

fn starts_empty_and_seeds_once(a: &dyn DirectoryBackend, b: &dyn DirectoryBackend) -> i64 {
    let fresh = load(a);
    assert_eq!(fresh.version, 0, "a new store is at version 0");
    assert_eq!(fresh.data, DirectoryData::empty());
    let builtins = DirectoryData::with_builtins();
    let seed = DirectoryChanges::between(&DirectoryData::empty(), &builtins);
    let v = commit_done(a, 0, &seed);
    // The second process to start computed its seed from version 0 too: refused, unchanged.
    assert_eq!(b.commit(0, &seed).ok(), Some(Commit::Stale));
    let loaded = load(b);
    assert_eq!(loaded.version, v);
    assert_eq!(loaded.data, builtins);
    v
}

fn round_trips_every_field(a: &dyn DirectoryBackend, b: &dyn DirectoryBackend, v: i64) -> i64 {
    let base = load(a).data;
    let mut next = base.clone();
    next.groups.push(GroupRecord {
        id: 3,
        name: "lab 'ü\"".to_string(),
        permissions: "rwra--".to_string(),
    });
    next.groups.push(GroupRecord {
        id: 4,
        name: "other".to_string(),
        permissions: "rw----".to_string(),
    });
    next.experimenters.push(ExperimenterRecord {
        id: 2,
        ome_name: "ann".to_string(),
        first_name: "Ann".to_string(),
        last_name: "O'Neil".to_string(),
        email: Some("ann@example.org".to_string()),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string()),
        // Order matters: the first is the default group.
        member_of: vec![4, 3, 1, 0],
        // Owned groups come in membership order (an owner flag on each membership).
        leader_of: vec![4, 3],
        admin_restrictions: vec!["Sudo".to_string(), "ModifyUser".to_string()],
    });
    next.next_group_id = 5;
    next.next_experimenter_id = 3;
    let v = commit_done(a, v, &DirectoryChanges::between(&base, &next));
    assert_eq!(
        load(b),
        Versioned {
            version: v,
            data: next.clone()
        }
    );

    // Change in place: a new default group, one ownership fewer, no email, renamed group.
    let mut changed = next.clone();
    if let Some(ann) = changed.experimenters.iter_mut().find(|e| e.id == 2) {
        ann.member_of = vec![3, 4, 1, 0];
        ann.leader_of = vec![4];
        ann.email = None;
        ann.password_hash = None;
        ann.admin_restrictions = vec!["Chown".to_string()];
    }
    if let Some(lab) = changed.groups.iter_mut().find(|g| g.id == 3) {
        lab.name = "lab".to_string();
        lab.permissions = "rwr---".to_string();
    }
    let v = commit_done(b, v, &DirectoryChanges::between(&next, &changed));
    assert_eq!(
        load(a),
        Versioned {
            version: v,
            data: changed
        }
    );
    v
}

fn removals_take_memberships_along(
    a: &dyn DirectoryBackend,
    b: &dyn DirectoryBackend,
    v: i64,
) -> i64 {
    let base = load(a).data;
    let mut next = base.clone();
    next.groups.retain(|g| g.id != 4);
    let v = commit_done(a, v, &DirectoryChanges::between(&base, &next));
    let loaded = load(b);
    assert_eq!(loaded.version, v);
    let ann = loaded.data.experimenter(2).cloned();
    assert_eq!(
        ann.as_ref().map(|e| e.member_of.clone()),
        Some(vec![3, 1, 0])
    );
    assert_eq!(ann.map(|e| e.leader_of), Some(Vec::new()));
    assert!(loaded.data.group(4).is_none());
    // Ids are never reused: the counters stay where they were.
    assert_eq!(loaded.data.next_group_id, 5);

    let mut gone = loaded.data.clone();
    gone.experimenters.retain(|e| e.id != 2);
    let v = commit_done(b, v, &DirectoryChanges::between(&loaded.data, &gone));
    assert_eq!(
        load(a),
        Versioned {
            version: v,
            data: gone
        }
    );
    // A stale base is refused and applies nothing.
    let mut late = load(a).data;
    late.groups.retain(|g| g.id != 3);
    let before = load(a);
    assert_eq!(
        a.commit(v - 1, &DirectoryChanges::between(&before.data, &late))
            .ok(),
        Some(Commit::Stale)
    );
    assert_eq!(load(b), before);
    v
}

fn other_handles_see_commits(a: &dyn DirectoryBackend, b: &dyn DirectoryBackend, v: i64) {
    let seen = b.version().ok();
    assert_eq!(seen, Some(v), "version after load");
    let base = load(a).data;
    let mut next = base.clone();
    next.groups.push(GroupRecord {
        id: base.next_group_id,
        name: "seen".to_string(),
        permissions: "rw----".to_string(),
    });
    next.next_group_id += 1;
    let v2 = commit_done(a, v, &DirectoryChanges::between(&base, &next));
    let started = Instant::now();
    loop {
        match b.version() {
            Ok(now) if now == v2 => break,
            Ok(now) => assert!(
                started.elapsed() < HEAR_BOUND,
                "{} never heard of version {v2} (still {now})",
                b.location()
            ),
            Err(e) => panic!("version of {}: {e}", b.location()),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// Each writer retries on Stale from a fresh load, as the Directory does.
fn concurrent_writers_lose_nothing(open: OpenHandle<'_>) {
    const WRITERS: usize = 3;
    const EACH: usize = 5;
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let handle = open();
            scope.spawn(move || {
                for i in 0..EACH {
                    add_group_retrying(handle.as_ref(), &format!("w{w}g{i}"));
                }
            });
        }
    });
    let data = load(open().as_ref()).data;
    for w in 0..WRITERS {
        for i in 0..EACH {
            let name = format!("w{w}g{i}");
            assert!(data.group_named(&name).is_some(), "{name} lost");
        }
    }
    let mut ids: Vec<i64> = data.groups.iter().map(|g| g.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), data.groups.len(), "ids are unique");
}

fn add_group_retrying(backend: &dyn DirectoryBackend, name: &str) {
    for _ in 0..1000 {
        let Versioned { version, data } = load(backend);
        let mut next = data.clone();
        next.groups.push(GroupRecord {
            id: data.next_group_id,
            name: name.to_string(),
            permissions: "rw----".to_string(),
        });
        next.next_group_id += 1;
        match backend.commit(version, &DirectoryChanges::between(&data, &next)) {
            Ok(Commit::Done(_)) => return,
            Ok(Commit::Stale) => continue,
            Err(e) => panic!("commit on {}: {e}", backend.location()),
        }
    }
    panic!("{name}: no commit got through in 1000 tries");
}

//! The keep-alive of sessions made over HTTPS, in real time with short idle timeouts, and the
//! password never reaching the logs.

#[path = "http_support.rs"]
mod support;

use std::time::Duration;

use omero_sessiond::auth::ThrottleConfig;
use omero_sessiond::sessions::SessionError;
use support::start;

mod log_capture;

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

async fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        sleep_ms(50).await;
    }
    done()
}

#[tokio::test]
async fn holds_the_session_past_the_idle_timeout_then_lets_it_expire() {
    // Idle timeout 500 ms, kept alive for 2 s.
    let srv = start(500, ThrottleConfig::default()).await;
    let key = srv.create_key(2000).await;
    let created = srv.sessions.lookup(&key, true).unwrap().started;
    sleep_ms(1500).await;
    // Quiet lookups: only the keep-alive refreshes the session.
    assert!(srv.sessions.is_live(&key), "three idle timeouts later");
    assert!(wait_for(|| srv.service.active_keep_alives() == 0).await);
    let last = srv.sessions.lookup(&key, true).unwrap().last_access;
    assert!(
        last >= created + 2000,
        "last refresh {last} vs created {created}"
    );
    // Nobody touches it now: it idles out 500 ms after the last refresh.
    sleep_ms(800).await;
    assert!(matches!(
        srv.sessions.lookup(&key, true),
        Err(SessionError::Timeout(_))
    ));
    assert_eq!(srv.sessions.reap_expired().await, vec![key]);
}

#[tokio::test]
async fn without_the_keep_alive_the_same_session_would_have_idled_out() {
    let srv = start(500, ThrottleConfig::default()).await;
    let key = srv.create_key(1).await;
    sleep_ms(800).await;
    assert!(matches!(
        srv.sessions.lookup(&key, true),
        Err(SessionError::Timeout(_))
    ));
}

#[tokio::test]
async fn the_keep_alive_stops_when_the_session_is_closed() {
    let srv = start(60_000, ThrottleConfig::default()).await;
    let key = srv.create_key(3_600_000).await;
    let other = srv.create_key(3_600_000).await;
    assert_eq!(srv.service.active_keep_alives(), 2);
    // The unheld reference: one close destroys it (as killSession does).
    assert_eq!(srv.sessions.close_session(&key).await, Ok(-2));
    assert!(wait_for(|| srv.service.active_keep_alives() == 1).await);
    assert!(matches!(
        srv.sessions.lookup(&key, true),
        Err(SessionError::Removed(_))
    ));
    assert!(srv.sessions.is_live(&other));
    // A join and a close-mode leave undo each other; the unheld reference keeps the session
    // and its keep-alive (spec §2.1).
    srv.sessions.join(&other).await.unwrap();
    srv.sessions.release(&other, Default::default()).await;
    assert!(srv.sessions.is_live(&other));
    assert_eq!(srv.service.active_keep_alives(), 1);
    srv.sessions.close_all().await;
    assert!(wait_for(|| srv.service.active_keep_alives() == 0).await);
}

#[tokio::test]
async fn the_password_never_reaches_the_logs() {
    // This test's runtime is single-threaded, so the server tasks log through it too.
    let (capture, _guard) = log_capture::capture("trace");
    let srv = start(60_000, ThrottleConfig::default()).await;
    let key = srv.create_key(1000).await;
    let r = srv
        .post(r#"{"omeroHost":"h","username":"alice","password":"Wr0ngHunter2"}"#)
        .await;
    assert_eq!(r.status, 400);
    let r = srv
        .post(r#"{"omeroHost":"h","username":"alice","password":"Wr0ngHunter3","keepAliveDuration":"x"}"#)
        .await;
    assert_eq!(r.status, 400);
    assert!(!String::from_utf8_lossy(&r.body).contains("Hunter3"));
    let logs = capture.text();
    // The log is captured, and names the session by a prefix only: a whole key is a bearer token.
    assert!(logs.contains(&key[..8]), "the log is captured: {logs}");
    assert!(!logs.contains(&key), "whole session key in {logs}");
    for secret in [support::ALICE_PW, "Wr0ngHunter2", "Wr0ngHunter3"] {
        assert!(!logs.contains(secret), "{secret} in {logs}");
    }
}

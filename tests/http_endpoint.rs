//! `POST /omero/session/create` over real HTTPS (and the plain listener): answers, exact
//! Smuggler bodies, negotiation and size refusals, credentials.

#[path = "http_support.rs"]
mod support;

use omero_sessiond::auth::ThrottleConfig;
use omero_sessiond::http::{CANNOT_CREATE, CREATE_PATH, DEFAULT_AGENT};
use omero_sessiond::sessions::SessionConfig;
use support::{start, ALICE_PW};

const JSON_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json"),
];

#[tokio::test]
async fn creates_a_fresh_unheld_session_in_the_default_group() {
    let srv = start(600_000, ThrottleConfig::default()).await;
    srv.directory.add_group("lab", "rwr---").unwrap();
    support::add_user(&srv.directory, "dave", "davepw", &["lab"]);
    let reply = srv
        .post(r#"{"omeroHost":"localhost","username":"dave","password":"davepw"}"#)
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let json = reply.json();
    assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
    let key = json["sessionKey"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(key).is_ok(), "{key}");

    let dave = srv.directory.experimenter_by_name("dave").unwrap();
    let lab = srv.directory.group_by_name("lab").unwrap();
    let info = srv.sessions.lookup(key, true).unwrap();
    assert_eq!(info.owner_id, dave.id);
    assert_eq!(info.group_id, lab.id);
    assert_eq!(dave.default_group_id(), Some(lab.id));
    assert_eq!(info.refcount, 1);
    assert_eq!(info.time_to_live, 0);
    assert_eq!(info.time_to_idle, 600_000);
    assert_eq!(info.agent.as_deref(), Some(DEFAULT_AGENT));
    assert_eq!(info.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(srv.service.active_keep_alives(), 1);

    // A second request makes a second session.
    let other = srv.create_key(1000).await;
    assert_ne!(other, key);
}

#[tokio::test]
async fn every_malformed_request_gets_its_exact_reason() {
    let srv = start(600_000, ThrottleConfig::default()).await;
    let cases: &[(&str, &str)] = &[
        (
            "{}",
            "omeroHost, omeroPort: no input\nusername: no input\npassword: no input\n",
        ),
        ("null", "no create session request"),
        (
            r#"{"omeroHost":"","username":"alice","password":"x"}"#,
            "omeroHost, omeroPort: no input\n",
        ),
        (
            r#"{"omeroHost":"h","omeroPort":"0","username":"alice","password":"x"}"#,
            "omeroHost, omeroPort: not a positive integer: 0\n",
        ),
        (
            r#"{"omeroHost":"h","omeroPort":"port","username":"alice","password":"x"}"#,
            "omeroHost, omeroPort: For input string: \"port\"\n",
        ),
        (
            r#"{"omeroHost":"h","username":"","password":"x"}"#,
            "username: no input\n",
        ),
        (
            r#"{"omeroHost":"h","username":"alice"}"#,
            "password: no input\n",
        ),
        (
            r#"{"omeroHost":"h","username":"alice","password":"x","keepAliveDuration":"0"}"#,
            "keepAliveDuration: not a positive integer: 0\n",
        ),
        (
            r#"{"omeroHost":"h","username":"alice","password":"x","keepAliveDuration":"-1"}"#,
            "keepAliveDuration: not a positive integer: -1\n",
        ),
        (
            r#"{"omeroHost":"h","username":"alice","password":"x","keepAliveDuration":"1m"}"#,
            "keepAliveDuration: For input string: \"1m\"\n",
        ),
        (
            r#"{"omeroHost":"","omeroPort":"-3","username":"","password":"",
                "keepAliveDuration":"0"}"#,
            "omeroHost, omeroPort: no input\nusername: no input\npassword: no input\n\
             keepAliveDuration: not a positive integer: 0\n",
        ),
        ("", "empty request body: expected a JSON object"),
        ("[1]", "expected a JSON object, found an array"),
    ];
    for (body, expected) in cases {
        let reply = srv.post(body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.reason(), *expected, "{body}");
        assert_eq!(reply.json().as_object().unwrap().len(), 1);
    }
    let reply = srv.post(r#"{"omeroHost": "h", "password": "sec"#).await;
    assert_eq!(reply.status, 400);
    assert!(reply.reason().starts_with("malformed JSON: "));
    assert!(!String::from_utf8_lossy(&reply.body).contains("sec"));
    assert!(srv.sessions.is_empty());
}

#[tokio::test]
async fn wrong_credentials_are_indistinguishable() {
    let srv = start(600_000, ThrottleConfig::default()).await;
    let bad_pw = srv
        .post(r#"{"omeroHost":"h","username":"alice","password":"wrong"}"#)
        .await;
    let unknown = srv
        .post(r#"{"omeroHost":"h","username":"nobody","password":"wrong"}"#)
        .await;
    for reply in [&bad_pw, &unknown] {
        assert_eq!(reply.status, 400);
        assert_eq!(reply.reason(), CANNOT_CREATE);
    }
    assert_eq!(bad_pw.body, unknown.body);
    assert!(srv.sessions.is_empty());
    assert_eq!(srv.service.active_keep_alives(), 0);
}

#[tokio::test]
async fn throttled_logins_get_429_with_retry_after() {
    let throttle = ThrottleConfig {
        free_failures_per_user: 2,
        ..ThrottleConfig::default()
    };
    let srv = start(600_000, throttle).await;
    for _ in 0..2 {
        let r = srv
            .post(r#"{"omeroHost":"h","username":"alice","password":"wrong"}"#)
            .await;
        assert_eq!(r.status, 400);
    }
    let good = format!(r#"{{"omeroHost":"h","username":"alice","password":"{ALICE_PW}"}}"#);
    let reply = srv.post(&good).await;
    assert_eq!(reply.status, 429);
    let secs: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(secs >= 1);
    assert!(reply
        .reason()
        .starts_with("cannot create session: too many failed logins"));
    assert!(!reply.reason().contains(ALICE_PW));
}

#[tokio::test]
async fn negotiation_size_method_and_path_refusals_are_json() {
    let srv = start(600_000, ThrottleConfig::default()).await;
    let body = format!(r#"{{"omeroHost":"h","username":"alice","password":"{ALICE_PW}"}}"#);
    let body = body.as_bytes();

    let r = srv
        .https_request(
            "POST",
            CREATE_PATH,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "text/html"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, 406);
    assert!(!r.reason().is_empty());

    for content_type in [&[("Content-Type", "text/plain")][..], &[]] {
        let r = srv
            .https_request("POST", CREATE_PATH, content_type, body)
            .await;
        assert_eq!(r.status, 415);
        assert!(!r.reason().is_empty());
    }

    // Any Accept that allows JSON is fine (Spring's 406 for */* is not kept).
    for accept in ["*/*", "application/*", "text/html, application/json;q=0.5"] {
        let r = srv
            .https_request(
                "POST",
                CREATE_PATH,
                &[
                    ("Content-Type", "application/json; charset=UTF-8"),
                    ("Accept", accept),
                ],
                body,
            )
            .await;
        assert_eq!(r.status, 200, "{accept}");
    }

    let big = format!(r#"{{"omeroHost":"{}"}}"#, "h".repeat(17 * 1024));
    let r = srv.post(&big).await;
    assert_eq!(r.status, 413);
    assert!(r.reason().contains("16384"));
    let r = srv
        .https_chunked(CREATE_PATH, &JSON_HEADERS, big.as_bytes())
        .await;
    assert_eq!(r.status, 413);
    assert!(!r.reason().is_empty());

    for method in ["GET", "PUT", "DELETE", "HEAD"] {
        let r = srv
            .https_request(method, CREATE_PATH, &JSON_HEADERS, b"")
            .await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("POST"));
        if method != "HEAD" {
            assert!(!r.reason().is_empty());
        }
    }

    for path in ["/", "/omero/session", "/omero/session/create/x"] {
        let r = srv.https_request("POST", path, &JSON_HEADERS, body).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.reason().contains(CREATE_PATH));
    }
}

#[tokio::test]
async fn the_plain_listener_serves_the_same_endpoint() {
    let srv = start(600_000, ThrottleConfig::default()).await;
    let body = format!(r#"{{"omeroHost":"h","username":"alice","password":"{ALICE_PW}"}}"#);
    let r = srv
        .http_request("POST", CREATE_PATH, &JSON_HEADERS, body.as_bytes())
        .await;
    assert_eq!(r.status, 200);
    let key = r.json()["sessionKey"].as_str().unwrap().to_string();
    assert!(srv.sessions.is_live(&key));
    let r = srv
        .http_request("POST", CREATE_PATH, &JSON_HEADERS, b"null")
        .await;
    assert_eq!(
        (r.status, r.reason().as_str()),
        (400, "no create session request")
    );
}

#[tokio::test]
async fn a_keep_alive_past_the_servers_limit_is_refused_before_the_password_check() {
    let srv = start(600_000, ThrottleConfig::default()).await;
    let limit = SessionConfig::default().max_keep_alive_ms;
    let over = limit + 1;
    let body = format!(
        r#"{{"omeroHost":"h","username":"alice","password":"{ALICE_PW}","keepAliveDuration":{over}}}"#
    );
    let r = srv.post(&body).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.reason(),
        format!("keepAliveDuration: more than this server's limit of {limit} ms\n")
    );
    // At the limit itself the session is made.
    let body = format!(
        r#"{{"omeroHost":"h","username":"alice","password":"{ALICE_PW}","keepAliveDuration":{limit}}}"#
    );
    assert_eq!(srv.post(&body).await.status, 200);
}

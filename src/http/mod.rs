//! The HTTPS session endpoint: `POST /omero/session/create`, as in OME Smuggler
//! (`shared/spec/omero-sessions.md` §9).
//!
//! A caller sends a user's name and password once and gets back the key (uuid) of a fresh
//! session of that user in their default group: timeToLive 0, timeToIdle the server default,
//! reference count 1 held by nobody, agent [`DEFAULT_AGENT`]. The endpoint then keeps the
//! session alive for `keepAliveDuration` ms ([`keepalive`]); afterwards ordinary idle expiry
//! applies. Whoever holds the key joins it later (Glacier2 `createSession(key, key)`) and
//! closes it (`killSession`/`closeSession`). The password is checked and dropped: it is never
//! stored, logged or echoed.
//!
//! Answers (all bodies JSON):
//! * 200 `{"sessionKey": "<uuid>"}`;
//! * 400 `{"reason": ...}`: validation lines as Smuggler words them, each ended by a newline
//!   ([`request`]); `no create session request` for a JSON `null`; a JSON reason also for an
//!   empty or malformed body (Spring sends its own error page there); `cannot create session`
//!   for wrong credentials (unknown user and bad password look the same) or any other failure
//!   to make the session;
//! * 429 with `Retry-After` while logins of that user or address are throttled (Smuggler has
//!   no throttling; its clients treat every non-200 as failure);
//! * 415 unless `Content-Type` is `application/json`, 406 when `Accept` rules JSON out,
//!   413 for bodies over [`HttpConfig::body_limit`], 405 (with `Allow: POST`) for other
//!   methods, 404 for other paths.
//!
//! `omeroHost`/`omeroPort` are validated like Smuggler does but ignored otherwise: the session
//! is always made on this server.
//!
//! The plain HTTP listener exists for a TLS-terminating proxy on the same host. Forwarding
//! headers are not trusted, so behind such a proxy every request comes from the proxy's
//! address: the session's recorded IP and the per-address login throttle see that address
//! (the per-user throttle still applies).

pub mod keepalive;
pub mod media;
pub mod request;
pub mod server;

pub use keepalive::{KeepAliveEnd, KeepAlives};
pub use request::{parse_request, CreateSessionRequest, RequestError};
pub use server::{
    bind, HttpConfig, HttpDeps, HttpError, HttpService, CANNOT_CREATE, CREATE_PATH, DEFAULT_AGENT,
};

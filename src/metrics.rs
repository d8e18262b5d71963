//! Prometheus metrics (`serve --metrics ADDR`): connections per transport, live sessions,
//! logins by outcome, joins, closes and expiries, and a latency histogram per Ice operation,
//! served as the text exposition format on `GET /metrics`.
//!
//! One [`Metrics`] per server, shared as an `Arc`: the runtime reports through its
//! [`Observer`] trait, the login path calls [`Metrics::record_login`] and
//! [`Metrics::record_join`], and session ends arrive from the session manager's event feed
//! ([`Metrics::watch_sessions`]), so neither the runtime nor the sessions know this module.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::auth::AuthError;
use crate::runtime::{ConnectionInfo, ObjectAdapter, Observer};
use crate::sessions::manager::CloseReason;
use crate::sessions::{EnvValue, SessionEvent, SessionManager};

/// The transports the runtime names; anything else is counted as "other".
const TRANSPORTS: [&str; 5] = ["tcp", "ssl", "ws", "wss", "other"];

/// Upper bounds (seconds) of the dispatch latency buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Operation names come from clients: past this many distinct ones, further names are
/// counted under "other" so a client cannot grow the table without bound.
const MAX_OPERATIONS: usize = 256;
const OTHER_OPERATION: &str = "other";

/// Why a password login ended; the label of `logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok,
    BadPassword,
    Throttled,
    Busy,
    Error,
}

impl LoginOutcome {
    const ALL: [LoginOutcome; 5] = [
        LoginOutcome::Ok,
        LoginOutcome::BadPassword,
        LoginOutcome::Throttled,
        LoginOutcome::Busy,
        LoginOutcome::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Ok => "ok",
            LoginOutcome::BadPassword => "bad_password",
            LoginOutcome::Throttled => "throttled",
            LoginOutcome::Busy => "busy",
            LoginOutcome::Error => "error",
        }
    }

    fn of<T>(result: &Result<T, AuthError>) -> Self {
        match result {
            Ok(_) => LoginOutcome::Ok,
            Err(AuthError::BadCredentials) => LoginOutcome::BadPassword,
            Err(AuthError::Throttled(_)) => LoginOutcome::Throttled,
            Err(AuthError::Busy) => LoginOutcome::Busy,
            Err(AuthError::Internal(_)) => LoginOutcome::Error,
        }
    }
}

#[derive(Default)]
struct TransportCounts {
    open: AtomicI64,
    accepted: AtomicU64,
}

#[derive(Clone, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last slot is +Inf.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let slot = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

type Gauge = Box<dyn Fn() -> usize + Send + Sync>;

/// Every metric of one server.
#[derive(Default)]
pub struct Metrics {
    transports: [TransportCounts; TRANSPORTS.len()],
    logins: [AtomicU64; LoginOutcome::ALL.len()],
    joins: AtomicU64,
    closes: AtomicU64,
    expiries: AtomicU64,
    live_sessions: OnceLock<Gauge>,
    operations: Mutex<HashMap<String, Histogram>>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    /// How to count live sessions at scrape time (the session manager's view).
    pub fn set_live_sessions(&self, count: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.live_sessions.set(Box::new(count));
    }

    /// A password check finished with `result`.
    pub fn record_login<T>(&self, result: &Result<T, AuthError>) {
        let outcome = LoginOutcome::of(result);
        let at = LoginOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.logins[at].fetch_add(1, Ordering::Relaxed);
    }

    /// A client joined a live session by its uuid.
    pub fn record_join(&self) {
        self.joins.fetch_add(1, Ordering::Relaxed);
    }

    fn record_session_end(&self, reason: CloseReason) {
        match reason {
            CloseReason::Closed => self.closes.fetch_add(1, Ordering::Relaxed),
            CloseReason::Timeout => self.expiries.fetch_add(1, Ordering::Relaxed),
            // Not a client's doing: the process is going away.
            CloseReason::Shutdown => 0,
        };
    }

    /// Counts session closes and expiries from the session manager's feed until it ends.
    pub fn watch_sessions(
        self: &Arc<Self>,
        mut events: broadcast::Receiver<SessionEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let metrics = self.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(SessionEvent::Closed { reason, .. }) => metrics.record_session_end(reason),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "metrics missed session events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    fn transport(&self, name: &str) -> &TransportCounts {
        let at = TRANSPORTS
            .iter()
            .position(|t| *t == name)
            .unwrap_or(TRANSPORTS.len() - 1);
        &self.transports[at]
    }

    fn operations(&self) -> std::sync::MutexGuard<'_, HashMap<String, Histogram>> {
        // Each update is one histogram observation: a poisoned map is still usable.
        self.operations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_connections(&mut out);
        let live = self.live_sessions.get().map_or(0, |count| count());
        gauge(
            &mut out,
            "omero_sessiond_sessions_live",
            "Live sessions.",
            live as f64,
        );
        header(
            &mut out,
            "omero_sessiond_logins_total",
            "counter",
            "Password logins by outcome.",
        );
        for (outcome, count) in LoginOutcome::ALL.iter().zip(&self.logins) {
            let _ = writeln!(
                out,
                "omero_sessiond_logins_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                count.load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "omero_sessiond_session_joins_total",
            "Joins of a live session by its uuid.",
            &self.joins,
        );
        counter(
            &mut out,
            "omero_sessiond_session_closes_total",
            "Sessions closed (reference count reached zero).",
            &self.closes,
        );
        counter(
            &mut out,
            "omero_sessiond_session_expiries_total",
            "Sessions expired (time to idle or time to live).",
            &self.expiries,
        );
        self.render_operations(&mut out);
        out
    }

    fn render_connections(&self, out: &mut String) {
        let name = "omero_sessiond_connections_open";
        header(out, name, "gauge", "Open Ice connections by transport.");
        for (t, c) in TRANSPORTS.iter().zip(&self.transports) {
            let _ = writeln!(
                out,
                "{name}{{transport=\"{t}\"}} {}",
                c.open.load(Ordering::Relaxed)
            );
        }
        let name = "omero_sessiond_connections_accepted_total";
        header(
            out,
            name,
            "counter",
            "Ice connections accepted by transport.",
        );
        for (t, c) in TRANSPORTS.iter().zip(&self.transports) {
            let _ = writeln!(
                out,
                "{name}{{transport=\"{t}\"}} {}",
                c.accepted.load(Ordering::Relaxed)
            );
        }
    }

    fn render_operations(&self, out: &mut String) {
        let name = "omero_sessiond_dispatch_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Time to dispatch an Ice request, by operation.",
        );
        let mut ops: Vec<(String, Histogram)> = self
            .operations()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ops.sort_by(|a, b| a.0.cmp(&b.0));
        for (op, h) in ops {
            let op = escape_label(&op);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{operation=\"{op}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{operation=\"{op}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{operation=\"{op}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{operation=\"{op}\"}} {}", h.count);
        }
    }
}

impl Observer for Metrics {
    fn connection_opened(&self, connection: &ConnectionInfo) {
        let t = self.transport(connection.transport);
        t.accepted.fetch_add(1, Ordering::Relaxed);
        t.open.fetch_add(1, Ordering::Relaxed);
    }

    fn connection_closed(&self, connection: &ConnectionInfo) {
        self.transport(connection.transport)
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }

    fn dispatched(&self, operation: &str, elapsed: Duration) {
        let mut ops = self.operations();
        let key = if ops.contains_key(operation) || ops.len() < MAX_OPERATIONS {
            operation
        } else {
            OTHER_OPERATION
        };
        match ops.get_mut(key) {
            Some(h) => h.observe(elapsed.as_secs_f64()),
            None => {
                let mut h = Histogram::default();
                h.observe(elapsed.as_secs_f64());
                ops.insert(key.to_string(), h);
            }
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
}

/// A label value as the exposition format wants it: backslash, quote and newline escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Makes `metrics` count what `adapter` dispatches and what `sessions` live and end.
pub fn attach<V: EnvValue>(
    metrics: &Arc<Metrics>,
    adapter: &ObjectAdapter,
    sessions: Arc<SessionManager<V>>,
) {
    adapter.set_observer(metrics.clone());
    metrics.watch_sessions(sessions.subscribe());
    metrics.set_live_sessions(move || sessions.live_sessions().len());
}

/// Serves `GET /metrics` on `listener` until the task is dropped; any other path is 404.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(transport: &'static str) -> ConnectionInfo {
        ConnectionInfo::detached(1, transport)
    }

    #[test]
    fn counts_connections_per_transport() {
        let m = Metrics::new();
        m.connection_opened(&info("ssl"));
        m.connection_opened(&info("ssl"));
        m.connection_opened(&info("tcp"));
        m.connection_closed(&info("ssl"));
        m.connection_opened(&info("carrier-pigeon"));
        let text = m.render();
        assert!(text.contains("omero_sessiond_connections_open{transport=\"ssl\"} 1\n"));
        assert!(text.contains("omero_sessiond_connections_accepted_total{transport=\"ssl\"} 2\n"));
        assert!(text.contains("omero_sessiond_connections_open{transport=\"tcp\"} 1\n"));
        assert!(text.contains("omero_sessiond_connections_open{transport=\"other\"} 1\n"));
    }

    #[test]
    fn counts_logins_by_outcome_and_joins() {
        let m = Metrics::new();
        m.record_login(&Ok::<(), AuthError>(()));
        m.record_login(&Err::<(), _>(AuthError::BadCredentials));
        m.record_login(&Err::<(), _>(AuthError::BadCredentials));
        m.record_login(&Err::<(), _>(AuthError::Busy));
        m.record_join();
        m.set_live_sessions(|| 7);
        let text = m.render();
        assert!(text.contains("omero_sessiond_logins_total{outcome=\"ok\"} 1\n"));
        assert!(text.contains("omero_sessiond_logins_total{outcome=\"bad_password\"} 2\n"));
        assert!(text.contains("omero_sessiond_logins_total{outcome=\"busy\"} 1\n"));
        assert!(text.contains("omero_sessiond_logins_total{outcome=\"throttled\"} 0\n"));
        assert!(text.contains("omero_sessiond_session_joins_total 1\n"));
        assert!(text.contains("omero_sessiond_sessions_live 7\n"));
    }

    #[test]
    fn histogram_is_cumulative_and_labels_are_escaped() {
        let m = Metrics::new();
        m.dispatched("ping", Duration::from_micros(300));
        m.dispatched("ping", Duration::from_millis(30));
        m.dispatched("a\"b\\c\nd", Duration::from_secs(60));
        let text = m.render();
        let name = "omero_sessiond_dispatch_duration_seconds";
        assert!(text.contains(&format!(
            "{name}_bucket{{operation=\"ping\",le=\"0.0005\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "{name}_bucket{{operation=\"ping\",le=\"0.05\"}} 2\n"
        )));
        assert!(text.contains(&format!("{name}_count{{operation=\"ping\"}} 2\n")));
        let odd = "a\\\"b\\\\c\\nd";
        assert!(text.contains(&format!(
            "{name}_bucket{{operation=\"{odd}\",le=\"10\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "{name}_bucket{{operation=\"{odd}\",le=\"+Inf\"}} 1\n"
        )));
    }

    #[test]
    fn operation_names_are_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_OPERATIONS + 50 {
            m.dispatched(&format!("op{i}"), Duration::from_millis(1));
        }
        m.dispatched("op0", Duration::from_millis(1));
        let ops = m.operations();
        assert_eq!(ops.len(), MAX_OPERATIONS + 1);
        assert_eq!(ops.get(OTHER_OPERATION).map(|h| h.count), Some(50));
        assert_eq!(ops.get("op0").map(|h| h.count), Some(2));
    }

    #[tokio::test]
    async fn session_events_count_closes_and_expiries() {
        let m = Metrics::new();
        let (tx, rx) = broadcast::channel(16);
        let task = m.watch_sessions(rx);
        for reason in [
            CloseReason::Closed,
            CloseReason::Timeout,
            CloseReason::Closed,
            CloseReason::Shutdown,
        ] {
            tx.send(SessionEvent::Closed {
                uuid: "u".into(),
                reason,
            })
            .unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let text = m.render();
        assert!(text.contains("omero_sessiond_session_closes_total 2\n"));
        assert!(text.contains("omero_sessiond_session_expiries_total 1\n"));
    }
}

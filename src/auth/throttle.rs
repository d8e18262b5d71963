//! Login throttling per user name and per source address.
//!
//! A key (a user name or an address) may fail a few times freely within a window; after that
//! each further attempt must wait `base_delay * 2^(failures - free)` (capped) after the last
//! failure, or it is refused without checking the password. A success clears the user's
//! counter but not the address's, so an attacker cannot reset an address by logging in to an
//! account of their own. Failures older than the window are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::sessions::clock::Clock;

/// Throttle settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures per user name allowed without delay inside the window.
    pub free_failures_per_user: u32,
    /// Failures per address allowed without delay (higher: addresses may be shared by NAT).
    pub free_failures_per_addr: u32,
    pub window: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Beyond this many tracked keys, forgotten ones are pruned on each failure.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    /// Those of the `[auth]` settings.
    fn default() -> Self {
        super::AuthConfig::default().throttle()
    }
}

/// A refused attempt: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delay {
    pub retry_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: i64,
}

/// Longest user name kept as a key: a login request may carry a name of any length, and
/// names that share this prefix sharing a counter only makes guessing slower.
const MAX_USER_KEY: usize = 256;

fn user_key(user: &str) -> String {
    let mut end = user.len().min(MAX_USER_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_string()
}

/// Keeps the map within `max` entries when every entry is recent (many addresses or names
/// in one window): the oldest go first, down to nine tenths so the sort is not paid on
/// every further failure.
fn evict_oldest(records: &mut HashMap<Key, Record>, max: usize) {
    let keep = max - max / 10;
    let Some(drop) = records.len().checked_sub(keep).filter(|&n| n > 0) else {
        return;
    };
    let mut by_age: Vec<(i64, Key)> = records
        .iter()
        .map(|(k, r)| (r.last_failure, k.clone()))
        .collect();
    by_age.select_nth_unstable_by_key(drop - 1, |(t, _)| *t);
    for (_, key) in by_age.into_iter().take(drop) {
        records.remove(&key);
    }
}

/// Shared login throttle; use one per server.
pub struct Throttle {
    config: ThrottleConfig,
    clock: Arc<dyn Clock>,
    records: Mutex<HashMap<Key, Record>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .field("tracked", &self.lock().len())
            .finish()
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig, clock: Arc<dyn Clock>) -> Self {
        Throttle {
            config,
            clock,
            records: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an attempt for `user` from `addr` may proceed now.
    pub fn check(&self, user: &str, addr: Option<IpAddr>) -> Result<(), Delay> {
        let now = self.clock.now_ms();
        let records = self.lock();
        let mut wait = 0i64;
        for (key, free) in self.keys(user, addr) {
            if let Some(r) = records.get(&key) {
                wait = wait.max(self.remaining_wait(r, free, now));
            }
        }
        if wait > 0 {
            Err(Delay {
                retry_after: Duration::from_millis(wait.unsigned_abs()),
            })
        } else {
            Ok(())
        }
    }

    /// Admits an attempt for `user` from `addr` and counts it as a failure right away, in one
    /// step: a burst of parallel attempts is refused once the free allowance is reserved,
    /// before any of them is checked. Settle the returned [`Attempt`].
    pub fn reserve(&self, user: &str, addr: Option<IpAddr>) -> Result<Attempt<'_>, Delay> {
        let now = self.clock.now_ms();
        let mut records = self.lock();
        let mut wait = 0i64;
        for (key, free) in self.keys(user, addr) {
            if let Some(r) = records.get(&key) {
                wait = wait.max(self.remaining_wait(r, free, now));
            }
        }
        if wait > 0 {
            return Err(Delay {
                retry_after: Duration::from_millis(wait.unsigned_abs()),
            });
        }
        self.add_failure(&mut records, user, addr, now);
        Ok(Attempt {
            throttle: self,
            user: user_key(user),
            addr,
            settled: false,
        })
    }

    /// A failed attempt (wrong password or unknown user).
    pub fn record_failure(&self, user: &str, addr: Option<IpAddr>) {
        let now = self.clock.now_ms();
        let mut records = self.lock();
        self.add_failure(&mut records, user, addr, now);
    }

    fn add_failure(
        &self,
        records: &mut HashMap<Key, Record>,
        user: &str,
        addr: Option<IpAddr>,
        now: i64,
    ) {
        let window = duration_ms(self.config.window);
        for (key, _) in self.keys(user, addr) {
            let r = records.entry(key).or_insert(Record {
                failures: 0,
                last_failure: now,
            });
            if now - r.last_failure > window {
                r.failures = 0;
            }
            r.failures = r.failures.saturating_add(1);
            r.last_failure = now;
        }
        if records.len() > self.config.max_entries {
            records.retain(|_, r| now - r.last_failure <= window);
        }
        if records.len() > self.config.max_entries {
            evict_oldest(records, self.config.max_entries);
        }
    }

    /// Takes back one reserved failure of `key` (the attempt did not fail after all).
    fn unreserve(&self, records: &mut HashMap<Key, Record>, key: &Key) {
        if let Some(r) = records.get_mut(key) {
            r.failures = r.failures.saturating_sub(1);
            if r.failures == 0 {
                records.remove(key);
            }
        }
    }

    /// A successful attempt clears the user's counter.
    pub fn record_success(&self, user: &str, _addr: Option<IpAddr>) {
        self.lock().remove(&Key::User(user_key(user)));
    }

    fn settle(&self, user: &str, addr: Option<IpAddr>, outcome: Outcome) {
        let mut records = self.lock();
        let user_key = Key::User(user.to_string());
        match outcome {
            Outcome::Failed => return,
            Outcome::Succeeded => {
                records.remove(&user_key);
            }
            Outcome::NotChecked => self.unreserve(&mut records, &user_key),
        }
        if let Some(a) = addr {
            self.unreserve(&mut records, &Key::Addr(a));
        }
    }

    fn keys(&self, user: &str, addr: Option<IpAddr>) -> Vec<(Key, u32)> {
        let mut keys = vec![(
            Key::User(user_key(user)),
            self.config.free_failures_per_user,
        )];
        if let Some(a) = addr {
            keys.push((Key::Addr(a), self.config.free_failures_per_addr));
        }
        keys
    }

    fn remaining_wait(&self, r: &Record, free: u32, now: i64) -> i64 {
        if now - r.last_failure > duration_ms(self.config.window) || r.failures < free {
            return 0;
        }
        let steps = (r.failures - free).min(30);
        let delay = duration_ms(self.config.base_delay)
            .saturating_mul(1i64 << steps)
            .min(duration_ms(self.config.max_delay));
        (r.last_failure + delay - now).max(0)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    NotChecked,
}

/// An admitted attempt whose failure is already counted. Dropped unsettled, it stays a
/// failure: an attempt abandoned half-way must not escape the count.
#[must_use = "settle the attempt with succeeded(), failed() or not_checked()"]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    user: String,
    addr: Option<IpAddr>,
    settled: bool,
}

impl Attempt<'_> {
    /// The password was right: the user's counter is cleared, the address's reservation
    /// taken back (a success never clears earlier failures of an address).
    pub fn succeeded(mut self) {
        self.settle(Outcome::Succeeded);
    }

    /// The password was wrong: the reserved failure stays.
    pub fn failed(mut self) {
        self.settle(Outcome::Failed);
    }

    /// No password was checked (server busy, internal error): the reservation is taken back.
    pub fn not_checked(mut self) {
        self.settle(Outcome::NotChecked);
    }

    fn settle(&mut self, outcome: Outcome) {
        self.settled = true;
        self.throttle.settle(&self.user, self.addr, outcome);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(Outcome::Failed);
        }
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::clock::ManualClock;

    fn throttle() -> (Throttle, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        (
            Throttle::new(ThrottleConfig::default(), Arc::new(clock.clone())),
            clock,
        )
    }

    fn addr(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn the_map_stays_bounded_when_every_entry_is_recent() {
        let clock = ManualClock::new(1_000_000);
        let config = ThrottleConfig {
            max_entries: 100,
            ..ThrottleConfig::default()
        };
        let t = Throttle::new(config, Arc::new(clock.clone()));
        t.record_failure("victim", None);
        clock.advance(1);
        for i in 0..1000 {
            t.record_failure(&format!("name-{i}"), None);
            assert!(t.lock().len() <= 100);
        }
        // the oldest entry went first
        assert!(!t.lock().contains_key(&Key::User("victim".into())));
        assert!(t.lock().contains_key(&Key::User("name-999".into())));
    }

    #[test]
    fn long_user_names_are_cut_to_a_bounded_key() {
        let (t, _) = throttle();
        let long = "é".repeat(10_000);
        for _ in 0..5 {
            t.record_failure(&long, None);
        }
        assert!(t.check(&long, None).is_err());
        let keys: Vec<usize> = t
            .lock()
            .keys()
            .map(|k| match k {
                Key::User(u) => u.len(),
                Key::Addr(_) => 0,
            })
            .collect();
        assert_eq!(keys, [MAX_USER_KEY]);
    }

    #[test]
    fn five_free_failures_then_exponential_delay() {
        let (t, clock) = throttle();
        for _ in 0..4 {
            t.record_failure("alice", addr(1));
            assert!(t.check("alice", addr(1)).is_ok());
        }
        t.record_failure("alice", addr(1));
        assert_eq!(
            t.check("alice", addr(1)),
            Err(Delay {
                retry_after: Duration::from_secs(1)
            })
        );
        clock.advance(1000);
        assert!(t.check("alice", addr(1)).is_ok());
        t.record_failure("alice", addr(1));
        assert_eq!(
            t.check("alice", addr(2)).unwrap_err().retry_after,
            Duration::from_secs(2),
            "the user is throttled from any address"
        );
        clock.advance(2000);
        t.record_failure("alice", addr(1));
        assert_eq!(
            t.check("alice", None).unwrap_err().retry_after,
            Duration::from_secs(4)
        );
    }

    #[test]
    fn delay_is_capped() {
        let (t, _) = throttle();
        for _ in 0..40 {
            t.record_failure("bob", None);
        }
        assert_eq!(
            t.check("bob", None).unwrap_err().retry_after,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn success_resets_user_but_not_address() {
        let (t, _) = throttle();
        for i in 0..20 {
            t.record_failure(&format!("user{i}"), addr(7));
        }
        assert!(
            t.check("someone-else", addr(7)).is_err(),
            "address is throttled"
        );
        assert!(t.check("someone-else", addr(8)).is_ok());
        for _ in 0..5 {
            t.record_failure("carol", None);
        }
        assert!(t.check("carol", None).is_err());
        t.record_success("carol", addr(7));
        assert!(t.check("carol", None).is_ok());
        assert!(t.check("carol", addr(7)).is_err());
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let (t, clock) = throttle();
        for _ in 0..10 {
            t.record_failure("dave", None);
        }
        clock.advance(15 * 60 * 1000 + 1);
        assert!(t.check("dave", None).is_ok());
        t.record_failure("dave", None);
        assert!(t.check("dave", None).is_ok(), "counter restarted at 1");
    }

    #[test]
    fn parallel_attempts_are_refused_once_the_allowance_is_reserved() {
        let (t, _) = throttle();
        let held: Vec<_> = (0..5)
            .map(|_| t.reserve("erin", addr(1)).unwrap())
            .collect();
        assert!(
            t.reserve("erin", addr(1)).is_err(),
            "sixth waits before any check ends"
        );
        for attempt in held {
            attempt.failed();
        }
        assert!(t.check("erin", addr(2)).is_err());
    }

    #[test]
    fn a_reservation_is_taken_back_on_success_or_when_unchecked() {
        let (t, _) = throttle();
        for _ in 0..4 {
            t.record_failure("frank", addr(3));
        }
        t.reserve("frank", addr(3)).unwrap().not_checked();
        assert!(t.check("frank", None).is_ok(), "still four failures");
        t.reserve("frank", addr(3)).unwrap().succeeded();
        assert!(!t.lock().contains_key(&Key::User("frank".into())));
        assert_eq!(
            t.lock()[&Key::Addr(IpAddr::from([10, 0, 0, 3]))].failures,
            4
        );
        for _ in 0..100 {
            t.reserve("grace", addr(4)).unwrap().succeeded();
        }
        assert!(
            t.lock().is_empty()
                || !t
                    .lock()
                    .contains_key(&Key::Addr(IpAddr::from([10, 0, 0, 4])))
        );
    }

    #[test]
    fn an_abandoned_attempt_counts_as_a_failure() {
        let (t, _) = throttle();
        for _ in 0..5 {
            drop(t.reserve("heidi", None).unwrap());
        }
        assert!(t.check("heidi", None).is_err());
    }

    #[test]
    fn pruning_keeps_memory_bounded() {
        let clock = ManualClock::new(0);
        let config = ThrottleConfig {
            max_entries: 10,
            ..ThrottleConfig::default()
        };
        let t = Throttle::new(config, Arc::new(clock.clone()));
        for i in 0..10 {
            t.record_failure(&format!("u{i}"), None);
        }
        clock.advance(16 * 60 * 1000);
        t.record_failure("fresh", None);
        assert_eq!(t.lock().len(), 1);
    }
}

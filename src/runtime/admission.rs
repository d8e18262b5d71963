//! Bounded admission of connections: a cap on open connections in total and per remote
//! address, checked right after `accept` and before anything costly (a TLS handshake, a task,
//! buffers) is spent on the connection. Every listener passes its connections through the
//! same [`Admission`], so one peer cannot use up the server by opening sockets.
//!
//! IPv6 peers are counted by their /64 prefix: a single host is usually handed a whole /64,
//! so counting full addresses would let it open a fresh address per connection.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The caps; `None` is no cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    pub max_connections: Option<usize>,
    pub max_per_address: Option<usize>,
}

impl AdmissionLimits {
    pub const UNLIMITED: AdmissionLimits = AdmissionLimits {
        max_connections: None,
        max_per_address: None,
    };
}

/// What connections are counted under: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl AddressKey {
    pub fn of(ip: IpAddr) -> AddressKey {
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; count them as IPv4.
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddressKey::V4(v4),
            IpAddr::V6(v6) => AddressKey::V6Prefix((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressKey::V4(ip) => write!(f, "{ip}"),
            AddressKey::V6Prefix(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64))
            }
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{limit} connections are open, the most allowed")]
    Total { limit: usize },
    #[error("{limit} connections from {key} are open, the most allowed per address")]
    PerAddress { key: AddressKey, limit: usize },
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// Only keys with open connections, so the map never outgrows the connections.
    by_key: HashMap<AddressKey, usize>,
}

/// The shared counter of open connections.
pub struct Admission {
    limits: AdmissionLimits,
    counts: Mutex<Counts>,
    warnings: Mutex<WarnGate>,
}

/// A flood of refused connections must not become a flood of log lines: at most one
/// warning per [`WARN_EVERY`], which tells how many refusals went unlogged before it.
#[derive(Default)]
struct WarnGate {
    last: Option<Instant>,
    suppressed: u64,
}

const WARN_EVERY: Duration = Duration::from_secs(1);

impl WarnGate {
    /// `Some(refusals not logged since the last warning)` when this one is to be logged.
    fn pass(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < WARN_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[must_use = "the place is freed when this is dropped"]
pub struct Admitted {
    admission: Arc<Admission>,
    key: AddressKey,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            counts: Mutex::new(Counts::default()),
            warnings: Mutex::new(WarnGate::default()),
        })
    }

    /// Takes a place for a connection from `ip`, or says why there is none.
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let key = AddressKey::of(ip);
        let mut counts = self.lock();
        if let Some(limit) = self.limits.max_connections {
            if counts.total >= limit {
                return Err(Refusal::Total { limit });
            }
        }
        let here = counts.by_key.get(&key).copied().unwrap_or(0);
        if let Some(limit) = self.limits.max_per_address {
            if here >= limit {
                return Err(Refusal::PerAddress { key, limit });
            }
        }
        counts.total += 1;
        counts.by_key.insert(key, here + 1);
        Ok(Admitted {
            admission: self.clone(),
            key,
        })
    }

    /// Connections holding a place.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Connections holding a place under `ip`'s key.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let key = AddressKey::of(ip);
        self.lock().by_key.get(&key).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent under a panic elsewhere: each update is one step.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, key: AddressKey) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_key.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                counts.by_key.remove(&key);
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.release(self.key);
    }
}

/// The admission step every listener runs on an accepted socket: a place, or a warning and
/// `None`, after which the caller drops the socket at once.
pub fn admit(admission: &Arc<Admission>, remote: std::net::SocketAddr) -> Option<Admitted> {
    match admission.try_admit(remote.ip()) {
        Ok(place) => Some(place),
        Err(refusal) => {
            let mut gate = admission.warnings.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(unlogged) = gate.pass(Instant::now()) {
                tracing::warn!(%remote, reason = %refusal, unlogged, "connection refused");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_cap_and_release() {
        let a = Admission::new(AdmissionLimits {
            max_connections: None,
            max_per_address: Some(2),
        });
        let one = a.try_admit(ip("10.0.0.1")).unwrap();
        let _two = a.try_admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            a.try_admit(ip("10.0.0.1")).err(),
            Some(Refusal::PerAddress {
                key: AddressKey::V4("10.0.0.1".parse().unwrap()),
                limit: 2
            })
        );
        let _other = a.try_admit(ip("10.0.0.2")).unwrap();
        drop(one);
        let _again = a.try_admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn total_cap() {
        let a = Admission::new(AdmissionLimits {
            max_connections: Some(1),
            max_per_address: None,
        });
        let first = a.try_admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            a.try_admit(ip("10.0.0.2")).err(),
            Some(Refusal::Total { limit: 1 })
        );
        drop(first);
        assert!(a.try_admit(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a = Admission::new(AdmissionLimits {
            max_connections: None,
            max_per_address: Some(1),
        });
        let _x = a.try_admit(ip("2001:db8:1:2::1")).unwrap();
        let refused = a.try_admit(ip("2001:db8:1:2:ffff::9")).err().unwrap();
        assert_eq!(
            refused.to_string(),
            "1 connections from 2001:db8:1:2::/64 are open, the most allowed per address"
        );
        let _y = a.try_admit(ip("2001:db8:1:3::1")).unwrap();
        let _z = a.try_admit(ip("192.0.2.7")).unwrap();
        assert!(a.try_admit(ip("::ffff:192.0.2.7")).is_err());
    }

    #[test]
    fn refusal_warnings_are_rate_limited_and_count_the_unlogged() {
        let mut gate = WarnGate::default();
        let t0 = Instant::now();
        assert_eq!(gate.pass(t0), Some(0));
        assert_eq!(gate.pass(t0 + Duration::from_millis(10)), None);
        assert_eq!(gate.pass(t0 + Duration::from_millis(900)), None);
        assert_eq!(gate.pass(t0 + WARN_EVERY), Some(2));
        assert_eq!(gate.pass(t0 + 3 * WARN_EVERY), Some(0));
    }

    #[test]
    fn released_keys_leave_the_map() {
        let a = Admission::new(AdmissionLimits::UNLIMITED);
        for i in 0..100u8 {
            drop(a.try_admit(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))).unwrap());
        }
        assert_eq!(a.open(), 0);
        assert!(a.lock().by_key.is_empty());
    }
}

//! Wall-clock time in milliseconds, swappable so expiry rules are tested without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time as milliseconds since the Unix epoch (OMERO's unit).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock set before 1970 is broken; treat it as the epoch rather than panic.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        ManualClock {
            now: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    pub fn set(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Formats epoch milliseconds the way `java.sql.Timestamp.toString()` does, in UTC:
/// `yyyy-mm-dd hh:mm:ss.f` where the fraction drops trailing zeros but keeps at least one digit.
/// OMERO puts such timestamps in its session-timeout messages.
pub fn java_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let fraction = if millis == 0 {
        "0".to_string()
    } else {
        format!("{millis:03}").trim_end_matches('0').to_string()
    };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{fraction}",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's published algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share() {
        let c = ManualClock::new(1000);
        let c2 = c.clone();
        c.advance(5);
        assert_eq!(c2.now_ms(), 1005);
        c2.set(7);
        assert_eq!(c.now_ms(), 7);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }

    #[test]
    fn java_timestamp_format() {
        assert_eq!(java_timestamp(0), "1970-01-01 00:00:00.0");
        assert_eq!(java_timestamp(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(java_timestamp(1_700_000_000_120), "2023-11-14 22:13:20.12");
        assert_eq!(java_timestamp(1_700_000_000_100), "2023-11-14 22:13:20.1");
        assert_eq!(java_timestamp(951_782_400_005), "2000-02-29 00:00:00.005");
    }
}

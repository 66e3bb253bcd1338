//! When a subscription looks for entries to redeliver: at once when it starts (an earlier
//! subscriber may have died holding some), then every `redeliverInterval`. A check is one
//! XAUTOCLAIM scan of the group's pending list, which may take several calls (each claims at
//! most the read's count); until the scan is complete the check stays due.

use std::time::{Duration, Instant};

use crate::config::Redelivery;

/// The cursor that starts a scan, and that XAUTOCLAIM returns when a scan is complete.
pub const SCAN_START: &str = "0-0";

#[derive(Debug, Clone)]
pub struct Reclaim {
    pub config: Redelivery,
    /// `None` when the interval is too long to represent: never again.
    next_due: Option<Instant>,
    cursor: String,
}

impl Reclaim {
    pub fn new(config: Redelivery, now: Instant) -> Self {
        Self {
            config,
            next_due: Some(now),
            cursor: SCAN_START.to_owned(),
        }
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next_due.is_some_and(|due| now >= due)
    }

    /// How long a read may block before the next check is due.
    pub fn until_due(&self, now: Instant) -> Duration {
        self.next_due
            .map_or(Duration::MAX, |due| due.saturating_duration_since(now))
    }

    /// Where the scan goes on.
    pub fn cursor(&self) -> &str {
        &self.cursor
    }

    /// Records how far a scan got: a complete scan makes the next check due one interval
    /// later; an incomplete one leaves it due, to go on from `cursor`.
    pub fn advance(&mut self, cursor: String, now: Instant) {
        if cursor == SCAN_START {
            self.next_due = now.checked_add(self.config.interval);
        }
        self.cursor = cursor;
    }

    /// Starts over at the next check (the group was recreated, or the scan failed).
    pub fn restart(&mut self, now: Instant) {
        self.advance(SCAN_START.to_owned(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Redelivery {
        Redelivery {
            min_idle: Duration::from_secs(60),
            interval: Duration::from_secs(15),
        }
    }

    #[test]
    fn due_at_start_then_every_interval() {
        let t0 = Instant::now();
        let mut r = Reclaim::new(config(), t0);
        assert!(r.is_due(t0));
        assert_eq!(r.until_due(t0), Duration::ZERO);
        r.advance(SCAN_START.into(), t0);
        assert!(!r.is_due(t0 + Duration::from_secs(14)));
        assert_eq!(
            r.until_due(t0 + Duration::from_secs(5)),
            Duration::from_secs(10)
        );
        assert!(r.is_due(t0 + Duration::from_secs(15)));
    }

    #[test]
    fn an_incomplete_scan_stays_due_and_resumes() {
        let t0 = Instant::now();
        let mut r = Reclaim::new(config(), t0);
        r.advance("1700-3".into(), t0);
        assert!(r.is_due(t0));
        assert_eq!(r.cursor(), "1700-3");
        r.advance(SCAN_START.into(), t0 + Duration::from_secs(1));
        assert_eq!(r.cursor(), SCAN_START);
        assert!(!r.is_due(t0 + Duration::from_secs(2)));
        assert!(r.is_due(t0 + Duration::from_secs(16)));
        r.advance("9-9".into(), t0 + Duration::from_secs(16));
        r.restart(t0 + Duration::from_secs(17));
        assert_eq!(r.cursor(), SCAN_START);
        assert!(!r.is_due(t0 + Duration::from_secs(17)));
    }

    #[test]
    fn an_absurd_interval_means_never_again() {
        let t0 = Instant::now();
        let mut r = Reclaim::new(
            Redelivery {
                min_idle: Duration::from_secs(1),
                interval: Duration::MAX,
            },
            t0,
        );
        assert!(r.is_due(t0));
        r.advance(SCAN_START.into(), t0);
        assert!(!r.is_due(t0 + Duration::from_secs(1 << 40)));
        assert_eq!(r.until_due(t0), Duration::MAX);
    }
}

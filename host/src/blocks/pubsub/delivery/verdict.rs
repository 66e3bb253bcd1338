//! What the app's answer means for a delivery, and the one retry schedule single and bulk
//! deliveries share.

use std::time::Duration;

use tokio::sync::watch;

use super::DeliveryPolicy;

/// The app's answer (or its silence) for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Retry,
    Drop,
}

/// The app's answer to one bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAnswer {
    /// The same for every entry (404, another status, no usable body).
    All(Verdict),
    /// Per entry id; an entry missing here is retried.
    Each(std::collections::HashMap<String, Verdict>),
}

impl BulkAnswer {
    pub fn verdict(&self, entry_id: &str) -> Verdict {
        match self {
            Self::All(verdict) => *verdict,
            Self::Each(verdicts) => verdicts.get(entry_id).copied().unwrap_or(Verdict::Retry),
        }
    }
}

/// What to do after an attempt the app asked to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// The backoff has passed: try again.
    Again,
    /// Every retry is spent: give up on the message.
    Exhausted,
    /// The sidecar is stopping: hand the message back to the broker.
    Stopping,
}

/// Counts attempts and waits between them, doubling up to the policy's maximum.
pub struct Retries {
    attempts_left: u32,
    backoff: Duration,
    max_backoff: Duration,
}

impl Retries {
    pub fn new(policy: &DeliveryPolicy) -> Self {
        Self {
            attempts_left: policy.retries,
            backoff: policy.first_backoff,
            max_backoff: policy.max_backoff,
        }
    }

    /// Called after an attempt that asked for a retry.
    pub async fn next(&mut self, stop: &watch::Receiver<bool>) -> NextAttempt {
        if self.attempts_left == 0 {
            return NextAttempt::Exhausted;
        }
        if *stop.borrow() {
            return NextAttempt::Stopping;
        }
        self.attempts_left -= 1;
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
        NextAttempt::Again
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_then_run_out() {
        let policy = DeliveryPolicy {
            retries: 3,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
        };
        let (_stop_tx, stop) = watch::channel(false);
        let mut retries = Retries::new(&policy);
        let started = tokio::time::Instant::now();
        let mut waits = Vec::new();
        loop {
            let before = tokio::time::Instant::now();
            match retries.next(&stop).await {
                NextAttempt::Again => waits.push(before.elapsed()),
                other => {
                    assert_eq!(other, NextAttempt::Exhausted);
                    break;
                }
            }
        }
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, vec![ms(100), ms(200), ms(250)]);
        assert_eq!(started.elapsed(), ms(550));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_sidecar_hands_messages_back() {
        let (stop_tx, stop) = watch::channel(false);
        let mut retries = Retries::new(&DeliveryPolicy::default());
        stop_tx.send_replace(true);
        assert_eq!(retries.next(&stop).await, NextAttempt::Stopping);
    }

    #[test]
    fn bulk_answers_default_to_retry() {
        let each = BulkAnswer::Each([("a".to_owned(), Verdict::Drop)].into_iter().collect());
        assert_eq!(each.verdict("a"), Verdict::Drop);
        assert_eq!(each.verdict("b"), Verdict::Retry);
        assert_eq!(
            BulkAnswer::All(Verdict::Success).verdict("x"),
            Verdict::Success
        );
    }
}

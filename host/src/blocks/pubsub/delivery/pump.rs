//! The pump's bookkeeping, apart from its I/O: messages read ahead, slots taken by
//! deliveries in flight, answers waiting to be settled, and when a bulk request is due.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::blocks::pubsub::subscription::BulkSubscribe;
use crate::blocks::pubsub::{IncomingMessage, Outcome, Settlement};

/// Messages read ahead of the deliveries, as a multiple of the concurrency: a slot that
/// frees up is refilled from memory, not after a broker round trip (daprd's Redis
/// component reads ahead the same way, `queueDepth`).
const READ_AHEAD: usize = 2;

pub struct PumpState {
    concurrency: usize,
    bulk: Option<BulkSubscribe>,
    ahead: VecDeque<IncomingMessage>,
    /// Since when the oldest message read ahead waits (bulk requests wait to fill up).
    waiting_since: Option<Instant>,
    slots_taken: usize,
    messages_out: usize,
    answered: Vec<Settlement>,
}

impl PumpState {
    pub fn new(concurrency: usize, bulk: Option<BulkSubscribe>) -> Self {
        Self {
            concurrency: concurrency.max(1),
            bulk,
            ahead: VecDeque::new(),
            waiting_since: None,
            slots_taken: 0,
            messages_out: 0,
            answered: Vec::new(),
        }
    }

    /// Messages the broker handed over.
    pub fn received(&mut self, messages: Vec<IncomingMessage>, now: Instant) {
        if self.waiting_since.is_none() && !messages.is_empty() {
            self.waiting_since = Some(now);
        }
        self.ahead.extend(messages);
    }

    /// A delivery finished: its slot is free and its settlements wait to be sent.
    pub fn finished(&mut self, settlements: Vec<Settlement>) {
        self.slots_taken -= 1;
        self.messages_out -= settlements.len();
        self.answered.extend(settlements);
    }

    /// The answers to settle now, if any.
    pub fn take_answered(&mut self) -> Option<Vec<Settlement>> {
        (!self.answered.is_empty()).then(|| std::mem::take(&mut self.answered))
    }

    /// The next unit to deliver, if a slot is free and one is ready: one message, or with
    /// bulkSubscribe a full request (or one whose first message has waited long enough).
    pub fn next_unit(&mut self, now: Instant) -> Option<Vec<IncomingMessage>> {
        if self.slots_taken >= self.concurrency || self.ahead.is_empty() {
            return None;
        }
        let take = match self.bulk {
            None => 1,
            Some(bulk) => {
                let full = self.ahead.len() >= bulk.max_messages;
                let due = self
                    .waiting_since
                    .is_some_and(|t| now.duration_since(t) >= bulk.max_await);
                if !full && !due {
                    return None;
                }
                bulk.max_messages.min(self.ahead.len())
            }
        };
        let unit: Vec<IncomingMessage> = self.ahead.drain(..take).collect();
        self.waiting_since = (!self.ahead.is_empty()).then_some(now);
        self.slots_taken += 1;
        self.messages_out += unit.len();
        Some(unit)
    }

    /// When a bulk request that waits to fill up must go.
    pub fn bulk_deadline(&self) -> Option<Instant> {
        self.bulk
            .zip(self.waiting_since)
            .map(|(bulk, since)| since + bulk.max_await)
    }

    /// How many more messages to read ahead.
    pub fn wanted(&self) -> usize {
        let read_ahead = match self.bulk {
            Some(bulk) => 2 * bulk.max_messages,
            None => READ_AHEAD * self.concurrency,
        };
        read_ahead.saturating_sub(self.ahead.len() + self.messages_out)
    }

    pub fn slot_free(&self) -> bool {
        self.slots_taken < self.concurrency
    }

    pub fn in_flight(&self) -> bool {
        self.slots_taken > 0
    }

    /// Nothing more to read now, or messages wait for a slot: wait for an answer rather
    /// than on the broker.
    pub fn should_wait_for_answers(&self) -> bool {
        self.wanted() == 0 || (!self.slot_free() && !self.ahead.is_empty())
    }

    /// How long the broker may make a read wait.
    pub fn read_wait(&self, now: Instant, idle: Duration, busy: Duration) -> Duration {
        match self.bulk_deadline() {
            Some(deadline) => deadline.saturating_duration_since(now),
            None if self.in_flight() => busy,
            None => idle,
        }
    }

    /// On the way out: what was read ahead goes back to the broker, with the answers.
    pub fn hand_back(&mut self) -> Vec<Settlement> {
        let mut settled = std::mem::take(&mut self.answered);
        settled.extend(self.ahead.drain(..).map(|message| Settlement {
            id: message.id,
            outcome: Outcome::Retry,
        }));
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(ids: std::ops::Range<u32>) -> Vec<IncomingMessage> {
        ids.map(|i| IncomingMessage {
            id: i.to_string(),
            topic: "t".into(),
            data: Vec::new(),
            content_type: None,
            metadata: Vec::new(),
        })
        .collect()
    }

    fn success(ids: &[&str]) -> Vec<Settlement> {
        ids.iter()
            .map(|id| Settlement {
                id: (*id).to_owned(),
                outcome: Outcome::Success,
            })
            .collect()
    }

    #[test]
    fn single_delivery_fills_the_slots_then_reads_ahead() {
        let now = Instant::now();
        let mut pump = PumpState::new(2, None);
        assert_eq!(pump.wanted(), 4);
        pump.received(messages(0..4), now);
        assert_eq!(pump.next_unit(now).map(|u| u.len()), Some(1));
        assert_eq!(
            pump.next_unit(now).map(|u| u[0].id.clone()),
            Some("1".into())
        );
        assert!(pump.next_unit(now).is_none(), "both slots are taken");
        assert!(!pump.slot_free());
        assert!(pump.should_wait_for_answers(), "messages wait for a slot");
        pump.finished(success(&["0"]));
        assert_eq!(pump.take_answered(), Some(success(&["0"])));
        assert_eq!(pump.take_answered(), None);
        assert_eq!(pump.wanted(), 1, "one out, two ahead");
        assert_eq!(
            pump.next_unit(now).map(|u| u[0].id.clone()),
            Some("2".into())
        );
        let handed_back = pump.hand_back();
        assert_eq!(handed_back.len(), 1);
        assert_eq!(handed_back[0].outcome, Outcome::Retry);
        assert_eq!(handed_back[0].id, "3");
    }

    #[test]
    fn bulk_requests_wait_to_fill_up_until_their_time() {
        let bulk = BulkSubscribe {
            max_messages: 3,
            max_await: Duration::from_millis(100),
        };
        let start = Instant::now();
        let mut pump = PumpState::new(1, Some(bulk));
        assert_eq!(pump.wanted(), 6);
        pump.received(messages(0..2), start);
        assert!(pump.next_unit(start).is_none(), "not full, not due");
        assert_eq!(pump.bulk_deadline(), Some(start + bulk.max_await));
        let later = start + Duration::from_millis(40);
        assert_eq!(
            pump.read_wait(later, Duration::from_secs(1), Duration::from_millis(20)),
            Duration::from_millis(60)
        );
        let due = start + Duration::from_millis(100);
        assert_eq!(pump.next_unit(due).map(|u| u.len()), Some(2));
        pump.received(messages(2..6), due);
        assert!(pump.next_unit(due).is_none(), "the one slot is taken");
        pump.finished(success(&["0", "1"]));
        assert_eq!(pump.next_unit(due).map(|u| u.len()), Some(3), "full");
        assert_eq!(pump.wanted(), 2);
    }
}

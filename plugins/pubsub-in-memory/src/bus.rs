//! The message bus, in plain Rust (no WIT types, no clock of its own) so it is unit-tested
//! natively.
//!
//! - A topic fans out to every consumer group subscribed to it; within a group each message
//!   goes to one subscription (whichever asks first).
//! - A message published to a topic no group is subscribed to is dropped, as Dapr's in-memory
//!   bus drops it.
//! - A delivered message stays in flight until it is settled: `Done` removes it, `Retry` puts
//!   it back at the head of its group's queue. A message left in flight longer than its
//!   subscription's processing timeout goes back to the head of the queue too, at the next
//!   `next` on that group (there is no timer of its own).
//! - A group's last subscription going away removes the group and what it held; a
//!   subscription going away while others of its group remain hands its unsettled messages
//!   back to the group.
//! - Memory is bounded: a group holds at most `max_messages` (queued plus in flight), and the
//!   whole bus at most `max_bytes` (each group's copy counted); a publish that would go past
//!   either is refused as a whole, before any group receives it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::rc::Rc;

/// How many messages `next` hands out when asked for no particular number.
pub const DEFAULT_BATCH: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

impl Default for Limits {
    /// Sized for the host's default 128 MiB instance cap, leaving room for the copies a publish
    /// and a delivery make.
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            max_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The bus-wide publish sequence number; the delivery id is its decimal form.
    pub seq: u64,
    pub topic: String,
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
}

impl Message {
    /// What holding one copy costs, roughly.
    fn size(&self) -> usize {
        let metadata: usize = self
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        self.data.len()
            + self.topic.len()
            + self.content_type.as_ref().map_or(0, String::len)
            + metadata
            + 128
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// A group or the bus is full; the text says which.
    Full(String),
    /// The subscription does not exist (any more).
    UnknownSubscription,
    /// Not an id this bus hands out.
    InvalidId(String),
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Queued for this many consumer groups.
    Queued(usize),
    /// No group is subscribed to the topic: dropped.
    NoSubscribers,
}

/// What the host decided about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Success or drop: forget it.
    Done,
    /// Deliver it again (first in line).
    Retry,
}

/// What an acknowledgement found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    Settled,
    /// The message was not in flight (settled before, or handed back after its processing
    /// timeout); nothing changed, except that `Done` removes it from the queue if it waits
    /// there to be redelivered.
    NotInFlight,
}

struct InFlight {
    message: Rc<Message>,
    subscription: u64,
    /// Tells this delivery from a later one of the same message.
    delivery: u64,
}

#[derive(Default)]
struct Group {
    ready: VecDeque<Rc<Message>>,
    in_flight: HashMap<u64, InFlight>,
    /// (due ms, seq, delivery): when an unsettled delivery goes back to the queue.
    timers: BinaryHeap<Reverse<(u64, u64, u64)>>,
    subscriptions: usize,
    bytes: usize,
}

impl Group {
    fn held(&self) -> usize {
        self.ready.len() + self.in_flight.len()
    }

    /// Puts deliveries whose processing timeout has passed back at the head of the queue, in
    /// publish order.
    fn expire(&mut self, now_ms: u64) {
        let mut expired = Vec::new();
        while let Some(Reverse((due, seq, delivery))) = self.timers.peek().copied() {
            if due > now_ms {
                break;
            }
            self.timers.pop();
            if self
                .in_flight
                .get(&seq)
                .is_some_and(|f| f.delivery == delivery)
            {
                if let Some(f) = self.in_flight.remove(&seq) {
                    expired.push(f.message);
                }
            }
        }
        expired.sort_by_key(|m| Reverse(m.seq));
        for message in expired {
            self.ready.push_front(message);
        }
    }
}

struct SubscriptionInfo {
    topic: String,
    group: String,
    /// How long a delivery may stay unsettled before it is handed out again.
    redeliver_after_ms: Option<u64>,
}

pub struct Bus {
    limits: Limits,
    /// topic → consumer group → group.
    topics: HashMap<String, HashMap<String, Group>>,
    subscriptions: HashMap<u64, SubscriptionInfo>,
    next_subscription: u64,
    next_seq: u64,
    next_delivery: u64,
    bytes: usize,
}

impl Bus {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            topics: HashMap::new(),
            subscriptions: HashMap::new(),
            next_subscription: 1,
            next_seq: 1,
            next_delivery: 1,
            bytes: 0,
        }
    }

    pub fn subscribe(&mut self, topic: &str, group: &str, redeliver_after_ms: Option<u64>) -> u64 {
        let id = self.next_subscription;
        self.next_subscription += 1;
        let g = self
            .topics
            .entry(topic.to_owned())
            .or_default()
            .entry(group.to_owned())
            .or_default();
        g.subscriptions += 1;
        self.subscriptions.insert(
            id,
            SubscriptionInfo {
                topic: topic.to_owned(),
                group: group.to_owned(),
                redeliver_after_ms,
            },
        );
        id
    }

    /// Ends a subscription; unknown ids are ignored.
    pub fn unsubscribe(&mut self, subscription: u64) {
        let Some(info) = self.subscriptions.remove(&subscription) else {
            return;
        };
        let Some(groups) = self.topics.get_mut(&info.topic) else {
            return;
        };
        let Some(group) = groups.get_mut(&info.group) else {
            return;
        };
        group.subscriptions = group.subscriptions.saturating_sub(1);
        if group.subscriptions == 0 {
            self.bytes = self.bytes.saturating_sub(group.bytes);
            groups.remove(&info.group);
            if groups.is_empty() {
                self.topics.remove(&info.topic);
            }
            return;
        }
        // The others of the group take over what it left unsettled.
        let mut orphans: Vec<u64> = group
            .in_flight
            .iter()
            .filter(|(_, f)| f.subscription == subscription)
            .map(|(seq, _)| *seq)
            .collect();
        orphans.sort_unstable_by(|a, b| b.cmp(a));
        for seq in orphans {
            if let Some(f) = group.in_flight.remove(&seq) {
                group.ready.push_front(f.message);
            }
        }
    }

    pub fn publish(
        &mut self,
        topic: &str,
        data: Vec<u8>,
        content_type: Option<String>,
        metadata: Vec<(String, String)>,
    ) -> Result<Published, BusError> {
        let Some(groups) = self.topics.get_mut(topic).filter(|g| !g.is_empty()) else {
            return Ok(Published::NoSubscribers);
        };
        if let Some((name, group)) = groups
            .iter()
            .find(|(_, g)| g.held() >= self.limits.max_messages)
        {
            return Err(BusError::Full(format!(
                "consumer group {name:?} of topic {topic:?} holds {} messages not yet \
                 acknowledged, the most it may",
                group.held()
            )));
        }
        let message = Rc::new(Message {
            seq: self.next_seq,
            topic: topic.to_owned(),
            data,
            content_type,
            metadata,
        });
        let size = message.size();
        let needed = size.saturating_mul(groups.len());
        if self.bytes.saturating_add(needed) > self.limits.max_bytes {
            return Err(BusError::Full(format!(
                "the in-memory bus holds {} KiB of messages not yet acknowledged; this one would \
                 take it past its limit of {} KiB",
                self.bytes >> 10,
                self.limits.max_bytes >> 10
            )));
        }
        self.next_seq += 1;
        for group in groups.values_mut() {
            group.ready.push_back(Rc::clone(&message));
            group.bytes += size;
        }
        self.bytes += needed;
        Ok(Published::Queued(groups.len()))
    }

    /// Hands out up to `max` messages (`DEFAULT_BATCH` when 0) of the subscription's group,
    /// oldest first, after returning expired deliveries to the queue. Never waits.
    pub fn next(
        &mut self,
        subscription: u64,
        max: u32,
        now_ms: u64,
    ) -> Result<Vec<Rc<Message>>, BusError> {
        let (info, group) = subscribed(&self.subscriptions, &mut self.topics, subscription)?;
        group.expire(now_ms);
        let max = if max == 0 { DEFAULT_BATCH } else { max };
        let take = group.ready.len().min(max as usize);
        let mut out = Vec::with_capacity(take);
        for message in group.ready.drain(..take) {
            let delivery = self.next_delivery;
            self.next_delivery += 1;
            if let Some(after) = info.redeliver_after_ms {
                group.timers.push(Reverse((
                    now_ms.saturating_add(after),
                    message.seq,
                    delivery,
                )));
            }
            group.in_flight.insert(
                message.seq,
                InFlight {
                    message: Rc::clone(&message),
                    subscription,
                    delivery,
                },
            );
            out.push(message);
        }
        Ok(out)
    }

    pub fn ack(&mut self, subscription: u64, id: &str, settle: Settle) -> Result<Acked, BusError> {
        let seq: u64 = id.parse().map_err(|_| BusError::InvalidId(id.to_owned()))?;
        let (_, group) = subscribed(&self.subscriptions, &mut self.topics, subscription)?;
        let Some(flight) = group.in_flight.remove(&seq) else {
            if settle == Settle::Done {
                if let Some(at) = group.ready.iter().position(|m| m.seq == seq) {
                    if let Some(message) = group.ready.remove(at) {
                        let size = message.size();
                        group.bytes = group.bytes.saturating_sub(size);
                        self.bytes = self.bytes.saturating_sub(size);
                    }
                }
            }
            return Ok(Acked::NotInFlight);
        };
        match settle {
            Settle::Done => {
                let size = flight.message.size();
                group.bytes = group.bytes.saturating_sub(size);
                self.bytes = self.bytes.saturating_sub(size);
            }
            Settle::Retry => group.ready.push_front(flight.message),
        }
        Ok(Acked::Settled)
    }

    /// Messages held (queued or in flight) across all groups, and their accounted bytes.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        let messages = self
            .topics
            .values()
            .flat_map(HashMap::values)
            .map(Group::held)
            .sum();
        (messages, self.bytes)
    }
}

/// A subscription and the consumer group it reads from. (A function over the two maps, not a
/// method, so the caller can still use the bus's other fields.)
fn subscribed<'a>(
    subscriptions: &'a HashMap<u64, SubscriptionInfo>,
    topics: &'a mut HashMap<String, HashMap<String, Group>>,
    subscription: u64,
) -> Result<(&'a SubscriptionInfo, &'a mut Group), BusError> {
    let info = subscriptions
        .get(&subscription)
        .ok_or(BusError::UnknownSubscription)?;
    let group = topics
        .get_mut(&info.topic)
        .and_then(|groups| groups.get_mut(&info.group))
        .ok_or(BusError::UnknownSubscription)?;
    Ok((info, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus() -> Bus {
        Bus::new(Limits::default())
    }

    fn publish(bus: &mut Bus, topic: &str, body: &str) -> Result<Published, BusError> {
        bus.publish(topic, body.as_bytes().to_vec(), None, vec![])
    }

    fn bodies(messages: &[Rc<Message>]) -> Vec<String> {
        messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .collect()
    }

    fn ids(messages: &[Rc<Message>]) -> Vec<String> {
        messages.iter().map(|m| m.seq.to_string()).collect()
    }

    #[test]
    fn without_a_group_messages_are_dropped() {
        let mut bus = bus();
        assert_eq!(publish(&mut bus, "t", "lost"), Ok(Published::NoSubscribers));
        let s = bus.subscribe("t", "app", None);
        assert!(bus.next(s, 10, 0).unwrap().is_empty());
        assert_eq!(publish(&mut bus, "t", "kept"), Ok(Published::Queued(1)));
        assert_eq!(bodies(&bus.next(s, 10, 0).unwrap()), ["kept"]);
    }

    #[test]
    fn every_group_gets_every_message_once() {
        let mut bus = bus();
        let a1 = bus.subscribe("t", "a", None);
        let a2 = bus.subscribe("t", "a", None);
        let b = bus.subscribe("t", "b", None);
        let other = bus.subscribe("other", "a", None);
        for body in ["1", "2", "3"] {
            assert_eq!(publish(&mut bus, "t", body), Ok(Published::Queued(2)));
        }
        // Within group a, the first to ask gets them; the other gets nothing.
        assert_eq!(bodies(&bus.next(a1, 2, 0).unwrap()), ["1", "2"]);
        assert_eq!(bodies(&bus.next(a2, 10, 0).unwrap()), ["3"]);
        assert!(bus.next(a1, 10, 0).unwrap().is_empty());
        assert_eq!(bodies(&bus.next(b, 0, 0).unwrap()), ["1", "2", "3"]);
        assert!(bus.next(other, 10, 0).unwrap().is_empty());
        let m = &bus.next(b, 1, 0).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn settling() {
        let mut bus = bus();
        let s = bus.subscribe("t", "g", None);
        for body in ["1", "2", "3"] {
            publish(&mut bus, "t", body).unwrap();
        }
        let got = bus.next(s, 10, 0).unwrap();
        let id = ids(&got);
        assert_eq!(bus.ack(s, &id[0], Settle::Done), Ok(Acked::Settled));
        assert_eq!(bus.ack(s, &id[0], Settle::Done), Ok(Acked::NotInFlight));
        // Retry puts a message back first in line; drop (Done) forgets it.
        assert_eq!(bus.ack(s, &id[2], Settle::Retry), Ok(Acked::Settled));
        assert_eq!(bus.ack(s, &id[1], Settle::Done), Ok(Acked::Settled));
        publish(&mut bus, "t", "4").unwrap();
        assert_eq!(bodies(&bus.next(s, 10, 0).unwrap()), ["3", "4"]);
        assert!(matches!(
            bus.ack(s, "x", Settle::Done),
            Err(BusError::InvalidId(_))
        ));
        assert_eq!(
            bus.ack(999, "1", Settle::Done),
            Err(BusError::UnknownSubscription)
        );
    }

    #[test]
    fn unsettled_messages_come_back_after_the_processing_timeout() {
        let mut bus = bus();
        let s = bus.subscribe("t", "g", Some(1000));
        publish(&mut bus, "t", "1").unwrap();
        publish(&mut bus, "t", "2").unwrap();
        let first = bus.next(s, 10, 0).unwrap();
        assert_eq!(bodies(&first), ["1", "2"]);
        bus.ack(s, &first[1].seq.to_string(), Settle::Done).unwrap();
        publish(&mut bus, "t", "3").unwrap();
        assert_eq!(bodies(&bus.next(s, 1, 999).unwrap()), ["3"]);
        // "1" was never settled: at 1000 ms it is first in line again.
        assert_eq!(bodies(&bus.next(s, 10, 1000).unwrap()), ["1"]);
        // The late acknowledgement of its first delivery settles the redelivery.
        assert_eq!(
            bus.ack(s, &first[0].seq.to_string(), Settle::Done),
            Ok(Acked::Settled)
        );
        // "3" was delivered at 999 ms: it comes back at 1999 ms, not before.
        assert!(bus.next(s, 10, 1998).unwrap().is_empty());
        assert_eq!(bodies(&bus.next(s, 10, 1999).unwrap()), ["3"]);
    }

    #[test]
    fn a_late_done_removes_the_queued_copy() {
        let mut bus = bus();
        let s = bus.subscribe("t", "g", Some(10));
        publish(&mut bus, "t", "1").unwrap();
        publish(&mut bus, "t", "2").unwrap();
        let got = bus.next(s, 10, 0).unwrap();
        // Both expire; only "1" is handed out again, "2" waits first in line.
        assert_eq!(bodies(&bus.next(s, 1, 50).unwrap()), ["1"]);
        // The first delivery of "2" is acknowledged late: the waiting copy goes.
        assert_eq!(
            bus.ack(s, &ids(&got)[1], Settle::Done),
            Ok(Acked::NotInFlight)
        );
        assert!(bus.next(s, 10, 50).unwrap().is_empty());
        assert_eq!(bus.ack(s, &ids(&got)[0], Settle::Done), Ok(Acked::Settled));
        assert_eq!(bus.held(), (0, 0));
    }

    #[test]
    fn a_departing_subscription_hands_its_messages_to_its_group() {
        let mut bus = bus();
        let a = bus.subscribe("t", "g", None);
        let b = bus.subscribe("t", "g", None);
        for body in ["1", "2"] {
            publish(&mut bus, "t", body).unwrap();
        }
        assert_eq!(bodies(&bus.next(a, 10, 0).unwrap()), ["1", "2"]);
        bus.unsubscribe(a);
        assert_eq!(bodies(&bus.next(b, 10, 0).unwrap()), ["1", "2"]);
        assert_eq!(bus.next(a, 10, 0), Err(BusError::UnknownSubscription));
        // The last one leaving takes the group and its messages with it.
        bus.unsubscribe(b);
        assert_eq!(bus.held(), (0, 0));
        assert_eq!(publish(&mut bus, "t", "3"), Ok(Published::NoSubscribers));
        bus.unsubscribe(b);
    }

    #[test]
    fn memory_is_bounded() {
        let mut bus = Bus::new(Limits {
            max_messages: 2,
            max_bytes: 1 << 20,
        });
        let a = bus.subscribe("t", "a", None);
        let _b = bus.subscribe("t", "b", None);
        publish(&mut bus, "t", "1").unwrap();
        publish(&mut bus, "t", "2").unwrap();
        // Group b is full: the publish is refused for every group.
        let err = publish(&mut bus, "t", "3").unwrap_err();
        assert!(matches!(&err, BusError::Full(m) if m.contains("\"a\"") || m.contains("\"b\"")));
        let got = bus.next(a, 10, 0).unwrap();
        assert_eq!(bodies(&got), ["1", "2"]);
        // In-flight messages count too, until settled.
        assert!(publish(&mut bus, "t", "3").is_err());

        let mut bus = Bus::new(Limits {
            max_messages: 100,
            max_bytes: 4096,
        });
        let s = bus.subscribe("t", "a", None);
        let big = "x".repeat(3000);
        publish(&mut bus, "t", &big).unwrap();
        assert!(
            matches!(publish(&mut bus, "t", &big), Err(BusError::Full(m)) if m.contains("KiB"))
        );
        let got = bus.next(s, 1, 0).unwrap();
        bus.ack(s, &ids(&got)[0], Settle::Done).unwrap();
        assert_eq!(bus.held(), (0, 0));
        publish(&mut bus, "t", &big).unwrap();
    }
}

//! A subscription: its own connection and channel, the topology daprd declares, and a
//! `basic.consume` whose deliveries `next` hands out. Consuming (rather than polling with
//! basic.get) costs no round trip per message, wakes up as soon as a message arrives, and lets
//! `prefetchCount` bound how many unacknowledged messages the broker sends ahead.
//!
//! Ids: a delivery's id is its delivery tag as a decimal string. Tags restart at 1 on a new
//! connection, so after a reconnect the ids go on from the highest one handed out before (an
//! id is never reused within a subscription, and an `ack` for a delivery of a closed connection
//! cannot hit a different message). A delivery of a closed connection is back in the queue:
//! the broker delivers it again.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use amq_protocol::types::AMQPValue;

use crate::config::{Config, SubscriptionConfig};
use crate::conn::{AmqpError, Connection, Delivery, Event, Wait};
use crate::failure::Failure;
use crate::topology::{self, Topology};

/// What the broker delivered, ready for the WIT record.
pub struct Message {
    pub id: String,
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
}

/// How the application answered, as the WIT `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Retry,
    Drop,
}

pub struct Subscriber {
    config: Config,
    sub: SubscriptionConfig,
    topology: Topology,
    conn: Option<Connection>,
    /// Ids below or at this belong to closed connections.
    id_base: u64,
    /// Highest delivery tag seen on the current connection.
    max_tag: u64,
    /// Delivery tags of the current connection handed out and not yet acknowledged.
    unacked: HashSet<u64>,
}

impl Subscriber {
    /// Connects, declares the topology and starts consuming: a wrong setting fails here.
    pub fn start(config: Config, sub: SubscriptionConfig) -> Result<Self, Failure> {
        let topology = topology::subscription(&sub, &config);
        let mut subscriber = Self {
            config,
            sub,
            topology,
            conn: None,
            id_base: 0,
            max_tag: 0,
            unacked: HashSet::new(),
        };
        subscriber.connect()?;
        Ok(subscriber)
    }

    pub fn queue(&self) -> &str {
        &self.sub.queue
    }

    fn connect(&mut self) -> Result<&mut Connection, Failure> {
        // Ids of the connection that went away stay retired.
        self.id_base += self.max_tag;
        self.max_tag = 0;
        self.unacked.clear();
        let endpoint = &self.config.endpoint;
        let mut conn = Connection::open(endpoint, self.config.client_name.as_deref())
            .map_err(|e| Failure::from_amqp(&e, endpoint))?;
        declare(&mut conn, &self.topology, &self.config)
            .map_err(|e| Failure::from_amqp(&e, endpoint))?;
        let consumer = conn
            .consume(&self.sub.queue, self.config.auto_ack)
            .map_err(|e| Failure::from_amqp(&e, endpoint))?;
        crate::debug(&format!(
            "consuming queue {} (topic {}) as {consumer}",
            self.sub.queue, self.sub.topic
        ));
        Ok(self.conn.insert(conn))
    }

    /// Up to `max` deliveries, waiting at most `timeout` for the first.
    pub fn next(&mut self, max: u32, timeout: Duration) -> Result<Vec<Message>, Failure> {
        let deadline = Instant::now() + timeout;
        if self.conn.is_none() {
            self.connect()?;
        }
        let mut out = Vec::new();
        let mut reconnected = false;
        while out.len() < max as usize {
            let wait = if out.is_empty() {
                Wait::Until(deadline)
            } else {
                Wait::NoWait
            };
            let Some(conn) = self.conn.as_mut() else {
                break;
            };
            match conn.next_event(wait) {
                Ok(None) => break,
                Ok(Some(Event::Delivery(delivery))) => out.push(self.accept(*delivery)),
                Ok(Some(Event::Method(AMQPClass::Basic(basic::AMQPMethod::Cancel(_))))) => {
                    // The broker cancelled our consumer: the queue was deleted (or, for a
                    // quorum queue, lost its leader). Start over on a new connection, which
                    // declares the queue again; what we hold unacked goes back to the queue.
                    self.drop_connection();
                    return Err(Failure::Unavailable(format!(
                        "RabbitMQ cancelled the consumer of queue {} (was it deleted?); \
                         subscribing again on the next call",
                        self.sub.queue
                    )));
                }
                Ok(Some(Event::Method(_))) => {}
                Err(e) => {
                    let failure = self.lost(&e);
                    // Nothing handed out yet in this call: try a fresh connection right away
                    // (a network blip, a broker that is back), so the host sees an error only
                    // when the broker is really unreachable.
                    if reconnected || !out.is_empty() || !e.breaks_connection() {
                        return Err(failure);
                    }
                    reconnected = true;
                    self.connect()?;
                }
            }
        }
        Ok(out)
    }

    /// Acks and nacks a batch in one write. Returns the ids that cannot be settled here,
    /// each with why; an error means the connection broke and every delivery it carried goes
    /// back to the queue.
    pub fn ack(
        &mut self,
        settled: &[(String, Outcome)],
    ) -> Result<Vec<(String, Failure)>, Failure> {
        let mut rejected = Vec::new();
        let mut frames = Vec::with_capacity(settled.len());
        for (id, outcome) in settled {
            match self.settle_tag(id) {
                Ok(None) => {}
                Ok(Some(tag)) => frames.push((
                    tag,
                    match outcome {
                        Outcome::Success => None,
                        // Dead-lettered to dlq-<queue> when enableDeadLetter is on, else
                        // discarded.
                        Outcome::Drop => Some(false),
                        // The WIT's "deliver again later": the host sends it only to hand a
                        // message back (shutdown, a dead-letter publish that failed), never
                        // for a poison message, which it drops or dead-letters after its own
                        // retries.
                        Outcome::Retry => Some(true),
                    },
                )),
                Err(failure) => rejected.push((id.clone(), failure)),
            }
        }
        let (false, Some(conn)) = (frames.is_empty(), self.conn.as_mut()) else {
            return Ok(rejected);
        };
        if let Err(e) = conn.settle(&frames) {
            let failure = self.lost(&e);
            return Err(Failure::Unavailable(format!(
                "{}; the {} deliveries go back to the queue and are delivered again",
                message(&failure),
                frames.len()
            )));
        }
        Ok(rejected)
    }

    /// The delivery tag to settle for `id`; `None` under autoAck, where the broker forgot
    /// the message when it sent it.
    fn settle_tag(&mut self, id: &str) -> Result<Option<u64>, Failure> {
        let id: u64 = id.trim().parse().map_err(|_| {
            Failure::InvalidArgument(format!(
                "{id:?} is not a delivery id of this subscription (ids are numbers)"
            ))
        })?;
        if self.config.auto_ack {
            return Ok(None);
        }
        let tag = id.checked_sub(self.id_base).filter(|t| *t > 0);
        if tag.is_none() || self.conn.is_none() {
            return Err(Failure::Unavailable(format!(
                "delivery {id} came over a connection to RabbitMQ that has closed since: \
                 the broker has put it back in queue {} and delivers it again",
                self.sub.queue
            )));
        }
        match tag {
            Some(tag) if self.unacked.remove(&tag) => Ok(Some(tag)),
            _ => Err(Failure::InvalidArgument(format!(
                "delivery {id} is unknown to this subscription or was already acknowledged"
            ))),
        }
    }

    fn accept(&mut self, delivery: Delivery) -> Message {
        self.max_tag = self.max_tag.max(delivery.tag);
        if !self.config.auto_ack {
            self.unacked.insert(delivery.tag);
        }
        let metadata = if self.config.properties_to_metadata {
            properties_metadata(&delivery.properties)
        } else {
            Vec::new()
        };
        Message {
            id: (self.id_base + delivery.tag).to_string(),
            content_type: delivery
                .properties
                .content_type()
                .as_ref()
                .map(|c| c.to_string()),
            data: delivery.body,
            metadata,
        }
    }

    fn lost(&mut self, e: &AmqpError) -> Failure {
        let failure = Failure::from_amqp(e, &self.config.endpoint);
        crate::warn(&format!(
            "subscription to queue {}: {}; unacknowledged messages go back to the queue; \
             reconnecting",
            self.sub.queue,
            message(&failure)
        ));
        self.drop_connection();
        failure
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.unacked.clear();
    }
}

/// Declares what daprd declares, in daprd's order.
fn declare(conn: &mut Connection, t: &Topology, config: &Config) -> Result<(), AmqpError> {
    conn.declare_exchange(&t.exchange)?;
    if let Some((dlx, dlq)) = &t.dead_letter {
        conn.declare_exchange(dlx)?;
        conn.declare_queue(dlq)?;
        conn.bind_queue(&dlq.name, &dlx.name, "")?;
    }
    conn.declare_queue(&t.queue)?;
    if config.prefetch_count > 0 {
        conn.qos(config.prefetch_count)?;
    }
    for key in &t.bindings {
        conn.bind_queue(&t.queue.name, &t.exchange.name, key)?;
    }
    Ok(())
}

fn message(failure: &Failure) -> &str {
    match failure {
        Failure::InvalidArgument(m) | Failure::Unavailable(m) | Failure::Internal(m) => m,
    }
}

/// daprd's `publishMessagePropertiesToMetadata`: the AMQP properties and headers as
/// `metadata.<name>` entries.
fn properties_metadata(p: &BasicProperties) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            out.push((format!("metadata.{key}"), value));
        }
    };
    put("messageid", p.message_id().as_ref().map(|v| v.to_string()));
    put(
        "correlationid",
        p.correlation_id().as_ref().map(|v| v.to_string()),
    );
    put("type", p.kind().as_ref().map(|v| v.to_string()));
    put(
        "contenttype",
        p.content_type().as_ref().map(|v| v.to_string()),
    );
    if let Some(headers) = p.headers() {
        for (name, value) in headers {
            put(name.as_str(), header_text(value));
        }
    }
    out
}

fn header_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::Void => return None,
        other => format!("{other:?}"),
    })
}

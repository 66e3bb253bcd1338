//! Publishing over the instance's connection, with publisher confirms: a publish returns only
//! once the broker acked the message (for a persistent message to a durable queue, after it is
//! written to disk), so a 204 means RabbitMQ has it.

use std::collections::HashSet;
use std::time::Instant;

use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use amq_protocol::types::ShortString;

use crate::config::{Config, PublishOptions};
use crate::conn::{short, AmqpError, Connection, Event, Wait, REPLY_TIMEOUT};
use crate::failure::Failure;
use crate::topology;

/// Written to the socket in slices of about this size, reading confirms in between, so a large
/// bulk publish never has both sides blocked on full socket buffers.
const WRITE_SLICE: usize = 256 * 1024;

/// One message ready to go.
pub struct Outgoing {
    pub routing_key: ShortString,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

impl Outgoing {
    pub fn new(options: &PublishOptions, body: Vec<u8>) -> Result<Self, Failure> {
        let invalid = |e: AmqpError| Failure::InvalidArgument(crate::failure::describe(&e));
        let mut properties = BasicProperties::default()
            .with_content_type(short(&options.content_type).map_err(invalid)?);
        if options.delivery_mode != 0 {
            properties = properties.with_delivery_mode(options.delivery_mode);
        }
        if let Some(expiration) = &options.expiration {
            properties = properties.with_expiration(short(expiration).map_err(invalid)?);
        }
        if let Some(priority) = options.priority {
            properties = properties.with_priority(priority);
        }
        if let Some(id) = &options.message_id {
            properties = properties.with_message_id(short(id).map_err(invalid)?);
        }
        if let Some(id) = &options.correlation_id {
            properties = properties.with_correlation_id(short(id).map_err(invalid)?);
        }
        if let Some(kind) = &options.kind {
            properties = properties.with_type(short(kind).map_err(invalid)?);
        }
        Ok(Self {
            routing_key: short(&options.routing_key).map_err(invalid)?,
            properties,
            body,
        })
    }
}

pub struct Publisher {
    conn: Option<Connection>,
    /// Exchanges declared on the current connection.
    declared: HashSet<String>,
}

/// How one message fared in one attempt.
enum Outcome {
    Pending,
    Done(Result<(), Failure>),
    /// The connection broke before its confirm: it may be sent again on a new one.
    Lost(Failure),
}

impl Publisher {
    pub fn new() -> Self {
        Self {
            conn: None,
            declared: HashSet::new(),
        }
    }

    /// Opens the connection now, so a wrong address or login fails `init`.
    pub fn connect(&mut self, config: &Config) -> Result<(), Failure> {
        self.ready(config).map(drop)
    }

    /// Publishes every message to the topic's exchange and waits for the broker's confirms.
    /// Returns one result per message, in order. Messages whose connection broke before they
    /// were confirmed are sent once more on a fresh connection (at-least-once: one the broker
    /// had already taken may then arrive twice).
    pub fn publish(
        &mut self,
        config: &Config,
        topic: &str,
        messages: &[Outgoing],
    ) -> Vec<Result<(), Failure>> {
        let mut outcomes: Vec<Outcome> = messages.iter().map(|_| Outcome::Pending).collect();
        for attempt in 0..2 {
            let todo: Vec<usize> = outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| matches!(o, Outcome::Pending | Outcome::Lost(_)))
                .map(|(i, _)| i)
                .collect();
            if todo.is_empty() {
                break;
            }
            let last = attempt == 1;
            match self.attempt(config, topic, messages, &todo) {
                Ok(results) => {
                    for (i, outcome) in todo.into_iter().zip(results) {
                        outcomes[i] = outcome;
                    }
                }
                Err(failure) => {
                    let lost = !last && failure.retryable;
                    for i in todo {
                        outcomes[i] = if lost {
                            Outcome::Lost(failure.failure.clone())
                        } else {
                            Outcome::Done(Err(failure.failure.clone()))
                        };
                    }
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Done(result) => result,
                Outcome::Lost(failure) => Err(failure),
                Outcome::Pending => Err(Failure::Internal("message was not sent".into())),
            })
            .collect()
    }

    /// One attempt on one connection. `Err` fails (or, if retryable, retries) every message.
    fn attempt(
        &mut self,
        config: &Config,
        topic: &str,
        messages: &[Outgoing],
        todo: &[usize],
    ) -> Result<Vec<Outcome>, AttemptError> {
        self.ready(config).map_err(|failure| AttemptError {
            failure,
            // Connecting failed: nothing went out, but a second dial right away would only
            // fail the same way.
            retryable: false,
        })?;
        if !self.declared.contains(topic) {
            let spec = topology::topic_exchange(topic, config);
            let declared = match self.conn.as_mut() {
                Some(conn) => conn.declare_exchange(&spec),
                None => Ok(()),
            };
            if let Err(e) = declared {
                return Err(self.lost(e, "declaring the topic's exchange"));
            }
            self.declared.insert(topic.to_owned());
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(AttemptError {
                failure: Failure::Internal("no connection".into()),
                retryable: false,
            });
        };
        let exchange = match short(topic) {
            Ok(name) => name,
            Err(e) => {
                return Err(AttemptError {
                    failure: Failure::InvalidArgument(crate::failure::describe(&e)),
                    retryable: false,
                })
            }
        };
        let mut outcomes: Vec<Outcome> = todo.iter().map(|_| Outcome::Pending).collect();
        // Confirm tags are consecutive from the first publish of this attempt.
        let mut first_tag = None;
        let mut out = Vec::new();
        let mut result = Ok(());
        for (n, &i) in todo.iter().enumerate() {
            let m = &messages[i];
            match conn.encode_publish(&mut out, &exchange, &m.routing_key, &m.properties, &m.body) {
                Ok(tag) => {
                    first_tag.get_or_insert(tag);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if out.len() >= WRITE_SLICE || n + 1 == todo.len() {
                if let Err(e) = conn.write_bytes(&out) {
                    result = Err(e);
                    break;
                }
                out.clear();
                // Take in the confirms that arrived meanwhile.
                if let Err(e) = settle(conn, first_tag, &mut outcomes, Wait::NoWait) {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            let deadline = Instant::now() + REPLY_TIMEOUT;
            while outcomes.iter().any(|o| matches!(o, Outcome::Pending)) {
                match settle(conn, first_tag, &mut outcomes, Wait::Until(deadline)) {
                    Ok(true) => {}
                    Ok(false) => {
                        // No confirm in time: the connection is not trusted any more, and
                        // whether the broker has the messages is unknown.
                        self.conn = None;
                        self.declared.clear();
                        let failure = Failure::Unavailable(format!(
                            "RabbitMQ did not confirm the publish within {REPLY_TIMEOUT:?}; \
                             the message may or may not have been accepted"
                        ));
                        for o in &mut outcomes {
                            if matches!(o, Outcome::Pending) {
                                *o = Outcome::Done(Err(failure.clone()));
                            }
                        }
                        return Ok(outcomes);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        if let Err(e) = result {
            let error = self.lost(e, "publishing");
            for o in &mut outcomes {
                if matches!(o, Outcome::Pending) {
                    *o = if error.retryable {
                        Outcome::Lost(error.failure.clone())
                    } else {
                        Outcome::Done(Err(error.failure.clone()))
                    };
                }
            }
        }
        Ok(outcomes)
    }

    /// A connection that is open, has its channel, and is in confirm mode.
    fn ready(&mut self, config: &Config) -> Result<&mut Connection, Failure> {
        if self.conn.as_mut().is_some_and(Connection::is_stale) {
            crate::debug(&format!(
                "the connection to RabbitMQ at {} was closed while idle; reconnecting",
                config.endpoint.addr
            ));
            self.conn = None;
            self.declared.clear();
        }
        if let Some(conn) = self.conn.as_mut().filter(|c| !c.channel_open()) {
            if let Err(e) = conn.open_channel().and_then(|()| conn.confirm_select()) {
                self.conn = None;
                self.declared.clear();
                return Err(Failure::from_amqp(&e, &config.endpoint));
            }
        }
        match &mut self.conn {
            Some(conn) => Ok(conn),
            slot => {
                let mut conn = Connection::open(&config.endpoint, config.client_name.as_deref())
                    .map_err(|e| Failure::from_amqp(&e, &config.endpoint))?;
                conn.confirm_select()
                    .map_err(|e| Failure::from_amqp(&e, &config.endpoint))?;
                self.declared.clear();
                Ok(slot.insert(conn))
            }
        }
    }

    /// Turns an error on the connection into the attempt's failure, dropping the connection
    /// when it is broken.
    fn lost(&mut self, e: AmqpError, doing: &str) -> AttemptError {
        let addr = match &self.conn {
            Some(conn) => conn.addr().to_string(),
            None => "the broker".into(),
        };
        let retryable = matches!(e, AmqpError::Io(_));
        if e.breaks_connection() {
            crate::warn(&format!(
                "connection to RabbitMQ at {addr} lost while {doing}: {}",
                crate::failure::describe(&e)
            ));
            self.conn = None;
            self.declared.clear();
        }
        AttemptError {
            failure: Failure::from_amqp_at(&e, &addr),
            retryable,
        }
    }
}

struct AttemptError {
    failure: Failure,
    retryable: bool,
}

/// Applies the confirms that arrive within `wait`; `Ok(false)` when none came in time.
fn settle(
    conn: &mut Connection,
    first_tag: Option<u64>,
    outcomes: &mut [Outcome],
    wait: Wait,
) -> Result<bool, AmqpError> {
    let Some(first) = first_tag else {
        return Ok(true);
    };
    let mut any = false;
    loop {
        let event = conn.next_event(if any { Wait::NoWait } else { wait })?;
        let Some(event) = event else {
            return Ok(any || matches!(wait, Wait::NoWait));
        };
        let (tag, multiple, ok) = match event {
            Event::Method(AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
                (a.delivery_tag, a.multiple, true)
            }
            Event::Method(AMQPClass::Basic(basic::AMQPMethod::Nack(n))) => {
                (n.delivery_tag, n.multiple, false)
            }
            // Nothing else is expected on a publishing channel; ignore it.
            _ => continue,
        };
        any = true;
        let result = || {
            if ok {
                Ok(())
            } else {
                Err(Failure::Unavailable(
                    "RabbitMQ refused the message (basic.nack): it could not take it; \
                     try again later"
                        .into(),
                ))
            }
        };
        let range = if multiple { first..=tag } else { tag..=tag };
        for t in range {
            let Some(index) = t.checked_sub(first).and_then(|i| usize::try_from(i).ok()) else {
                continue;
            };
            if let Some(o @ Outcome::Pending) = outcomes.get_mut(index) {
                *o = Outcome::Done(result());
            }
        }
    }
}

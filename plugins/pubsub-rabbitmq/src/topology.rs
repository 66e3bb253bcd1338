//! daprd's RabbitMQ topology: an exchange per topic named after it, a queue per consumer group
//! bound to it, and with `enableDeadLetter` a `dlx-<queue>` fanout exchange feeding a
//! `dlq-<queue>` queue. The queue arguments are the ones daprd declares, so a queue daprd
//! declared can be declared again here (RabbitMQ refuses a redeclaration whose arguments differ).

use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::config::{Config, SubscriptionConfig};

pub const DEAD_LETTER_EXCHANGE_KIND: &str = "fanout";

pub fn queue_name(consumer_id: &str, topic: &str) -> String {
    format!("{consumer_id}-{topic}")
}

pub fn dead_letter_exchange(queue: &str) -> String {
    format!("dlx-{queue}")
}

pub fn dead_letter_queue(queue: &str) -> String {
    format!("dlq-{queue}")
}

/// One queue to declare.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// One exchange to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeSpec {
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub passive: bool,
}

/// Everything a subscription declares, in the order daprd declares it: the topic's exchange,
/// then (dead lettering) the `dlx-` exchange, the `dlq-` queue and its binding, then the queue
/// and its bindings.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub exchange: ExchangeSpec,
    /// The dead-letter exchange and queue, bound with the empty routing key.
    pub dead_letter: Option<(ExchangeSpec, QueueSpec)>,
    pub queue: QueueSpec,
    /// Routing keys binding `queue` to `exchange`.
    pub bindings: Vec<String>,
}

pub fn topic_exchange(topic: &str, config: &Config) -> ExchangeSpec {
    ExchangeSpec {
        name: topic.to_owned(),
        kind: config.exchange_kind.clone(),
        durable: config.durable,
        auto_delete: config.delete_when_unused,
        passive: config.exchange_passive,
    }
}

pub fn subscription(sub: &SubscriptionConfig, config: &Config) -> Topology {
    let mut arguments = FieldTable::default();
    let dead_letter = config.enable_dead_letter.then(|| {
        let dlx = dead_letter_exchange(&sub.queue);
        arguments.insert(
            short("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(dlx.as_str())),
        );
        let mut dlq_arguments = FieldTable::default();
        limits(&mut dlq_arguments, config.max_len, config.max_len_bytes);
        // daprd keeps dead letters on disk rather than in memory.
        dlq_arguments.insert(
            short("x-queue-mode"),
            AMQPValue::LongString(LongString::from("lazy")),
        );
        (
            ExchangeSpec {
                name: dlx,
                kind: DEAD_LETTER_EXCHANGE_KIND.to_owned(),
                // daprd: "dead letter exchange is always durable"; so is its queue.
                durable: true,
                auto_delete: config.delete_when_unused,
                passive: false,
            },
            QueueSpec {
                name: dead_letter_queue(&sub.queue),
                durable: true,
                auto_delete: config.delete_when_unused,
                arguments: dlq_arguments,
            },
        )
    });
    limits(&mut arguments, sub.max_len, sub.max_len_bytes);
    if let Some(priority) = sub.max_priority {
        arguments.insert(short("x-max-priority"), AMQPValue::ShortShortUInt(priority));
    }
    arguments.insert(
        short("x-queue-type"),
        AMQPValue::LongString(LongString::from(sub.queue_type.as_str())),
    );
    if sub.single_active_consumer {
        arguments.insert(short("x-single-active-consumer"), AMQPValue::Boolean(true));
    }
    Topology {
        exchange: topic_exchange(&sub.topic, config),
        dead_letter,
        queue: QueueSpec {
            name: sub.queue.clone(),
            durable: config.durable,
            auto_delete: config.delete_when_unused,
            arguments,
        },
        bindings: sub.routing_keys.clone(),
    }
}

fn limits(arguments: &mut FieldTable, max_len: Option<i64>, max_len_bytes: Option<i64>) {
    if let Some(n) = max_len {
        arguments.insert(short("x-max-length"), AMQPValue::LongLongInt(n));
    }
    if let Some(n) = max_len_bytes {
        arguments.insert(short("x-max-length-bytes"), AMQPValue::LongLongInt(n));
    }
}

/// Argument names are constants well under the 255-byte limit.
fn short(name: &'static str) -> ShortString {
    ShortString::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut md = vec![(
            "connectionString".to_string(),
            "amqp://127.0.0.1".to_string(),
        )];
        md.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::parse(&md).unwrap()
    }

    fn sub(config: &Config, pairs: &[(&str, &str)]) -> SubscriptionConfig {
        let md: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SubscriptionConfig::parse("orders", &md, config).unwrap()
    }

    fn arg<'a>(table: &'a FieldTable, name: &str) -> Option<&'a AMQPValue> {
        table.inner().get(name)
    }

    #[test]
    fn names() {
        assert_eq!(queue_name("app", "orders"), "app-orders");
        assert_eq!(dead_letter_exchange("app-orders"), "dlx-app-orders");
        assert_eq!(dead_letter_queue("app-orders"), "dlq-app-orders");
    }

    #[test]
    fn default_subscription() {
        let c = config(&[("consumerID", "app")]);
        let t = subscription(&sub(&c, &[]), &c);
        assert_eq!(
            t.exchange,
            ExchangeSpec {
                name: "orders".into(),
                kind: "fanout".into(),
                durable: true,
                auto_delete: true,
                passive: false,
            }
        );
        assert_eq!(t.queue.name, "app-orders");
        assert!(t.queue.durable && t.queue.auto_delete);
        assert_eq!(t.dead_letter, None);
        assert_eq!(t.bindings, vec![String::new()]);
        assert_eq!(t.queue.arguments.inner().len(), 1);
        assert_eq!(
            arg(&t.queue.arguments, "x-queue-type"),
            Some(&AMQPValue::LongString("classic".into()))
        );
    }

    #[test]
    fn dead_lettering_and_limits() {
        let c = config(&[
            ("consumerID", "app"),
            ("enableDeadLetter", "true"),
            ("durable", "false"),
            ("deletedWhenUnused", "false"),
            ("maxLen", "10"),
            ("maxLenBytes", "1000"),
        ]);
        let t = subscription(
            &sub(
                &c,
                &[
                    ("maxLen", "20"),
                    ("maxPriority", "5"),
                    ("singleActiveConsumer", "1"),
                ],
            ),
            &c,
        );
        let (dlx, dlq) = t.dead_letter.clone().unwrap();
        assert_eq!(
            (dlx.name.as_str(), dlx.kind.as_str()),
            ("dlx-app-orders", "fanout")
        );
        assert!(dlx.durable && !dlx.auto_delete);
        assert_eq!(dlq.name, "dlq-app-orders");
        assert!(dlq.durable && !dlq.auto_delete);
        assert_eq!(
            arg(&dlq.arguments, "x-max-length"),
            Some(&AMQPValue::LongLongInt(10))
        );
        assert_eq!(
            arg(&dlq.arguments, "x-queue-mode"),
            Some(&AMQPValue::LongString("lazy".into()))
        );
        let q = &t.queue;
        assert!(!q.durable && !q.auto_delete);
        assert_eq!(
            arg(&q.arguments, "x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("dlx-app-orders".into()))
        );
        assert_eq!(
            arg(&q.arguments, "x-max-length"),
            Some(&AMQPValue::LongLongInt(20))
        );
        assert_eq!(
            arg(&q.arguments, "x-max-length-bytes"),
            Some(&AMQPValue::LongLongInt(1000))
        );
        assert_eq!(
            arg(&q.arguments, "x-max-priority"),
            Some(&AMQPValue::ShortShortUInt(5))
        );
        assert_eq!(
            arg(&q.arguments, "x-single-active-consumer"),
            Some(&AMQPValue::Boolean(true))
        );
        assert!(!t.exchange.durable && !t.exchange.auto_delete);
    }
}

//! `pubsub.rabbitmq`: Dapr's RabbitMQ pub/sub, running in the sandbox and speaking AMQP 0-9-1
//! to the broker over WASI sockets. It keeps daprd's topology and metadata, so daprd and
//! blockhost apps can publish and subscribe through one broker.
//!
//! - Publishing uses the instance's connection, in confirm mode: `publish` returns once the
//!   broker acked the message. `bulk-publish` sends all entries, then waits for all confirms.
//! - A subscription owns a connection and channel of its own and a `basic.consume`; `next`
//!   blocks on the socket for at most its timeout. `ack` maps the app's outcome to basic.ack
//!   (success), basic.nack without requeue (drop: dead-lettered to `dlq-<queue>` with
//!   `enableDeadLetter`, else discarded) and basic.nack with requeue (retry: the host hands
//!   the message back). The host retries failed deliveries itself, so `requeueInFailure` is
//!   read but changes nothing. A subscription dropped without acking hands its messages back
//!   to the broker.
//! - A connection the broker closed (restart, network) is replaced on the next call.

// The generated ABI glue is unsafe by nature; the workspace denies `unsafe_code` everywhere
// else, so it is confined to this module (and so is `export!`, which expands to more of it).
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "pubsub-plugin", path: "../../wit" });
    use super::RabbitMq;
    export!(RabbitMq);
}

mod config;
mod conn;
mod duration;
mod failure;
mod publisher;
mod subscriber;
mod topology;

use std::cell::RefCell;
use std::time::Duration;

use bindings::blockhost::plugin::log::{log, Level};
use bindings::exports::blockhost::plugin::lifecycle::{self, PluginInfo};
use bindings::exports::blockhost::plugin::pubsub::{
    self, BulkEntry, BulkFailure, Error, IncomingMessage, Metadata, OutgoingMessage,
    SubscribeRequest,
};

use config::{Config, PublishOptions, SubscriptionConfig, CONNECTION_STRING, HOST, HOSTNAME};
use failure::Failure;
use publisher::{Outgoing, Publisher};
use subscriber::Subscriber;

struct RabbitMq;

struct Instance {
    config: Config,
    publisher: Publisher,
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

impl lifecycle::Guest for RabbitMq {
    fn describe() -> PluginInfo {
        PluginInfo {
            component_type: "pubsub.rabbitmq".into(),
            version: "v1".into(),
            features: vec!["MESSAGE_TTL".into()],
            endpoint_keys: [CONNECTION_STRING, HOST, HOSTNAME].map(String::from).into(),
            path_keys: vec![],
            writable_path_keys: vec![],
            max_instances: 0,
        }
    }

    fn init(metadata: Metadata) -> Result<(), Error> {
        let config = Config::parse(&metadata).map_err(Error::InvalidArgument)?;
        if !config.ignored.is_empty() {
            info(&format!(
                "pubsub.rabbitmq ignores metadata it does not use: {}",
                config.ignored.join(", ")
            ));
        }
        for note in &config.notes {
            info(note);
        }
        let mut publisher = Publisher::new();
        publisher.connect(&config).map_err(to_wit)?;
        debug(&format!(
            "pubsub.rabbitmq connected to {} (vhost {:?})",
            config.endpoint.addr, config.endpoint.vhost
        ));
        INSTANCE.set(Some(Instance { config, publisher }));
        Ok(())
    }

    /// Dropping the publisher closes its connection (connection.close).
    fn close() {
        INSTANCE.with_borrow_mut(Option::take);
    }
}

impl pubsub::Guest for RabbitMq {
    type Subscription = Subscription;

    fn publish(message: OutgoingMessage) -> Result<(), Error> {
        with_instance(|i| {
            let options = PublishOptions::parse(
                &message.metadata,
                message.content_type.as_deref(),
                &i.config,
            )
            .map_err(Failure::InvalidArgument)?;
            config::check_name("topic", &message.topic).map_err(Failure::InvalidArgument)?;
            let outgoing = Outgoing::new(&options, message.data)?;
            let mut results =
                i.publisher
                    .publish(&i.config, &message.topic, std::slice::from_ref(&outgoing));
            results
                .pop()
                .unwrap_or_else(|| Err(Failure::Internal("no publish result".into())))
        })
    }

    fn bulk_publish(
        topic: String,
        entries: Vec<BulkEntry>,
        metadata: Metadata,
    ) -> Result<Vec<BulkFailure>, Error> {
        with_instance(|i| {
            config::check_name("topic", &topic).map_err(Failure::InvalidArgument)?;
            let mut failures = Vec::new();
            let mut ids = Vec::with_capacity(entries.len());
            let mut outgoing = Vec::with_capacity(entries.len());
            for entry in entries {
                // Entry metadata overrides the request's.
                let mut merged = entry.metadata;
                merged.extend(metadata.iter().cloned());
                let prepared =
                    PublishOptions::parse(&merged, entry.content_type.as_deref(), &i.config)
                        .map_err(Failure::InvalidArgument)
                        .and_then(|options| Outgoing::new(&options, entry.data));
                match prepared {
                    Ok(message) => {
                        ids.push(entry.entry_id);
                        outgoing.push(message);
                    }
                    Err(failure) => failures.push(BulkFailure {
                        entry_id: entry.entry_id,
                        error: to_wit(failure),
                    }),
                }
            }
            let results = i.publisher.publish(&i.config, &topic, &outgoing);
            failures.extend(ids.into_iter().zip(results).filter_map(|(id, r)| {
                r.err().map(|failure| BulkFailure {
                    entry_id: id,
                    error: to_wit(failure),
                })
            }));
            Ok(failures)
        })
    }

    fn subscribe(request: SubscribeRequest) -> Result<pubsub::Subscription, Error> {
        let config = INSTANCE
            .with_borrow(|i| i.as_ref().map(|i| i.config.clone()))
            .ok_or_else(not_initialised)?;
        let sub = SubscriptionConfig::parse(&request.topic, &request.metadata, &config)
            .map_err(Error::InvalidArgument)?;
        let subscriber = Subscriber::start(config, sub).map_err(to_wit)?;
        info(&format!(
            "subscribed to topic {} through queue {}",
            request.topic,
            subscriber.queue()
        ));
        Ok(pubsub::Subscription::new(Subscription {
            topic: request.topic,
            inner: RefCell::new(subscriber),
        }))
    }
}

pub struct Subscription {
    topic: String,
    inner: RefCell<Subscriber>,
}

impl pubsub::GuestSubscription for Subscription {
    fn next(&self, max: u32, timeout_ms: u32) -> Result<Vec<IncomingMessage>, Error> {
        let messages = self
            .inner
            .borrow_mut()
            .next(max, Duration::from_millis(timeout_ms.into()))
            .map_err(to_wit)?;
        Ok(messages
            .into_iter()
            .map(|m| IncomingMessage {
                id: m.id,
                topic: self.topic.clone(),
                data: m.data,
                content_type: m.content_type,
                metadata: m.metadata,
            })
            .collect())
    }

    fn ack(&self, settled: Vec<pubsub::Settlement>) -> Result<Vec<pubsub::SettleFailure>, Error> {
        let settled: Vec<(String, subscriber::Outcome)> = settled
            .into_iter()
            .map(|s| {
                let outcome = match s.outcome {
                    pubsub::Outcome::Success => subscriber::Outcome::Success,
                    pubsub::Outcome::Retry => subscriber::Outcome::Retry,
                    pubsub::Outcome::Drop => subscriber::Outcome::Drop,
                };
                (s.id, outcome)
            })
            .collect();
        let rejected = self.inner.borrow_mut().ack(&settled).map_err(to_wit)?;
        Ok(rejected
            .into_iter()
            .map(|(id, failure)| pubsub::SettleFailure {
                id,
                error: to_wit(failure),
            })
            .collect())
    }
}

fn with_instance<T>(f: impl FnOnce(&mut Instance) -> Result<T, Failure>) -> Result<T, Error> {
    INSTANCE.with_borrow_mut(|instance| match instance {
        Some(instance) => f(instance).map_err(to_wit),
        None => Err(not_initialised()),
    })
}

fn not_initialised() -> Error {
    Error::Internal("pubsub.rabbitmq was called before a successful init".into())
}

fn to_wit(failure: Failure) -> Error {
    match failure {
        Failure::InvalidArgument(m) => Error::InvalidArgument(m),
        Failure::Unavailable(m) => Error::Unavailable(m),
        Failure::Internal(m) => Error::Internal(m),
    }
}

pub(crate) fn debug(message: &str) {
    log(Level::Debug, message);
}

pub(crate) fn info(message: &str) {
    log(Level::Info, message);
}

pub(crate) fn warn(message: &str) {
    log(Level::Warn, message);
}

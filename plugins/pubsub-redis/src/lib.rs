//! `pubsub.redis`: Dapr's Redis Streams pub/sub, running in the sandbox and reaching Redis
//! through WASI sockets. It keeps daprd's layout (a stream per topic, entries
//! `{data, metadata}`, a consumer group per `consumerID`), so a daprd and a blockhost can share
//! one Redis in both directions.
//!
//! Each instance keeps one connection for publishing; each subscription has one of its own,
//! since its reads block. The host runs subscriptions on instances of their own, so a
//! subscription takes over its instance's (idle) connection rather than opening a second one;
//! a later publish on that instance reconnects.

// The generated ABI glue is unsafe by nature; the workspace denies `unsafe_code` everywhere
// else, so it is confined to this module (and so is `export!`, which expands to more of it).
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "pubsub-plugin", path: "../../wit" });
    use super::RedisStreams;
    export!(RedisStreams);
}

mod client;
mod config;
mod entries;
mod error;
mod publish;
mod reclaim;
mod subscription;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::SystemTime;

use bindings::blockhost::plugin::log::{log, Level};
use bindings::exports::blockhost::plugin::lifecycle::{self, PluginInfo};
use bindings::exports::blockhost::plugin::pubsub::{
    self, BulkEntry, BulkFailure, Error, IncomingMessage, Metadata, Outcome, OutgoingMessage,
    SettleFailure, Settlement, SubscribeRequest,
};

use client::{Client, IntoPubsubError, Retry};
use config::{Config, SubscribeSettings};
use error::PubsubError;
use redis_common::REDIS_HOST;
use subscription::{Settle, Subscription};

struct RedisStreams;

/// What `init` set up: the settings, and the connection publishes go through.
struct Instance {
    config: Rc<Config>,
    publisher: Client,
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

impl lifecycle::Guest for RedisStreams {
    fn describe() -> PluginInfo {
        PluginInfo {
            component_type: "pubsub.redis".into(),
            version: "v1".into(),
            features: vec![],
            endpoint_keys: vec![REDIS_HOST.into()],
            path_keys: vec![],
            writable_path_keys: vec![],
            max_instances: 0,
        }
    }

    fn init(metadata: Metadata) -> Result<(), Error> {
        let config = Config::parse(&metadata).map_err(to_wit)?;
        if !config.ignored.is_empty() {
            log(
                Level::Info,
                &format!(
                    "pubsub.redis ignores metadata it does not use: {}",
                    config.ignored.join(", ")
                ),
            );
        }
        if config.trim_conflict {
            log(
                Level::Warn,
                "both maxLenApprox and streamTTL are set; streams are trimmed by maxLenApprox only",
            );
        }
        let config = Rc::new(config);
        let publisher = client::connect(&config).map_err(to_wit)?;
        log(
            Level::Debug,
            &format!("pubsub.redis connected to {}", config.conn.addr),
        );
        INSTANCE.set(Some(Instance { config, publisher }));
        Ok(())
    }

    /// Dropping the instance closes its connection; subscriptions close theirs when the host
    /// drops them.
    fn close() {
        INSTANCE.with_borrow_mut(Option::take);
    }
}

impl pubsub::Guest for RedisStreams {
    type Subscription = RedisSubscription;

    fn publish(message: OutgoingMessage) -> Result<(), Error> {
        with_instance(|instance| {
            let cmd = publish::xadd(
                &message.topic,
                instance.config.trim,
                &message.data,
                &message.metadata,
                SystemTime::now(),
            )?;
            instance
                .publisher
                .run(Retry::IfUnsent, |link| cmd.query::<String>(link))
                .map_err(|e| e.into_error(&format!("publishing to topic {:?}", message.topic)))?;
            Ok(())
        })
    }

    /// One pipeline of XADDs; an entry Redis refuses is reported on its own.
    fn bulk_publish(
        topic: String,
        entries: Vec<BulkEntry>,
        metadata: Metadata,
    ) -> Result<Vec<BulkFailure>, Error> {
        if entries.is_empty() {
            return Ok(vec![]);
        }
        with_instance(|instance| {
            let now = SystemTime::now();
            let mut pipe = redis::pipe();
            for entry in &entries {
                let merged = publish::merged(&metadata, &entry.metadata);
                pipe.add_command(publish::xadd(
                    &topic,
                    instance.config.trim,
                    &entry.data,
                    &merged,
                    now,
                )?);
            }
            pipe.ignore_errors();
            let replies: Vec<redis::RedisResult<String>> = instance
                .publisher
                .run(Retry::IfUnsent, |link| pipe.query(link))
                .map_err(|e| e.into_error(&format!("publishing to topic {topic:?}")))?;
            if replies.len() != entries.len() {
                return Err(PubsubError::Internal(format!(
                    "Redis answered {} XADDs with {} replies",
                    entries.len(),
                    replies.len()
                )));
            }
            Ok(entries
                .iter()
                .zip(replies)
                .filter_map(|(entry, reply)| {
                    reply.err().map(|e| BulkFailure {
                        entry_id: entry.entry_id.clone(),
                        error: Error::Internal(format!(
                            "publishing to topic {topic:?}: Redis answered with an error: {e}"
                        )),
                    })
                })
                .collect())
        })
    }

    fn subscribe(request: SubscribeRequest) -> Result<pubsub::Subscription, Error> {
        let (config, settings, link) = with_instance(|instance| {
            let settings = SubscribeSettings::parse(&request.metadata, &instance.config.subscribe)?;
            let link = instance.publisher.take_link();
            Ok((Rc::clone(&instance.config), settings, link))
        })?;
        let inner =
            Subscription::open(config, link, request.topic.clone(), settings).map_err(to_wit)?;
        Ok(pubsub::Subscription::new(RedisSubscription {
            topic: request.topic,
            inner: RefCell::new(inner),
        }))
    }
}

/// The exported resource; its connection closes when the host drops it.
pub struct RedisSubscription {
    topic: String,
    inner: RefCell<Subscription>,
}

impl pubsub::GuestSubscription for RedisSubscription {
    fn next(&self, max: u32, timeout_ms: u32) -> Result<Vec<IncomingMessage>, Error> {
        let messages = self
            .inner
            .borrow_mut()
            .next(max, timeout_ms)
            .map_err(to_wit)?;
        Ok(messages
            .into_iter()
            .map(|m| IncomingMessage {
                id: m.id,
                topic: self.topic.clone(),
                data: m.data,
                // daprd's layout keeps no content type; the envelope carries its own.
                content_type: None,
                metadata: m.metadata,
            })
            .collect())
    }

    fn ack(&self, settled: Vec<Settlement>) -> Result<Vec<SettleFailure>, Error> {
        let settled: Vec<(String, Settle)> = settled
            .into_iter()
            .map(|s| {
                let settle = match s.outcome {
                    Outcome::Success | Outcome::Drop => Settle::Done,
                    Outcome::Retry => Settle::Retry,
                };
                (s.id, settle)
            })
            .collect();
        let rejected = self.inner.borrow_mut().ack(&settled).map_err(to_wit)?;
        Ok(rejected
            .into_iter()
            .map(|(id, error)| SettleFailure {
                id,
                error: to_wit(error),
            })
            .collect())
    }
}

fn with_instance<T>(f: impl FnOnce(&mut Instance) -> Result<T, PubsubError>) -> Result<T, Error> {
    INSTANCE
        .with_borrow_mut(|instance| match instance {
            Some(instance) => f(instance),
            None => Err(PubsubError::Internal(
                "pubsub.redis was called before a successful init".into(),
            )),
        })
        .map_err(to_wit)
}

fn to_wit(e: PubsubError) -> Error {
    match e {
        PubsubError::InvalidArgument(m) => Error::InvalidArgument(m),
        PubsubError::Unavailable(m) => Error::Unavailable(m),
        PubsubError::Internal(m) => Error::Internal(m),
    }
}

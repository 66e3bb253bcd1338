//! Publish/subscribe: what a pub/sub component offers the API and the subscribers,
//! independent of the transport. The plugin moves opaque bytes; envelopes, scoping, routing
//! and delivery to the app are built here.

mod batch;
pub mod cloudevent;
pub mod delivery;
mod model;
mod publish;
pub mod rules;
mod scopes;
pub mod subscription;

use std::sync::Arc;
use std::time::Duration;

use super::metadata::{self, Metadata};
use super::{
    BackendError, Block, BlockError, BoxFuture, ComponentContext, ErrorKind, Lookup, Resolver,
};
use batch::PublishQueue;
pub use model::{
    BulkEntry, BulkFailure, IncomingMessage, Outcome, OutgoingMessage, SettleFailure, Settlement,
};
pub use publish::BulkPublishEntry;
use publish::PublishOptions;
pub use scopes::TopicScopes;

/// What a pub/sub component asks of its plugin.
pub trait PubSubBackend: Send + Sync {
    /// How many calls the backend serves at once.
    fn concurrency(&self) -> u32;
    /// Returns once the broker has the message.
    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<(), BackendError>>;
    /// Returns the entries that failed.
    fn bulk_publish(
        &self,
        topic: String,
        entries: Vec<BulkEntry>,
        metadata: Metadata,
    ) -> BoxFuture<'_, Result<Vec<BulkFailure>, BackendError>>;
    fn subscribe(
        &self,
        topic: String,
        metadata: Metadata,
    ) -> BoxFuture<'_, Result<Box<dyn SubscriptionBackend>, BackendError>>;
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// One open subscription.
pub trait SubscriptionBackend: Send {
    /// Up to `max` messages, waiting at most `wait` for the first.
    fn next(
        &mut self,
        max: u32,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<IncomingMessage>, BackendError>>;
    /// Settles a batch; returns the deliveries that could not be settled (the broker
    /// delivers those again).
    fn ack(
        &mut self,
        settled: Vec<Settlement>,
    ) -> BoxFuture<'_, Result<Vec<SettleFailure>, BackendError>>;
}

/// The error code of a failed publish, and of a bulk publish whose entries failed.
pub const PUBLISH_FAILED: &str = "ERR_PUBSUB_PUBLISH_MESSAGE";

/// daprd's default number of parallel deliveries per subscription.
const DEFAULT_CONCURRENCY: usize = 10;

/// How many batches of single publishes may be in the plugin at once. Batching needs
/// publishes to queue up behind busy lanes, so this is well below a pool's size; the
/// batches, not more lanes, absorb load.
const PUBLISH_LANES: u32 = 2;

/// A running pub/sub component.
pub struct PubSub {
    name: String,
    app_id: String,
    backend: Arc<dyn PubSubBackend>,
    /// The broker enforces message TTLs (`MESSAGE_TTL`); otherwise the envelope carries them.
    broker_ttl: bool,
    single: PublishQueue,
    delivery_concurrency: usize,
    scopes: TopicScopes,
}

pub struct PubSubSettings {
    app_id: String,
    broker_ttl: bool,
    delivery_concurrency: usize,
    scopes: TopicScopes,
}

impl Block for PubSub {
    const CATEGORY: &'static str = "pubsub";
    type Backend = dyn PubSubBackend;
    type Settings = PubSubSettings;

    /// `concurrency` / `maxConcurrentHandlers` bound the parallel deliveries of each
    /// subscription, and RabbitMQ's `concurrencyMode: single` makes them serial. The consumer
    /// group defaults to the app id, as in daprd.
    fn configure(component: &mut ComponentContext<'_>) -> Result<PubSubSettings, String> {
        if metadata::value(component.metadata, "consumerID").is_none() {
            component
                .metadata
                .push(("consumerID".to_owned(), component.app_id.to_owned()));
        }
        let value = |key: &str| metadata::value(component.metadata, key);
        let delivery_concurrency = if value("concurrencyMode") == Some("single") {
            1
        } else {
            value("concurrency")
                .or_else(|| value("maxConcurrentHandlers"))
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_CONCURRENCY)
        };
        Ok(PubSubSettings {
            app_id: component.app_id.to_owned(),
            broker_ttl: component.features.iter().any(|f| f == "MESSAGE_TTL"),
            delivery_concurrency,
            scopes: TopicScopes::from_metadata(component.metadata),
        })
    }

    fn build(name: &str, settings: PubSubSettings, backend: Arc<dyn PubSubBackend>) -> Self {
        let lanes = backend.concurrency().min(PUBLISH_LANES) as usize;
        Self {
            name: name.to_owned(),
            app_id: settings.app_id,
            single: PublishQueue::start(Arc::clone(&backend), lanes),
            backend,
            broker_ttl: settings.broker_ttl,
            delivery_concurrency: settings.delivery_concurrency,
            scopes: settings.scopes,
        }
    }

    async fn close(&self) {
        self.backend.close().await;
    }
}

impl PubSub {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn scopes(&self) -> &TopicScopes {
        &self.scopes
    }

    pub fn delivery_concurrency(&self) -> usize {
        self.delivery_concurrency
    }

    /// Publishes `body` to `topic` with the request's metadata options; returns once the
    /// broker has it. Concurrent publishes share plugin calls (see `batch`).
    pub async fn publish(
        &self,
        topic: &str,
        body: &[u8],
        content_type: Option<&str>,
        request_metadata: Metadata,
    ) -> Result<(), BlockError> {
        let options = PublishOptions::from_metadata(request_metadata)?;
        let (data, content_type) = self.message_bytes(topic, body, content_type, &options)?;
        let message = OutgoingMessage {
            topic: topic.to_owned(),
            data,
            content_type: Some(content_type),
            metadata: options.component_metadata,
        };
        self.single
            .publish(message)
            .await
            .map_err(|err| self.publish_failed(topic, &err))
    }

    /// Publishes every entry, each in its own envelope, with the request's metadata under
    /// the entry's own. Returns the entries that failed, with the reason.
    pub async fn bulk_publish(
        &self,
        topic: &str,
        entries: Vec<BulkPublishEntry>,
        request_metadata: Metadata,
    ) -> Result<Vec<(String, String)>, BlockError> {
        publish::check_entry_ids(&entries)?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut prepared = Vec::with_capacity(entries.len());
        for entry in entries {
            let mut merged = request_metadata.clone();
            metadata::merge(&mut merged, &entry.metadata);
            let options = PublishOptions::from_metadata(merged)?;
            let (data, content_type) =
                self.message_bytes(topic, &entry.event, Some(&entry.content_type), &options)?;
            prepared.push(BulkEntry {
                entry_id: entry.entry_id,
                data,
                content_type: Some(content_type),
                metadata: options.component_metadata,
            });
        }
        let ids: Vec<String> = prepared.iter().map(|e| e.entry_id.clone()).collect();
        let failed = match self
            .backend
            .bulk_publish(topic.to_owned(), prepared, request_metadata)
            .await
        {
            Ok(failures) => failures
                .into_iter()
                .map(|f| (f.entry_id, f.error.message))
                .collect(),
            Err(err) => ids
                .into_iter()
                .map(|id| (id, err.message.clone()))
                .collect(),
        };
        Ok(failed)
    }

    /// Forwards a delivered message as it is (a dead-letter topic).
    pub async fn forward(&self, message: OutgoingMessage) -> Result<(), BackendError> {
        self.single.publish(message).await
    }

    /// Opens a subscription to `topic`.
    pub async fn subscribe(
        &self,
        topic: &str,
        metadata: Metadata,
    ) -> Result<Box<dyn SubscriptionBackend>, BackendError> {
        self.backend.subscribe(topic.to_owned(), metadata).await
    }

    fn publish_failed(&self, topic: &str, err: &BackendError) -> BlockError {
        BlockError::internal(
            PUBLISH_FAILED,
            format!(
                "error when publishing to topic {topic} in pubsub {}: {err}",
                self.name
            ),
        )
    }
}

/// The pub/sub component `name`, if this app may publish `topic` on it.
pub fn find_for_publish(
    components: &dyn Resolver<PubSub>,
    name: &str,
    topic: &str,
    app_id: &str,
) -> Result<Arc<PubSub>, BlockError> {
    let pubsub = match components.resolve(name) {
        Lookup::Found(pubsub) => pubsub,
        Lookup::NoneOfBlock => {
            return Err(BlockError::invalid(
                "ERR_PUBSUB_NOT_CONFIGURED",
                "no pubsub is configured",
            ))
        }
        Lookup::Missing => {
            return Err(BlockError::new(
                ErrorKind::NotFound,
                "ERR_PUBSUB_NOT_FOUND",
                format!("pubsub {name} not found"),
            ))
        }
    };
    if topic.is_empty() {
        return Err(BlockError::new(
            ErrorKind::NotFound,
            "ERR_TOPIC_NAME_EMPTY",
            format!("topic is empty in pubsub {name}"),
        ));
    }
    if !pubsub.scopes().may_publish(app_id, topic) {
        return Err(BlockError::new(
            ErrorKind::PermissionDenied,
            "ERR_PUBSUB_FORBIDDEN",
            format!("topic {topic} is not allowed for app id {app_id}"),
        ));
    }
    Ok(pubsub)
}

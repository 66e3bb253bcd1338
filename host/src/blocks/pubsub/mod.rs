//! Publish/subscribe: what a pub/sub component offers the API and the subscriber loops,
//! independent of HTTP. The plugin moves opaque bytes; envelopes are built here.

mod batch;
pub mod cloudevent;
mod scopes;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use wasmtime::component::ResourceAny;

use crate::plugins::bindings::pubsub::exports::blockhost::plugin::pubsub as wit;
use crate::plugins::bindings::pubsub::PubsubPlugin;
use crate::plugins::bindings::{describe_error, PluginError};
use crate::plugins::pool::{CallError, Instance, Pool};

use batch::PublishQueue;
pub use scopes::TopicScopes;
pub use wit::{
    BulkEntry, BulkFailure, IncomingMessage, Outcome, OutgoingMessage, SettleFailure, Settlement,
};

/// Go's `strconv.ParseBool`, which daprd uses for flags such as `rawPayload`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("{}", describe_error(.0))]
    Plugin(PluginError),
    #[error("{0}")]
    Call(#[from] CallError),
    /// The instance that held the subscription was replaced; subscribe again.
    #[error("the subscription was lost with its plugin instance")]
    Lost,
}

pub struct PubSub {
    name: String,
    pool: Arc<Pool<PubsubPlugin>>,
    features: Vec<String>,
    /// Wakes subscribers that share the component's one instance after each publish.
    published: Arc<Notify>,
    single: PublishQueue,
    delivery_concurrency: usize,
    scopes: TopicScopes,
}

/// daprd's default number of parallel deliveries per subscription.
const DEFAULT_CONCURRENCY: usize = 10;

/// How many batches of single publishes may be in the plugin at once. Batching needs
/// publishes to queue up behind busy lanes, so this is well below a pool's size; the
/// batches, not more lanes, absorb load.
const PUBLISH_LANES: u32 = 2;

impl PubSub {
    /// `metadata` is the component's: `concurrency` / `maxConcurrentHandlers` bound the
    /// parallel deliveries of each subscription, and RabbitMQ's `concurrencyMode: single`
    /// makes them serial.
    pub fn new(
        name: String,
        pool: Arc<Pool<PubsubPlugin>>,
        features: Vec<String>,
        metadata: &[(String, String)],
    ) -> Self {
        let value = |key: &str| {
            metadata
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let delivery_concurrency = if value("concurrencyMode") == Some("single") {
            1
        } else {
            value("concurrency")
                .or_else(|| value("maxConcurrentHandlers"))
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_CONCURRENCY)
        };
        let published = Arc::new(Notify::new());
        let lanes = pool.size().min(PUBLISH_LANES) as usize;
        let single = PublishQueue::start(Arc::clone(&pool), Arc::clone(&published), lanes);
        Self {
            name,
            pool,
            features,
            published,
            single,
            delivery_concurrency,
            scopes: TopicScopes::from_metadata(metadata),
        }
    }

    pub fn scopes(&self) -> &TopicScopes {
        &self.scopes
    }

    pub fn delivery_concurrency(&self) -> usize {
        self.delivery_concurrency
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn has_feature(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Returns once the broker has the message. Concurrent publishes share plugin calls
    /// (see `batch`).
    pub async fn publish(&self, message: OutgoingMessage) -> Result<(), PubSubError> {
        self.single.publish(message).await
    }

    /// Returns the entries that failed.
    pub async fn bulk_publish(
        &self,
        topic: String,
        entries: Vec<BulkEntry>,
        metadata: Vec<(String, String)>,
    ) -> Result<Vec<BulkFailure>, PubSubError> {
        let result = bulk_call(&self.pool, topic, entries, metadata).await?;
        self.published.notify_waiters();
        result.map_err(PubSubError::Plugin)
    }

    /// Opens a subscription. Multi-instance plugins get an instance of their own, so a
    /// blocking `next` holds nothing the publish path needs; a single-instance plugin's
    /// subscription lives in its one instance and is polled without blocking.
    pub async fn subscribe(
        &self,
        topic: &str,
        metadata: Vec<(String, String)>,
    ) -> Result<Subscription, PubSubError> {
        let request = wit::SubscribeRequest {
            topic: topic.to_owned(),
            metadata,
        };
        if self.pool.is_single_instance() {
            let (handle, generation) = self
                .pool
                .call(move |i| {
                    Box::pin(async move {
                        let pubsub = i.bindings.blockhost_plugin_pubsub();
                        let handle = pubsub.call_subscribe(&mut i.store, &request).await?;
                        Ok((handle, i.generation))
                    })
                })
                .await?;
            let handle = handle.map_err(PubSubError::Plugin)?;
            return Ok(Subscription {
                pool: Arc::clone(&self.pool),
                lane: Lane::Shared {
                    handle,
                    generation,
                    published: Arc::clone(&self.published),
                },
            });
        }
        let mut instance = self.pool.dedicated().await?;
        let handle = self
            .pool
            .run_dedicated(&mut instance, Duration::ZERO, move |i| {
                Box::pin(async move {
                    let pubsub = i.bindings.blockhost_plugin_pubsub();
                    pubsub.call_subscribe(&mut i.store, &request).await
                })
            })
            .await?
            .map_err(PubSubError::Plugin)?;
        Ok(Subscription {
            pool: Arc::clone(&self.pool),
            lane: Lane::Dedicated {
                instance: Box::new(instance),
                handle,
            },
        })
    }
}

/// One open subscription and the instance it lives in.
pub struct Subscription {
    pool: Arc<Pool<PubsubPlugin>>,
    lane: Lane,
}

enum Lane {
    Dedicated {
        instance: Box<Instance<PubsubPlugin>>,
        handle: ResourceAny,
    },
    Shared {
        handle: ResourceAny,
        generation: u64,
        published: Arc<Notify>,
    },
}

impl Subscription {
    /// Up to `max` messages, waiting at most `wait` for the first.
    pub async fn next(
        &mut self,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<IncomingMessage>, PubSubError> {
        match &mut self.lane {
            Lane::Dedicated { instance, handle } => {
                let handle = *handle;
                // A zero wait would mean "block forever" to some brokers' clients.
                let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1);
                let result = self
                    .pool
                    .run_dedicated(instance, wait, move |i| {
                        Box::pin(async move {
                            let subscription = i.bindings.blockhost_plugin_pubsub().subscription();
                            subscription
                                .call_next(&mut i.store, handle, max, wait_ms)
                                .await
                        })
                    })
                    .await?;
                result.map_err(PubSubError::Plugin)
            }
            Lane::Shared {
                handle,
                generation,
                published,
            } => {
                // Register interest before polling, so a publish in between is not missed.
                let woken = published.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let ready = shared_call(&self.pool, *handle, *generation, move |s, store, h| {
                    Box::pin(async move { s.call_next(store, h, max, 0).await })
                })
                .await?;
                if !ready.is_empty() {
                    return Ok(ready);
                }
                let _ = tokio::time::timeout(wait, woken).await;
                shared_call(&self.pool, *handle, *generation, move |s, store, h| {
                    Box::pin(async move { s.call_next(store, h, max, 0).await })
                })
                .await
            }
        }
    }

    /// Settles a batch in one plugin call; returns the deliveries the plugin could not
    /// settle (the broker delivers those again).
    pub async fn ack(
        &mut self,
        settled: Vec<Settlement>,
    ) -> Result<Vec<SettleFailure>, PubSubError> {
        match &mut self.lane {
            Lane::Dedicated { instance, handle } => {
                let handle = *handle;
                self.pool
                    .run_dedicated(instance, Duration::ZERO, move |i| {
                        Box::pin(async move {
                            let subscription = i.bindings.blockhost_plugin_pubsub().subscription();
                            subscription.call_ack(&mut i.store, handle, &settled).await
                        })
                    })
                    .await?
                    .map_err(PubSubError::Plugin)
            }
            Lane::Shared {
                handle, generation, ..
            } => {
                shared_call(&self.pool, *handle, *generation, move |s, store, h| {
                    Box::pin(async move { s.call_ack(store, h, &settled).await })
                })
                .await
            }
        }
    }
}

/// One `bulk-publish` call on a pooled instance.
async fn bulk_call(
    pool: &Arc<Pool<PubsubPlugin>>,
    topic: String,
    entries: Vec<BulkEntry>,
    metadata: Vec<(String, String)>,
) -> Result<Result<Vec<BulkFailure>, PluginError>, CallError> {
    pool.call(move |i| {
        Box::pin(async move {
            let pubsub = i.bindings.blockhost_plugin_pubsub();
            pubsub
                .call_bulk_publish(&mut i.store, &topic, &entries, &metadata)
                .await
        })
    })
    .await
}

/// Calls a subscription method on the shared instance, if it is still the one that holds
/// the subscription.
async fn shared_call<R, F>(
    pool: &Arc<Pool<PubsubPlugin>>,
    handle: ResourceAny,
    generation: u64,
    work: F,
) -> Result<R, PubSubError>
where
    R: Send + 'static,
    F: for<'a> FnOnce(
            wit::GuestSubscription<'a>,
            &'a mut wasmtime::Store<crate::plugins::instance::PluginState>,
            ResourceAny,
        ) -> crate::plugins::pool::Work<'a, Result<R, PluginError>>
        + Send
        + 'static,
{
    let result = pool
        .call(move |i| {
            Box::pin(async move {
                if i.generation != generation {
                    return Ok(Err(None));
                }
                let subscription = i.bindings.blockhost_plugin_pubsub().subscription();
                Ok(work(subscription, &mut i.store, handle)
                    .await?
                    .map_err(Some))
            })
        })
        .await?;
    match result {
        Ok(value) => Ok(value),
        Err(Some(err)) => Err(PubSubError::Plugin(err)),
        Err(None) => Err(PubSubError::Lost),
    }
}

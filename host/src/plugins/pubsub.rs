//! The pub/sub block's backend served by a `pubsub-plugin`. A subscription of a
//! multi-instance plugin gets an instance of its own, so a blocking `next` holds nothing the
//! publish path needs; a single-instance plugin's subscription lives in its one instance and
//! is polled without blocking, woken by publishes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use wasmtime::component::ResourceAny;

use super::bindings::pubsub::exports::blockhost::plugin::pubsub as wit;
use super::bindings::pubsub::{PubsubPlugin, PubsubPluginPre};
use super::bindings::{backend_error, PluginError};
use super::instance::PluginState;
use super::pool::{call_plugin, world_bindings, Instance, Pool, Work};
use super::PluginBackend;
use crate::blocks::pubsub::{
    BulkEntry, BulkFailure, IncomingMessage, Outcome, OutgoingMessage, PubSubBackend,
    SettleFailure, Settlement, SubscriptionBackend,
};
use crate::blocks::{BackendError, BoxFuture, ErrorKind, Metadata};

world_bindings!(PubsubPlugin, PubsubPluginPre);

struct PubSubPool {
    pool: Arc<Pool<PubsubPlugin>>,
    /// Wakes subscribers that share the component's one instance after each publish.
    published: Arc<Notify>,
}

impl PluginBackend for dyn PubSubBackend {
    type World = PubsubPlugin;
    const INTERFACE: &'static str = "pubsub";

    fn over_pool(pool: Arc<Pool<PubsubPlugin>>) -> Arc<Self> {
        Arc::new(PubSubPool {
            pool,
            published: Arc::new(Notify::new()),
        })
    }
}

impl PubSubBackend for PubSubPool {
    fn concurrency(&self) -> u32 {
        self.pool.size()
    }

    fn publish(&self, message: OutgoingMessage) -> BoxFuture<'_, Result<(), BackendError>> {
        let message = wit::OutgoingMessage {
            topic: message.topic,
            data: message.data,
            content_type: message.content_type,
            metadata: message.metadata,
        };
        Box::pin(async move {
            let result = call_plugin(&self.pool, move |i| {
                Box::pin(async move {
                    let pubsub = i.bindings.blockhost_plugin_pubsub();
                    pubsub.call_publish(&mut i.store, &message).await
                })
            })
            .await;
            self.published.notify_waiters();
            result
        })
    }

    fn bulk_publish(
        &self,
        topic: String,
        entries: Vec<BulkEntry>,
        metadata: Metadata,
    ) -> BoxFuture<'_, Result<Vec<BulkFailure>, BackendError>> {
        let entries: Vec<wit::BulkEntry> = entries
            .into_iter()
            .map(|entry| wit::BulkEntry {
                entry_id: entry.entry_id,
                data: entry.data,
                content_type: entry.content_type,
                metadata: entry.metadata,
            })
            .collect();
        Box::pin(async move {
            let result = call_plugin(&self.pool, move |i| {
                Box::pin(async move {
                    let pubsub = i.bindings.blockhost_plugin_pubsub();
                    pubsub
                        .call_bulk_publish(&mut i.store, &topic, &entries, &metadata)
                        .await
                })
            })
            .await;
            self.published.notify_waiters();
            Ok(result?
                .into_iter()
                .map(|failure| BulkFailure {
                    entry_id: failure.entry_id,
                    error: backend_error(&failure.error),
                })
                .collect())
        })
    }

    fn subscribe(
        &self,
        topic: String,
        metadata: Metadata,
    ) -> BoxFuture<'_, Result<Box<dyn SubscriptionBackend>, BackendError>> {
        let request = wit::SubscribeRequest { topic, metadata };
        Box::pin(async move {
            let pool = Arc::clone(&self.pool);
            if pool.is_single_instance() {
                let (handle, generation) = call_plugin(&pool, move |i| {
                    Box::pin(async move {
                        let pubsub = i.bindings.blockhost_plugin_pubsub();
                        let handle = pubsub.call_subscribe(&mut i.store, &request).await?;
                        Ok(handle.map(|handle| (handle, i.generation)))
                    })
                })
                .await?;
                let lane = Lane::Shared {
                    handle,
                    generation,
                    published: Arc::clone(&self.published),
                };
                return Ok(Box::new(Subscription { pool, lane }) as Box<dyn SubscriptionBackend>);
            }
            let mut instance = pool.dedicated().await.map_err(|e| e.backend())?;
            let handle = pool
                .run_dedicated(&mut instance, Duration::ZERO, move |i| {
                    Box::pin(async move {
                        let pubsub = i.bindings.blockhost_plugin_pubsub();
                        pubsub.call_subscribe(&mut i.store, &request).await
                    })
                })
                .await
                .map_err(|e| e.backend())?
                .map_err(|e| backend_error(&e))?;
            let lane = Lane::Dedicated {
                instance: Box::new(instance),
                handle,
            };
            Ok(Box::new(Subscription { pool, lane }) as Box<dyn SubscriptionBackend>)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
}

/// One open subscription and the instance it lives in.
struct Subscription {
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

impl SubscriptionBackend for Subscription {
    fn next(
        &mut self,
        max: u32,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Vec<IncomingMessage>, BackendError>> {
        Box::pin(async move {
            let messages = match &mut self.lane {
                Lane::Dedicated { instance, handle } => {
                    let handle = *handle;
                    // A zero wait would mean "block forever" to some brokers' clients.
                    let wait_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1);
                    self.pool
                        .run_dedicated(instance, wait, move |i| {
                            Box::pin(async move {
                                let subscription =
                                    i.bindings.blockhost_plugin_pubsub().subscription();
                                subscription
                                    .call_next(&mut i.store, handle, max, wait_ms)
                                    .await
                            })
                        })
                        .await
                        .map_err(|e| e.backend())?
                        .map_err(|e| backend_error(&e))?
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
                    let ready =
                        shared_call(&self.pool, *handle, *generation, move |s, store, h| {
                            Box::pin(async move { s.call_next(store, h, max, 0).await })
                        })
                        .await?;
                    if ready.is_empty() {
                        let _ = tokio::time::timeout(wait, woken).await;
                        shared_call(&self.pool, *handle, *generation, move |s, store, h| {
                            Box::pin(async move { s.call_next(store, h, max, 0).await })
                        })
                        .await?
                    } else {
                        ready
                    }
                }
            };
            Ok(messages.into_iter().map(incoming).collect())
        })
    }

    fn ack(
        &mut self,
        settled: Vec<Settlement>,
    ) -> BoxFuture<'_, Result<Vec<SettleFailure>, BackendError>> {
        let settled: Vec<wit::Settlement> = settled
            .into_iter()
            .map(|s| wit::Settlement {
                id: s.id,
                outcome: match s.outcome {
                    Outcome::Success => wit::Outcome::Success,
                    Outcome::Retry => wit::Outcome::Retry,
                    Outcome::Drop => wit::Outcome::Drop,
                },
            })
            .collect();
        Box::pin(async move {
            let failures = match &mut self.lane {
                Lane::Dedicated { instance, handle } => {
                    let handle = *handle;
                    self.pool
                        .run_dedicated(instance, Duration::ZERO, move |i| {
                            Box::pin(async move {
                                let subscription =
                                    i.bindings.blockhost_plugin_pubsub().subscription();
                                subscription.call_ack(&mut i.store, handle, &settled).await
                            })
                        })
                        .await
                        .map_err(|e| e.backend())?
                        .map_err(|e| backend_error(&e))?
                }
                Lane::Shared {
                    handle, generation, ..
                } => {
                    shared_call(&self.pool, *handle, *generation, move |s, store, h| {
                        Box::pin(async move { s.call_ack(store, h, &settled).await })
                    })
                    .await?
                }
            };
            Ok(failures
                .into_iter()
                .map(|failure| SettleFailure {
                    id: failure.id,
                    error: backend_error(&failure.error),
                })
                .collect())
        })
    }
}

fn incoming(message: wit::IncomingMessage) -> IncomingMessage {
    IncomingMessage {
        id: message.id,
        topic: message.topic,
        data: message.data,
        content_type: message.content_type,
        metadata: message.metadata,
    }
}

/// Calls a subscription method on the shared instance, if it is still the one that holds
/// the subscription; otherwise the subscription is lost and must be opened again.
async fn shared_call<R, F>(
    pool: &Arc<Pool<PubsubPlugin>>,
    handle: ResourceAny,
    generation: u64,
    work: F,
) -> Result<R, BackendError>
where
    R: Send + 'static,
    F: for<'a> FnOnce(
            wit::GuestSubscription<'a>,
            &'a mut wasmtime::Store<PluginState>,
            ResourceAny,
        ) -> Work<'a, Result<R, PluginError>>
        + Send
        + 'static,
{
    let result = call_plugin(pool, move |i| {
        Box::pin(async move {
            if i.generation != generation {
                return Ok(Ok(None));
            }
            let subscription = i.bindings.blockhost_plugin_pubsub().subscription();
            Ok(work(subscription, &mut i.store, handle).await?.map(Some))
        })
    })
    .await?;
    result.ok_or_else(|| {
        BackendError::new(
            ErrorKind::Unavailable,
            "the subscription was lost with its plugin instance",
        )
    })
}

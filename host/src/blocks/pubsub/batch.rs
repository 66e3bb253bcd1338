//! Group commit for single publishes. Publishes that arrive while the plugin is busy wait in
//! a queue, and the next free lane sends all of them (per topic) in one `bulk-publish` call:
//! one plugin call and one broker round trip (a Redis pipeline, one batch of AMQP frames
//! with their confirms) for many requests. A publish that finds a lane idle goes out alone,
//! through `publish`, at once; batches grow only with the load, so latency does not.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::{BulkEntry, OutgoingMessage, PubSubError};
use crate::plugins::bindings::pubsub::PubsubPlugin;
use crate::plugins::bindings::PluginError;
use crate::plugins::pool::Pool;

/// The most messages one plugin call carries.
const MAX_BATCH: usize = 128;

struct Pending {
    message: OutgoingMessage,
    answer: oneshot::Sender<Result<(), PubSubError>>,
}

pub struct PublishQueue {
    queue: mpsc::UnboundedSender<Pending>,
}

impl PublishQueue {
    /// Starts `lanes` tasks that drain the queue; they end when the queue is dropped.
    pub fn start(pool: Arc<Pool<PubsubPlugin>>, published: Arc<Notify>, lanes: usize) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..lanes.max(1) {
            let lane = Lane {
                pool: Arc::clone(&pool),
                published: Arc::clone(&published),
                receiver: Arc::clone(&receiver),
            };
            tokio::spawn(lane.run());
        }
        Self { queue }
    }

    pub async fn publish(&self, message: OutgoingMessage) -> Result<(), PubSubError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { message, answer })
            .map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

fn closed() -> PubSubError {
    PubSubError::Call(crate::plugins::pool::CallError::Closed)
}

struct Lane {
    pool: Arc<Pool<PubsubPlugin>>,
    published: Arc<Notify>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
}

impl Lane {
    async fn run(self) {
        while let Some(batch) = self.take().await {
            for (topic, group) in by_topic(batch) {
                self.send(topic, group).await;
            }
            self.published.notify_waiters();
        }
    }

    /// Waits for one publish, then takes every one queued behind it.
    async fn take(&self) -> Option<Vec<Pending>> {
        let mut receiver = self.receiver.lock().await;
        let first = receiver.recv().await?;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    async fn send(&self, topic: String, mut group: Vec<Pending>) {
        if group.len() == 1 {
            if let Some(Pending { message, answer }) = group.pop() {
                let _ = answer.send(self.publish_one(message).await);
            }
            return;
        }
        let (entries, answers): (Vec<BulkEntry>, Vec<_>) = group
            .into_iter()
            .enumerate()
            .map(|(index, Pending { message, answer })| {
                let entry = BulkEntry {
                    entry_id: index.to_string(),
                    data: message.data,
                    content_type: message.content_type,
                    metadata: message.metadata,
                };
                (entry, answer)
            })
            .unzip();
        let result = super::bulk_call(&self.pool, topic, entries, Vec::new()).await;
        match result {
            Ok(Ok(failures)) => {
                let mut failed: HashMap<String, PluginError> = failures
                    .into_iter()
                    .map(|f| (f.entry_id, f.error))
                    .collect();
                for (index, answer) in answers.into_iter().enumerate() {
                    let outcome = match failed.remove(&index.to_string()) {
                        Some(error) => Err(PubSubError::Plugin(error)),
                        None => Ok(()),
                    };
                    let _ = answer.send(outcome);
                }
            }
            Ok(Err(error)) => {
                for answer in answers {
                    let _ = answer.send(Err(PubSubError::Plugin(error.clone())));
                }
            }
            Err(call) => {
                for answer in answers {
                    let _ = answer.send(Err(PubSubError::Call(call.clone())));
                }
            }
        }
    }

    async fn publish_one(&self, message: OutgoingMessage) -> Result<(), PubSubError> {
        let result = self
            .pool
            .call(move |i| {
                Box::pin(async move {
                    let pubsub = i.bindings.blockhost_plugin_pubsub();
                    pubsub.call_publish(&mut i.store, &message).await
                })
            })
            .await?;
        result.map_err(PubSubError::Plugin)
    }
}

/// The batch split per topic, each topic's messages in arrival order.
fn by_topic(batch: Vec<Pending>) -> Vec<(String, Vec<Pending>)> {
    let mut groups: Vec<(String, Vec<Pending>)> = Vec::new();
    for pending in batch {
        match groups
            .iter_mut()
            .find(|(topic, _)| *topic == pending.message.topic)
        {
            Some((_, group)) => group.push(pending),
            None => groups.push((pending.message.topic.clone(), vec![pending])),
        }
    }
    groups
}

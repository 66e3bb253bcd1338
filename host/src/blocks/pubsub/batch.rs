//! Group commit for single publishes. Publishes that arrive while the plugin is busy wait in
//! a queue, and the next free lane sends all of them (per topic) in one `bulk-publish` call:
//! one plugin call and one broker round trip (a Redis pipeline, one batch of AMQP frames
//! with their confirms) for many requests. A publish that finds a lane idle goes out alone,
//! through `publish`, at once; batches grow only with the load, so latency does not.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{BulkEntry, OutgoingMessage, PubSubBackend};
use crate::blocks::{BackendError, ErrorKind};

/// The most messages one plugin call carries.
const MAX_BATCH: usize = 128;

struct Pending {
    message: OutgoingMessage,
    answer: oneshot::Sender<Result<(), BackendError>>,
}

pub struct PublishQueue {
    queue: mpsc::UnboundedSender<Pending>,
}

impl PublishQueue {
    /// Starts `lanes` tasks that drain the queue; they end when the queue is dropped.
    pub fn start(backend: Arc<dyn PubSubBackend>, lanes: usize) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..lanes.max(1) {
            let lane = Lane {
                backend: Arc::clone(&backend),
                receiver: Arc::clone(&receiver),
            };
            tokio::spawn(lane.run());
        }
        Self { queue }
    }

    pub async fn publish(&self, message: OutgoingMessage) -> Result<(), BackendError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { message, answer })
            .map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

fn closed() -> BackendError {
    BackendError::new(ErrorKind::Unavailable, "the component is shutting down")
}

struct Lane {
    backend: Arc<dyn PubSubBackend>,
    receiver: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
}

impl Lane {
    async fn run(self) {
        while let Some(batch) = self.take().await {
            for (topic, group) in by_topic(batch) {
                self.send(topic, group).await;
            }
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
                let _ = answer.send(self.backend.publish(message).await);
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
        match self.backend.bulk_publish(topic, entries, Vec::new()).await {
            Ok(failures) => {
                let mut failed: HashMap<String, BackendError> = failures
                    .into_iter()
                    .map(|f| (f.entry_id, f.error))
                    .collect();
                for (index, answer) in answers.into_iter().enumerate() {
                    let outcome = match failed.remove(&index.to_string()) {
                        Some(error) => Err(error),
                        None => Ok(()),
                    };
                    let _ = answer.send(outcome);
                }
            }
            Err(error) => {
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
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

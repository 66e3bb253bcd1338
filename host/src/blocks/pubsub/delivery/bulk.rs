//! `bulkSubscribe` delivery (<https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-bulk/>):
//! many messages in one request to the app, one status per entry in its answer. Entries are
//! grouped by the route their event matches; entries the app asks to retry are sent again
//! (in a smaller request) on the same schedule as single deliveries, then dead-lettered or
//! dropped.

use base64::Engine as _;
use serde_json::Value;
use tokio::sync::watch;

use super::verdict::{NextAttempt, Retries, Verdict};
use super::{BulkRequest, BulkRequestEntry, Pumping};
use crate::blocks::pubsub::cloudevent::{new_event_id, CLOUDEVENTS_JSON};
use crate::blocks::pubsub::{IncomingMessage, Outcome, Settlement};

/// One message on its way in a bulk request.
struct Entry {
    entry_id: String,
    message: IncomingMessage,
    /// The CloudEvent object, or for raw payloads the message bytes in base64.
    event: Value,
    content_type: String,
}

impl Pumping {
    /// Delivers `messages` in bulk requests (one per route) and decides each one's outcome.
    pub(super) async fn handle_bulk(
        &self,
        messages: Vec<IncomingMessage>,
        stop: watch::Receiver<bool>,
    ) -> Vec<Settlement> {
        let raw = self.subscriber.spec.raw_payload();
        let mut settled = Vec::with_capacity(messages.len());
        let mut by_route: Vec<(String, Vec<Entry>)> = Vec::new();
        for message in messages {
            let (event, path) = match self.prepare(&message).await {
                Ok((_, event, path)) => (event, path.to_owned()),
                Err(outcome) => {
                    settled.push(Settlement {
                        id: message.id,
                        outcome,
                    });
                    continue;
                }
            };
            let (event, content_type) = if raw {
                let content_type = message
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".to_owned());
                let encoded = base64::engine::general_purpose::STANDARD.encode(&message.data);
                (Value::String(encoded), content_type)
            } else {
                (event, CLOUDEVENTS_JSON.to_owned())
            };
            let entry = Entry {
                entry_id: new_event_id(),
                message,
                event,
                content_type,
            };
            match by_route.iter_mut().find(|(p, _)| *p == path) {
                Some((_, entries)) => entries.push(entry),
                None => by_route.push((path, vec![entry])),
            }
        }
        for (path, entries) in by_route {
            settled.extend(self.deliver_bulk(&path, entries, &stop).await);
        }
        settled
    }

    /// Sends `entries` to `path`, again for those the app asks to retry, up to the retry
    /// budget.
    async fn deliver_bulk(
        &self,
        path: &str,
        mut pending: Vec<Entry>,
        stop: &watch::Receiver<bool>,
    ) -> Vec<Settlement> {
        let mut settled = Vec::with_capacity(pending.len());
        let mut retries = Retries::new(&self.subscriber.policy);
        loop {
            let answer = self
                .subscriber
                .app
                .deliver_bulk(path, self.request(&pending))
                .await;
            let mut again = Vec::new();
            for entry in pending {
                let outcome = match answer.verdict(&entry.entry_id) {
                    Verdict::Success => Outcome::Success,
                    Verdict::Drop => self.give_up(&entry.message, "the app dropped it").await,
                    Verdict::Retry => {
                        again.push(entry);
                        continue;
                    }
                };
                settled.push(Settlement {
                    id: entry.message.id,
                    outcome,
                });
            }
            pending = again;
            if pending.is_empty() {
                return settled;
            }
            match retries.next(stop).await {
                NextAttempt::Again => {}
                NextAttempt::Stopping => {
                    // Shutting down: hand them back to the broker rather than retry here.
                    settled.extend(pending.drain(..).map(|entry| Settlement {
                        id: entry.message.id,
                        outcome: Outcome::Retry,
                    }));
                    return settled;
                }
                NextAttempt::Exhausted => break,
            }
        }
        for entry in pending {
            let reason = "the app did not accept it after every retry";
            let outcome = self.give_up(&entry.message, reason).await;
            settled.push(Settlement {
                id: entry.message.id,
                outcome,
            });
        }
        settled
    }

    fn request<'a>(&'a self, entries: &'a [Entry]) -> BulkRequest<'a> {
        BulkRequest {
            id: new_event_id(),
            topic: &self.subscriber.spec.topic,
            pubsub: self.pubsub.name(),
            entries: entries
                .iter()
                .map(|entry| BulkRequestEntry {
                    entry_id: &entry.entry_id,
                    event: &entry.event,
                    content_type: &entry.content_type,
                    metadata: &entry.message.metadata,
                })
                .collect(),
        }
    }
}

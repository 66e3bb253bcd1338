//! `bulkSubscribe` delivery (reference §2.4): many messages in one request to the app, one
//! status per entry in its answer. Entries are grouped by the route their event matches;
//! entries the app asks to retry are sent again (in a smaller request) with the same backoff
//! as single deliveries, then dead-lettered or dropped.

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::delivery::Subscriber;
use crate::blocks::pubsub::cloudevent::new_event_id;
use crate::blocks::pubsub::{IncomingMessage, Outcome, Settlement};
use crate::json::Object;

const BULK_EVENT_TYPE: &str = "com.dapr.event.sent.bulk";

/// One message on its way in a bulk request.
struct Entry {
    entry_id: String,
    message: IncomingMessage,
    /// The CloudEvent object, or for raw payloads the message bytes in base64.
    event: Value,
    content_type: String,
}

/// What the app said about one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Success,
    Retry,
    Drop,
}

/// The app's answer to one bulk request.
enum Answer {
    /// The same for every entry (404, another status, no usable body).
    All(Status),
    /// Per entry id; an entry missing here is retried.
    Each(HashMap<String, Status>),
}

impl Answer {
    fn status(&self, entry_id: &str) -> Status {
        match self {
            Self::All(status) => *status,
            Self::Each(statuses) => statuses.get(entry_id).copied().unwrap_or(Status::Retry),
        }
    }
}

impl Subscriber {
    /// Delivers `messages` in bulk requests (one per route) and decides each one's outcome.
    pub(super) async fn handle_bulk(
        &self,
        messages: Vec<IncomingMessage>,
        stop: watch::Receiver<bool>,
    ) -> Vec<Settlement> {
        let raw = self.spec.raw_payload();
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
                (event, "application/cloudevents+json".to_owned())
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
        let mut backoff = self.policy.first_backoff;
        for attempt in 0..=self.policy.retries {
            let answer = self.post_bulk(path, &pending).await;
            let mut again = Vec::new();
            for entry in pending {
                let outcome = match answer.status(&entry.entry_id) {
                    Status::Success => Outcome::Success,
                    Status::Drop => self.give_up(&entry.message, "the app dropped it").await,
                    Status::Retry => {
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
            if pending.is_empty() || attempt == self.policy.retries {
                break;
            }
            if *stop.borrow() {
                // Shutting down: hand them back to the broker rather than retry here.
                settled.extend(pending.drain(..).map(|entry| Settlement {
                    id: entry.message.id,
                    outcome: Outcome::Retry,
                }));
                return settled;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
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

    async fn post_bulk(&self, path: &str, entries: &[Entry]) -> Answer {
        let body = json!({
            "id": new_event_id(),
            "type": BULK_EVENT_TYPE,
            "topic": self.spec.topic,
            "pubsubname": self.spec.pubsub,
            "metadata": {},
            "entries": entries.iter().map(|entry| json!({
                "entryId": entry.entry_id,
                "event": entry.event,
                "contentType": entry.content_type,
                "metadata": entry.message.metadata.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect::<Map<String, Value>>(),
            })).collect::<Vec<_>>(),
        });
        let headers = [("pubsubName".to_owned(), self.pubsub.name().to_owned())];
        let answer = self
            .channel
            .call(
                Method::POST,
                path,
                Some("application/json"),
                &headers,
                Bytes::from(body.to_string()),
                self.policy.app_timeout,
            )
            .await;
        match answer {
            Ok(response) if response.status == StatusCode::NOT_FOUND => Answer::All(Status::Drop),
            Ok(response) if response.status.is_success() => statuses(&response.body),
            Ok(_) => Answer::All(Status::Retry),
            Err(err) => {
                tracing::debug!(topic = %self.spec.topic, "bulk delivery failed: {err}");
                Answer::All(Status::Retry)
            }
        }
    }
}

/// `{"statuses":[{"entryId":"..","status":"SUCCESS"}, ..]}` as daprd reads it: field names in
/// any case, a missing or empty status means retry, a body that is not JSON retries all.
fn statuses(body: &[u8]) -> Answer {
    let parsed = serde_json::from_slice::<&RawValue>(body)
        .map_err(|err| err.to_string())
        .and_then(Object::parse)
        .and_then(|answer| answer.array("statuses"));
    let Ok(list) = parsed else {
        return Answer::All(Status::Retry);
    };
    let mut each = HashMap::new();
    for raw in list {
        let Ok(item) = Object::parse(raw) else {
            continue;
        };
        let (Ok(Some(entry_id)), Ok(status)) = (item.string("entryid"), item.string("status"))
        else {
            continue;
        };
        let status = match status.unwrap_or_default().to_ascii_uppercase().as_str() {
            "SUCCESS" => Status::Success,
            "DROP" => Status::Drop,
            _ => Status::Retry,
        };
        each.insert(entry_id, status);
    }
    Answer::Each(each)
}

#[cfg(test)]
mod tests {
    use super::{statuses, Answer, Status};

    #[test]
    fn bulk_answers_are_read_as_daprd_reads_them() {
        let answer = statuses(
            br#"{"Statuses":[{"entryId":"a","status":"SUCCESS"},{"EntryId":"b","status":"drop"},
                {"entryId":"c","status":""},{"entryId":"d","status":"RETRY"},{"status":"SUCCESS"}]}"#,
        );
        assert_eq!(answer.status("a"), Status::Success);
        assert_eq!(answer.status("b"), Status::Drop);
        assert_eq!(answer.status("c"), Status::Retry);
        assert_eq!(answer.status("d"), Status::Retry);
        assert_eq!(answer.status("missing"), Status::Retry);
        assert!(matches!(statuses(b"not json"), Answer::All(Status::Retry)));
        assert!(matches!(statuses(b"{}"), Answer::Each(ref m) if m.is_empty()));
    }
}

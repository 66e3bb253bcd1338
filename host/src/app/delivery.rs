//! The subscriber loop: pull from the plugin, deliver to the app's route, acknowledge only
//! after the app's answer (reference §2.3). Deliveries run in parallel up to the
//! component's concurrency; retries back off; exhausted messages go to the dead-letter topic.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::channel::AppChannel;
use super::subscription::SubscriptionSpec;
use crate::blocks::pubsub::cloudevent::CLOUDEVENTS_JSON;
use crate::blocks::pubsub::{
    IncomingMessage, Outcome, OutgoingMessage, PubSub, PubSubError, Settlement,
};
use crate::plugins::bindings::describe_error;

/// How deliveries are retried before a message counts as failed.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub concurrency: usize,
    pub retries: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub app_timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            concurrency: 10,
            retries: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(3),
            app_timeout: Duration::from_secs(60),
        }
    }
}

/// How long `next` may wait when nothing is in flight; with deliveries in flight it
/// returns sooner, so their answers are settled soon; with messages read ahead it does not
/// wait at all.
const IDLE_WAIT: Duration = Duration::from_secs(1);
const BUSY_WAIT: Duration = Duration::from_millis(20);

/// Messages read ahead of the deliveries, as a multiple of the concurrency: a slot that
/// frees up is refilled from memory, not after a broker round trip (daprd's Redis
/// component reads ahead the same way, `queueDepth`).
const READ_AHEAD: usize = 2;

/// What the app's answer (or its silence) means for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Retry,
    Drop,
}

pub struct Subscriber {
    pub spec: SubscriptionSpec,
    pub pubsub: Arc<PubSub>,
    pub channel: Arc<AppChannel>,
    pub policy: DeliveryPolicy,
}

impl Subscriber {
    /// Runs until `stop` turns true, then finishes the deliveries in flight and returns.
    /// `first_attempt` is dropped once the first subscribe has succeeded or failed, so the
    /// sidecar reports ready only when the broker already routes the topic to this app.
    pub async fn run(self, mut stop: watch::Receiver<bool>, first_attempt: oneshot::Sender<()>) {
        let this = Arc::new(self);
        let mut backoff = this.policy.first_backoff;
        let mut first_attempt = Some(first_attempt);
        while !*stop.borrow() {
            let subscribed = this
                .pubsub
                .subscribe(&this.spec.topic, this.spec.metadata.clone())
                .await;
            drop(first_attempt.take());
            match subscribed {
                Ok(subscription) => {
                    tracing::info!(
                        component = this.pubsub.name(),
                        topic = %this.spec.topic,
                        "subscribed"
                    );
                    backoff = this.policy.first_backoff;
                    if Arc::clone(&this).pump(subscription, &mut stop).await {
                        return;
                    }
                }
                Err(err) => tracing::warn!(
                    component = this.pubsub.name(),
                    topic = %this.spec.topic,
                    "cannot subscribe, trying again in {backoff:?}: {err}"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(this.policy.max_backoff);
        }
    }

    /// Pulls and delivers until stopped (returns true) or the subscription breaks (false).
    /// Answers are settled in batches, between pulls: a slot frees up as soon as the app
    /// answers, not when the broker has the acknowledgement. A slot carries one message, or
    /// with `bulkSubscribe` one request of up to `maxMessagesCount` messages.
    async fn pump(
        self: Arc<Self>,
        mut subscription: crate::blocks::pubsub::Subscription,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let (done_tx, mut done) = mpsc::unbounded_channel::<Vec<Settlement>>();
        let concurrency = self.policy.concurrency.max(1);
        let bulk = self.spec.bulk;
        let read_ahead = match bulk {
            Some(bulk) => 2 * bulk.max_messages,
            None => READ_AHEAD * concurrency,
        };
        let mut ahead: VecDeque<IncomingMessage> = VecDeque::new();
        // Since when the oldest message read ahead waits (bulk requests wait to fill up).
        let mut waiting_since: Option<Instant> = None;
        let mut slots_taken = 0usize;
        let mut messages_out = 0usize;
        let mut answered = Vec::new();
        let stopped = loop {
            while let Ok(settlements) = done.try_recv() {
                slots_taken -= 1;
                messages_out -= settlements.len();
                answered.extend(settlements);
            }
            if !answered.is_empty() {
                self.settle(&mut subscription, std::mem::take(&mut answered))
                    .await;
            }
            if *stop.borrow() {
                break true;
            }
            while slots_taken < concurrency && !ahead.is_empty() {
                let take = match bulk {
                    None => 1,
                    Some(bulk) => {
                        let full = ahead.len() >= bulk.max_messages;
                        let due = waiting_since.is_some_and(|t| t.elapsed() >= bulk.max_await);
                        if !full && !due {
                            break;
                        }
                        bulk.max_messages.min(ahead.len())
                    }
                };
                let unit: Vec<IncomingMessage> = ahead.drain(..take).collect();
                waiting_since = (!ahead.is_empty()).then(Instant::now);
                slots_taken += 1;
                messages_out += unit.len();
                let this = Arc::clone(&self);
                let done = done_tx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let settlements = if bulk.is_some() {
                        this.handle_bulk(unit, stop).await
                    } else {
                        let mut settlements = Vec::with_capacity(1);
                        for message in unit {
                            let id = message.id.clone();
                            let outcome = this.handle(message, stop.clone()).await;
                            settlements.push(Settlement { id, outcome });
                        }
                        settlements
                    };
                    let _ = done.send(settlements);
                });
            }
            // A bulk request that waits to fill up is sent when its time is up.
            let deadline = bulk.zip(waiting_since).map(|(b, t)| t + b.max_await);
            let wanted = read_ahead.saturating_sub(ahead.len() + messages_out);
            let slot_free = slots_taken < concurrency;
            if wanted == 0 || (!slot_free && !ahead.is_empty()) {
                // Enough read ahead, or messages wait for a slot: wait for an answer (or, with
                // a slot free, for a bulk request's time), not on the broker.
                let until = match deadline {
                    Some(deadline) if slot_free => deadline,
                    _ => Instant::now() + IDLE_WAIT,
                };
                tokio::select! {
                    Some(settlements) = done.recv() => {
                        slots_taken -= 1;
                        messages_out -= settlements.len();
                        answered.extend(settlements);
                    }
                    () = tokio::time::sleep_until(until.into()) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            // Here a slot is free or nothing waits for one.
            let wait = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None if slots_taken > 0 => BUSY_WAIT,
                None => IDLE_WAIT,
            };
            let max = u32::try_from(wanted).unwrap_or(u32::MAX);
            match subscription.next(max, wait).await {
                Ok(messages) => {
                    if waiting_since.is_none() && !messages.is_empty() {
                        waiting_since = Some(Instant::now());
                    }
                    ahead.extend(messages);
                }
                Err(PubSubError::Lost) => break false,
                Err(err) => {
                    tracing::warn!(
                        component = self.pubsub.name(),
                        topic = %self.spec.topic,
                        "pulling messages failed: {err}"
                    );
                    break false;
                }
            }
        };
        // Finish what was handed to the app; hand back what was read ahead. Anything not
        // settled is delivered again by the broker.
        while slots_taken > 0 {
            match done.recv().await {
                Some(settlements) => {
                    slots_taken -= 1;
                    answered.extend(settlements);
                }
                None => break,
            }
        }
        answered.extend(ahead.into_iter().map(|message| Settlement {
            id: message.id,
            outcome: Outcome::Retry,
        }));
        if !answered.is_empty() {
            self.settle(&mut subscription, answered).await;
        }
        stopped
    }

    async fn settle(
        &self,
        subscription: &mut crate::blocks::pubsub::Subscription,
        settled: Vec<Settlement>,
    ) {
        let count = settled.len();
        match subscription.ack(settled).await {
            Ok(failures) => {
                for failure in failures {
                    tracing::warn!(
                        component = self.pubsub.name(),
                        topic = %self.spec.topic,
                        message_id = %failure.id,
                        "acknowledging a message failed (the broker will deliver it again): {}",
                        describe_error(&failure.error)
                    );
                }
            }
            Err(err) => tracing::warn!(
                component = self.pubsub.name(),
                topic = %self.spec.topic,
                "acknowledging {count} messages failed (the broker will deliver them again): {err}"
            ),
        }
    }

    /// What delivery needs of `message`: the bytes the app gets (for a raw-payload
    /// subscription, a fresh envelope around them), the event routing reads, and the route.
    /// A message that cannot be delivered (not a CloudEvent, expired, no route) is given up on
    /// here, and its outcome is the error.
    pub(super) async fn prepare(
        &self,
        message: &IncomingMessage,
    ) -> Result<(Vec<u8>, Value, &str), Outcome> {
        let body = if self.spec.raw_payload() {
            wrap_raw(message, &self.spec)
        } else {
            message.data.clone()
        };
        let event: Value = match serde_json::from_slice(&body) {
            Ok(event) => event,
            Err(err) => {
                let reason = format!("the message is not a CloudEvent: {err}");
                return Err(self.give_up(message, &reason).await);
            }
        };
        if is_expired(&event) {
            return Err(self.give_up(message, "the message expired").await);
        }
        match self.spec.route(&event) {
            Some(path) => Ok((body, event, path)),
            None => Err(self.give_up(message, "no route matches the message").await),
        }
    }

    /// Delivers one message with retries and decides its outcome for the broker.
    pub(super) async fn handle(
        &self,
        message: IncomingMessage,
        stop: watch::Receiver<bool>,
    ) -> Outcome {
        let (body, event, path) = match self.prepare(&message).await {
            Ok(prepared) => prepared,
            Err(outcome) => return outcome,
        };
        let headers = delivery_headers(&message, &event, self.pubsub.name());
        let body = Bytes::from(body);
        let mut backoff = self.policy.first_backoff;
        for attempt in 0..=self.policy.retries {
            let verdict = self.deliver_once(path, &headers, body.clone()).await;
            match verdict {
                Verdict::Success => return Outcome::Success,
                Verdict::Drop => return self.give_up(&message, "the app dropped it").await,
                Verdict::Retry if attempt == self.policy.retries => break,
                Verdict::Retry => {}
            }
            if *stop.borrow() {
                // Shutting down: hand it back to the broker rather than retry here.
                return Outcome::Retry;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
        }
        self.give_up(&message, "the app did not accept it after every retry")
            .await
    }

    async fn deliver_once(&self, path: &str, headers: &[(String, String)], body: Bytes) -> Verdict {
        let answer = self
            .channel
            .call(
                Method::POST,
                path,
                Some(CLOUDEVENTS_JSON),
                headers,
                body,
                self.policy.app_timeout,
            )
            .await;
        match answer {
            Ok(response) => verdict(response.status, &response.body),
            Err(err) => {
                tracing::debug!(topic = %self.spec.topic, "delivery failed: {err}");
                Verdict::Retry
            }
        }
    }

    /// A message the app will not take: to the dead-letter topic if there is one,
    /// otherwise dropped with a warning.
    pub(super) async fn give_up(&self, message: &IncomingMessage, reason: &str) -> Outcome {
        let Some(dead_letter) = &self.spec.dead_letter_topic else {
            tracing::warn!(
                component = self.pubsub.name(),
                topic = %self.spec.topic,
                message_id = %message.id,
                "message dropped: {reason}"
            );
            return Outcome::Drop;
        };
        let forward = OutgoingMessage {
            topic: dead_letter.clone(),
            data: message.data.clone(),
            content_type: message.content_type.clone(),
            metadata: message.metadata.clone(),
        };
        match self.pubsub.publish(forward).await {
            Ok(()) => {
                tracing::info!(
                    component = self.pubsub.name(),
                    topic = %self.spec.topic,
                    dead_letter_topic = %dead_letter,
                    "message sent to the dead-letter topic: {reason}"
                );
                Outcome::Success
            }
            Err(err) => {
                tracing::warn!(
                    component = self.pubsub.name(),
                    topic = %self.spec.topic,
                    "cannot forward to the dead-letter topic {dead_letter}, the broker keeps the message: {err}"
                );
                Outcome::Retry
            }
        }
    }
}

/// daprd's reading of the app's answer.
fn verdict(status: StatusCode, body: &[u8]) -> Verdict {
    if status == StatusCode::NOT_FOUND {
        return Verdict::Drop;
    }
    if !status.is_success() {
        return Verdict::Retry;
    }
    let answer: Option<Value> = serde_json::from_slice(body).ok();
    let status_field = answer
        .as_ref()
        .and_then(|a| a.as_object())
        .and_then(|object| {
            object
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("status"))
                .map(|(_, v)| v)
        });
    match status_field.and_then(Value::as_str) {
        None | Some("") => Verdict::Success,
        Some(s) if s.eq_ignore_ascii_case("SUCCESS") => Verdict::Success,
        Some(s) if s.eq_ignore_ascii_case("DROP") => Verdict::Drop,
        Some(_) => Verdict::Retry,
    }
}

fn is_expired(event: &Value) -> bool {
    event
        .get("expiration")
        .and_then(Value::as_str)
        .and_then(|text| humantime::parse_rfc3339_weak(text).ok())
        .is_some_and(|at| at < std::time::SystemTime::now())
}

/// Broker metadata becomes request headers, plus the component name and the trace context.
fn delivery_headers(
    message: &IncomingMessage,
    event: &Value,
    pubsub: &str,
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = message.metadata.clone();
    headers.push(("pubsubName".to_owned(), pubsub.to_owned()));
    let trace = event
        .get("traceparent")
        .or_else(|| event.get("traceid"))
        .and_then(Value::as_str);
    if let Some(trace) = trace {
        headers.push(("traceparent".to_owned(), trace.to_owned()));
    }
    headers
}

/// A raw-payload subscription gets the broker's bytes in a fresh envelope.
fn wrap_raw(message: &IncomingMessage, spec: &SubscriptionSpec) -> Vec<u8> {
    let event = serde_json::json!({
        "id": crate::blocks::pubsub::cloudevent::new_event_id(),
        "specversion": "1.0",
        "datacontenttype": "application/octet-stream",
        "source": "Dapr",
        "type": "com.dapr.event.sent",
        "topic": spec.topic,
        "pubsubname": spec.pubsub,
        "data_base64": base64::engine::general_purpose::STANDARD.encode(&message.data),
    });
    event.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::{verdict, Verdict};
    use hyper::StatusCode;

    #[test]
    fn app_answers_are_read_as_daprd_reads_them() {
        let ok = StatusCode::OK;
        assert_eq!(verdict(ok, b""), Verdict::Success);
        assert_eq!(verdict(ok, b"not json"), Verdict::Success);
        assert_eq!(verdict(ok, br#"{"status":"SUCCESS"}"#), Verdict::Success);
        assert_eq!(verdict(ok, br#"{"status":""}"#), Verdict::Success);
        assert_eq!(verdict(ok, br#"{"status":"RETRY"}"#), Verdict::Retry);
        assert_eq!(verdict(ok, br#"{"status":"DROP"}"#), Verdict::Drop);
        assert_eq!(verdict(ok, br#"{"status":"weird"}"#), Verdict::Retry);
        assert_eq!(verdict(StatusCode::NOT_FOUND, b""), Verdict::Drop);
        assert_eq!(
            verdict(StatusCode::INTERNAL_SERVER_ERROR, b""),
            Verdict::Retry
        );
    }
}

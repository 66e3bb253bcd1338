//! Delivery to the app: one subscriber loop per subscription pulls from its pub/sub,
//! delivers to the app's route, and settles with the broker only after the app's answer
//! (daprd's rules: <https://docs.dapr.io/reference/api/pubsub_api/#provide-routes-for-dapr-to-deliver-topic-events>).
//! Deliveries run in parallel up to the component's concurrency; retries back off;
//! exhausted messages go to the dead-letter topic. The subscriber resolves its pub/sub by
//! name whenever it (re)subscribes, so a replaced component is picked up.

mod bulk;
mod pump;
mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::cloudevent::new_event_id;
use super::subscription::SubscriptionSpec;
use super::{IncomingMessage, Outcome, OutgoingMessage, PubSub, Settlement, SubscriptionBackend};
use crate::blocks::{BoxFuture, Lookup, Resolver};
use pump::PumpState;
pub use verdict::{BulkAnswer, Verdict};
use verdict::{NextAttempt, Retries};

/// One event for the app: the CloudEvent's bytes and the request headers that go with it.
pub struct Event<'a> {
    pub body: Bytes,
    pub headers: &'a [(String, String)],
}

/// One request of a `bulkSubscribe` subscription.
pub struct BulkRequest<'a> {
    pub id: String,
    pub topic: &'a str,
    pub pubsub: &'a str,
    pub entries: Vec<BulkRequestEntry<'a>>,
}

pub struct BulkRequestEntry<'a> {
    pub entry_id: &'a str,
    /// The CloudEvent, or for raw payloads the message bytes in base64.
    pub event: &'a Value,
    pub content_type: &'a str,
    pub metadata: &'a [(String, String)],
}

/// The app, as delivery sees it (the HTTP channel in `app/` implements it).
pub trait EventSink: Send + Sync {
    /// Delivers one event to `route` and reads the app's answer.
    fn deliver<'a>(&'a self, route: &'a str, event: Event<'a>) -> BoxFuture<'a, Verdict>;
    /// Delivers a bulk request to `route` and reads the app's answer per entry.
    fn deliver_bulk<'a>(
        &'a self,
        route: &'a str,
        request: BulkRequest<'a>,
    ) -> BoxFuture<'a, BulkAnswer>;
}

/// How deliveries are retried before a message counts as failed.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub retries: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            retries: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(3),
        }
    }
}

/// How long `next` may wait when nothing is in flight; with deliveries in flight it
/// returns sooner, so their answers are settled soon; with messages read ahead it does not
/// wait at all.
const IDLE_WAIT: Duration = Duration::from_secs(1);
const BUSY_WAIT: Duration = Duration::from_millis(20);

pub struct Subscriber {
    pub spec: SubscriptionSpec,
    /// Where the subscriber finds its pub/sub each time it (re)subscribes.
    pub components: Arc<dyn Resolver<PubSub>>,
    pub app: Arc<dyn EventSink>,
    pub policy: DeliveryPolicy,
}

/// A subscription being pumped: the subscriber and the component it resolved.
struct Pumping {
    subscriber: Arc<Subscriber>,
    pubsub: Arc<PubSub>,
}

impl Subscriber {
    /// Runs until `stop` turns true, then finishes the deliveries in flight and returns.
    /// `first_attempt` is dropped once the first subscribe has succeeded or failed, so the
    /// sidecar reports ready only when the broker already routes the topic to this app.
    pub async fn run(self, mut stop: watch::Receiver<bool>, first_attempt: oneshot::Sender<()>) {
        let this = Arc::new(self);
        let mut backoff = this.policy.first_backoff;
        let mut first_attempt = Some(first_attempt);
        let name = &this.spec.pubsub;
        let topic = &this.spec.topic;
        while !*stop.borrow() {
            let subscribed = match this.components.resolve(name) {
                Lookup::Found(pubsub) => pubsub
                    .subscribe(topic, this.spec.metadata.clone())
                    .await
                    .map(|subscription| (pubsub, subscription))
                    .map_err(|err| err.message),
                Lookup::Missing | Lookup::NoneOfBlock => {
                    Err(format!("no pub/sub component named {name} is running"))
                }
            };
            drop(first_attempt.take());
            match subscribed {
                Ok((pubsub, subscription)) => {
                    tracing::info!(component = %name, topic = %topic, "subscribed");
                    backoff = this.policy.first_backoff;
                    let pumping = Pumping {
                        subscriber: Arc::clone(&this),
                        pubsub,
                    };
                    if pumping.pump(subscription, &mut stop).await {
                        return;
                    }
                }
                Err(err) => tracing::warn!(
                    component = %name,
                    topic = %topic,
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
}

impl Pumping {
    /// Pulls and delivers until stopped (returns true) or the subscription breaks (false).
    /// Answers are settled in batches, between pulls: a slot frees up as soon as the app
    /// answers, not when the broker has the acknowledgement. A slot carries one message, or
    /// with `bulkSubscribe` one request of up to `maxMessagesCount` messages.
    async fn pump(
        self,
        mut subscription: Box<dyn SubscriptionBackend>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let this = Arc::new(self);
        let spec = &this.subscriber.spec;
        let (done_tx, mut done) = mpsc::unbounded_channel::<Vec<Settlement>>();
        let mut state = PumpState::new(this.pubsub.delivery_concurrency(), spec.bulk);
        let stopped = loop {
            while let Ok(settlements) = done.try_recv() {
                state.finished(settlements);
            }
            if let Some(answered) = state.take_answered() {
                this.settle(&mut *subscription, answered).await;
            }
            if *stop.borrow() {
                break true;
            }
            while let Some(unit) = state.next_unit(Instant::now()) {
                let this = Arc::clone(&this);
                let done = done_tx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let settlements = if this.subscriber.spec.bulk.is_some() {
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
            if state.should_wait_for_answers() {
                // Wait for an answer (or, with a slot free, for a bulk request's time), not
                // on the broker.
                let until = match state.bulk_deadline() {
                    Some(deadline) if state.slot_free() => deadline,
                    _ => Instant::now() + IDLE_WAIT,
                };
                tokio::select! {
                    Some(settlements) = done.recv() => state.finished(settlements),
                    () = tokio::time::sleep_until(until.into()) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let wait = state.read_wait(Instant::now(), IDLE_WAIT, BUSY_WAIT);
            let max = u32::try_from(state.wanted()).unwrap_or(u32::MAX);
            match subscription.next(max, wait).await {
                Ok(messages) => state.received(messages, Instant::now()),
                Err(err) => {
                    tracing::warn!(
                        component = this.pubsub.name(),
                        topic = %spec.topic,
                        "pulling messages failed: {err}"
                    );
                    break false;
                }
            }
        };
        // Finish what was handed to the app; hand back what was read ahead. Anything not
        // settled is delivered again by the broker.
        while state.in_flight() {
            match done.recv().await {
                Some(settlements) => state.finished(settlements),
                None => break,
            }
        }
        let settled = state.hand_back();
        if !settled.is_empty() {
            this.settle(&mut *subscription, settled).await;
        }
        stopped
    }

    async fn settle(&self, subscription: &mut dyn SubscriptionBackend, settled: Vec<Settlement>) {
        let count = settled.len();
        let topic = &self.subscriber.spec.topic;
        match subscription.ack(settled).await {
            Ok(failures) => {
                for failure in failures {
                    tracing::warn!(
                        component = self.pubsub.name(),
                        topic = %topic,
                        message_id = %failure.id,
                        "acknowledging a message failed (the broker will deliver it again): {}",
                        failure.error
                    );
                }
            }
            Err(err) => tracing::warn!(
                component = self.pubsub.name(),
                topic = %topic,
                "acknowledging {count} messages failed (the broker will deliver them again): {err}"
            ),
        }
    }

    /// What delivery needs of `message`: the bytes the app gets (for a raw-payload
    /// subscription, a fresh envelope around them), the event routing reads, and the route.
    /// A message that cannot be delivered (not a CloudEvent, expired, no route) is given up on
    /// here, and its outcome is the error.
    async fn prepare(&self, message: &IncomingMessage) -> Result<(Vec<u8>, Value, &str), Outcome> {
        let spec = &self.subscriber.spec;
        let body = if spec.raw_payload() {
            wrap_raw(message, spec)
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
        match spec.route(&event) {
            Some(path) => Ok((body, event, path)),
            None => Err(self.give_up(message, "no route matches the message").await),
        }
    }

    /// Delivers one message with retries and decides its outcome for the broker.
    async fn handle(&self, message: IncomingMessage, stop: watch::Receiver<bool>) -> Outcome {
        let (body, event, path) = match self.prepare(&message).await {
            Ok(prepared) => prepared,
            Err(outcome) => return outcome,
        };
        let headers = delivery_headers(&message, &event, self.pubsub.name());
        let body = Bytes::from(body);
        let mut retries = Retries::new(&self.subscriber.policy);
        loop {
            let event = Event {
                body: body.clone(),
                headers: &headers,
            };
            match self.subscriber.app.deliver(path, event).await {
                Verdict::Success => return Outcome::Success,
                Verdict::Drop => return self.give_up(&message, "the app dropped it").await,
                Verdict::Retry => {}
            }
            match retries.next(&stop).await {
                NextAttempt::Again => {}
                NextAttempt::Stopping => return Outcome::Retry,
                NextAttempt::Exhausted => {
                    let reason = "the app did not accept it after every retry";
                    return self.give_up(&message, reason).await;
                }
            }
        }
    }

    /// A message the app will not take: to the dead-letter topic if there is one,
    /// otherwise dropped with a warning.
    async fn give_up(&self, message: &IncomingMessage, reason: &str) -> Outcome {
        let spec = &self.subscriber.spec;
        let Some(dead_letter) = &spec.dead_letter_topic else {
            tracing::warn!(
                component = self.pubsub.name(),
                topic = %spec.topic,
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
        match self.pubsub.forward(forward).await {
            Ok(()) => {
                tracing::info!(
                    component = self.pubsub.name(),
                    topic = %spec.topic,
                    dead_letter_topic = %dead_letter,
                    "message sent to the dead-letter topic: {reason}"
                );
                Outcome::Success
            }
            Err(err) => {
                tracing::warn!(
                    component = self.pubsub.name(),
                    topic = %spec.topic,
                    "cannot forward to the dead-letter topic {dead_letter}, the broker keeps the message: {err}"
                );
                Outcome::Retry
            }
        }
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
        "id": new_event_id(),
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

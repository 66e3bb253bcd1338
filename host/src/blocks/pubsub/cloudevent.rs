//! CloudEvents 1.0 envelopes, built the way daprd builds them for a publish
//! (<https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-cloudevents/>),
//! and the fields a subscriber needs to read back (routing, expiry).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rand::RngExt as _;
use serde::Serialize;
use serde_json::value::RawValue;

pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
const DEFAULT_TYPE: &str = "com.dapr.event.sent";
const DEFAULT_SOURCE: &str = "Dapr";

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the body is not a valid CloudEvent JSON object: {0}")]
    InvalidCloudEvent(String),
}

/// What a publish contributes to its envelope besides the body.
pub struct Publish<'a> {
    pub app_id: &'a str,
    pub pubsub: &'a str,
    pub topic: &'a str,
    /// The request's Content-Type; `text/plain` when absent.
    pub content_type: Option<&'a str>,
    /// `metadata.cloudevent.*` overrides, without the prefix (`id`, `source`, `type`, ...).
    pub overrides: &'a [(String, String)],
    /// Set when the runtime (not the broker) enforces the message TTL.
    pub expires_in: Option<Duration>,
}

impl Publish<'_> {
    fn override_of(&self, field: &str) -> Option<&str> {
        self.overrides
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// The media type without parameters, lowercased.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn is_json(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: String,
    specversion: &'static str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    datacontenttype: &'a str,
    topic: &'a str,
    pubsubname: &'a str,
    traceid: &'a str,
    traceparent: &'a str,
    tracestate: &'a str,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    Json(&'a RawValue),
    Text(std::borrow::Cow<'a, str>),
}

/// Wraps `body` in a CloudEvent, or completes the caller's own CloudEvent when the body is
/// `application/cloudevents+json`.
pub fn envelope(body: &[u8], publish: &Publish<'_>) -> Result<Vec<u8>, EnvelopeError> {
    let content_type = publish.content_type.unwrap_or("text/plain");
    let essence = essence(content_type);
    if essence == CLOUDEVENTS_JSON {
        return complete_user_event(body, publish);
    }
    let traceparent = publish
        .override_of("traceparent")
        .or_else(|| publish.override_of("traceid"))
        .map_or_else(new_traceparent, str::to_owned);
    let (data, data_base64) = if is_json(&essence) {
        let data = match serde_json::from_slice::<&RawValue>(body) {
            Ok(raw) => Data::Json(raw),
            Err(_) => Data::Text(String::from_utf8_lossy(body)),
        };
        (Some(data), None)
    } else if essence == "application/octet-stream" {
        (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(body)),
        )
    } else {
        (Some(Data::Text(String::from_utf8_lossy(body))), None)
    };
    let source = publish
        .override_of("source")
        .unwrap_or(if publish.app_id.is_empty() {
            DEFAULT_SOURCE
        } else {
            publish.app_id
        });
    let envelope = Envelope {
        id: publish
            .override_of("id")
            .map_or_else(new_event_id, str::to_owned),
        specversion: "1.0",
        source,
        event_type: publish.override_of("type").unwrap_or(DEFAULT_TYPE),
        datacontenttype: content_type,
        topic: publish.topic,
        pubsubname: publish.pubsub,
        traceid: &traceparent,
        traceparent: &traceparent,
        tracestate: publish.override_of("tracestate").unwrap_or_default(),
        time: rfc3339(SystemTime::now()),
        subject: publish.override_of("subject"),
        expiration: publish
            .expires_in
            .map(|ttl| rfc3339(SystemTime::now() + ttl)),
        data,
        data_base64,
    };
    serde_json::to_vec(&envelope).map_err(|err| EnvelopeError::InvalidCloudEvent(err.to_string()))
}

/// Keeps the caller's event and its values as sent; sets `topic` and `pubsubname`, and fills
/// the required fields it lacks.
fn complete_user_event(body: &[u8], publish: &Publish<'_>) -> Result<Vec<u8>, EnvelopeError> {
    let mut event: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body)
        .map_err(|err| EnvelopeError::InvalidCloudEvent(err.to_string()))?;
    let has_traceid = event.contains_key("traceid");
    let mut set = |field: &str, value: &str, overwrite: bool| {
        if overwrite || !event.contains_key(field) {
            if let Ok(raw) = serde_json::value::to_raw_value(value) {
                event.insert(field.to_owned(), raw);
            }
        }
    };
    set("topic", publish.topic, true);
    set("pubsubname", publish.pubsub, true);
    set("id", &new_event_id(), false);
    set("specversion", "1.0", false);
    set("source", DEFAULT_SOURCE, false);
    set("type", DEFAULT_TYPE, false);
    set("time", &rfc3339(SystemTime::now()), false);
    set("tracestate", "", false);
    if !has_traceid {
        let traceparent = new_traceparent();
        set("traceid", &traceparent, true);
        set("traceparent", &traceparent, true);
    }
    if let Some(ttl) = publish.expires_in {
        set("expiration", &rfc3339(SystemTime::now() + ttl), false);
    }
    serde_json::to_vec(&event).map_err(|err| EnvelopeError::InvalidCloudEvent(err.to_string()))
}

/// A random (v4) UUID. The thread's CSPRNG makes it without a system call, which matters
/// at one event per publish.
pub fn new_event_id() -> String {
    uuid::Builder::from_random_bytes(rand::rng().random())
        .into_uuid()
        .to_string()
}

/// A W3C `traceparent` for a new sampled trace.
fn new_traceparent() -> String {
    let mut rng = rand::rng();
    let trace: u128 = rng.random();
    let span: u64 = rng.random();
    // All-zero ids are invalid; at 2^-128 and 2^-64 that is not worth a loop.
    format!("00-{trace:032x}-{span:016x}-01")
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn publish<'a>(
        content_type: Option<&'a str>,
        overrides: &'a [(String, String)],
    ) -> Publish<'a> {
        Publish {
            app_id: "checkout",
            pubsub: "pubsub",
            topic: "orders",
            content_type,
            overrides,
            expires_in: None,
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn json_bodies_are_embedded_verbatim() {
        let body = br#"{"amount": 12345678901234567890}"#;
        let event = envelope(body, &publish(Some("application/json; charset=utf-8"), &[])).unwrap();
        let text = String::from_utf8(event.clone()).unwrap();
        assert!(
            text.contains(r#""data":{"amount": 12345678901234567890}"#),
            "{text}"
        );
        let event = parse(&event);
        assert_eq!(event["source"], "checkout");
        assert_eq!(event["type"], DEFAULT_TYPE);
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["topic"], "orders");
        assert_eq!(event["pubsubname"], "pubsub");
        assert_eq!(event["traceid"], event["traceparent"]);
        assert!(event["traceparent"].as_str().unwrap().starts_with("00-"));
        assert!(event.get("data_base64").is_none());
    }

    #[test]
    fn text_binary_and_invalid_json() {
        let event = parse(&envelope(b"hello", &publish(None, &[])).unwrap());
        assert_eq!(event["data"], "hello");
        assert_eq!(event["datacontenttype"], "text/plain");
        let event =
            parse(&envelope(&[0, 255], &publish(Some("application/octet-stream"), &[])).unwrap());
        assert_eq!(event["data_base64"], "AP8=");
        let event =
            parse(&envelope(b"{not json", &publish(Some("application/json"), &[])).unwrap());
        assert_eq!(event["data"], "{not json");
    }

    #[test]
    fn overrides_replace_envelope_fields() {
        let overrides = vec![
            ("id".to_owned(), "fixed".to_owned()),
            ("type".to_owned(), "order.v2".to_owned()),
            ("subject".to_owned(), "s".to_owned()),
        ];
        let event = parse(&envelope(b"x", &publish(None, &overrides)).unwrap());
        assert_eq!(event["id"], "fixed");
        assert_eq!(event["type"], "order.v2");
        assert_eq!(event["subject"], "s");
    }

    #[test]
    fn user_cloudevents_are_completed_not_replaced() {
        let body = br#"{"id":"mine","source":"me","type":"t","specversion":"1.0","data":{"a":1},"topic":"wrong"}"#;
        let event = parse(&envelope(body, &publish(Some(CLOUDEVENTS_JSON), &[])).unwrap());
        assert_eq!(event["id"], "mine");
        assert_eq!(event["source"], "me");
        assert_eq!(event["topic"], "orders");
        assert_eq!(event["pubsubname"], "pubsub");
        assert_eq!(event["data"]["a"], 1);
        assert!(event["traceparent"].is_string() && event["time"].is_string());
        assert!(envelope(b"[1]", &publish(Some(CLOUDEVENTS_JSON), &[])).is_err());
    }

    #[test]
    fn runtime_ttl_adds_an_expiration() {
        let mut p = publish(None, &[]);
        p.expires_in = Some(Duration::from_secs(60));
        assert!(parse(&envelope(b"x", &p).unwrap())["expiration"].is_string());
    }

    #[test]
    fn new_ids_are_uuid_v4_and_w3c_traceparents() {
        let id = super::new_event_id();
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_ne!(id, super::new_event_id());
        let traceparent = super::new_traceparent();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
        assert!(parts[1..3].iter().all(|p| p
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())));
    }
}

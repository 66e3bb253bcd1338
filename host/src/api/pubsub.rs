//! `/v1.0/publish/...` and bulk publish (reference §1.3).

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderMap, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::value::RawValue;

use super::error::{empty, json_response, ApiError, Body};
use super::query::{merge_metadata, Query};
use crate::blocks::pubsub::cloudevent::{self, essence, Publish, CLOUDEVENTS_JSON};
use crate::blocks::pubsub::{parse_bool, BulkEntry, OutgoingMessage, PubSub, PubSubError};
use crate::json::Object;
use crate::registry::Registry;

const PUBLISH_FAILED: &str = "ERR_PUBSUB_PUBLISH_MESSAGE";

/// The component a publish goes to, if this app may publish `topic` on it.
pub fn find_pubsub(
    registry: &Registry,
    name: &str,
    topic: &str,
    app_id: &str,
) -> Result<std::sync::Arc<PubSub>, ApiError> {
    if registry.pubsub.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_NOT_CONFIGURED",
            "no pubsub is configured",
        ));
    }
    let pubsub = registry.pubsub.get(name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_PUBSUB_NOT_FOUND",
            format!("pubsub {name} not found"),
        )
    })?;
    if topic.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "ERR_TOPIC_NAME_EMPTY",
            format!("topic is empty in pubsub {name}"),
        ));
    }
    if !pubsub.scopes().may_publish(app_id, topic) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ERR_PUBSUB_FORBIDDEN",
            format!("topic {topic} is not allowed for app id {app_id}"),
        ));
    }
    Ok(pubsub)
}

/// Per-request options carried in `metadata.*`: what the sidecar interprets, and what goes
/// on to the component.
struct PublishOptions {
    raw_payload: bool,
    ttl: Option<Duration>,
    cloudevent_overrides: Vec<(String, String)>,
    component_metadata: Vec<(String, String)>,
}

impl PublishOptions {
    fn from_metadata(metadata: Vec<(String, String)>) -> Result<Self, ApiError> {
        let mut options = Self {
            raw_payload: false,
            ttl: None,
            cloudevent_overrides: Vec::new(),
            component_metadata: Vec::new(),
        };
        for (key, value) in metadata {
            if let Some(field) = key.strip_prefix("cloudevent.") {
                options.cloudevent_overrides.push((field.to_owned(), value));
                continue;
            }
            match key.as_str() {
                "rawPayload" => {
                    options.raw_payload = parse_bool(&value).ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "ERR_PUBSUB_REQUEST_METADATA",
                            format!("rawPayload '{value}' is not a boolean"),
                        )
                    })?;
                }
                "ttlInSeconds" | "ttl" => {
                    options.ttl =
                        Some(crate::resources::duration::parse(&value).ok_or_else(|| {
                            ApiError::new(
                                StatusCode::BAD_REQUEST,
                                "ERR_PUBSUB_REQUEST_METADATA",
                                format!("{key} '{value}' is not a number of seconds"),
                            )
                        })?);
                }
                _ => {}
            }
            options.component_metadata.push((key, value));
        }
        Ok(options)
    }
}

/// Builds what goes to the broker: the envelope (or the raw bytes) and its content type.
fn message_bytes(
    pubsub: &PubSub,
    app_id: &str,
    topic: &str,
    body: &[u8],
    content_type: Option<&str>,
    options: &PublishOptions,
) -> Result<(Vec<u8>, String), ApiError> {
    if options.raw_payload {
        let content_type = content_type
            .unwrap_or("application/octet-stream")
            .to_owned();
        return Ok((body.to_vec(), content_type));
    }
    let publish = Publish {
        app_id,
        pubsub: pubsub.name(),
        topic,
        content_type,
        overrides: &options.cloudevent_overrides,
        // Brokers that enforce TTL get it as metadata; for the rest the envelope carries it.
        expires_in: options.ttl.filter(|_| !pubsub.has_feature("MESSAGE_TTL")),
    };
    let envelope = cloudevent::envelope(body, &publish).map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ERR_PUBSUB_CLOUD_EVENTS_SER",
            format!("error when creating the cloud event for topic {topic}: {err}"),
        )
    })?;
    Ok((envelope, CLOUDEVENTS_JSON.to_owned()))
}

fn publish_error(pubsub: &str, topic: &str, err: &PubSubError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        PUBLISH_FAILED,
        format!("error when publishing to topic {topic} in pubsub {pubsub}: {err}"),
    )
}

/// `POST|PUT /v1.0/publish/{pubsub}/{topic}`
pub async fn publish(
    pubsub: &PubSub,
    app_id: &str,
    topic: &str,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let options = PublishOptions::from_metadata(query.metadata())?;
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let (data, content_type) = message_bytes(pubsub, app_id, topic, body, content_type, &options)?;
    let message = OutgoingMessage {
        topic: topic.to_owned(),
        data,
        content_type: Some(content_type),
        metadata: options.component_metadata,
    };
    pubsub
        .publish(message)
        .await
        .map_err(|err| publish_error(pubsub.name(), topic, &err))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST|PUT /v1.0-alpha1/publish/bulk/{pubsub}/{topic}`: `[{entryId, event, contentType,
/// metadata}]`; each entry gets its own envelope.
pub async fn bulk_publish(
    pubsub: &PubSub,
    app_id: &str,
    topic: &str,
    query: &Query,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let events_error =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", message);
    let raw_entries: Vec<&RawValue> = serde_json::from_slice(body)
        .map_err(|err| events_error(format!("error when unmarshaling the request body: {err}")))?;
    let request_metadata = query.metadata();
    let mut seen = HashSet::new();
    let mut entries = Vec::with_capacity(raw_entries.len());
    for raw in raw_entries {
        let entry = Object::parse(raw).map_err(events_error)?;
        let entry_id = entry
            .string("entryid")
            .map_err(events_error)?
            .filter(|id| !id.is_empty())
            .ok_or_else(|| events_error("every entry needs an entryId".to_owned()))?;
        if !seen.insert(entry_id.clone()) {
            return Err(events_error(format!("entryId {entry_id} is duplicated")));
        }
        let content_type = entry
            .string("contenttype")
            .map_err(events_error)?
            .unwrap_or_else(|| "application/json".to_owned());
        let event = entry.raw("event").map_or("null", RawValue::get);
        let payload = event_bytes(event, &content_type)
            .map_err(|m| events_error(format!("entry {entry_id}: {m}")))?;
        let mut metadata = request_metadata.clone();
        merge_metadata(
            &mut metadata,
            &entry.string_map("metadata").map_err(events_error)?,
        );
        let options = PublishOptions::from_metadata(metadata)?;
        let (data, content_type) = message_bytes(
            pubsub,
            app_id,
            topic,
            &payload,
            Some(&content_type),
            &options,
        )?;
        entries.push(BulkEntry {
            entry_id,
            data,
            content_type: Some(content_type),
            metadata: options.component_metadata,
        });
    }
    if entries.is_empty() {
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    let ids: Vec<String> = entries.iter().map(|e| e.entry_id.clone()).collect();
    let failed = match pubsub
        .bulk_publish(topic.to_owned(), entries, request_metadata)
        .await
    {
        Ok(failures) => failures
            .into_iter()
            .map(|f| {
                (
                    f.entry_id,
                    crate::plugins::bindings::describe_error(&f.error),
                )
            })
            .collect::<Vec<_>>(),
        Err(err) => ids.into_iter().map(|id| (id, err.to_string())).collect(),
    };
    if failed.is_empty() {
        return Ok(empty(StatusCode::NO_CONTENT));
    }
    let body = serde_json::json!({
        "failedEntries": failed
            .iter()
            .map(|(id, error)| serde_json::json!({"entryId": id, "error": error}))
            .collect::<Vec<_>>(),
        "errorCode": PUBLISH_FAILED,
    });
    Ok(json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        body.to_string().into(),
    ))
}

/// An entry's `event` as bytes, by its content type (daprd's rules).
fn event_bytes(event: &str, content_type: &str) -> Result<Vec<u8>, String> {
    let essence = essence(content_type);
    if essence == "application/octet-stream" {
        let text: String = serde_json::from_str(event)
            .map_err(|_| "an octet-stream event must be a base64 string".to_owned())?;
        return base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|err| format!("the event is not valid base64: {err}"));
    }
    if essence.starts_with("text/") || essence == "application/xml" {
        let text: String = serde_json::from_str(event)
            .map_err(|_| format!("a {essence} event must be a JSON string"))?;
        return Ok(text.into_bytes());
    }
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(event.as_bytes().to_vec());
    }
    Err(format!("content type {content_type} is not supported"))
}

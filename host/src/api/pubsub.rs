//! `/v1.0/publish/...` and bulk publish (<https://docs.dapr.io/reference/api/pubsub_api/>):
//! the request's JSON and headers in; the rules are the pub/sub block's.

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderMap, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::value::RawValue;

use super::error::{empty, json_response, ApiError, Body};
use super::query::Query;
use crate::blocks::pubsub::cloudevent::essence;
use crate::blocks::pubsub::{BulkPublishEntry, PubSub, PUBLISH_FAILED};
use crate::json::Object;

/// `POST|PUT /v1.0/publish/{pubsub}/{topic}`
pub async fn publish(
    pubsub: &PubSub,
    topic: &str,
    query: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    pubsub
        .publish(topic, body, content_type, query.metadata())
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST|PUT /v1.0-alpha1/publish/bulk/{pubsub}/{topic}`: `[{entryId, event, contentType,
/// metadata}]`; each entry gets its own envelope.
pub async fn bulk_publish(
    pubsub: &PubSub,
    topic: &str,
    query: &Query,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let events_error =
        |message: String| ApiError::new(StatusCode::BAD_REQUEST, "ERR_PUBSUB_EVENTS_SER", message);
    let raw_entries: Vec<&RawValue> = serde_json::from_slice(body)
        .map_err(|err| events_error(format!("error when unmarshaling the request body: {err}")))?;
    let mut entries = Vec::with_capacity(raw_entries.len());
    for raw in raw_entries {
        let entry = Object::parse(raw).map_err(events_error)?;
        let entry_id = entry
            .string("entryid")
            .map_err(events_error)?
            .unwrap_or_default();
        let content_type = entry
            .string("contenttype")
            .map_err(events_error)?
            .unwrap_or_else(|| "application/json".to_owned());
        let event = entry.raw("event").map_or("null", RawValue::get);
        let event = event_bytes(event, &content_type)
            .map_err(|m| events_error(format!("entry {entry_id}: {m}")))?;
        entries.push(BulkPublishEntry {
            entry_id,
            event,
            content_type,
            metadata: entry.string_map("metadata").map_err(events_error)?,
        });
    }
    let failed = pubsub
        .bulk_publish(topic, entries, query.metadata())
        .await?;
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

/// An entry's `event` as bytes, by its content type (daprd's rules for the JSON form).
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

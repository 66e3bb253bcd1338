//! Events to an HTTP app, and daprd's reading of its answers
//! (<https://docs.dapr.io/reference/api/pubsub_api/#expected-http-response>).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::channel::AppChannel;
use crate::blocks::pubsub::cloudevent::CLOUDEVENTS_JSON;
use crate::blocks::pubsub::delivery::{BulkAnswer, BulkRequest, Event, EventSink, Verdict};
use crate::blocks::BoxFuture;
use crate::json::Object;

const BULK_EVENT_TYPE: &str = "com.dapr.event.sent.bulk";

/// How long the app may take to answer one delivery.
const APP_TIMEOUT: Duration = Duration::from_secs(60);

impl EventSink for AppChannel {
    fn deliver<'a>(&'a self, route: &'a str, event: Event<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let answer = self
                .call(
                    Method::POST,
                    route,
                    Some(CLOUDEVENTS_JSON),
                    event.headers,
                    event.body,
                    APP_TIMEOUT,
                )
                .await;
            match answer {
                Ok(response) => verdict(response.status, &response.body),
                Err(err) => {
                    tracing::debug!(route, "delivery failed: {err}");
                    Verdict::Retry
                }
            }
        })
    }

    fn deliver_bulk<'a>(
        &'a self,
        route: &'a str,
        request: BulkRequest<'a>,
    ) -> BoxFuture<'a, BulkAnswer> {
        Box::pin(async move {
            let body = json!({
                "id": request.id,
                "type": BULK_EVENT_TYPE,
                "topic": request.topic,
                "pubsubname": request.pubsub,
                "metadata": {},
                "entries": request.entries.iter().map(|entry| json!({
                    "entryId": entry.entry_id,
                    "event": entry.event,
                    "contentType": entry.content_type,
                    "metadata": entry.metadata.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect::<Map<String, Value>>(),
                })).collect::<Vec<_>>(),
            });
            let headers = [("pubsubName".to_owned(), request.pubsub.to_owned())];
            let answer = self
                .call(
                    Method::POST,
                    route,
                    Some("application/json"),
                    &headers,
                    Bytes::from(body.to_string()),
                    APP_TIMEOUT,
                )
                .await;
            match answer {
                Ok(response) if response.status == StatusCode::NOT_FOUND => {
                    BulkAnswer::All(Verdict::Drop)
                }
                Ok(response) if response.status.is_success() => statuses(&response.body),
                Ok(_) => BulkAnswer::All(Verdict::Retry),
                Err(err) => {
                    tracing::debug!(route, "bulk delivery failed: {err}");
                    BulkAnswer::All(Verdict::Retry)
                }
            }
        })
    }
}

/// daprd's reading of the app's answer to one event.
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

/// `{"statuses":[{"entryId":"..","status":"SUCCESS"}, ..]}` as daprd reads it: field names in
/// any case, a missing or empty status means retry, a body that is not JSON retries all.
fn statuses(body: &[u8]) -> BulkAnswer {
    let parsed = serde_json::from_slice::<&RawValue>(body)
        .map_err(|err| err.to_string())
        .and_then(Object::parse)
        .and_then(|answer| answer.array("statuses"));
    let Ok(list) = parsed else {
        return BulkAnswer::All(Verdict::Retry);
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
        let verdict = match status.unwrap_or_default().to_ascii_uppercase().as_str() {
            "SUCCESS" => Verdict::Success,
            "DROP" => Verdict::Drop,
            _ => Verdict::Retry,
        };
        each.insert(entry_id, verdict);
    }
    BulkAnswer::Each(each)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bulk_answers_are_read_as_daprd_reads_them() {
        let answer = statuses(
            br#"{"Statuses":[{"entryId":"a","status":"SUCCESS"},{"EntryId":"b","status":"drop"},
                {"entryId":"c","status":""},{"entryId":"d","status":"RETRY"},{"status":"SUCCESS"}]}"#,
        );
        assert_eq!(answer.verdict("a"), Verdict::Success);
        assert_eq!(answer.verdict("b"), Verdict::Drop);
        assert_eq!(answer.verdict("c"), Verdict::Retry);
        assert_eq!(answer.verdict("d"), Verdict::Retry);
        assert_eq!(answer.verdict("missing"), Verdict::Retry);
        assert_eq!(statuses(b"not json"), BulkAnswer::All(Verdict::Retry));
        assert_eq!(statuses(b"{}"), BulkAnswer::Each(HashMap::new()));
    }
}

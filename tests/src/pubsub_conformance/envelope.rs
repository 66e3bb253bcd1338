//! What the app receives: the CloudEvent envelope the publishing sidecar builds (or the
//! caller's own, completed), raw payloads, bulk publish; and the publish errors.

use base64::Engine as _;
use serde_json::{json, Value};

use super::{start, QUIET};
use crate::app::Delivery;
use crate::pubsub::{subscription, unique_topic, PubSubKind, ARRIVAL, PUBSUB};
use crate::time::{parse_rfc3339, unix_now};

const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
const EVENT_TYPE: &str = "com.dapr.event.sent";

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unbase64(text: &Value) -> Vec<u8> {
    let text = text
        .as_str()
        .unwrap_or_else(|| panic!("data_base64 is not a string: {text}"));
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("data_base64 {text:?} is not base64: {e}"))
}

/// A UUID v4 in its hyphenated text form.
fn is_uuid_v4(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
        && b[14] == b'4'
}

/// `00-<32 hex>-<16 hex>-<2 hex>`.
fn is_traceparent(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 4
        && parts
            .iter()
            .zip([2, 32, 16, 2])
            .all(|(p, n)| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// What every delivery carries: the CloudEvents content type, the component name and the
/// trace context as headers, and the envelope fields the sidecar always sets.
#[track_caller]
fn assert_delivery_basics(d: &Delivery, topic: &str) {
    let event = &d.event;
    assert_eq!(d.header("content-type"), Some(CLOUDEVENTS_JSON), "{event}");
    assert_eq!(d.header("pubsubname"), Some(PUBSUB), "{event}");
    assert_eq!(event["topic"], topic, "{event}");
    assert_eq!(event["pubsubname"], PUBSUB, "{event}");
    assert_eq!(event["specversion"], "1.0", "{event}");
    let traceparent = event["traceparent"].as_str().unwrap_or_default();
    assert!(is_traceparent(traceparent), "traceparent: {event}");
    assert_eq!(d.header("traceparent"), Some(traceparent), "{event}");
    let time = event["time"].as_str().unwrap_or_default();
    let at = parse_rfc3339(time).unwrap_or_else(|| panic!("time is not RFC 3339: {event}"));
    assert!((at - unix_now()).abs() < 120, "time {time} is not now");
}

/// Asserts the fields of an envelope the sidecar built for `app_id`'s publish.
#[track_caller]
fn assert_sidecar_envelope(d: &Delivery, app_id: &str, topic: &str, content_type: &str) {
    assert_delivery_basics(d, topic);
    let event = &d.event;
    assert!(is_uuid_v4(d.id()), "id: {event}");
    assert_eq!(event["source"], app_id, "{event}");
    assert_eq!(event["type"], EVENT_TYPE, "{event}");
    assert_eq!(event["datacontenttype"], content_type, "{event}");
    assert_eq!(event["traceid"], event["traceparent"], "{event}");
    assert!(event["tracestate"].is_string(), "tracestate: {event}");
    assert!(event.get("subject").is_none(), "subject: {event}");
}

/// The envelope of JSON, text and binary bodies, a caller's own CloudEvent, overrides of
/// envelope fields, and a TTL.
pub fn envelope_fields(kind: PubSubKind) {
    let topic = unique_topic("envelope");
    let app_id = "envelope-app";
    let f = start(kind, app_id, json!([subscription(&topic, "/events")]));

    let json_body = br#"{"amount":12345678901234567890,"item":"tea"}"#;
    f.api
        .publish_raw(&topic, "", Some("application/json"), json_body)
        .expect_no_content();
    f.api
        .publish_raw(&topic, "", None, b"hello world")
        .expect_no_content();
    f.api
        .publish_raw(&topic, "", Some("application/octet-stream"), &[0, 159, 255])
        .expect_no_content();
    let own_id = format!("own-{topic}");
    let own = json!({
        "id": own_id, "source": "my-source", "type": "my.type", "specversion": "1.0",
        "datacontenttype": "application/json", "data": {"x": 1}, "myext": "kept",
        "topic": "not-this-one",
    });
    f.api
        .publish_raw(
            &topic,
            "",
            Some(CLOUDEVENTS_JSON),
            own.to_string().as_bytes(),
        )
        .expect_no_content();
    let overridden_id = format!("overridden-{topic}");
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let overrides = format!(
        "?metadata.cloudevent.id={overridden_id}&metadata.cloudevent.type=order.v2\
         &metadata.cloudevent.source=billing&metadata.cloudevent.subject=s-1\
         &metadata.cloudevent.traceparent={traceparent}"
    );
    f.api
        .publish_raw(&topic, &overrides, Some("text/plain"), b"overridden")
        .expect_no_content();
    let ttl_id = format!("ttl-{topic}");
    f.api
        .publish_raw(
            &topic,
            &format!("?metadata.ttlInSeconds=60&metadata.cloudevent.id={ttl_id}"),
            Some("text/plain"),
            b"short-lived",
        )
        .expect_no_content();

    let deliveries = f.app.wait_for_route("/events", 6, ARRIVAL);
    let find = |what: &str, matches: &dyn Fn(&Delivery) -> bool| -> Delivery {
        let found: Vec<&Delivery> = deliveries.iter().filter(|d| matches(d)).collect();
        assert_eq!(found.len(), 1, "the {what} message, once: {found:?}");
        found[0].clone()
    };

    let d = find("JSON", &|d| d.data()["item"] == "tea");
    assert_sidecar_envelope(&d, app_id, &topic, "application/json");
    let text = String::from_utf8_lossy(&d.body);
    assert!(
        text.contains("12345678901234567890"),
        "JSON numbers must keep every digit: {text}"
    );
    assert!(d.event.get("data_base64").is_none(), "{}", d.event);

    let d = find("text", &|d| d.data() == "hello world");
    assert_sidecar_envelope(&d, app_id, &topic, "text/plain");

    let d = find("binary", &|d| d.event.get("data_base64").is_some());
    assert_sidecar_envelope(&d, app_id, &topic, "application/octet-stream");
    assert_eq!(unbase64(&d.event["data_base64"]), [0, 159, 255]);
    assert!(d.event.get("data").is_none(), "{}", d.event);

    let d = find("own CloudEvent", &|d| d.id() == own_id);
    assert_delivery_basics(&d, &topic);
    assert_eq!(d.event["source"], "my-source");
    assert_eq!(d.event["type"], "my.type");
    assert_eq!(d.event["myext"], "kept", "extension attributes are kept");
    assert_eq!(d.event["data"], json!({"x": 1}));
    assert_eq!(d.event["traceid"], d.event["traceparent"]);

    let d = find("overridden", &|d| d.id() == overridden_id);
    assert_delivery_basics(&d, &topic);
    assert_eq!(d.event["type"], "order.v2");
    assert_eq!(d.event["source"], "billing");
    assert_eq!(d.event["subject"], "s-1");
    assert_eq!(d.event["traceparent"], traceparent);
    assert_eq!(d.event["data"], "overridden");

    let d = find("TTL", &|d| d.id() == ttl_id);
    assert_delivery_basics(&d, &topic);
    assert_eq!(d.data(), "short-lived");
    if kind == PubSubKind::RabbitMq {
        // The broker enforces the TTL itself (MESSAGE_TTL): the envelope carries none.
        assert!(d.event.get("expiration").is_none(), "{}", d.event);
    } else {
        let expiration = d.event["expiration"].as_str().unwrap_or_default();
        let at = parse_rfc3339(expiration)
            .unwrap_or_else(|| panic!("no RFC 3339 expiration: {}", d.event));
        let left = at - unix_now();
        assert!((50..=61).contains(&left), "expires in {left}s, not ~60s");
    }
}

/// Refused publishes answer Dapr's error codes and deliver nothing.
pub fn publish_errors(kind: PubSubKind) {
    let topic = unique_topic("errors");
    let f = start(kind, "errors-app", json!([subscription(&topic, "/events")]));
    let client = f.api.client();

    client
        .send_json("POST", &format!("/v1.0/publish/nope/{topic}"), "{}")
        .expect_error(404, "ERR_PUBSUB_NOT_FOUND");
    client
        .send_json(
            "POST",
            &format!("/v1.0-alpha1/publish/bulk/nope/{topic}"),
            "[]",
        )
        .expect_error(404, "ERR_PUBSUB_NOT_FOUND");
    f.api
        .publish_raw(&topic, "", Some(CLOUDEVENTS_JSON), b"{not json")
        .expect_error(500, "ERR_PUBSUB_CLOUD_EVENTS_SER");
    f.api
        .publish_raw(&topic, "?metadata.rawPayload=maybe", None, b"x")
        .expect_error(400, "ERR_PUBSUB_REQUEST_METADATA");
    let bad_bulks = [
        json!([
            {"entryId": "1", "event": "a", "contentType": "text/plain"},
            {"entryId": "1", "event": "b", "contentType": "text/plain"},
        ]),
        json!([{"event": "no id", "contentType": "text/plain"}]),
        json!([{"entryId": "1", "event": 5, "contentType": "text/plain"}]),
        json!({"entryId": "1", "event": "not an array"}),
    ];
    for bad in &bad_bulks {
        f.api
            .bulk_publish(&topic, bad)
            .expect_error(400, "ERR_PUBSUB_EVENTS_SER");
    }

    f.api.publish(&topic, &json!("the only one"));
    let deliveries = f.app.wait_for_route("/events", 1, ARRIVAL);
    f.app.assert_quiet(QUIET);
    assert_eq!(deliveries[0].data(), "the only one");
    assert_eq!(
        f.app.deliveries().len(),
        1,
        "a refused publish was delivered"
    );
}

/// Raw payloads: published as bytes, delivered to a raw subscription in a fresh envelope with
/// `data_base64`; a raw subscription gets a normal message's envelope bytes the same way; a
/// non-raw subscription gets raw JSON bytes as they are, and never bytes that are not JSON.
pub fn raw_payload(kind: PubSubKind) {
    let raw_topic = unique_topic("raw");
    let plain_topic = unique_topic("plain");
    let bulk_topic = unique_topic("raw-bulk");
    let app_id = "raw-app";
    let f = start(
        kind,
        app_id,
        json!([
            { "pubsubname": PUBSUB, "topic": raw_topic, "route": "/raw",
              "metadata": { "rawPayload": "true" } },
            subscription(&plain_topic, "/plain"),
            { "pubsubname": PUBSUB, "topic": bulk_topic, "route": "/raw-bulk",
              "metadata": { "rawPayload": "true" },
              "bulkSubscribe": { "enabled": true, "maxAwaitDurationMs": 50 } },
        ]),
    );
    let bytes = [0u8, 1, 2, 254, 255];
    f.api
        .publish_raw(
            &bulk_topic,
            "?metadata.rawPayload=true",
            Some("application/octet-stream"),
            &bytes,
        )
        .expect_no_content();
    // A raw entry of a bulk request is the message's bytes in base64.
    let bulk = f.app.wait_for_route("/raw-bulk", 1, ARRIVAL);
    assert_eq!(bulk[0].event, json!("AAEC/v8="), "{:?}", bulk[0].event);
    f.api
        .publish_raw(
            &raw_topic,
            "?metadata.rawPayload=true",
            Some("application/octet-stream"),
            &bytes,
        )
        .expect_no_content();
    f.api.publish(&raw_topic, &json!({"wrapped": true}));
    f.api
        .publish_raw(
            &plain_topic,
            "?metadata.rawPayload=true",
            Some("application/json"),
            br#"{"hello":"raw"}"#,
        )
        .expect_no_content();
    f.api
        .publish_raw(&plain_topic, "?metadata.rawPayload=true", None, &[0xff, 0])
        .expect_no_content();

    let raw = f.app.wait_for_route("/raw", 2, ARRIVAL);
    let plain = f.app.wait_for_route("/plain", 1, ARRIVAL);
    f.app.assert_quiet(QUIET);
    assert_eq!(f.app.deliveries_to("/raw").len(), 2);
    assert_eq!(
        f.app.deliveries_to("/plain").len(),
        1,
        "bytes that are not JSON must not reach a non-raw route"
    );

    for d in &raw {
        assert_eq!(d.header("content-type"), Some(CLOUDEVENTS_JSON));
        assert_eq!(d.header("pubsubname"), Some(PUBSUB));
        assert!(is_uuid_v4(d.id()), "{}", d.event);
        assert_eq!(d.event["datacontenttype"], "application/octet-stream");
        assert_eq!(d.event["source"], "Dapr");
        assert_eq!(d.event["type"], EVENT_TYPE);
        assert_eq!(d.event["topic"], raw_topic.as_str());
        assert_eq!(d.event["pubsubname"], PUBSUB);
        assert!(d.event.get("data").is_none(), "{}", d.event);
    }
    let payloads: Vec<Vec<u8>> = raw
        .iter()
        .map(|d| unbase64(&d.event["data_base64"]))
        .collect();
    assert!(
        payloads.contains(&bytes.to_vec()),
        "raw bytes: {payloads:?}"
    );
    let envelope: Value = payloads
        .iter()
        .find_map(|p| serde_json::from_slice(p).ok())
        .unwrap_or_else(|| panic!("no envelope among the raw payloads: {payloads:?}"));
    assert_eq!(envelope["data"], json!({"wrapped": true}));
    assert_eq!(envelope["source"], app_id);
    assert_eq!(envelope["topic"], raw_topic.as_str());

    assert_eq!(
        plain[0].body, br#"{"hello":"raw"}"#,
        "raw JSON, delivered as it is"
    );
    assert_eq!(plain[0].header("content-type"), Some(CLOUDEVENTS_JSON));
}

/// Bulk publish: every entry becomes a message of its own, in its own envelope, by its
/// content type; `entryId` and `entryID` are both accepted.
pub fn bulk_publish(kind: PubSubKind) {
    let topic = unique_topic("bulk");
    let app_id = "bulk-app";
    let f = start(kind, app_id, json!([subscription(&topic, "/bulk")]));
    let ce_id = format!("bulk-ce-{topic}");
    let entries = json!([
        {"entryId": "e1", "event": "first text", "contentType": "text/plain"},
        {"entryID": "e2", "event": {"message": "json"}, "contentType": "application/json"},
        {"entryId": "e3", "event": base64(&[0, 1, 2]), "contentType": "application/octet-stream"},
        {"entryId": "e4", "contentType": CLOUDEVENTS_JSON, "event": {
            "id": ce_id, "source": "bulk-source", "type": "bulk.type", "specversion": "1.0",
            "data": "ce"}},
    ]);
    f.api.bulk_publish(&topic, &entries).expect_no_content();

    let deliveries = f.app.wait_for_route("/bulk", 4, ARRIVAL);
    f.app.assert_quiet(QUIET);
    assert_eq!(f.app.deliveries_to("/bulk").len(), 4, "each entry once");
    let find = |matches: &dyn Fn(&Delivery) -> bool| -> &Delivery {
        deliveries
            .iter()
            .find(|d| matches(d))
            .unwrap_or_else(|| panic!("an entry is missing: {deliveries:?}"))
    };
    let d = find(&|d| d.data() == "first text");
    assert_sidecar_envelope(d, app_id, &topic, "text/plain");
    let d = find(&|d| d.data() == &json!({"message": "json"}));
    assert_sidecar_envelope(d, app_id, &topic, "application/json");
    let d = find(&|d| d.event.get("data_base64").is_some());
    assert_sidecar_envelope(d, app_id, &topic, "application/octet-stream");
    assert_eq!(unbase64(&d.event["data_base64"]), [0, 1, 2]);
    let d = find(&|d| d.id() == ce_id);
    assert_delivery_basics(d, &topic);
    assert_eq!(d.event["source"], "bulk-source");
    assert_eq!(d.data(), "ce");
    let ids: std::collections::BTreeSet<&str> = deliveries.iter().map(Delivery::id).collect();
    assert_eq!(ids.len(), 4, "each entry has an id of its own");
}

//! Subscription discovery: the app's answer to `GET /dapr/subscribe`, asked three times as
//! daprd does (<https://docs.dapr.io/reference/api/pubsub_api/#provide-a-route-for-dapr-to-discover-topic-subscriptions>).

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::value::RawValue;

use super::channel::AppChannel;
use crate::blocks::pubsub::subscription::{rules, BulkSubscribe, Kind, SubscriptionSpec};
use crate::json::Object;

/// `GET /dapr/subscribe`, tried three times as daprd does; 404 means none.
pub async fn discover(channel: &AppChannel) -> Vec<SubscriptionSpec> {
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=3 {
        let answer = channel
            .call(
                Method::GET,
                "/dapr/subscribe",
                Some("application/json"),
                &[],
                Bytes::new(),
                Duration::from_secs(10),
            )
            .await;
        match answer {
            Ok(response) if response.status == StatusCode::NOT_FOUND => return Vec::new(),
            Ok(response) if response.status.is_success() => {
                return parse_programmatic(&response.body).unwrap_or_else(|err| {
                    tracing::error!("the app's /dapr/subscribe answer is unusable: {err}");
                    Vec::new()
                })
            }
            Ok(response) => tracing::error!(
                status = %response.status,
                attempt,
                "the app answered /dapr/subscribe with an error"
            ),
            Err(err) => tracing::error!(attempt, "cannot read /dapr/subscribe: {err}"),
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    Vec::new()
}

/// Parses the app's answer to `GET /dapr/subscribe`. Entries that cannot be used are
/// logged and left out.
pub fn parse_programmatic(body: &[u8]) -> Result<Vec<SubscriptionSpec>, String> {
    let entries: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|err| format!("not a JSON array: {err}"))?;
    let mut specs = Vec::new();
    for raw in entries {
        match programmatic_entry(raw) {
            Ok(spec) if spec.rules.is_empty() => tracing::warn!(
                topic = %spec.topic,
                "subscription has no route and is ignored"
            ),
            Ok(spec) => specs.push(spec),
            Err(err) => tracing::warn!("ignoring a subscription from /dapr/subscribe: {err}"),
        }
    }
    Ok(specs)
}

fn programmatic_entry(raw: &RawValue) -> Result<SubscriptionSpec, String> {
    let entry = Object::parse(raw)?;
    let pubsub = entry.string("pubsubname")?.unwrap_or_default();
    let topic = entry.string("topic")?.unwrap_or_default();
    if pubsub.is_empty() || topic.is_empty() {
        return Err("pubsubname and topic are required".to_owned());
    }
    let routes = entry.object("routes")?;
    let mut rule_list = Vec::new();
    for raw_rule in routes.array("rules")? {
        let rule = Object::parse(raw_rule)?;
        rule_list.push((
            rule.string("match")?.unwrap_or_default(),
            rule.string("path")?.unwrap_or_default(),
        ));
    }
    let bulk = entry.object("bulksubscribe")?;
    Ok(SubscriptionSpec {
        rules: rules(rule_list, routes.string("default")?, entry.string("route")?)?,
        bulk: BulkSubscribe::new(
            bulk.value("enabled")?.unwrap_or(false),
            bulk.value("maxmessagescount")?,
            bulk.value("maxawaitdurationms")?,
        ),
        metadata: scalar_map(&entry, "metadata")?,
        dead_letter_topic: entry.string("deadlettertopic")?.filter(|t| !t.is_empty()),
        kind: Kind::Programmatic,
        pubsub,
        topic,
    })
}

/// A metadata object whose values may be strings or other scalars (the JS SDK
/// JSON-encodes them); non-strings keep their JSON text.
fn scalar_map(object: &Object<'_>, name: &str) -> Result<Vec<(String, String)>, String> {
    let Some(raw) = object.raw(name) else {
        return Ok(Vec::new());
    };
    let map: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_str(raw.get()).map_err(|_| format!("{name} must be an object"))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn v1_and_v2_forms() {
        let body = br#"[
          {"pubsubname":"pubsub","topic":"orders","route":"orders","metadata":{"rawPayload":"true"},"deadLetterTopic":"poison"},
          {"pubsubName":"pubsub","topic":"inventory","routes":{"rules":[{"match":"event.type == \"widget\"","path":"/widgets"}],"default":"/products"},"bulkSubscribe":{"enabled":true,"maxMessagesCount":5}},
          {"pubsubname":"pubsub","topic":"nowhere"},
          {"topic":"no-pubsub","route":"/x"}
        ]"#;
        let specs = parse_programmatic(body).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].route(&json!({})), Some("/orders"));
        assert_eq!(specs[0].metadata_value("rawPayload"), Some("true"));
        assert_eq!(specs[0].dead_letter_topic.as_deref(), Some("poison"));
        assert_eq!(specs[0].bulk, None);
        assert_eq!(
            specs[1].bulk,
            Some(BulkSubscribe {
                max_messages: 5,
                max_await: Duration::from_millis(1000)
            })
        );
        assert_eq!(specs[1].route(&json!({"type": "widget"})), Some("/widgets"));
        assert_eq!(
            specs[1].route(&json!({"type": "gadget"})),
            Some("/products")
        );
    }
}

//! What a subscription is, wherever it was declared: `GET /dapr/subscribe` (programmatic)
//! or a `Subscription` resource (declarative).

use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use super::rules::Match;
use crate::json::Object;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    Declarative,
    Programmatic,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub expression: String,
    pub matcher: Match,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    pub pubsub: String,
    pub topic: String,
    /// In order; the default route, if any, is last with an always-true match.
    pub rules: Vec<Rule>,
    pub metadata: Vec<(String, String)>,
    pub dead_letter_topic: Option<String>,
    /// `bulkSubscribe.enabled`: the app takes many messages per request.
    pub bulk: Option<BulkSubscribe>,
    pub kind: Kind,
}

/// `bulkSubscribe`: up to `max_messages` messages per request to the app, sent once that many
/// are there or the first has waited `max_await`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkSubscribe {
    pub max_messages: usize,
    pub max_await: Duration,
}

impl BulkSubscribe {
    /// daprd's defaults for an unset (or non-positive) count and wait.
    const DEFAULT_MAX_MESSAGES: usize = 100;
    const DEFAULT_MAX_AWAIT_MS: u64 = 1000;

    pub fn new(
        enabled: bool,
        max_messages: Option<i64>,
        max_await_ms: Option<i64>,
    ) -> Option<Self> {
        enabled.then(|| Self {
            max_messages: max_messages
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(Self::DEFAULT_MAX_MESSAGES),
            max_await: Duration::from_millis(
                max_await_ms
                    .and_then(|n| u64::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .unwrap_or(Self::DEFAULT_MAX_AWAIT_MS),
            ),
        })
    }
}

impl SubscriptionSpec {
    /// The first rule whose match holds for `event`.
    pub fn route(&self, event: &serde_json::Value) -> Option<&str> {
        self.rules
            .iter()
            .find(|rule| rule.matcher.matches(event))
            .map(|rule| rule.path.as_str())
    }

    /// `rawPayload`: the broker's bytes are not a CloudEvent; delivery wraps them in one.
    pub fn raw_payload(&self) -> bool {
        self.metadata_value("rawPayload")
            .and_then(crate::blocks::pubsub::parse_bool)
            .unwrap_or(false)
    }

    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Builds the rule list daprd's way: `rules` in order, then `default` (or the v1 `route`)
/// as the catch-all. Paths get a leading `/`.
pub fn rules(
    rules: Vec<(String, String)>,
    default: Option<String>,
    route: Option<String>,
) -> Result<Vec<Rule>, String> {
    let mut out = Vec::new();
    for (expression, path) in rules {
        out.push(Rule {
            matcher: Match::parse(&expression)?,
            expression,
            path: absolute(path),
        });
    }
    if let Some(path) = default.or(route).filter(|p| !p.is_empty()) {
        out.push(Rule {
            expression: String::new(),
            matcher: Match::Always,
            path: absolute(path),
        });
    }
    Ok(out)
}

fn absolute(path: String) -> String {
    if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    }
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

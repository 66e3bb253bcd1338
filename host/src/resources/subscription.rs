//! The `Subscription` kind (v1alpha1 with `spec.route`, v2alpha1 with `spec.routes`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{located, ResourceError, Source};
use crate::blocks::pubsub::subscription::{rules, BulkSubscribe, Kind, SubscriptionSpec};

#[derive(Debug, Clone)]
pub struct DeclaredSubscription {
    pub spec: SubscriptionSpec,
    /// App ids that use it; empty means all.
    pub scopes: Vec<String>,
    pub source: Source,
}

impl DeclaredSubscription {
    pub fn in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}

#[derive(Deserialize)]
struct Doc {
    spec: Spec,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    pubsubname: String,
    topic: String,
    route: Option<String>,
    routes: Option<Routes>,
    dead_letter_topic: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, serde_yaml::Value>,
    bulk_subscribe: Option<BulkSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkSpec {
    #[serde(default)]
    enabled: bool,
    max_messages_count: Option<i64>,
    max_await_duration_ms: Option<i64>,
}

#[derive(Deserialize)]
struct Routes {
    #[serde(default)]
    rules: Vec<Rule>,
    default: Option<String>,
}

#[derive(Deserialize)]
struct Rule {
    #[serde(rename = "match", default)]
    expression: String,
    path: String,
}

pub(super) fn parse(text: &str, source: &Source) -> Result<DeclaredSubscription, ResourceError> {
    let doc: Doc =
        serde_yaml::from_str(text).map_err(|err| located(source, "invalid Subscription", &err))?;
    let spec = doc.spec;
    let (rule_list, default) = match spec.routes {
        Some(routes) => (
            routes
                .rules
                .into_iter()
                .map(|r| (r.expression, r.path))
                .collect(),
            routes.default,
        ),
        None => (Vec::new(), None),
    };
    let rules =
        rules(rule_list, default, spec.route).map_err(|err| ResourceError::at(source, err))?;
    if rules.is_empty() {
        return Err(ResourceError::at(
            source,
            format!(
                "subscription to topic '{}' has no route: set spec.routes.default (or spec.route)",
                spec.topic
            ),
        ));
    }
    let metadata = spec
        .metadata
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_yaml::Value::String(s) => s,
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            (k, text)
        })
        .collect();
    Ok(DeclaredSubscription {
        spec: SubscriptionSpec {
            pubsub: spec.pubsubname,
            topic: spec.topic,
            rules,
            metadata,
            dead_letter_topic: spec.dead_letter_topic.filter(|t| !t.is_empty()),
            bulk: spec.bulk_subscribe.and_then(|b| {
                BulkSubscribe::new(b.enabled, b.max_messages_count, b.max_await_duration_ms)
            }),
            kind: Kind::Declarative,
        },
        scopes: doc.scopes,
        source: source.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn source() -> Source {
        Source {
            file: PathBuf::from("s.yaml"),
            line: 1,
        }
    }

    #[test]
    fn v2_and_v1_subscriptions() {
        let v2 = "kind: Subscription\nspec:\n  pubsubname: pubsub\n  topic: orders\n  routes:\n    \
                  rules:\n    - match: event.type == \"v2\"\n      path: /v2\n    default: /orders\n  \
                  deadLetterTopic: poison\n  metadata:\n    rawPayload: true\n  bulkSubscribe:\n    \
                  enabled: true\n    maxAwaitDurationMs: 40\nscopes: [a]\n";
        let s = parse(v2, &source()).unwrap();
        let bulk = s.spec.bulk.unwrap();
        assert_eq!((bulk.max_messages, bulk.max_await.as_millis()), (100, 40));
        assert_eq!(s.spec.route(&json!({"type": "v2"})), Some("/v2"));
        assert_eq!(s.spec.route(&json!({"type": "v1"})), Some("/orders"));
        assert_eq!(s.spec.metadata_value("rawPayload"), Some("true"));
        assert!(s.in_scope("a") && !s.in_scope("b"));
        let v1 = "kind: Subscription\nspec:\n  pubsubname: p\n  topic: t\n  route: /t\n";
        let v1 = parse(v1, &source()).unwrap();
        assert_eq!(v1.spec.route(&json!({})), Some("/t"));
        assert_eq!(v1.spec.bulk, None);
        let none = "kind: Subscription\nspec:\n  pubsubname: p\n  topic: t\n";
        assert!(parse(none, &source())
            .unwrap_err()
            .message
            .contains("no route"));
    }
}

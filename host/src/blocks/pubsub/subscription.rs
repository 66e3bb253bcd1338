//! What a subscription is, wherever it was declared: the app's `GET /dapr/subscribe`
//! (programmatic, read in `app/discovery.rs`) or a `Subscription` resource (declarative).

use std::time::Duration;

use serde::Serialize;

use super::rules::Match;

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
            .and_then(crate::blocks::metadata::parse_bool)
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

//! The little metadata this plugin reads: `consumerID` (the consumer group) and
//! `processingTimeout` (how long a delivery may stay unacknowledged before it is handed out
//! again), from the component and, over it, from each subscription.

use std::time::Duration;

use plugin_metadata::lookup;

pub const CONSUMER_ID: &str = "consumerID";
const PROCESSING_TIMEOUT: &str = "processingTimeout";
/// As `pubsub.redis`: an unacknowledged delivery comes back after a minute.
const DEFAULT_PROCESSING_TIMEOUT: Duration = Duration::from_secs(60);

/// Keys this plugin reads, and the keys every Dapr pub/sub component may carry that the host
/// applies itself.
const KNOWN: &[&str] = &[
    CONSUMER_ID,
    PROCESSING_TIMEOUT,
    "concurrency",
    "publishingScopes",
    "subscriptionScopes",
    "allowedTopics",
    "protectedTopics",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `None`: subscriptions without a `consumerID` share one unnamed group.
    pub consumer_id: Option<String>,
    /// `None` (`0`): an unacknowledged delivery stays in flight until the subscription goes.
    pub processing_timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            consumer_id: None,
            processing_timeout: Some(DEFAULT_PROCESSING_TIMEOUT),
        }
    }
}

impl Settings {
    /// `defaults`, overridden by what `metadata` sets.
    pub fn parse(metadata: &[(String, String)], defaults: &Self) -> Result<Self, String> {
        let processing_timeout = match lookup(metadata, PROCESSING_TIMEOUT) {
            None => defaults.processing_timeout,
            Some(text) => parse_duration(text).map_err(|e| {
                format!("metadata `{PROCESSING_TIMEOUT}`: {e} (0 keeps deliveries in flight until acknowledged)")
            })?,
        };
        Ok(Self {
            consumer_id: lookup(metadata, CONSUMER_ID)
                .map(str::to_owned)
                .or_else(|| defaults.consumer_id.clone()),
            processing_timeout,
        })
    }

    pub fn processing_timeout_ms(&self) -> Option<u64> {
        self.processing_timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// Metadata keys this plugin does not read, to tell the user once.
pub fn ignored(metadata: &[(String, String)]) -> Vec<String> {
    metadata
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !k.is_empty() && !KNOWN.iter().any(|n| n.eq_ignore_ascii_case(k)))
        .cloned()
        .collect()
}

/// A bare integer is milliseconds, anything else a Go duration (`1.5s`, `300ms`, `1m30s`);
/// zero is `None`.
fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    let duration = match (text.parse::<u64>(), go_duration::signed(text)) {
        (Ok(ms), _) => Duration::from_millis(ms),
        (_, Some((false, nanos))) => Duration::from_nanos(nanos),
        _ => {
            return Err(format!(
            "{text:?} is not a duration: use milliseconds (500) or a Go duration (500ms, 2s, 1m)"
        ))
        }
    };
    Ok((!duration.is_zero()).then_some(duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let component = Settings::parse(
            &md(&[("consumerID", "app"), ("concurrency", "4")]),
            &Settings::default(),
        )
        .unwrap();
        assert_eq!(component.consumer_id.as_deref(), Some("app"));
        assert_eq!(component.processing_timeout_ms(), Some(60_000));
        let sub = Settings::parse(
            &md(&[("consumerid", "other"), ("processingTimeout", "1.5s")]),
            &component,
        )
        .unwrap();
        assert_eq!(sub.consumer_id.as_deref(), Some("other"));
        assert_eq!(sub.processing_timeout_ms(), Some(1500));
        let off = Settings::parse(&md(&[("processingTimeout", "0")]), &component).unwrap();
        assert_eq!(off.processing_timeout_ms(), None);
        assert_eq!(off.consumer_id.as_deref(), Some("app"));
        assert_eq!(
            Settings::parse(&md(&[("processingTimeout", "250")]), &component)
                .unwrap()
                .processing_timeout_ms(),
            Some(250)
        );
        for bad in ["soon", "-1", "-1s", "1e3"] {
            let err = Settings::parse(&md(&[("processingTimeout", bad)]), &component).unwrap_err();
            assert!(err.contains("processingTimeout"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_listed() {
        assert_eq!(
            ignored(&md(&[
                ("consumerID", "a"),
                ("allowedTopics", "x"),
                ("foo", "1")
            ])),
            vec!["foo".to_string()]
        );
    }
}

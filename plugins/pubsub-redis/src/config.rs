//! The component metadata, read with daprd's names and defaults (components-contrib's Redis
//! settings and `pubsub.redis`'s own), minus what this plugin does not do yet.

use std::time::Duration;

use redis_common::duration::{parse_timeout, Timeout};
use redis_common::{lookup, Connection, CONNECTION_KEYS};

use crate::error::{PubsubError, Result};

pub const CONSUMER_ID: &str = "consumerID";
const PROCESSING_TIMEOUT: &str = "processingTimeout";
const REDELIVER_INTERVAL: &str = "redeliverInterval";
const QUEUE_DEPTH: &str = "queueDepth";
const MAX_LEN_APPROX: &str = "maxLenApprox";
const STREAM_TTL: &str = "streamTTL";

/// daprd's defaults as its code has them (components-contrib `pubsub/redis/redis.go`;
/// the docs page lists other values).
const DEFAULT_PROCESSING_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_REDELIVER_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_QUEUE_DEPTH: u32 = 100;
/// Keys this plugin reads beside the connection's, and the keys every Dapr pub/sub component may carry that the host
/// applies itself (scopes, topic lists, delivery concurrency).
const KNOWN: &[&str] = &[
    CONSUMER_ID,
    PROCESSING_TIMEOUT,
    REDELIVER_INTERVAL,
    QUEUE_DEPTH,
    "concurrency",
    MAX_LEN_APPROX,
    STREAM_TTL,
    "publishingScopes",
    "subscriptionScopes",
    "allowedTopics",
    "protectedTopics",
];

/// How a publish trims its stream (`XADD ... MAXLEN ~ n` or `MINID ~ id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    None,
    /// `maxLenApprox`: keep about this many entries.
    MaxLen(u64),
    /// `streamTTL`: drop entries older than this.
    MaxAge(Duration),
}

/// What a subscription needs; read from the component metadata at init, and again from the
/// subscribe request's metadata (which the host merges over the component's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeSettings {
    /// The consumer group, and the consumer's name within it (as daprd does).
    pub consumer_id: Option<String>,
    /// How long an entry stays pending before it is claimed again; `None` (`0`) disables
    /// redelivery.
    pub processing_timeout: Option<Duration>,
    /// How often pending entries are checked; `None` (`0`) disables redelivery.
    pub redeliver_interval: Option<Duration>,
    /// How many entries one read returns when the host asks for no particular number.
    pub queue_depth: u32,
}

impl Default for SubscribeSettings {
    fn default() -> Self {
        Self {
            consumer_id: None,
            processing_timeout: Some(DEFAULT_PROCESSING_TIMEOUT),
            redeliver_interval: Some(DEFAULT_REDELIVER_INTERVAL),
            queue_depth: DEFAULT_QUEUE_DEPTH,
        }
    }
}

/// Redelivery as configured: both settings non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redelivery {
    pub min_idle: Duration,
    pub interval: Duration,
}

impl SubscribeSettings {
    /// `defaults`, overridden by whatever `metadata` sets.
    pub fn parse(metadata: &[(String, String)], defaults: &Self) -> Result<Self> {
        let get = |key: &str| lookup(metadata, key);
        let interval = |key: &'static str, default: Option<Duration>| match get(key) {
            None => Ok(default),
            Some(text) => match parse_timeout(text) {
                Ok(Timeout::Zero) => Ok(None),
                Ok(Timeout::After(d)) => Ok(Some(d)),
                Ok(Timeout::Negative) => Err(invalid(format!(
                    "metadata `{key}` must not be negative (0 disables redelivery), got {text:?}"
                ))),
                Err(e) => Err(invalid(format!("metadata `{key}`: {e}"))),
            },
        };
        let queue_depth = match get(QUEUE_DEPTH) {
            None => defaults.queue_depth,
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    invalid(format!(
                        "metadata `{QUEUE_DEPTH}` must be a positive whole number, got {text:?}"
                    ))
                })?,
        };
        Ok(Self {
            consumer_id: get(CONSUMER_ID)
                .map(str::to_owned)
                .or_else(|| defaults.consumer_id.clone()),
            processing_timeout: interval(PROCESSING_TIMEOUT, defaults.processing_timeout)?,
            redeliver_interval: interval(REDELIVER_INTERVAL, defaults.redeliver_interval)?,
            queue_depth,
        })
    }

    pub fn redelivery(&self) -> Option<Redelivery> {
        Some(Redelivery {
            min_idle: self.processing_timeout?,
            interval: self.redeliver_interval?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Its `read_timeout` is for every command but a blocking read, whose socket timeout is
    /// its block time plus that (or plus 3 s when it is `None`).
    pub conn: Connection,
    pub trim: Trim,
    pub subscribe: SubscribeSettings,
    /// Metadata keys present but not used (pool tuning and the like), to tell the user once.
    pub ignored: Vec<String>,
    /// Set when both `maxLenApprox` and `streamTTL` are given (the first wins, as in daprd).
    pub trim_conflict: bool,
}

fn invalid(message: String) -> PubsubError {
    PubsubError::InvalidArgument(message)
}

impl Config {
    pub fn parse(metadata: &[(String, String)]) -> Result<Self> {
        let get = |key: &str| lookup(metadata, key);
        // daprd decodes metadata ignoring case, and so does `lookup`.
        let conn = Connection::parse(get, "pubsub.redis").map_err(invalid)?;
        let max_len = match get(MAX_LEN_APPROX) {
            None => None,
            // daprd reads an int64; zero or less means no limit.
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n > 0 => Some(n.unsigned_abs()),
                Ok(_) => None,
                Err(_) => {
                    return Err(invalid(format!(
                        "metadata `{MAX_LEN_APPROX}` must be a whole number of entries, got {v:?}"
                    )))
                }
            },
        };
        let max_age = match get(STREAM_TTL) {
            None => None,
            Some(text) => match parse_timeout(text) {
                Ok(Timeout::After(d)) => Some(d),
                Ok(Timeout::Zero) => None,
                Ok(Timeout::Negative) => {
                    return Err(invalid(format!(
                        "metadata `{STREAM_TTL}` must not be negative, got {text:?}"
                    )))
                }
                Err(e) => return Err(invalid(format!("metadata `{STREAM_TTL}`: {e}"))),
            },
        };
        let trim = match (max_len, max_age) {
            (Some(n), _) => Trim::MaxLen(n),
            (None, Some(age)) => Trim::MaxAge(age),
            (None, None) => Trim::None,
        };
        Ok(Self {
            conn,
            trim,
            subscribe: SubscribeSettings::parse(metadata, &SubscribeSettings::default())?,
            ignored: metadata
                .iter()
                .map(|(k, _)| k)
                .filter(|k| {
                    let known = |names: &[&str]| names.iter().any(|n| n.eq_ignore_ascii_case(k));
                    !k.is_empty() && !known(CONNECTION_KEYS) && !known(KNOWN)
                })
                .cloned()
                .collect(),
            trim_conflict: max_len.is_some() && max_age.is_some(),
        })
    }
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

    fn parse(pairs: &[(&str, &str)]) -> Result<Config> {
        Config::parse(&md(pairs))
    }

    fn message<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(PubsubError::InvalidArgument(m)) => m,
            other => panic!("expected invalid-argument, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(&[("redisHost", "127.0.0.1:6380")]).unwrap();
        assert_eq!(c.conn.addr, "127.0.0.1:6380".parse().unwrap());
        assert_eq!(c.conn.read_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.trim, Trim::None);
        let s = c.subscribe;
        assert_eq!(s.consumer_id, None);
        assert_eq!(s.queue_depth, 100);
        assert_eq!(
            s.redelivery(),
            Some(Redelivery {
                min_idle: Duration::from_secs(60),
                interval: Duration::from_secs(15)
            })
        );
        assert!(c.ignored.is_empty());
    }

    #[test]
    fn subscription_settings() {
        let c = parse(&[
            ("redisHost", "127.0.0.1"),
            ("consumerID", "orders-app"),
            ("processingTimeout", "1s"),
            ("redeliverInterval", "250"),
            ("queueDepth", "7"),
            ("concurrency", "3"),
        ])
        .unwrap();
        let s = c.subscribe;
        assert_eq!(s.consumer_id.as_deref(), Some("orders-app"));
        assert_eq!(s.queue_depth, 7);
        assert_eq!(
            s.redelivery(),
            Some(Redelivery {
                min_idle: Duration::from_secs(1),
                interval: Duration::from_millis(250)
            })
        );
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);

        // Subscribe metadata overrides the component's, key by key.
        let sub = SubscribeSettings::parse(
            &md(&[("consumerID", "other"), ("redeliverInterval", "0")]),
            &s,
        )
        .unwrap();
        assert_eq!(sub.consumer_id.as_deref(), Some("other"));
        assert_eq!(sub.processing_timeout, Some(Duration::from_secs(1)));
        assert_eq!(sub.redelivery(), None);
        let sub = SubscribeSettings::parse(&md(&[("processingTimeout", "0s")]), &s).unwrap();
        assert_eq!(sub.redelivery(), None);
        assert_eq!(sub.consumer_id.as_deref(), Some("orders-app"));

        let bad = |k: &str, v: &str| message(parse(&[("redisHost", "127.0.0.1"), (k, v)]));
        assert!(bad("processingTimeout", "soon").contains("processingTimeout"));
        assert!(bad("redeliverInterval", "-1").contains("negative"));
        assert!(bad("queueDepth", "0").contains("queueDepth"));
        assert!(bad("queueDepth", "many").contains("queueDepth"));
    }

    #[test]
    fn errors_name_the_plugin() {
        assert!(message(parse(&[])).contains("redisHost"));
        let tls = message(parse(&[("redisHost", "127.0.0.1"), ("enableTLS", "true")]));
        assert!(tls.contains("pubsub.redis"), "{tls}");
    }

    #[test]
    fn keys_match_ignoring_case() {
        let c = parse(&[("redishost", "127.0.0.1"), ("consumerid", "x")]).unwrap();
        assert_eq!(c.conn.addr.port(), 6379);
        assert_eq!(c.subscribe.consumer_id.as_deref(), Some("x"));
        assert!(c.ignored.is_empty());
    }

    #[test]
    fn trimming() {
        let trim = |pairs: &[(&str, &str)]| {
            let mut all = vec![("redisHost", "127.0.0.1")];
            all.extend_from_slice(pairs);
            parse(&all).map(|c| (c.trim, c.trim_conflict))
        };
        assert_eq!(
            trim(&[("maxLenApprox", "1000")]),
            Ok((Trim::MaxLen(1000), false))
        );
        assert_eq!(trim(&[("maxLenApprox", "0")]), Ok((Trim::None, false)));
        assert_eq!(
            trim(&[("streamTTL", "1h")]),
            Ok((Trim::MaxAge(Duration::from_secs(3600)), false))
        );
        assert_eq!(
            trim(&[("maxLenApprox", "5"), ("streamTTL", "1m")]),
            Ok((Trim::MaxLen(5), true))
        );
        assert!(message(trim(&[("maxLenApprox", "lots")])).contains("maxLenApprox"));
        assert!(message(trim(&[("streamTTL", "-1s")])).contains("streamTTL"));
    }

    #[test]
    fn unused_keys_are_listed() {
        let c = parse(&[("redisHost", "127.0.0.1"), ("poolSize", "20")]).unwrap();
        assert_eq!(c.ignored, vec!["poolSize".to_string()]);
    }
}

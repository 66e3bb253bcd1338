//! The component metadata, read with daprd's names and defaults (components-contrib's Redis
//! settings and `pubsub.redis`'s own), minus what this plugin does not do yet.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::duration::{parse_timeout, Timeout};
use crate::error::{PubsubError, Result};

pub const REDIS_HOST: &str = "redisHost";
pub const CONSUMER_ID: &str = "consumerID";
const PROCESSING_TIMEOUT: &str = "processingTimeout";
const REDELIVER_INTERVAL: &str = "redeliverInterval";
const QUEUE_DEPTH: &str = "queueDepth";
const MAX_LEN_APPROX: &str = "maxLenApprox";
const STREAM_TTL: &str = "streamTTL";
const DEFAULT_PORT: u16 = 6379;

/// daprd's defaults (in code; its docs differ, see the reference).
const DEFAULT_PROCESSING_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_REDELIVER_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_QUEUE_DEPTH: u32 = 100;
/// go-redis's default of 3 retries; `-1` disables them.
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Shorter than daprd's 5 s: a connect to a healthy Redis takes well under a millisecond, and a
/// dead address should fail a publish long before the host's call deadline does.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Keys this plugin reads, and the keys every Dapr pub/sub component may carry that the host
/// applies itself (scopes, topic lists, delivery concurrency).
const KNOWN: &[&str] = &[
    REDIS_HOST,
    "redisPort",
    "redisPassword",
    "redisUsername",
    "redisDB",
    "redisType",
    "enableTLS",
    "failover",
    "useEntraID",
    "useOIDC",
    "redisMaxRetries",
    "maxRetries",
    "dialTimeout",
    "readTimeout",
    "writeTimeout",
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

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

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
    pub addr: SocketAddr,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    pub max_retries: u32,
    /// `None` waits as long as the operating system does.
    pub dial_timeout: Option<Duration>,
    /// For every command but a blocking read, whose socket timeout is its block time plus
    /// this (or plus 3 s when this is `None`).
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
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

/// The value of `name`: the first entry whose key matches exactly, else the first that matches
/// ignoring ASCII case (daprd decodes metadata case-insensitively). Empty counts as absent.
pub fn lookup<'a>(metadata: &'a [(String, String)], name: &str) -> Option<&'a str> {
    metadata
        .iter()
        .find(|(k, _)| k == name)
        .or_else(|| metadata.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

impl Config {
    pub fn parse(metadata: &[(String, String)]) -> Result<Self> {
        let get = |key: &str| lookup(metadata, key);
        reject_unsupported(metadata)?;
        let Some(host) = get(REDIS_HOST) else {
            return Err(invalid(format!(
                "metadata `{REDIS_HOST}` is required: set it to the Redis address, e.g. localhost:6379"
            )));
        };
        let port = get("redisPort")
            .map(|p| {
                p.trim().parse::<u16>().map_err(|_| {
                    invalid(format!(
                        "metadata `redisPort` must be a port number, got {p:?}"
                    ))
                })
            })
            .transpose()?;
        let addr = parse_addr(host, port)?;
        let db = match get("redisDB") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| {
                    invalid(format!(
                        "metadata `redisDB` must be a database number, got {v:?}"
                    ))
                })?,
        };
        let max_retries = match get("redisMaxRetries").or_else(|| get("maxRetries")) {
            None => DEFAULT_MAX_RETRIES,
            Some(v) => match v.trim().parse::<i64>() {
                // As go-redis: 0 means the default, -1 (any negative) means no retries.
                Ok(0) => DEFAULT_MAX_RETRIES,
                Ok(n) if n < 0 => 0,
                Ok(n) => u32::try_from(n).unwrap_or(u32::MAX),
                Err(_) => {
                    return Err(invalid(format!(
                        "metadata `redisMaxRetries` must be a whole number (-1 = no retries), got {v:?}"
                    )))
                }
            },
        };
        let timeout = |key: &'static str, default: Option<Duration>| {
            let Some(text) = get(key) else {
                return Ok(default);
            };
            match parse_timeout(text) {
                Ok(Timeout::Zero) => Ok(default),
                Ok(Timeout::Negative) => Ok(None),
                Ok(Timeout::After(duration)) => Ok(Some(duration)),
                Err(e) => Err(invalid(format!("metadata `{key}`: {e}"))),
            }
        };
        let read_timeout = timeout("readTimeout", Some(DEFAULT_READ_TIMEOUT))?;
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
            addr,
            username: get("redisUsername").map(str::to_owned),
            password: get("redisPassword").map(|p| Secret(p.to_owned())),
            db,
            max_retries,
            dial_timeout: timeout("dialTimeout", Some(DEFAULT_DIAL_TIMEOUT))?,
            read_timeout,
            write_timeout: timeout("writeTimeout", read_timeout)?,
            trim,
            subscribe: SubscribeSettings::parse(metadata, &SubscribeSettings::default())?,
            ignored: metadata
                .iter()
                .map(|(k, _)| k)
                .filter(|k| !k.is_empty() && !KNOWN.iter().any(|n| n.eq_ignore_ascii_case(k)))
                .cloned()
                .collect(),
            trim_conflict: max_len.is_some() && max_age.is_some(),
        })
    }
}

/// Settings that would make this plugin talk to Redis differently from what the user asked for
/// are refused rather than ignored.
fn reject_unsupported(metadata: &[(String, String)]) -> Result<()> {
    if parse_bool(metadata, "enableTLS")? {
        return Err(invalid(
            "metadata `enableTLS` is true, but pubsub.redis does not support TLS yet: \
             connect to Redis over plain TCP (enableTLS: false) or put a TLS proxy beside the sidecar"
                .into(),
        ));
    }
    if let Some(kind) = lookup(metadata, "redisType").filter(|t| !t.eq_ignore_ascii_case("node")) {
        return Err(invalid(format!(
            "metadata `redisType` is {kind:?}: pubsub.redis supports only a single Redis node (`node`)"
        )));
    }
    for key in ["failover", "useEntraID", "useOIDC"] {
        if parse_bool(metadata, key)? {
            return Err(invalid(format!(
                "metadata `{key}` is true, which pubsub.redis does not support yet"
            )));
        }
    }
    Ok(())
}

/// Go's `strconv.ParseBool`, which daprd uses for these flags.
fn parse_bool(metadata: &[(String, String)], key: &str) -> Result<bool> {
    match lookup(metadata, key).map(str::trim) {
        None => Ok(false),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(invalid(format!(
            "metadata `{key}` must be true or false, got {other:?}"
        ))),
    }
}

/// The host hands over `redisHost` with its name already resolved (`localhost:6379` arrives as
/// `127.0.0.1:6379`): the sandbox has no name lookup.
fn parse_addr(host: &str, port: Option<u16>) -> Result<SocketAddr> {
    let host = host.trim();
    if host.contains(',') {
        return Err(invalid(format!(
            "metadata `{REDIS_HOST}` lists several addresses ({host}): pubsub.redis supports a single Redis node"
        )));
    }
    let (addr, given_port) = if let Ok(addr) = host.parse::<SocketAddr>() {
        (addr.ip(), Some(addr.port()))
    } else if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        (ip, None)
    } else {
        return Err(invalid(format!(
            "metadata `{REDIS_HOST}` must be host:port, got {host:?}"
        )));
    };
    let port = match (given_port, port) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(format!(
                "metadata `{REDIS_HOST}` names port {a} but `redisPort` is {b}: remove one of them"
            )))
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => DEFAULT_PORT,
    };
    Ok(SocketAddr::new(addr, port))
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

    fn message<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(PubsubError::InvalidArgument(m)) => m,
            other => panic!("expected invalid-argument, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(&[("redisHost", "127.0.0.1:6380")]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:6380".parse().unwrap());
        assert_eq!((c.db, c.max_retries), (0, 3));
        assert_eq!(c.dial_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.read_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.write_timeout, c.read_timeout);
        assert_eq!((c.username, c.password), (None, None));
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
    fn address_forms() {
        let addr = |pairs: &[(&str, &str)]| parse(pairs).unwrap().addr.to_string();
        assert_eq!(addr(&[("redisHost", "10.0.0.1")]), "10.0.0.1:6379");
        assert_eq!(
            addr(&[("redisHost", "10.0.0.1"), ("redisPort", "7000")]),
            "10.0.0.1:7000"
        );
        assert_eq!(addr(&[("redisHost", "[::1]:7001")]), "[::1]:7001");
        assert!(message(parse(&[])).contains("redisHost"));
        assert!(message(parse(&[("redisHost", "a:1,b:2")])).contains("single"));
        assert!(message(parse(&[("redisHost", "redis.local:6379")])).contains("host:port"));
        let conflict = parse(&[("redisHost", "10.0.0.1:1"), ("redisPort", "2")]);
        assert!(message(conflict).contains("redisPort"));
    }

    #[test]
    fn credentials_and_db() {
        let c = parse(&[
            ("redisHost", "127.0.0.1"),
            ("redisUsername", "app"),
            ("redisPassword", "s3cret"),
            ("redisDB", "4"),
        ])
        .unwrap();
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.db, 4);
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(
            message(parse(&[("redisHost", "127.0.0.1"), ("redisDB", "x")])).contains("redisDB")
        );
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
    fn keys_match_ignoring_case() {
        let c = parse(&[("redishost", "127.0.0.1"), ("consumerid", "x")]).unwrap();
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
    fn timeouts_and_retries() {
        let c = parse(&[
            ("redisHost", "127.0.0.1"),
            ("dialTimeout", "250"),
            ("readTimeout", "1.5s"),
            ("redisMaxRetries", "-1"),
        ])
        .unwrap();
        assert_eq!(c.dial_timeout, Some(Duration::from_millis(250)));
        assert_eq!(c.read_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.write_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.max_retries, 0);
        assert!(
            message(parse(&[("redisHost", "127.0.0.1"), ("dialTimeout", "x")]))
                .contains("dialTimeout")
        );
    }

    #[test]
    fn unsupported_settings_are_refused() {
        let tls = message(parse(&[("redisHost", "127.0.0.1"), ("enableTLS", "true")]));
        assert!(tls.contains("enableTLS") && tls.contains("TLS"), "{tls}");
        assert!(parse(&[("redisHost", "127.0.0.1"), ("enableTLS", "false")]).is_ok());
        assert!(
            message(parse(&[("redisHost", "127.0.0.1"), ("enableTLS", "yes")]))
                .contains("true or false")
        );
        assert!(message(parse(&[
            ("redisHost", "127.0.0.1"),
            ("redisType", "cluster")
        ]))
        .contains("cluster"));
        assert!(
            message(parse(&[("redisHost", "127.0.0.1"), ("failover", "true")]))
                .contains("failover")
        );
    }

    #[test]
    fn unused_keys_are_listed() {
        let c = parse(&[("redisHost", "127.0.0.1"), ("poolSize", "20")]).unwrap();
        assert_eq!(c.ignored, vec!["poolSize".to_string()]);
    }
}

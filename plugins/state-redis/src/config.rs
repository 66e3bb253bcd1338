//! The component metadata, read with daprd's names and defaults (components-contrib's Redis
//! settings), minus what this plugin does not do yet.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use state_common::{lookup, parse_ttl, StateError, TTL_IN_SECONDS};

use crate::duration::{parse_timeout, Timeout};

pub const REDIS_HOST: &str = "redisHost";
const DEFAULT_PORT: u16 = 6379;

/// daprd's state stores default to 3 retries; `-1` disables them.
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Shorter than daprd's 5 s: a connect to a healthy Redis takes well under a millisecond, and a
/// dead address should fail a request long before the host's call deadline (10 s) does.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Keys this plugin reads, and `keyPrefix`, which the host applies before keys get here.
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
    TTL_IN_SECONDS,
    "keyPrefix",
];

/// How long a key lives once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Expire(u32),
    Persist,
}

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub addr: SocketAddr,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    pub max_retries: u32,
    /// The store-wide `ttlInSeconds`, for writes that name none.
    pub default_ttl: Option<Ttl>,
    /// `None` waits as long as the operating system does.
    pub dial_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
    /// Metadata keys present but not used (pool tuning and the like), to tell the user once.
    pub ignored: Vec<String>,
}

fn invalid(message: String) -> StateError {
    StateError::InvalidArgument(message)
}

impl Config {
    pub fn parse(metadata: &[(String, String)]) -> Result<Self, StateError> {
        let get = |key: &'static str| lookup(metadata, key);
        reject_unsupported(metadata)?;
        let Some(host) = get(REDIS_HOST) else {
            return Err(invalid(format!(
                "metadata `{REDIS_HOST}` is required: set it to the Redis address, e.g. localhost:6379"
            )));
        };
        let port = get("redisPort")
            .map(|p| {
                p.parse::<u16>().map_err(|_| {
                    invalid(format!(
                        "metadata `redisPort` must be a port number, got {p:?}"
                    ))
                })
            })
            .transpose()?;
        let addr = parse_addr(host, port)?;
        let db = match get("redisDB") {
            None => 0,
            Some(v) => v.parse::<i64>().ok().filter(|db| *db >= 0).ok_or_else(|| {
                invalid(format!(
                    "metadata `redisDB` must be a database number, got {v:?}"
                ))
            })?,
        };
        let max_retries = match get("redisMaxRetries").or_else(|| get("maxRetries")) {
            None => DEFAULT_MAX_RETRIES,
            Some(v) => match v.parse::<i64>() {
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
        let default_ttl = match get(TTL_IN_SECONDS) {
            None => None,
            Some(_) => Some(match parse_ttl(metadata)? {
                Some(seconds) => Ttl::Expire(seconds),
                None => Ttl::Persist,
            }),
        };
        let timeout = |key: &'static str, default: Option<Duration>| {
            let Some(text) = get(key) else {
                return Ok(default);
            };
            match parse_timeout(text) {
                Ok(Timeout::Default) => Ok(default),
                Ok(Timeout::Never) => Ok(None),
                Ok(Timeout::After(duration)) => Ok(Some(duration)),
                Err(e) => Err(invalid(format!("metadata `{key}`: {e}"))),
            }
        };
        let read_timeout = timeout("readTimeout", Some(DEFAULT_READ_TIMEOUT))?;
        Ok(Self {
            addr,
            username: get("redisUsername").map(str::to_owned),
            password: get("redisPassword").map(|p| Secret(p.to_owned())),
            db,
            max_retries,
            default_ttl,
            dial_timeout: timeout("dialTimeout", Some(DEFAULT_DIAL_TIMEOUT))?,
            read_timeout,
            write_timeout: timeout("writeTimeout", read_timeout)?,
            ignored: metadata
                .iter()
                .map(|(k, _)| k)
                .filter(|k| !KNOWN.contains(&k.as_str()))
                .cloned()
                .collect(),
        })
    }
}

/// Settings that would make this plugin talk to Redis differently from what the user asked for
/// are refused rather than ignored.
fn reject_unsupported(metadata: &[(String, String)]) -> Result<(), StateError> {
    let get = |key: &'static str| lookup(metadata, key);
    if parse_bool(metadata, "enableTLS")? {
        return Err(invalid(
            "metadata `enableTLS` is true, but state.redis does not support TLS yet: \
             connect to Redis over plain TCP (enableTLS: false) or put a TLS proxy beside the sidecar"
                .into(),
        ));
    }
    if let Some(kind) = get("redisType").filter(|t| !t.eq_ignore_ascii_case("node")) {
        return Err(invalid(format!(
            "metadata `redisType` is {kind:?}: state.redis supports only a single Redis node (`node`)"
        )));
    }
    for key in ["failover", "useEntraID", "useOIDC"] {
        if parse_bool(metadata, key)? {
            return Err(invalid(format!(
                "metadata `{key}` is true, which state.redis does not support yet"
            )));
        }
    }
    Ok(())
}

/// Go's `strconv.ParseBool`, which daprd uses for these flags.
fn parse_bool(metadata: &[(String, String)], key: &str) -> Result<bool, StateError> {
    match lookup(metadata, key) {
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
fn parse_addr(host: &str, port: Option<u16>) -> Result<SocketAddr, StateError> {
    let host = host.trim();
    if host.contains(',') {
        return Err(invalid(format!(
            "metadata `{REDIS_HOST}` lists several addresses ({host}): state.redis supports a single Redis node"
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

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, StateError> {
        Config::parse(&md(pairs))
    }

    fn message(r: Result<Config, StateError>) -> String {
        match r {
            Err(StateError::InvalidArgument(m)) => m,
            other => panic!("expected invalid-argument, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = parse(&[("redisHost", "127.0.0.1:6380")]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:6380".parse().unwrap());
        assert_eq!((c.db, c.max_retries, c.default_ttl), (0, 3, None));
        assert_eq!(c.dial_timeout, Some(Duration::from_secs(2)));
        assert_eq!(c.read_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.write_timeout, c.read_timeout);
        assert_eq!((c.username, c.password), (None, None));
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
        assert_eq!(addr(&[("redisHost", "[::1]")]), "[::1]:6379");
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
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the password must not be printable"
        );
        assert!(
            message(parse(&[("redisHost", "127.0.0.1"), ("redisDB", "-1")])).contains("redisDB")
        );
    }

    #[test]
    fn retries() {
        let retries = |v: &str| parse(&[("redisHost", "127.0.0.1"), ("redisMaxRetries", v)]);
        assert_eq!(retries("5").unwrap().max_retries, 5);
        assert_eq!(retries("0").unwrap().max_retries, 3);
        assert_eq!(retries("-1").unwrap().max_retries, 0);
        assert!(message(retries("many")).contains("redisMaxRetries"));
        let legacy = parse(&[("redisHost", "127.0.0.1"), ("maxRetries", "1")]);
        assert_eq!(legacy.unwrap().max_retries, 1);
    }

    #[test]
    fn timeouts_and_ttl() {
        let c = parse(&[
            ("redisHost", "127.0.0.1"),
            ("dialTimeout", "250"),
            ("readTimeout", "1.5s"),
            ("ttlInSeconds", "60"),
        ])
        .unwrap();
        assert_eq!(c.dial_timeout, Some(Duration::from_millis(250)));
        assert_eq!(c.read_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.write_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.default_ttl, Some(Ttl::Expire(60)));
        let c = parse(&[
            ("redisHost", "127.0.0.1"),
            ("readTimeout", "-1"),
            ("ttlInSeconds", "-1"),
        ]);
        let c = c.unwrap();
        assert_eq!((c.read_timeout, c.default_ttl), (None, Some(Ttl::Persist)));
        assert!(message(parse(&[
            ("redisHost", "127.0.0.1"),
            ("dialTimeout", "soon")
        ]))
        .contains("dialTimeout"));
        assert!(
            message(parse(&[("redisHost", "127.0.0.1"), ("ttlInSeconds", "x")]))
                .contains("ttlInSeconds")
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
        let c = parse(&[
            ("redisHost", "127.0.0.1"),
            ("poolSize", "20"),
            ("keyPrefix", "none"),
        ]);
        assert_eq!(c.unwrap().ignored, vec!["poolSize".to_string()]);
    }
}

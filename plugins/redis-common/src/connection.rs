//! The connection metadata both Redis plugins read, with daprd's names and defaults
//! (components-contrib's Redis settings), minus what the plugins do not do yet.

use std::net::SocketAddr;
use std::time::Duration;

use plugin_metadata::Secret;

use crate::addr::parse_addr;
use crate::duration::{parse_timeout, Timeout};

pub const REDIS_HOST: &str = "redisHost";

/// go-redis's default of 3 retries; `-1` disables them.
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Shorter than daprd's 5 s: a connect to a healthy Redis takes well under a millisecond, and a
/// dead address should fail a request long before the host's call deadline (10 s) does.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The keys `Connection::parse` reads, so a plugin can tell which keys went unused.
pub const CONNECTION_KEYS: &[&str] = &[
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
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub addr: SocketAddr,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    pub max_retries: u32,
    /// `None` waits as long as the operating system does.
    pub dial_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
}

impl Connection {
    /// Reads the connection settings through `get` (each plugin keeps its own key matching).
    /// `plugin` (`state.redis`, `pubsub.redis`) names who refuses an unsupported setting; the
    /// error is the text of an invalid-argument error.
    pub fn parse<'a>(get: impl Fn(&str) -> Option<&'a str>, plugin: &str) -> Result<Self, String> {
        reject_unsupported(&get, plugin)?;
        let Some(host) = get(REDIS_HOST) else {
            return Err(format!(
                "metadata `{REDIS_HOST}` is required: set it to the Redis address, e.g. localhost:6379"
            ));
        };
        let port = get("redisPort")
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| format!("metadata `redisPort` must be a port number, got {p:?}"))
            })
            .transpose()?;
        let addr = parse_addr(host, port, plugin)?;
        let db = match get("redisDB") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| {
                    format!("metadata `redisDB` must be a database number, got {v:?}")
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
                    return Err(format!(
                        "metadata `redisMaxRetries` must be a whole number (-1 = no retries), got {v:?}"
                    ))
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
                Err(e) => Err(format!("metadata `{key}`: {e}")),
            }
        };
        let read_timeout = timeout("readTimeout", Some(DEFAULT_READ_TIMEOUT))?;
        Ok(Self {
            addr,
            username: get("redisUsername").map(str::to_owned),
            password: get("redisPassword").map(|p| Secret(p.to_owned())),
            db,
            max_retries,
            dial_timeout: timeout("dialTimeout", Some(DEFAULT_DIAL_TIMEOUT))?,
            read_timeout,
            write_timeout: timeout("writeTimeout", read_timeout)?,
        })
    }
}

/// Settings that would make a plugin talk to Redis differently from what the user asked for
/// are refused rather than ignored.
fn reject_unsupported<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    plugin: &str,
) -> Result<(), String> {
    if parse_bool(get, "enableTLS")? {
        return Err(format!(
            "metadata `enableTLS` is true, but {plugin} does not support TLS yet: \
             connect to Redis over plain TCP (enableTLS: false) or put a TLS proxy beside the sidecar"
        ));
    }
    if let Some(kind) = get("redisType").filter(|t| !t.eq_ignore_ascii_case("node")) {
        return Err(format!(
            "metadata `redisType` is {kind:?}: {plugin} supports only a single Redis node (`node`)"
        ));
    }
    for key in ["failover", "useEntraID", "useOIDC"] {
        if parse_bool(get, key)? {
            return Err(format!(
                "metadata `{key}` is true, which {plugin} does not support yet"
            ));
        }
    }
    Ok(())
}

/// Go's `strconv.ParseBool`, which daprd uses for these flags.
fn parse_bool<'a>(get: &impl Fn(&str) -> Option<&'a str>, key: &str) -> Result<bool, String> {
    match get(key) {
        None => Ok(false),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(format!(
            "metadata `{key}` must be true or false, got {other:?}"
        )),
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;

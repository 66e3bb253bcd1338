//! The component metadata, read with daprd's names and defaults: the connection settings
//! (`redis_common::Connection`) plus what only a state store has.

use redis_common::{Connection, CONNECTION_KEYS};
use state_common::{lookup, parse_ttl, StateError, TTL_IN_SECONDS};

/// Keys this plugin reads beside the connection's, and `keyPrefix`, which the host applies
/// before keys get here.
const KNOWN: &[&str] = &[TTL_IN_SECONDS, "keyPrefix"];

/// How long a key lives once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Expire(u32),
    Persist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub conn: Connection,
    /// The store-wide `ttlInSeconds`, for writes that name none.
    pub default_ttl: Option<Ttl>,
    /// Metadata keys present but not used (pool tuning and the like), to tell the user once.
    pub ignored: Vec<String>,
}

impl Config {
    pub fn parse(metadata: &[(String, String)]) -> Result<Self, StateError> {
        // State stores match keys exactly (state-common's `lookup`), unlike pub/sub.
        let conn = Connection::parse(|key| lookup(metadata, key), "state.redis")
            .map_err(StateError::InvalidArgument)?;
        let default_ttl = match lookup(metadata, TTL_IN_SECONDS) {
            None => None,
            Some(_) => Some(match parse_ttl(metadata)? {
                Some(seconds) => Ttl::Expire(seconds),
                None => Ttl::Persist,
            }),
        };
        Ok(Self {
            conn,
            default_ttl,
            ignored: metadata
                .iter()
                .map(|(k, _)| k)
                .filter(|k| !CONNECTION_KEYS.contains(&k.as_str()) && !KNOWN.contains(&k.as_str()))
                .cloned()
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, StateError> {
        let metadata: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(&metadata)
    }

    fn message(r: Result<Config, StateError>) -> String {
        match r {
            Err(StateError::InvalidArgument(m)) => m,
            other => panic!("expected invalid-argument, got {other:?}"),
        }
    }

    #[test]
    fn connection_and_ttl() {
        let c = parse(&[("redisHost", "127.0.0.1:6380")]).unwrap();
        assert_eq!(c.conn.addr, "127.0.0.1:6380".parse().unwrap());
        assert_eq!((c.conn.max_retries, c.default_ttl), (3, None));
        let c = parse(&[("redisHost", "127.0.0.1"), ("ttlInSeconds", "60")]).unwrap();
        assert_eq!(c.default_ttl, Some(Ttl::Expire(60)));
        let c = parse(&[("redisHost", "127.0.0.1"), ("ttlInSeconds", "-1")]).unwrap();
        assert_eq!(c.default_ttl, Some(Ttl::Persist));
        let ttl = parse(&[("redisHost", "127.0.0.1"), ("ttlInSeconds", "x")]);
        assert!(message(ttl).contains("ttlInSeconds"));
    }

    #[test]
    fn errors_name_the_plugin() {
        assert!(message(parse(&[])).contains("redisHost"));
        let tls = message(parse(&[("redisHost", "127.0.0.1"), ("enableTLS", "true")]));
        assert!(tls.contains("state.redis"), "{tls}");
    }

    #[test]
    fn keys_match_exactly() {
        assert!(message(parse(&[("redishost", "127.0.0.1")])).contains("redisHost"));
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

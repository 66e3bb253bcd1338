use crate::{Metadata, StateError};

/// Request metadata naming a TTL; `-1` (or any value <= 0) means "never expire".
pub const TTL_IN_SECONDS: &str = "ttlInSeconds";
/// Response metadata carrying the expiry instant as RFC3339 UTC.
pub const TTL_EXPIRE_TIME: &str = "ttlExpireTime";

/// Dapr's `ParseTTL` rejects anything above `math.MaxInt32`; doing the same also keeps
/// `now + ttl` far from overflow.
const MAX_TTL_SECONDS: i64 = i32::MAX as i64;

/// The value of `name`, taking the first occurrence as the host does. An empty value counts as
/// absent, as in Dapr.
pub fn lookup<'a>(metadata: &'a Metadata, name: &str) -> Option<&'a str> {
    metadata
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Reads `ttlInSeconds`: `Ok(Some(seconds))` for a positive TTL, `Ok(None)` when absent or <= 0.
pub fn parse_ttl(metadata: &Metadata) -> Result<Option<u32>, StateError> {
    let Some(raw) = lookup(metadata, TTL_IN_SECONDS) else {
        return Ok(None);
    };
    let seconds: i64 = raw.parse().map_err(|_| {
        StateError::InvalidArgument(format!(
            "metadata {TTL_IN_SECONDS} must be a whole number of seconds (-1 = never expire), got {raw:?}"
        ))
    })?;
    if seconds > MAX_TTL_SECONDS {
        return Err(StateError::InvalidArgument(format!(
            "metadata {TTL_IN_SECONDS} is {raw}, above the maximum of {MAX_TTL_SECONDS} seconds"
        )));
    }
    Ok(u32::try_from(seconds).ok().filter(|s| *s > 0))
}

/// The unix-ms instant a TTL set at `now_ms` runs out.
pub fn expires_at_ms(now_ms: u64, ttl_seconds: u32) -> u64 {
    now_ms.saturating_add(u64::from(ttl_seconds) * 1000)
}

/// An item is gone from the instant it expires on.
pub fn is_expired(expires_at_ms: Option<u64>, now_ms: u64) -> bool {
    expires_at_ms.is_some_and(|at| at <= now_ms)
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
    fn positive_ttl_is_an_expiry() {
        assert_eq!(parse_ttl(&md(&[("ttlInSeconds", "60")])), Ok(Some(60)));
        assert_eq!(parse_ttl(&md(&[("ttlInSeconds", "+5")])), Ok(Some(5)));
        assert_eq!(
            parse_ttl(&md(&[("ttlInSeconds", "2147483647")])),
            Ok(Some(i32::MAX as u32))
        );
    }

    #[test]
    fn absent_empty_or_non_positive_ttl_persists() {
        for v in ["-1", "0", "-100", ""] {
            assert_eq!(parse_ttl(&md(&[("ttlInSeconds", v)])), Ok(None), "{v}");
        }
        assert_eq!(parse_ttl(&md(&[])), Ok(None));
        assert_eq!(parse_ttl(&md(&[("ttlinseconds", "5")])), Ok(None));
    }

    #[test]
    fn first_occurrence_wins() {
        let m = md(&[("ttlInSeconds", "7"), ("ttlInSeconds", "9")]);
        assert_eq!(parse_ttl(&m), Ok(Some(7)));
    }

    #[test]
    fn non_integer_ttl_names_the_value() {
        for v in ["abc", "1.5", " 5", "1e3", "99999999999999999999"] {
            match parse_ttl(&md(&[("ttlInSeconds", v)])) {
                Err(StateError::InvalidArgument(msg)) => {
                    assert!(msg.contains(v) && msg.contains("ttlInSeconds"), "{msg}")
                }
                other => panic!("{v}: {other:?}"),
            }
        }
    }

    #[test]
    fn ttl_above_int32_is_rejected() {
        let r = parse_ttl(&md(&[("ttlInSeconds", "2147483648")]));
        assert!(matches!(r, Err(StateError::InvalidArgument(m)) if m.contains("2147483648")));
    }

    #[test]
    fn expiry_instant() {
        assert_eq!(expires_at_ms(1_000, 2), 3_000);
        assert_eq!(expires_at_ms(u64::MAX - 1, 2), u64::MAX);
        assert!(!is_expired(None, u64::MAX));
        assert!(!is_expired(Some(3_000), 2_999));
        assert!(is_expired(Some(3_000), 3_000));
    }
}

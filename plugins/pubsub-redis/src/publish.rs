//! Publishing in daprd's layout:
//! `XADD <topic> [MAXLEN ~ n | MINID ~ <now - streamTTL>-1] * data <bytes> metadata <json>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Cmd;

use crate::config::Trim;
use crate::entries::{encode_metadata, DATA_FIELD, METADATA_FIELD};
use crate::error::{PubsubError, Result};

/// The XADD for one message; `now` is only read for `streamTTL`.
pub fn xadd(
    topic: &str,
    trim: Trim,
    data: &[u8],
    metadata: &[(String, String)],
    now: SystemTime,
) -> Result<Cmd> {
    check_topic(topic)?;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(topic);
    match trim {
        Trim::None => {}
        Trim::MaxLen(n) => {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        Trim::MaxAge(age) => {
            // As daprd: entries older than the TTL go, `MINID ~ <ms>-1`.
            let now_ms = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis();
            let min_ms = now_ms.saturating_sub(age.as_millis());
            cmd.arg("MINID").arg("~").arg(format!("{min_ms}-1"));
        }
    }
    cmd.arg("*")
        .arg(DATA_FIELD)
        .arg(data)
        .arg(METADATA_FIELD)
        .arg(encode_metadata(metadata));
    Ok(cmd)
}

pub fn check_topic(topic: &str) -> Result<()> {
    if topic.is_empty() {
        return Err(PubsubError::InvalidArgument(
            "the topic name is empty".into(),
        ));
    }
    Ok(())
}

/// An entry's metadata over the request's: the entry's own values win.
pub fn merged(request: &[(String, String)], entry: &[(String, String)]) -> Vec<(String, String)> {
    let mut all = Vec::with_capacity(request.len() + entry.len());
    all.extend(
        request
            .iter()
            .filter(|(k, _)| !entry.iter().any(|(e, _)| e == k))
            .cloned(),
    );
    all.extend(entry.iter().cloned());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<cursor>".into(),
            })
            .collect()
    }

    fn md(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn daprd_layout() {
        let cmd = xadd(
            "orders",
            Trim::None,
            b"{\"a\":1}",
            &md(&[("k", "v")]),
            UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(
            args(&cmd),
            [
                "XADD",
                "orders",
                "*",
                "data",
                "{\"a\":1}",
                "metadata",
                "{\"k\":\"v\"}"
            ]
        );
        let cmd = xadd("t", Trim::MaxLen(1000), b"x", &[], UNIX_EPOCH).unwrap();
        assert_eq!(
            args(&cmd),
            ["XADD", "t", "MAXLEN", "~", "1000", "*", "data", "x", "metadata", "{}"]
        );
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let cmd = xadd("t", Trim::MaxAge(Duration::from_secs(30)), b"x", &[], now).unwrap();
        assert_eq!(args(&cmd)[2..5], ["MINID", "~", "70000-1"]);
        assert!(matches!(
            xadd("", Trim::None, b"x", &[], now),
            Err(PubsubError::InvalidArgument(_))
        ));
    }

    #[test]
    fn entry_metadata_wins() {
        let all = merged(&md(&[("a", "req"), ("b", "req")]), &md(&[("b", "entry")]));
        assert_eq!(all, md(&[("a", "req"), ("b", "entry")]));
    }
}

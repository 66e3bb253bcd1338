//! Component metadata as daprd reads it, shared by the plugins: keys match case-insensitively
//! (an exact match wins), blank values count as absent, and secrets never reach a log line.

use std::fmt;

/// The value of `name`: the first non-blank entry whose key matches exactly, else the first
/// that matches ignoring ASCII case (daprd decodes metadata case-insensitively).
pub fn lookup<'a>(metadata: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let present = |(_, v): &&(String, String)| !v.trim().is_empty();
    metadata
        .iter()
        .filter(present)
        .find(|(k, _)| k == name)
        .or_else(|| {
            metadata
                .iter()
                .filter(present)
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v.as_str())
}

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::{lookup, Secret};

    #[test]
    fn keys_match_exactly_first_then_in_any_case() {
        let md: Vec<(String, String)> = [("redisHost", "a"), ("REDISHOST", "b"), ("Empty", " ")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(lookup(&md, "REDISHOST"), Some("b"));
        assert_eq!(lookup(&md, "redishost"), Some("a"));
        assert_eq!(lookup(&md, "empty"), None);
        assert_eq!(lookup(&md, "missing"), None);
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "<redacted>");
    }
}

//! How stored keys are prefixed (`keyPrefix` component metadata), as daprd prefixes them.

/// The separator Dapr puts between a key's prefix and the key; keys may not contain it.
const SEPARATOR: &str = "||";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPrefix {
    AppId,
    Name,
    Namespace,
    None,
    Literal(String),
}

impl KeyPrefix {
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        let prefix = match value.map(str::trim) {
            None | Some("") => Self::AppId,
            Some(v) if v.eq_ignore_ascii_case("appid") => Self::AppId,
            Some(v) if v.eq_ignore_ascii_case("name") => Self::Name,
            Some(v) if v.eq_ignore_ascii_case("namespace") => Self::Namespace,
            Some(v) if v.eq_ignore_ascii_case("none") => Self::None,
            Some(v) if v.contains(SEPARATOR) => {
                return Err(format!("keyPrefix '{v}' can't contain '||'"))
            }
            Some(v) => Self::Literal(v.to_owned()),
        };
        Ok(prefix)
    }

    /// The text before `||`, or `None` when keys are stored as given.
    pub fn resolve(&self, app_id: &str, store: &str, namespace: Option<&str>) -> Option<String> {
        match self {
            Self::AppId => Some(app_id.to_owned()),
            Self::Name => Some(store.to_owned()),
            Self::Namespace => Some(match namespace {
                Some(ns) if !ns.is_empty() => format!("{ns}.{app_id}"),
                _ => app_id.to_owned(),
            }),
            Self::None => None,
            Self::Literal(text) => Some(text.clone()),
        }
    }
}

/// `key` as stored under `prefix`; `None` when the key contains the separator.
pub fn stored(prefix: Option<&str>, key: &str) -> Option<String> {
    if key.contains(SEPARATOR) {
        return None;
    }
    Some(match prefix {
        Some(prefix) => format!("{prefix}{SEPARATOR}{key}"),
        None => key.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::{stored, KeyPrefix};

    #[test]
    fn key_prefix_strategies() {
        let resolve =
            |v: Option<&str>| KeyPrefix::parse(v).map(|p| p.resolve("app", "store", Some("ns")));
        assert_eq!(resolve(None), Ok(Some("app".into())));
        assert_eq!(resolve(Some("name")), Ok(Some("store".into())));
        assert_eq!(resolve(Some("namespace")), Ok(Some("ns.app".into())));
        assert_eq!(resolve(Some("none")), Ok(None));
        assert_eq!(resolve(Some("custom")), Ok(Some("custom".into())));
        assert!(resolve(Some("a||b")).is_err());
    }

    #[test]
    fn keys_are_prefixed_and_checked() {
        assert_eq!(stored(Some("app"), "k").as_deref(), Some("app||k"));
        assert_eq!(stored(None, "k").as_deref(), Some("k"));
        assert_eq!(stored(Some("app"), "a||b"), None);
    }
}

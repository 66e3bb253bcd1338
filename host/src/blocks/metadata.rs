//! Dapr's metadata rules shared by the blocks: ordered name/value pairs, overlays, and Go's
//! reading of booleans.

/// Ordered name/value pairs, as Dapr passes component and request metadata.
pub type Metadata = Vec<(String, String)>;

/// The value of `key`, matched exactly.
pub fn value<'a>(metadata: &'a [(String, String)], key: &str) -> Option<&'a str> {
    metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Overlays `overrides` on `base`: same-named entries are replaced, new ones appended.
pub fn merge(base: &mut Metadata, overrides: &[(String, String)]) {
    for (key, value) in overrides {
        match base.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1.clone_from(value),
            None => base.push((key.clone(), value.clone())),
        }
    }
}

/// Go's `strconv.ParseBool`, which daprd uses for flags such as `rawPayload`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Metadata {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn overrides_replace_and_append_in_order() {
        let mut base = pairs(&[("a", "0"), ("b", "0")]);
        merge(&mut base, &pairs(&[("b", "1"), ("c", "1")]));
        assert_eq!(base, pairs(&[("a", "0"), ("b", "1"), ("c", "1")]));
        assert_eq!(value(&base, "c"), Some("1"));
        assert_eq!(value(&base, "C"), None);
    }

    #[test]
    fn booleans_as_go_reads_them() {
        assert_eq!(parse_bool("T"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}

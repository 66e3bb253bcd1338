//! Query strings: plain parameters and Dapr's `metadata.*` per-request metadata.

pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Self { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `?metadata.ttlInSeconds=60` → `("ttlInSeconds", "60")`; the first of repeated keys wins.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (key, value) in &self.pairs {
            if let Some(name) = key.strip_prefix("metadata.") {
                if !name.is_empty() && !out.iter().any(|(k, _)| k == name) {
                    out.push((name.to_owned(), value.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_parameters() {
        let q = Query::parse(Some(
            "metadata.ttlInSeconds=60&consistency=strong&metadata.a=1&metadata.a=2&metadata.=x&",
        ));
        assert_eq!(q.get("consistency"), Some("strong"));
        assert_eq!(
            q.metadata(),
            vec![
                ("ttlInSeconds".into(), "60".into()),
                ("a".into(), "1".into())
            ]
        );
    }
}

//! JSON from apps (request bodies, `/dapr/subscribe` answers) decoded the way daprd's Go
//! `encoding/json` does: field names match case-insensitively, `null` reads as absent,
//! unknown fields are ignored. Values the sidecar passes on stay as their raw JSON text.

use std::collections::HashMap;

use serde_json::value::RawValue;

/// A JSON object whose fields are looked up case-insensitively.
pub struct Object<'a> {
    fields: HashMap<String, &'a RawValue>,
}

impl<'a> Object<'a> {
    /// `null` reads as an empty object, as Go decodes it.
    pub fn parse(raw: &'a RawValue) -> Result<Self, String> {
        if is_null(raw) {
            return Ok(Self {
                fields: HashMap::new(),
            });
        }
        let fields: HashMap<&'a str, &'a RawValue> = serde_json::from_str(raw.get())
            .map_err(|err| format!("expected a JSON object: {err}"))?;
        Ok(Self {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        })
    }

    /// The raw value of a field; `null` counts as missing. `name` is lowercase.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.fields.get(name).copied().filter(|v| !is_null(v))
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, String> {
        self.raw(name)
            .map(|raw| {
                serde_json::from_str(raw.get())
                    .map_err(|_| format!("field '{name}' must be a string"))
            })
            .transpose()
    }

    /// A field decoded as `T` (a bool, a number, ...).
    pub fn value<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>, String> {
        self.raw(name)
            .map(|raw| {
                serde_json::from_str(raw.get())
                    .map_err(|err| format!("field '{name}' has the wrong type: {err}"))
            })
            .transpose()
    }

    pub fn object(&self, name: &str) -> Result<Object<'a>, String> {
        match self.raw(name) {
            Some(raw) => Object::parse(raw).map_err(|err| format!("field '{name}': {err}")),
            None => Ok(Object {
                fields: HashMap::new(),
            }),
        }
    }

    /// A `{"name": "value"}` map, in a stable order.
    pub fn string_map(&self, name: &str) -> Result<Vec<(String, String)>, String> {
        let Some(raw) = self.raw(name) else {
            return Ok(Vec::new());
        };
        let map: std::collections::BTreeMap<String, String> = serde_json::from_str(raw.get())
            .map_err(|_| format!("field '{name}' must be an object of string values"))?;
        Ok(map.into_iter().collect())
    }

    pub fn array(&self, name: &str) -> Result<Vec<&'a RawValue>, String> {
        match self.raw(name) {
            Some(raw) => serde_json::from_str(raw.get())
                .map_err(|_| format!("field '{name}' must be an array")),
            None => Ok(Vec::new()),
        }
    }
}

pub fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fields_match_in_any_case() {
        let raw: &RawValue = serde_json::from_str(
            r#"{"Key":"a","VALUE":{"x": [1, 2]},"etag":null,"metadata":{"ttlInSeconds":"5"}}"#,
        )
        .unwrap();
        let object = Object::parse(raw).unwrap();
        assert_eq!(object.string("key").unwrap().as_deref(), Some("a"));
        assert_eq!(object.raw("value").unwrap().get(), r#"{"x": [1, 2]}"#);
        assert_eq!(object.string("etag").unwrap(), None);
        assert_eq!(
            object.string_map("metadata").unwrap(),
            vec![("ttlInSeconds".to_owned(), "5".to_owned())]
        );
        assert!(object.string("value").is_err());
    }
}

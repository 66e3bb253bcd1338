//! The `Component` kind: which plugin serves a named component, and with which settings.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, located, ResourceError, Source};

/// Dapr's default `spec.initTimeout`.
const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub component_type: String,
    pub version: String,
    pub metadata: Vec<MetadataItem>,
    pub init_timeout: Duration,
    pub ignore_errors: bool,
    /// App ids allowed to load it; empty means all.
    pub scopes: Vec<String>,
    /// Secret store that resolves `secretKeyRef` values.
    pub secret_store: Option<String>,
    pub source: Source,
}

impl Component {
    pub fn category(&self) -> &str {
        self.component_type
            .split_once('.')
            .map_or(self.component_type.as_str(), |(category, _)| category)
    }

    pub fn in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == app_id)
    }
}

#[derive(Debug, Clone)]
pub struct MetadataItem {
    pub name: String,
    pub value: MetadataValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataValue {
    Plain(String),
    SecretKeyRef { name: String, key: String },
    EnvRef(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComponentDoc {
    metadata: ObjectMeta,
    spec: Spec,
    #[serde(default)]
    scopes: Vec<String>,
    auth: Option<Auth>,
}

#[derive(Deserialize)]
struct ObjectMeta {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Auth {
    secret_store: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(rename = "type")]
    component_type: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    metadata: Option<Vec<RawMetadataItem>>,
    init_timeout: Option<String>,
    #[serde(default)]
    ignore_errors: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadataItem {
    name: String,
    value: Option<serde_yaml::Value>,
    secret_key_ref: Option<SecretKeyRef>,
    env_ref: Option<String>,
}

#[derive(Deserialize)]
struct SecretKeyRef {
    name: String,
    #[serde(default)]
    key: String,
}

/// Parses a document whose `kind` is `Component`.
pub(super) fn parse(text: &str, source: &Source) -> Result<Component, ResourceError> {
    let doc: ComponentDoc =
        serde_yaml::from_str(text).map_err(|err| located(source, "invalid Component", &err))?;
    let name = doc.metadata.name;
    if name.trim().is_empty() {
        return Err(ResourceError::at(source, "metadata.name is empty"));
    }
    let spec = doc.spec;
    let init_timeout = match &spec.init_timeout {
        None => DEFAULT_INIT_TIMEOUT,
        Some(text) => duration::parse(text).ok_or_else(|| {
            ResourceError::at(
                source,
                format!(
                    "component '{name}': spec.initTimeout '{text}' is not a duration \
                     (write e.g. 5s, 500ms, 1m)"
                ),
            )
        })?,
    };
    let metadata = spec
        .metadata
        .unwrap_or_default()
        .into_iter()
        .map(|item| metadata_item(item, &name, source))
        .collect::<Result<_, _>>()?;
    Ok(Component {
        version: if spec.version.is_empty() {
            "v1".to_owned()
        } else {
            spec.version
        },
        component_type: spec.component_type,
        metadata,
        init_timeout,
        ignore_errors: spec.ignore_errors,
        scopes: doc.scopes,
        secret_store: doc.auth.and_then(|a| a.secret_store),
        source: source.clone(),
        name,
    })
}

fn metadata_item(
    item: RawMetadataItem,
    component: &str,
    source: &Source,
) -> Result<MetadataItem, ResourceError> {
    let value = match (item.value, item.secret_key_ref, item.env_ref) {
        (Some(value), _, _) => MetadataValue::Plain(scalar_to_string(value)),
        (None, Some(secret), _) => MetadataValue::SecretKeyRef {
            key: if secret.key.is_empty() {
                secret.name.clone()
            } else {
                secret.key
            },
            name: secret.name,
        },
        (None, None, Some(env)) => MetadataValue::EnvRef(env),
        (None, None, None) => MetadataValue::Plain(String::new()),
    };
    if item.name.is_empty() {
        return Err(ResourceError::at(
            source,
            format!("component '{component}': a metadata item has an empty name"),
        ));
    }
    Ok(MetadataItem {
        name: item.name,
        value,
    })
}

/// Dapr reads any scalar; non-strings are JSON-encoded (so `true` → "true", `5` → "5").
fn scalar_to_string(value: serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => s,
        serde_yaml::Value::Null => String::new(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        other => serde_json::to_string(&other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::PathBuf;

    fn source() -> Source {
        Source {
            file: PathBuf::from("c.yaml"),
            line: 10,
        }
    }

    #[test]
    fn full_component() {
        let text = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: store\n\
            auth:\n  secretStore: vault\nspec:\n  type: state.redis\n  version: v1\n  \
            initTimeout: 1m\n  ignoreErrors: true\n  metadata:\n  - name: redisHost\n    \
            value: localhost:6379\n  - name: db\n    value: 3\n  - name: password\n    \
            secretKeyRef:\n      name: redis\n  - name: flag\n    envRef: FLAG\n\
            scopes: [a, b]\n";
        let c = parse(text, &source()).unwrap();
        assert_eq!(c.name, "store");
        assert_eq!(c.category(), "state");
        assert_eq!(c.init_timeout, Duration::from_secs(60));
        assert!(c.ignore_errors && c.in_scope("a") && !c.in_scope("z"));
        assert_eq!(c.secret_store.as_deref(), Some("vault"));
        assert_eq!(c.metadata[1].value, MetadataValue::Plain("3".into()));
        assert_eq!(
            c.metadata[2].value,
            MetadataValue::SecretKeyRef {
                name: "redis".into(),
                key: "redis".into()
            }
        );
        assert_eq!(c.metadata[3].value, MetadataValue::EnvRef("FLAG".into()));
    }

    #[test]
    fn errors_are_placed_in_the_file() {
        let err = parse(
            "kind: Component\nmetadata:\n  name: x\nspec: {}\n",
            &source(),
        )
        .unwrap_err();
        assert_eq!(err.line, 13, "{err}");
        assert!(err.message.contains("type"), "{err}");
        let err = super::super::parse_document("kind: Component\n  bad: [\n", &source())
            .err()
            .unwrap();
        assert!(err.line >= 10, "{err}");
    }
}

//! Dapr `Component` resources written as YAML by the tests.

/// One `kind: Component` document.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub component_type: String,
    pub version: String,
    pub metadata: Vec<(String, String)>,
    /// `spec.metadata` entries whose value comes from the sidecar's environment
    /// (`envRef: VAR`), as (name, variable).
    pub env_refs: Vec<(String, String)>,
    pub scopes: Vec<String>,
    pub ignore_errors: bool,
}

impl Component {
    /// `name` of type `component_type` (e.g. `state.in-memory`), version `v1`, no metadata.
    pub fn new(name: &str, component_type: &str) -> Self {
        Self {
            name: name.to_owned(),
            component_type: component_type.to_owned(),
            version: "v1".to_owned(),
            metadata: Vec::new(),
            env_refs: Vec::new(),
            scopes: Vec::new(),
            ignore_errors: false,
        }
    }

    /// Adds a `spec.metadata` entry.
    pub fn meta(mut self, name: &str, value: &str) -> Self {
        self.metadata.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a `spec.metadata` entry read from the sidecar's environment variable `var`
    /// (`envRef`).
    pub fn env_ref(mut self, name: &str, var: &str) -> Self {
        self.env_refs.push((name.to_owned(), var.to_owned()));
        self
    }

    /// Sets `scopes`.
    pub fn scopes(mut self, app_ids: &[&str]) -> Self {
        self.scopes = app_ids.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Sets `spec.ignoreErrors: true`.
    pub fn ignore_errors(mut self) -> Self {
        self.ignore_errors = true;
        self
    }

    /// The YAML document (without a leading `---`). Strings are written as JSON strings, which
    /// YAML reads as double-quoted scalars, so paths and odd characters need no care.
    pub fn to_yaml(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let mut yaml = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {}\nspec:\n  type: {}\n  version: {}\n",
            q(&self.name),
            q(&self.component_type),
            q(&self.version),
        );
        if self.ignore_errors {
            yaml.push_str("  ignoreErrors: true\n");
        }
        if self.metadata.is_empty() && self.env_refs.is_empty() {
            yaml.push_str("  metadata: []\n");
        } else {
            yaml.push_str("  metadata:\n");
            for (name, value) in &self.metadata {
                yaml.push_str(&format!("  - name: {}\n    value: {}\n", q(name), q(value)));
            }
            for (name, var) in &self.env_refs {
                yaml.push_str(&format!("  - name: {}\n    envRef: {}\n", q(name), q(var)));
            }
        }
        if !self.scopes.is_empty() {
            yaml.push_str("scopes:\n");
            for scope in &self.scopes {
                yaml.push_str(&format!("- {}\n", q(scope)));
            }
        }
        yaml
    }
}

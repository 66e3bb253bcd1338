//! Turns `Component` resources into running components: finds each one's plugin, resolves
//! its metadata, builds its sandbox and instance pool, and calls `init`.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Engine;

use crate::blocks::pubsub::PubSub;
use crate::blocks::state::{KeyPrefix, StateStore};
use crate::plugins::bindings::pubsub::PubsubPlugin;
use crate::plugins::bindings::state::StatePlugin;
use crate::plugins::catalog::{Catalog, Plugin, PluginKind};
use crate::plugins::pool::{Limits, Pool};
use crate::plugins::sandbox::SandboxPolicy;
use crate::resources::{Component, MetadataValue};

/// What `/v1.0/metadata` shows for a component.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// A component that failed to start but was allowed to (`ignoreErrors: true`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedComponent {
    pub name: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub error: String,
}

/// The running components, by block. Replaced as a whole, never mutated in place.
#[derive(Default)]
pub struct Registry {
    pub state: BTreeMap<String, Arc<StateStore>>,
    pub pubsub: BTreeMap<String, Arc<PubSub>>,
    pub components: Vec<ComponentInfo>,
    pub failed: Vec<FailedComponent>,
}

impl Registry {
    /// Closes every component once its calls in flight have finished.
    pub async fn close(&self) {
        for store in self.state.values() {
            store.close().await;
        }
        for pubsub in self.pubsub.values() {
            pubsub.close().await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("component '{component}' ({source_location}): {message}")]
pub struct ComponentError {
    pub component: String,
    pub source_location: String,
    pub message: String,
}

pub struct Loader<'a> {
    pub engine: &'a Engine,
    pub catalog: &'a Catalog,
    pub app_id: &'a str,
    pub namespace: Option<&'a str>,
    pub limits: &'a Limits,
}

impl Loader<'_> {
    /// Starts every component in scope. A failure is fatal unless the component says
    /// `ignoreErrors: true` (Dapr's rule), in which case it is logged and left out.
    pub async fn load(&self, components: &[Component]) -> Result<Registry, ComponentError> {
        let mut registry = Registry::default();
        let mut seen = BTreeMap::new();
        for component in components {
            if !component.in_scope(self.app_id) {
                tracing::debug!(component = %component.name, "not in scope for this app id, skipped");
                continue;
            }
            if let Some(first) = seen.insert(component.name.clone(), component.source.to_string()) {
                return Err(error(
                    component,
                    format!("the name is already used by the component at {first}"),
                ));
            }
            let started = std::time::Instant::now();
            match self.start(component, &mut registry).await {
                Ok(()) => tracing::info!(
                    component = %component.name,
                    component_type = %component.component_type,
                    elapsed = ?started.elapsed(),
                    "component initialised"
                ),
                Err(err) if component.ignore_errors => {
                    tracing::warn!(
                        component = %component.name,
                        "component failed to initialise and is left out (ignoreErrors: true): {err}"
                    );
                    registry.failed.push(FailedComponent {
                        name: component.name.clone(),
                        component_type: component.component_type.clone(),
                        error: err.message,
                    });
                }
                Err(err) => return Err(err),
            }
        }
        Ok(registry)
    }

    async fn start(
        &self,
        component: &Component,
        registry: &mut Registry,
    ) -> Result<(), ComponentError> {
        let plugin = self.plugin_for(component)?;
        let mut metadata = self.resolve_metadata(component)?;
        let limits = take_host_settings(&mut metadata, self.limits)
            .map_err(|message| error(component, message))?;
        let limits = Limits {
            init_timeout: component.init_timeout,
            ..limits
        };
        let policy = SandboxPolicy::from_metadata(&plugin.info, &mut metadata)
            .await
            .map_err(|err| error(component, err.to_string()))?;
        let name: Arc<str> = Arc::from(component.name.as_str());
        let info = ComponentInfo {
            name: component.name.clone(),
            component_type: component.component_type.clone(),
            version: component.version.clone(),
            capabilities: capabilities(plugin),
        };
        match plugin.kind {
            PluginKind::State => {
                let key_prefix = KeyPrefix::parse(
                    metadata
                        .iter()
                        .find(|(k, _)| k == "keyPrefix")
                        .map(|(_, v)| v.as_str()),
                )
                .map_err(|m| error(component, m))?;
                let pool =
                    Pool::<StatePlugin>::start(name, self.engine, plugin, policy, metadata, limits)
                        .await
                        .map_err(|err| {
                            error(component, format!("plugin {}: {err}", plugin.file_name))
                        })?;
                let store = StateStore::new(
                    component.name.clone(),
                    pool,
                    plugin.info.features.clone(),
                    &key_prefix,
                    self.app_id,
                    self.namespace,
                );
                registry
                    .state
                    .insert(component.name.clone(), Arc::new(store));
            }
            PluginKind::PubSub => {
                // daprd's rule: the consumer group defaults to the app id.
                if !metadata.iter().any(|(k, _)| k == "consumerID") {
                    metadata.push(("consumerID".to_owned(), self.app_id.to_owned()));
                }
                let pool = Pool::<PubsubPlugin>::start(
                    name,
                    self.engine,
                    plugin,
                    policy,
                    metadata.clone(),
                    limits,
                )
                .await
                .map_err(|err| error(component, format!("plugin {}: {err}", plugin.file_name)))?;
                let pubsub = PubSub::new(
                    component.name.clone(),
                    pool,
                    plugin.info.features.clone(),
                    &metadata,
                );
                registry
                    .pubsub
                    .insert(component.name.clone(), Arc::new(pubsub));
            }
            other => {
                return Err(error(
                    component,
                    format!(
                        "plugin {} serves the {} block, which this version of blockhost \
                         cannot host yet",
                        plugin.file_name,
                        other.interface()
                    ),
                ))
            }
        }
        registry.components.push(info);
        Ok(())
    }

    fn plugin_for(&self, component: &Component) -> Result<&Arc<Plugin>, ComponentError> {
        let plugin = self
            .catalog
            .find(&component.component_type, &component.version)
            .ok_or_else(|| {
                let available = self.catalog.available();
                let listed = if available.is_empty() {
                    "none (is --plugins-path right, and were the plugins built?)".to_owned()
                } else {
                    available.join(", ")
                };
                error(
                    component,
                    format!(
                        "no plugin provides type {}@{}; available types: {listed}",
                        component.component_type, component.version
                    ),
                )
            })?;
        let expected = category_kind(component.category());
        if expected != Some(plugin.kind) {
            return Err(error(
                component,
                format!(
                    "plugin {} serves the {} block, but a '{}' component needs another",
                    plugin.file_name,
                    plugin.kind.interface(),
                    component.category()
                ),
            ));
        }
        Ok(plugin)
    }

    /// Plain values with template tags filled in, and `envRef` values read from the
    /// environment. `secretKeyRef` needs a secret store, which this host cannot run yet.
    fn resolve_metadata(
        &self,
        component: &Component,
    ) -> Result<Vec<(String, String)>, ComponentError> {
        component
            .metadata
            .iter()
            .map(|item| {
                let value = match &item.value {
                    MetadataValue::Plain(text) => self.fill_template(text),
                    MetadataValue::EnvRef(var) => {
                        if var.starts_with("DAPR_") || var == "APP_API_TOKEN" {
                            return Err(error(
                                component,
                                format!("metadata '{}': envRef may not read {var}", item.name),
                            ));
                        }
                        std::env::var(var).unwrap_or_default()
                    }
                    MetadataValue::SecretKeyRef { name, .. } => {
                        return Err(error(
                            component,
                            format!(
                                "metadata '{}' uses secretKeyRef (secret '{name}'), but this \
                                 version of blockhost has no secret stores; use a plain value \
                                 or envRef for now",
                                item.name
                            ),
                        ))
                    }
                };
                Ok((item.name.clone(), value))
            })
            .collect()
    }

    fn fill_template(&self, text: &str) -> String {
        if !text.contains('{') {
            return text.to_owned();
        }
        let namespaced = match self.namespace {
            Some(ns) => format!("{ns}.{}", self.app_id),
            None => self.app_id.to_owned(),
        };
        let mut out = text
            .replace("{appID}", self.app_id)
            .replace("{namespace}", &namespaced);
        while out.contains("{uuid}") {
            out = out.replacen("{uuid}", &uuid::Uuid::new_v4().to_string(), 1);
        }
        out
    }
}

/// Metadata keys under this prefix configure the host, per component, and are not passed
/// to the plugin.
const HOST_SETTING_PREFIX: &str = "blockhost.";

/// Applies (and removes) the host's own per-component settings:
/// `blockhost.callTimeout` (a duration), `blockhost.memoryLimitMb` (at most the sidecar's
/// `--plugin-memory-limit-mb`, which sizes the engine's memory slots) and
/// `blockhost.maxInstances`.
fn take_host_settings(
    metadata: &mut Vec<(String, String)>,
    defaults: &Limits,
) -> Result<Limits, String> {
    let mut limits = defaults.clone();
    let mut failure = None;
    metadata.retain(|(key, value)| {
        let Some(setting) = key.strip_prefix(HOST_SETTING_PREFIX) else {
            return true;
        };
        let applied = match setting {
            "callTimeout" => crate::resources::duration::parse(value)
                .map(|timeout| limits.call_timeout = timeout)
                .ok_or_else(|| format!("{key} '{value}' is not a duration (write e.g. 2s)")),
            "memoryLimitMb" => match value.parse::<usize>() {
                Ok(mb) if mb > 0 && mb << 20 <= defaults.memory_bytes => {
                    limits.memory_bytes = mb << 20;
                    Ok(())
                }
                _ => Err(format!(
                    "{key} '{value}' must be a whole number of MiB between 1 and {}                      (raise --plugin-memory-limit-mb for more)",
                    defaults.memory_bytes >> 20
                )),
            },
            "maxInstances" => match value.parse::<u32>() {
                Ok(n) if n > 0 => {
                    limits.max_instances_override = Some(n);
                    Ok(())
                }
                _ => Err(format!("{key} '{value}' must be a positive whole number")),
            },
            _ => Err(format!(
                "unknown host setting {key}: use blockhost.callTimeout,                  blockhost.memoryLimitMb or blockhost.maxInstances"
            )),
        };
        if let Err(message) = applied {
            failure.get_or_insert(message);
        }
        false
    });
    failure.map_or(Ok(limits), Err)
}

fn category_kind(category: &str) -> Option<PluginKind> {
    Some(match category {
        "state" => PluginKind::State,
        "pubsub" => PluginKind::PubSub,
        "secretstores" => PluginKind::SecretStore,
        "crypto" => PluginKind::Crypto,
        "lock" => PluginKind::Lock,
        "configuration" => PluginKind::Configuration,
        "bindings" => PluginKind::OutputBinding,
        "nameresolution" => PluginKind::NameResolution,
        _ => return None,
    })
}

/// Feature strings as Dapr reports them; state stores with ETAG and TRANSACTIONAL can
/// serve actors, and daprd lists that as `ACTOR`.
fn capabilities(plugin: &Plugin) -> Vec<String> {
    let mut features = plugin.info.features.clone();
    let has = |f: &str| plugin.info.features.iter().any(|x| x == f);
    if plugin.kind == PluginKind::State && has("ETAG") && has("TRANSACTIONAL") {
        features.push("ACTOR".to_owned());
    }
    features
}

fn error(component: &Component, message: impl Into<String>) -> ComponentError {
    ComponentError {
        component: component.name.clone(),
        source_location: component.source.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> (Result<Limits, String>, Vec<(String, String)>) {
        let mut metadata: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let limits = take_host_settings(&mut metadata, &Limits::default());
        (limits, metadata)
    }

    #[test]
    fn host_settings_are_applied_and_hidden_from_the_plugin() {
        let (limits, rest) = settings(&[
            ("redisHost", "x"),
            ("blockhost.callTimeout", "250ms"),
            ("blockhost.memoryLimitMb", "16"),
            ("blockhost.maxInstances", "2"),
        ]);
        let limits = limits.unwrap();
        assert_eq!(limits.call_timeout, std::time::Duration::from_millis(250));
        assert_eq!(limits.memory_bytes, 16 << 20);
        assert_eq!(limits.max_instances_override, Some(2));
        assert_eq!(rest, vec![("redisHost".to_owned(), "x".to_owned())]);
    }

    #[test]
    fn bad_host_settings_are_explained() {
        assert!(settings(&[("blockhost.memoryLimitMb", "100000")])
            .0
            .unwrap_err()
            .contains("--plugin-memory-limit-mb"));
        assert!(settings(&[("blockhost.nope", "1")])
            .0
            .unwrap_err()
            .contains("unknown host setting"));
        assert!(settings(&[("blockhost.callTimeout", "soon")]).0.is_err());
    }
}

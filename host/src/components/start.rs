//! Turns a `Component` resource into a running component: finds its plugin, checks the
//! block, resolves its metadata, builds its sandbox, and hands over to the block's start.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::Engine;

use super::blocks::BlockEntry;
use super::settings::{resolve_metadata, take_host_settings};
use super::{ComponentInfo, Components, FailedComponent};
use crate::blocks::{Metadata, Running};
use crate::plugins::catalog::{Catalog, Plugin};
use crate::plugins::pool::Limits;
use crate::plugins::sandbox::SandboxPolicy;
use crate::resources::Component;

#[derive(Debug, thiserror::Error)]
#[error("component '{component}' ({source_location}): {message}")]
pub struct ComponentError {
    pub component: String,
    pub source_location: String,
    pub message: String,
}

/// What starting a component needs from the sidecar.
pub struct Starter {
    pub engine: Engine,
    pub catalog: Arc<Catalog>,
    pub app_id: String,
    pub namespace: Option<String>,
    pub limits: Limits,
}

/// A component on its way up, handed to its block's start.
pub(super) struct Prepared<'a> {
    pub starter: &'a Starter,
    pub name: &'a str,
    pub plugin: &'a Plugin,
    pub metadata: Metadata,
    pub policy: SandboxPolicy,
    pub limits: Limits,
}

pub(super) struct Started {
    pub running: Arc<dyn Running>,
    pub capabilities: Vec<String>,
}

pub(super) struct StartedComponent {
    pub info: ComponentInfo,
    pub running: Arc<dyn Running>,
}

impl Starter {
    /// Starts every component in scope into `components`, secret stores first. A failure is
    /// fatal unless the component says `ignoreErrors: true` (Dapr's rule), in which case it
    /// is logged, left out and listed as failed.
    pub async fn start_all(
        &self,
        resources: &[Component],
        components: &Components,
    ) -> Result<(), ComponentError> {
        let mut seen = BTreeMap::new();
        let mut ordered = Vec::new();
        for component in resources {
            if !component.in_scope(&self.app_id) {
                tracing::debug!(component = %component.name, "not in scope for this app id, skipped");
                continue;
            }
            if let Some(first) = seen.insert(component.name.clone(), component.source.to_string()) {
                return Err(error(
                    component,
                    format!("the name is already used by the component at {first}"),
                ));
            }
            let phase = self
                .catalog
                .find(&component.component_type, &component.version)
                .and_then(|plugin| BlockEntry::for_interface(plugin.interface))
                .map(|block| block.phase);
            ordered.push((phase, component));
        }
        // Stable: within a phase, components start in the order they were read.
        ordered.sort_by_key(|(phase, _)| *phase);
        for (_, component) in ordered {
            let started = std::time::Instant::now();
            match components.start(self, component).await {
                Ok(generation) => tracing::info!(
                    component = %component.name,
                    component_type = %component.component_type,
                    generation,
                    elapsed = ?started.elapsed(),
                    "component initialised"
                ),
                Err(err) if component.ignore_errors => {
                    tracing::warn!(
                        component = %component.name,
                        "component failed to initialise and is left out (ignoreErrors: true): {err}"
                    );
                    components.record_failure(FailedComponent {
                        name: component.name.clone(),
                        component_type: component.component_type.clone(),
                        error: err.message,
                    });
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Starts one component; nothing is registered here.
    pub(super) async fn start(
        &self,
        component: &Component,
    ) -> Result<StartedComponent, ComponentError> {
        let (plugin, block) = self.plugin_for(component)?;
        let mut metadata = resolve_metadata(component, &self.app_id, self.namespace.as_deref())
            .map_err(|message| error(component, message))?;
        let limits = take_host_settings(&mut metadata, &self.limits)
            .map_err(|message| error(component, message))?;
        let limits = Limits {
            init_timeout: component.init_timeout,
            ..limits
        };
        let policy = SandboxPolicy::from_metadata(&plugin.info, &mut metadata)
            .await
            .map_err(|err| error(component, err.to_string()))?;
        let prepared = Prepared {
            starter: self,
            name: &component.name,
            plugin,
            metadata,
            policy,
            limits,
        };
        let started = (block.start)(prepared)
            .await
            .map_err(|message| error(component, message))?;
        Ok(StartedComponent {
            info: ComponentInfo {
                name: component.name.clone(),
                component_type: component.component_type.clone(),
                version: component.version.clone(),
                capabilities: started.capabilities,
            },
            running: started.running,
        })
    }

    fn plugin_for(
        &self,
        component: &Component,
    ) -> Result<(&Arc<Plugin>, &'static BlockEntry), ComponentError> {
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
        let block = BlockEntry::for_interface(plugin.interface)
            .filter(|block| block.category == component.category())
            .ok_or_else(|| {
                error(
                    component,
                    format!(
                        "plugin {} serves the {} block, but a '{}' component needs another",
                        plugin.file_name,
                        plugin.interface,
                        component.category()
                    ),
                )
            })?;
        Ok((plugin, block))
    }
}

fn error(component: &Component, message: impl Into<String>) -> ComponentError {
    ComponentError {
        component: component.name.clone(),
        source_location: component.source.to_string(),
        message: message.into(),
    }
}

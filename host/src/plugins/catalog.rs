//! The plugin directory: every `*.wasm` compiled (or loaded from cache), asked `describe()`,
//! and registered by component type and version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{InstancePre, Linker};
use wasmtime::Engine;

use super::bindings::{base, PluginInfo, PACKAGE, PACKAGE_VERSION};
use super::cache::{CompileCache, Origin};
use super::instance::{arm_deadline, new_store, PluginState};

/// `blockhost:plugin/state-store@0.2.0` → `state-store`.
fn exported_interface(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    rest.split('@').next()
}

/// A compiled plugin, ready to be instantiated for any number of components.
pub struct Plugin {
    pub file: PathBuf,
    pub file_name: String,
    /// The block interface it exports (`state-store`, `pubsub`).
    pub interface: &'static str,
    pub info: PluginInfo,
    pub instance_pre: InstancePre<PluginState>,
}

impl Plugin {
    /// `state.in-memory@v1`
    pub fn type_key(&self) -> String {
        type_key(&self.info.component_type, &self.info.version)
    }
}

pub fn type_key(component_type: &str, version: &str) -> String {
    format!("{component_type}@{version}")
}

/// A plugin file that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub file_name: String,
    pub reason: String,
}

#[derive(Default)]
pub struct Catalog {
    by_type: BTreeMap<String, Arc<Plugin>>,
    pub skipped: Vec<Skipped>,
}

impl Catalog {
    pub fn find(&self, component_type: &str, version: &str) -> Option<&Arc<Plugin>> {
        self.by_type.get(&type_key(component_type, version))
    }

    /// `type@version` of every loaded plugin, sorted.
    pub fn available(&self) -> Vec<String> {
        self.by_type.keys().cloned().collect()
    }

    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.by_type.values()
    }

    /// Loads every `*.wasm` in `dir` that serves one of the `hosted` block interfaces. A
    /// file that cannot be used is logged with the reason and skipped; only an unreadable
    /// directory is an error.
    pub async fn load_dir(
        engine: &Engine,
        linker: &Linker<PluginState>,
        cache: &CompileCache,
        dir: &Path,
        hosted: &[&'static str],
    ) -> std::io::Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "wasm") && p.is_file())
            .collect();
        files.sort();

        let mut catalog = Catalog::default();
        for file in files {
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match load_plugin(engine, linker, cache, &file, &file_name, hosted).await {
                Ok(plugin) => catalog.register(plugin),
                Err(reason) => {
                    tracing::error!(
                        plugin = %file_name,
                        path = %file.display(),
                        "skipping plugin: {reason}"
                    );
                    catalog.skipped.push(Skipped { file_name, reason });
                }
            }
        }
        Ok(catalog)
    }

    fn register(&mut self, plugin: Plugin) {
        let key = plugin.type_key();
        if let Some(existing) = self.by_type.get(&key) {
            let reason = format!(
                "{key} is already provided by {}; remove one of the two files",
                existing.file_name
            );
            tracing::error!(plugin = %plugin.file_name, "skipping plugin: {reason}");
            self.skipped.push(Skipped {
                file_name: plugin.file_name,
                reason,
            });
            return;
        }
        tracing::info!(
            plugin = %plugin.file_name,
            component_type = %key,
            block = plugin.interface,
            features = ?plugin.info.features,
            "plugin registered"
        );
        self.by_type.insert(key, Arc::new(plugin));
    }
}

const DESCRIBE_BUDGET: Duration = Duration::from_secs(5);

async fn load_plugin(
    engine: &Engine,
    linker: &Linker<PluginState>,
    cache: &CompileCache,
    file: &Path,
    file_name: &str,
    hosted: &[&'static str],
) -> Result<Plugin, String> {
    let started = std::time::Instant::now();
    let (component, origin) = cache.load(engine, file).map_err(|e| e.to_string())?;
    let message = match origin {
        Origin::Cache => "plugin loaded from cache",
        Origin::Compiled => "plugin compiled",
    };
    tracing::debug!(plugin = %file_name, elapsed = ?started.elapsed(), "{message}");

    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if let Some(other) = exports.iter().find_map(|name| foreign_version(name)) {
        return Err(format!(
            "it was built against {PACKAGE}@{other}, and this sidecar speaks \
             {PACKAGE}@{PACKAGE_VERSION}: rebuild the plugin against the wit/ directory of \
             this sidecar's version (wit/README.md lists what changed)"
        ));
    }
    let interfaces: Vec<&str> = exports
        .iter()
        .filter_map(|name| exported_interface(name))
        .filter(|interface| *interface != "lifecycle")
        .collect();
    let interface = hosted
        .iter()
        .copied()
        .find(|hosted| interfaces.contains(hosted))
        .ok_or_else(|| match interfaces.first() {
            Some(other) => format!(
                "it serves the {other} block, which this version of blockhost cannot host \
                 yet (it hosts: {})",
                hosted.join(", ")
            ),
            None => format!(
                "it exports no blockhost plugin interface (expected one world of the \
                 {PACKAGE} package, e.g. state-plugin)"
            ),
        })?;
    let instance_pre = linker.instantiate_pre(&component).map_err(|err| {
        format!("it needs imports the sandbox does not provide (plugins may import only WASI 0.2 and {PACKAGE}/log): {err:#}")
    })?;
    let info = describe(engine, &instance_pre, file_name)
        .await
        .map_err(|err| format!("describe() failed: {err:#}"))?;
    Ok(Plugin {
        file: file.to_owned(),
        file_name: file_name.to_owned(),
        interface,
        info,
        instance_pre,
    })
}

/// The version of a `blockhost:plugin/<interface>@<version>` export, when it is not ours.
fn foreign_version(export: &str) -> Option<&str> {
    let rest = export.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    let (_, version) = rest.split_once('@')?;
    (version != PACKAGE_VERSION).then_some(version)
}

/// Runs `describe()` in a store with no grants at all.
async fn describe(
    engine: &Engine,
    instance_pre: &InstancePre<PluginState>,
    file_name: &str,
) -> wasmtime::Result<PluginInfo> {
    let indices = base::exports::blockhost::plugin::lifecycle::GuestIndices::new(instance_pre)?;
    let wasi = wasmtime_wasi::WasiCtxBuilder::new().build();
    let mut store = new_store(engine, Arc::from(file_name), wasi, 64 << 20);
    arm_deadline(&mut store, DESCRIBE_BUDGET);
    let instance = instance_pre.instantiate_async(&mut store).await?;
    let lifecycle = indices.load(&mut store, &instance)?;
    lifecycle.call_describe(&mut store).await
}

/// The linker every plugin is instantiated through: WASI 0.2 and the `log` import.
pub fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    base::blockhost::plugin::log::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        &mut linker,
        |state| state,
    )?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::{foreign_version, PACKAGE_VERSION};

    #[test]
    fn exports_of_another_contract_version_are_recognised() {
        assert_eq!(
            foreign_version("blockhost:plugin/pubsub@0.1.0"),
            Some("0.1.0")
        );
        let ours = format!("blockhost:plugin/pubsub@{PACKAGE_VERSION}");
        assert_eq!(foreign_version(&ours), None);
        assert_eq!(foreign_version("wasi:http/incoming-handler@0.2.0"), None);
        assert_eq!(foreign_version("blockhost:plugin/pubsub"), None);
    }
}

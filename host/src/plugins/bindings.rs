//! Host-side bindings generated from `wit/`, the single source of truth for the plugin
//! contract: one `bindgen!` per plugin world. `base-plugin` (log, types, lifecycle) is
//! generated once and reused by the block worlds through `with:`. Nothing generated here
//! leaves `plugins/`: block adapters (`plugins/state.rs`, ...) convert to the blocks' types.

use tracing::{debug, error, info, trace, warn};

use super::instance::PluginState;
use crate::blocks::{BackendError, ErrorKind};

pub mod base {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "base-plugin",
        imports: { default: async },
        exports: { default: async },
    });
}

pub mod state {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "state-plugin",
        imports: { default: async },
        exports: { default: async },
        with: {
            "blockhost:plugin/types": super::base::blockhost::plugin::types,
            "blockhost:plugin/log": super::base::blockhost::plugin::log,
        },
    });
}

pub mod pubsub {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "pubsub-plugin",
        imports: { default: async },
        exports: { default: async },
        with: {
            "blockhost:plugin/types": super::base::blockhost::plugin::types,
            "blockhost:plugin/log": super::base::blockhost::plugin::log,
        },
    });
}

pub use base::blockhost::plugin::log::Level;
pub use base::blockhost::plugin::types::Error as PluginError;
pub use base::exports::blockhost::plugin::lifecycle::PluginInfo;

/// The package every plugin interface lives in; exports are matched against it to learn a
/// plugin's world.
pub const PACKAGE: &str = "blockhost:plugin";
pub const PACKAGE_VERSION: &str = "0.2.0";

/// Log lines written by plugins carry this target, apart from the host's own.
const PLUGIN_LOG_TARGET: &str = "blockhost::plugin";

impl base::blockhost::plugin::types::Host for PluginState {}

impl base::blockhost::plugin::log::Host for PluginState {
    async fn log(&mut self, level: Level, message: String) {
        let component = &*self.component;
        match level {
            Level::Trace => trace!(target: PLUGIN_LOG_TARGET, component, "{message}"),
            Level::Debug => debug!(target: PLUGIN_LOG_TARGET, component, "{message}"),
            Level::Info => info!(target: PLUGIN_LOG_TARGET, component, "{message}"),
            Level::Warn => warn!(target: PLUGIN_LOG_TARGET, component, "{message}"),
            Level::Error => error!(target: PLUGIN_LOG_TARGET, component, "{message}"),
        }
    }
}

/// One line a caller can act on. (The generated `Display` shows only the variant name.)
pub fn describe_error(error: &PluginError) -> String {
    match error {
        PluginError::NotFound => "not found".to_owned(),
        PluginError::EtagMismatch => {
            "possible etag mismatch: the etag does not match the stored one".to_owned()
        }
        PluginError::EtagInvalid => "invalid etag value".to_owned(),
        PluginError::InvalidArgument(m) => format!("invalid argument: {m}"),
        PluginError::Unsupported(m) => format!("unsupported: {m}"),
        PluginError::Unavailable(m) => format!("backend unavailable: {m}"),
        PluginError::Internal(m) => m.clone(),
    }
}

/// The contract's error as the blocks see it. This is the only place the WIT error variants
/// are read.
pub fn backend_error(error: &PluginError) -> BackendError {
    let kind = match error {
        PluginError::NotFound => ErrorKind::NotFound,
        PluginError::EtagMismatch => ErrorKind::Conflict,
        PluginError::EtagInvalid | PluginError::InvalidArgument(_) => ErrorKind::Invalid,
        PluginError::Unsupported(_) => ErrorKind::Unsupported,
        PluginError::Unavailable(_) => ErrorKind::Unavailable,
        PluginError::Internal(_) => ErrorKind::Internal,
    };
    BackendError::new(kind, describe_error(error))
}

//! Everything wasmtime: the engine, the compile cache, the plugin catalog, sandboxes,
//! instance pools, and one adapter per block that serves the block's backend trait from a
//! pool of plugin instances. Generated bindings do not leave this module.

pub mod bindings;
pub mod cache;
pub mod catalog;
pub mod engine;
pub mod instance;
pub mod pool;
mod pubsub;
pub mod sandbox;
mod slots;
mod state;

use std::sync::Arc;

use pool::{Pool, WorldBindings};

/// How a block's backend is served by plugins: implemented in this module for each block's
/// backend trait object (`dyn StateBackend`).
pub trait PluginBackend {
    /// The WIT world such plugins target.
    type World: WorldBindings;
    /// The interface of `blockhost:plugin` that plugins of this block export.
    const INTERFACE: &'static str;

    fn over_pool(pool: Arc<Pool<Self::World>>) -> Arc<Self>;
}

//! Everything wasmtime: the engine, the compile cache, the plugin catalog, sandboxes and
//! instance pools.

pub mod bindings;
pub mod cache;
pub mod catalog;
pub mod engine;
pub mod instance;
pub mod pool;
pub mod sandbox;

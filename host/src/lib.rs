//! blockhost: a Dapr-compatible sidecar whose building-block backends are sandboxed
//! WebAssembly components.

pub mod api;
pub mod app;
pub mod blocks;
pub mod cli;
pub mod components;
pub mod json;
pub mod plugins;
pub mod resources;
pub mod run;
pub mod sidecar;

/// Reported as `runtimeVersion` in `/v1.0/metadata`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

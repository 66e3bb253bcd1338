//! What blockhost's state plugins share: Dapr's store-independent state semantics, and the
//! `state-plugin` world's bindings, generated once here for all of them.
//!
//! The semantics modules (TTL, ETag/concurrency rules, atomic batches) are plain Rust with no WIT
//! or wasm types, so they unit-test natively. A plugin implements [`Backend`] (one read path, one
//! write path) and `lifecycle::Guest`, then exports itself:
//!
//! ```no_run
//! use state_common::bindings::exports::blockhost::plugin::lifecycle::{self, Error, PluginInfo};
//! use state_common::{Backend, Metadata, Op, ReadResult, StateError};
//!
//! struct MyStore;
//!
//! state_common::export!(MyStore);
//!
//! impl lifecycle::Guest for MyStore {
//!     # fn describe() -> PluginInfo { unimplemented!() }
//!     # fn init(_: lifecycle::Metadata) -> Result<(), Error> { Ok(()) }
//!     # fn close() {}
//!     // describe, init, close
//! }
//!
//! impl Backend for MyStore {
//!     fn read(keys: &[&str]) -> Result<Vec<ReadResult>, StateError> {
//!         Ok(keys.iter().map(|_| Ok(None)).collect())
//!     }
//!
//!     fn write(_ops: &[Op<'_>], _batch_metadata: &Metadata) -> Result<(), StateError> {
//!         Err(StateError::Unsupported("read-only".into()))
//!     }
//! }
//! ```

// The generated ABI glue is unsafe by nature; the workspace denies `unsafe_code` everywhere
// else, so it is confined to this module. `export!` expands the rest of it in the plugin.
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "state-plugin",
        path: "../../wit",
        pub_export_macro: true,
        default_bindings_module: "state_common::bindings",
    });
}

mod backend;
mod batch;
mod concurrency;
mod error;
mod glue;
mod time;
mod ttl;

pub use backend::{Backend, ReadResult};
pub use batch::{apply, Op, Remove, Staged, Table, Upsert};
pub use bindings::export;
pub use concurrency::{check_delete, check_set, requested_etag, Concurrency};
pub use error::StateError;
pub use time::{format_rfc3339, now_unix_ms};
pub use ttl::{expires_at_ms, is_expired, lookup, parse_ttl, TTL_EXPIRE_TIME, TTL_IN_SECONDS};

/// Request and component metadata as the WIT passes it: ordered name/value pairs.
pub type Metadata = [(String, String)];

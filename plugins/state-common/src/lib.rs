//! Store-independent semantics of Dapr state stores, shared by blockhost's state plugins.
//!
//! Everything here is plain Rust with no WIT or wasm types, so it is unit-tested natively; each
//! plugin converts its generated WIT records into these shapes and maps [`StateError`] back.

mod batch;
mod concurrency;
mod error;
mod time;
mod ttl;

pub use batch::{apply, Op, Remove, Staged, Table, Upsert};
pub use concurrency::{check_delete, check_set, requested_etag, Concurrency};
pub use error::StateError;
pub use time::{format_rfc3339, now_unix_ms};
pub use ttl::{expires_at_ms, is_expired, lookup, parse_ttl, TTL_EXPIRE_TIME, TTL_IN_SECONDS};

/// Request and component metadata as the WIT passes it: ordered name/value pairs.
pub type Metadata = [(String, String)];

//! What `state.redis` and `pubsub.redis` share about talking to one Redis node: the connection
//! metadata (daprd's names and defaults), a connection that notices Redis closed it, and a
//! client that reconnects and retries. Each plugin keeps its own data layout and error type.

mod addr;
pub mod client;
pub mod connection;
pub mod duration;
pub mod link;

pub use client::{not_ready, CallError, Client, Hooks, Level, Retry};
pub use connection::{Connection, CONNECTION_KEYS, REDIS_HOST};
pub use link::{Link, OpenError};
pub use plugin_metadata::{lookup, Secret};

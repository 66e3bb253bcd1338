//! One module per building block: what the block means, independent of HTTP and wasmtime.

pub mod pubsub;
pub mod state;

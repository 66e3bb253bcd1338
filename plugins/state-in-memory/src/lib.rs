//! `state.in-memory`: Dapr's in-memory state store. The data lives in this instance's memory, so
//! the plugin asks for exactly one instance and the host serialises calls to it.

mod store;

use state_common::bindings::blockhost::plugin::log::{log, Level};
use state_common::bindings::exports::blockhost::plugin::lifecycle::{self, Error, PluginInfo};
use state_common::{now_unix_ms, Backend, Metadata, Op, ReadResult, StateError};

struct InMemory;

state_common::export!(InMemory);

impl lifecycle::Guest for InMemory {
    fn describe() -> PluginInfo {
        PluginInfo {
            component_type: "state.in-memory".into(),
            version: "v1".into(),
            features: ["ETAG", "TRANSACTIONAL", "TTL"].map(String::from).into(),
            endpoint_keys: vec![],
            path_keys: vec![],
            writable_path_keys: vec![],
            max_instances: 1,
        }
    }

    fn init(_metadata: lifecycle::Metadata) -> Result<(), Error> {
        log(
            Level::Info,
            "state.in-memory ready; data is kept in memory and lost when the instance goes",
        );
        Ok(())
    }

    /// Nothing to release: the data goes with the instance.
    fn close() {}
}

impl Backend for InMemory {
    fn read(keys: &[&str]) -> Result<Vec<ReadResult>, StateError> {
        let now = now_unix_ms();
        Ok(keys.iter().map(|key| Ok(store::get(key, now))).collect())
    }

    fn write(ops: &[Op<'_>], batch_metadata: &Metadata) -> Result<(), StateError> {
        store::write(ops, batch_metadata, now_unix_ms())
    }
}

//! `state.in-memory`: Dapr's in-memory state store. The data lives in this instance's memory, so
//! the plugin asks for exactly one instance and the host serialises calls to it.

// The generated ABI glue is unsafe by nature; the workspace denies `unsafe_code` everywhere
// else, so it is confined to this module (and so is `export!`, which expands to more of it).
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "state-plugin", path: "../../wit" });
    use super::InMemory;
    export!(InMemory);
}

mod glue;
mod store;

use bindings::blockhost::plugin::log::{log, Level};
use bindings::exports::blockhost::plugin::lifecycle::{self, PluginInfo};
use bindings::exports::blockhost::plugin::state_store::{
    self, BulkGetItem, DeleteRequest, Error, GetRequest, Metadata, Operation, SetRequest,
    StoredItem,
};
use state_common::{now_unix_ms, Op};

struct InMemory;

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

    fn init(_metadata: Metadata) -> Result<(), Error> {
        log(
            Level::Info,
            "state.in-memory ready; data is kept in memory and lost when the instance goes",
        );
        Ok(())
    }

    /// Nothing to release: the data goes with the instance.
    fn close() {}
}

impl state_store::Guest for InMemory {
    fn get(request: GetRequest) -> Result<Option<StoredItem>, Error> {
        Ok(store::get(&request.key, now_unix_ms()))
    }

    fn set(request: SetRequest) -> Result<(), Error> {
        write(&[glue::upsert(&request)], &[])
    }

    fn delete(request: DeleteRequest) -> Result<(), Error> {
        write(&[glue::remove(&request)], &[])
    }

    fn bulk_get(requests: Vec<GetRequest>) -> Result<Vec<BulkGetItem>, Error> {
        let now = now_unix_ms();
        Ok(requests
            .into_iter()
            .map(|r| BulkGetItem {
                item: store::get(&r.key, now),
                key: r.key,
                error: None,
            })
            .collect())
    }

    fn bulk_set(requests: Vec<SetRequest>) -> Result<(), Error> {
        let ops: Vec<Op<'_>> = requests.iter().map(glue::upsert).collect();
        write(&ops, &[])
    }

    fn bulk_delete(requests: Vec<DeleteRequest>) -> Result<(), Error> {
        let ops: Vec<Op<'_>> = requests.iter().map(glue::remove).collect();
        write(&ops, &[])
    }

    fn transact(operations: Vec<Operation>, metadata: Metadata) -> Result<(), Error> {
        let ops: Vec<Op<'_>> = operations.iter().map(glue::operation).collect();
        write(&ops, &metadata)
    }
}

fn write(ops: &[Op<'_>], batch_metadata: &[(String, String)]) -> Result<(), Error> {
    store::write(ops, batch_metadata, now_unix_ms()).map_err(glue::to_wit)
}

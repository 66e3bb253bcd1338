//! `state.redis`: Dapr's Redis state store, running in the sandbox and reaching Redis through
//! WASI sockets. It keeps daprd's layout (each key a hash `{data, version}`, the version being
//! the ETag), so a daprd and a blockhost can share one Redis.
//!
//! Each instance owns one connection; the host runs a pool of instances per component.

// The generated ABI glue is unsafe by nature; the workspace denies `unsafe_code` everywhere
// else, so it is confined to this module (and so is `export!`, which expands to more of it).
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "state-plugin", path: "../../wit" });
    use super::Redis;
    export!(Redis);
}

mod client;
mod config;
mod duration;
mod glue;
mod link;
mod store;

use std::cell::RefCell;

use bindings::blockhost::plugin::log::{log, Level};
use bindings::exports::blockhost::plugin::lifecycle::{self, PluginInfo};
use bindings::exports::blockhost::plugin::state_store::{
    self, BulkGetItem, DeleteRequest, Error, GetRequest, Metadata, Operation, SetRequest,
    StoredItem,
};
use state_common::{Op, StateError};

use client::Client;
use config::{Config, REDIS_HOST};
use store::Store;

struct Redis;

thread_local! {
    static STORE: RefCell<Option<Store>> = const { RefCell::new(None) };
}

impl lifecycle::Guest for Redis {
    fn describe() -> PluginInfo {
        PluginInfo {
            component_type: "state.redis".into(),
            version: "v1".into(),
            features: ["ETAG", "TRANSACTIONAL", "TTL"].map(String::from).into(),
            endpoint_keys: vec![REDIS_HOST.into()],
            path_keys: vec![],
            writable_path_keys: vec![],
            max_instances: 0,
        }
    }

    fn init(metadata: Metadata) -> Result<(), Error> {
        let config = Config::parse(&metadata).map_err(glue::to_wit)?;
        if !config.ignored.is_empty() {
            log(
                Level::Info,
                &format!(
                    "state.redis ignores metadata it does not use: {}",
                    config.ignored.join(", ")
                ),
            );
        }
        let (addr, default_ttl) = (config.addr, config.default_ttl);
        let client = Client::connect(config).map_err(glue::to_wit)?;
        log(Level::Debug, &format!("state.redis connected to {addr}"));
        STORE.set(Some(Store::new(client, default_ttl)));
        Ok(())
    }

    /// Dropping the store closes its connection.
    fn close() {
        STORE.with_borrow_mut(Option::take);
    }
}

impl state_store::Guest for Redis {
    fn get(request: GetRequest) -> Result<Option<StoredItem>, Error> {
        let mut items = with_store(|s| s.read(&[request.key.as_str()]))?;
        match items.pop() {
            Some(item) => item.map_err(Error::Internal),
            None => Ok(None),
        }
    }

    fn set(request: SetRequest) -> Result<(), Error> {
        write(&[glue::upsert(&request)], &[])
    }

    fn delete(request: DeleteRequest) -> Result<(), Error> {
        write(&[glue::remove(&request)], &[])
    }

    fn bulk_get(requests: Vec<GetRequest>) -> Result<Vec<BulkGetItem>, Error> {
        let keys: Vec<&str> = requests.iter().map(|r| r.key.as_str()).collect();
        let items = with_store(|s| s.read(&keys))?;
        Ok(requests
            .into_iter()
            .zip(items)
            .map(|(r, item)| match item {
                Ok(item) => BulkGetItem {
                    key: r.key,
                    item,
                    error: None,
                },
                Err(error) => BulkGetItem {
                    key: r.key,
                    item: None,
                    error: Some(error),
                },
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
    with_store(|s| s.write(ops, batch_metadata))
}

fn with_store<T>(f: impl FnOnce(&mut Store) -> Result<T, StateError>) -> Result<T, Error> {
    STORE
        .with_borrow_mut(|store| match store {
            Some(store) => f(store),
            None => Err(StateError::Internal(
                "state.redis was called before a successful init".into(),
            )),
        })
        .map_err(glue::to_wit)
}

//! `state.redis`: Dapr's Redis state store, running in the sandbox and reaching Redis through
//! WASI sockets. It keeps daprd's layout (each key a hash `{data, version}`, the version being
//! the ETag), so a daprd and a blockhost can share one Redis.
//!
//! Each instance owns one connection; the host runs a pool of instances per component.

mod client;
mod config;
mod store;

use std::cell::RefCell;

use state_common::bindings::blockhost::plugin::log::{log, Level};
use state_common::bindings::exports::blockhost::plugin::lifecycle::{self, Error, PluginInfo};
use state_common::{Backend, Metadata, Op, ReadResult, StateError};

use client::Client;
use config::Config;
use redis_common::REDIS_HOST;
use store::Store;

struct Redis;

state_common::export!(Redis);

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

    fn init(metadata: lifecycle::Metadata) -> Result<(), Error> {
        let config = Config::parse(&metadata)?;
        if !config.ignored.is_empty() {
            log(
                Level::Info,
                &format!(
                    "state.redis ignores metadata it does not use: {}",
                    config.ignored.join(", ")
                ),
            );
        }
        let (addr, default_ttl) = (config.conn.addr, config.default_ttl);
        let client = Client::connect(config.conn)?;
        log(Level::Debug, &format!("state.redis connected to {addr}"));
        STORE.set(Some(Store::new(client, default_ttl)));
        Ok(())
    }

    /// Dropping the store closes its connection.
    fn close() {
        STORE.with_borrow_mut(Option::take);
    }
}

impl Backend for Redis {
    fn read(keys: &[&str]) -> Result<Vec<ReadResult>, StateError> {
        with_store(|s| s.read(keys))
    }

    fn write(ops: &[Op<'_>], batch_metadata: &Metadata) -> Result<(), StateError> {
        with_store(|s| s.write(ops, batch_metadata))
    }
}

fn with_store<T>(f: impl FnOnce(&mut Store) -> Result<T, StateError>) -> Result<T, StateError> {
    STORE.with_borrow_mut(|store| match store {
        Some(store) => f(store),
        None => Err(StateError::Internal(
            "state.redis was called before a successful init".into(),
        )),
    })
}

//! `state.redb`: blockhost's durable embedded state store, one redb file per component.
//!
//! redb takes no file lock on wasip2, so the plugin asks for exactly one instance: the host then
//! owns the only handle on the file and serialises calls to it.

// The generated ABI glue is unsafe by nature; the workspace denies `unsafe_code` everywhere
// else, so it is confined to this module (and so is `export!`, which expands to more of it).
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ world: "state-plugin", path: "../../wit" });
    use super::Redb;
    export!(Redb);
}

mod db;
mod glue;

use std::cell::RefCell;
use std::path::Path;

use bindings::blockhost::plugin::log::{log, Level};
use bindings::exports::blockhost::plugin::lifecycle::{self, PluginInfo};
use bindings::exports::blockhost::plugin::state_store::{
    self, BulkGetItem, DeleteRequest, Error, GetRequest, Metadata, Operation, SetRequest,
    StoredItem,
};
use redb::Database;
use state_common::{lookup, now_unix_ms, Op, StateError};

/// The metadata key naming the directory that holds the database file.
const PATH_KEY: &str = "path";

struct Redb;

thread_local! {
    static DB: RefCell<Option<Database>> = const { RefCell::new(None) };
}

impl lifecycle::Guest for Redb {
    fn describe() -> PluginInfo {
        PluginInfo {
            component_type: "state.redb".into(),
            version: "v1".into(),
            features: ["ETAG", "TRANSACTIONAL", "TTL"].map(String::from).into(),
            endpoint_keys: vec![],
            path_keys: vec![PATH_KEY.into()],
            writable_path_keys: vec![PATH_KEY.into()],
            max_instances: 1,
        }
    }

    fn init(metadata: Metadata) -> Result<(), Error> {
        let Some(dir) = lookup(&metadata, PATH_KEY) else {
            return Err(Error::InvalidArgument(format!(
                "metadata `{PATH_KEY}` is required: set it to a writable directory; \
                 the database file {} is created inside it",
                db::FILE_NAME
            )));
        };
        DB.with_borrow_mut(|slot| {
            // Close any previous handle first: two handles on one file would corrupt it.
            slot.take();
            let (database, file) = db::open(Path::new(dir)).map_err(glue::to_wit)?;
            log(
                Level::Info,
                &format!("state.redb opened {}", file.display()),
            );
            *slot = Some(database);
            Ok(())
        })
    }

    fn close() {
        // Dropping the handle closes the file cleanly, so the next open needs no repair.
        DB.with_borrow_mut(Option::take);
    }
}

impl state_store::Guest for Redb {
    fn get(request: GetRequest) -> Result<Option<StoredItem>, Error> {
        with_db(|db| db::get_many(db, &[request.key.as_str()], now_unix_ms()))
            .map(|mut items| items.pop().flatten())
    }

    fn set(request: SetRequest) -> Result<(), Error> {
        write(&[glue::upsert(&request)], &[])
    }

    fn delete(request: DeleteRequest) -> Result<(), Error> {
        write(&[glue::remove(&request)], &[])
    }

    fn bulk_get(requests: Vec<GetRequest>) -> Result<Vec<BulkGetItem>, Error> {
        let keys: Vec<&str> = requests.iter().map(|r| r.key.as_str()).collect();
        let items = with_db(|db| db::get_many(db, &keys, now_unix_ms()))?;
        Ok(requests
            .into_iter()
            .zip(items)
            .map(|(r, item)| BulkGetItem {
                key: r.key,
                item,
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
    with_db(|db| db::write(db, ops, batch_metadata, now_unix_ms()))
}

fn with_db<T>(f: impl FnOnce(&Database) -> Result<T, StateError>) -> Result<T, Error> {
    DB.with_borrow(|db| match db {
        Some(db) => f(db),
        None => Err(StateError::Internal(
            "state.redb was called before a successful init".into(),
        )),
    })
    .map_err(glue::to_wit)
}

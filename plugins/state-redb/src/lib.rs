//! `state.redb`: blockhost's durable embedded state store, one redb file per component.
//!
//! redb takes no file lock on wasip2, so the plugin asks for exactly one instance: the host then
//! owns the only handle on the file and serialises calls to it.

mod db;

use std::cell::RefCell;
use std::path::Path;

use redb::Database;
use state_common::bindings::blockhost::plugin::log::{log, Level};
use state_common::bindings::exports::blockhost::plugin::lifecycle::{self, Error, PluginInfo};
use state_common::{lookup, now_unix_ms, Backend, Metadata, Op, ReadResult, StateError};

/// The metadata key naming the directory that holds the database file.
const PATH_KEY: &str = "path";

struct Redb;

state_common::export!(Redb);

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

    fn init(metadata: lifecycle::Metadata) -> Result<(), Error> {
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
            let (database, file) = db::open(Path::new(dir))?;
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

impl Backend for Redb {
    fn read(keys: &[&str]) -> Result<Vec<ReadResult>, StateError> {
        let items = with_db(|db| db::get_many(db, keys, now_unix_ms()))?;
        Ok(items.into_iter().map(Ok).collect())
    }

    fn write(ops: &[Op<'_>], batch_metadata: &Metadata) -> Result<(), StateError> {
        with_db(|db| db::write(db, ops, batch_metadata, now_unix_ms()))
    }
}

fn with_db<T>(f: impl FnOnce(&Database) -> Result<T, StateError>) -> Result<T, StateError> {
    DB.with_borrow(|db| match db {
        Some(db) => f(db),
        None => Err(StateError::Internal(
            "state.redb was called before a successful init".into(),
        )),
    })
}

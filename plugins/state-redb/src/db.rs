//! The redb side: one table of rows `key -> (version, expires-at unix ms, content type, data)`.
//! Each write request is one redb write transaction, committed only if every operation in it
//! passed, so bulk writes and transactions are all-or-nothing.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use state_common::bindings::blockhost::plugin::log::{log, Level};
use state_common::bindings::exports::blockhost::plugin::state_store::StoredItem;
use state_common::{
    apply, format_rfc3339, is_expired, Metadata, Op, StateError, Table, Upsert, TTL_EXPIRE_TIME,
};

pub const FILE_NAME: &str = "state.redb";

/// redb's default page cache may grow to 1 GiB, far past a sandboxed instance's memory cap.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The version suffix leaves room for a later row layout without reinterpreting old rows; redb
/// also refuses to open a table under a different row type.
const STATE: TableDefinition<&str, Row> = TableDefinition::new("state_v1");

/// (version, expires-at unix ms, content type, data)
type Row = (u64, Option<u64>, Option<&'static str>, &'static [u8]);

fn internal(context: &str, e: impl Into<redb::Error>) -> StateError {
    StateError::Internal(format!("{context}: {}", e.into()))
}

/// Opens (creating if needed) `<dir>/state.redb`; returns the database and the file's path.
pub fn open(dir: &Path) -> Result<(Database, PathBuf), StateError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        StateError::InvalidArgument(format!(
            "metadata `path` {}: cannot create the directory: {e}",
            dir.display()
        ))
    })?;
    let file = dir.join(FILE_NAME);
    let what = format!("opening {}", file.display());
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .set_repair_callback(repair_logger(file.clone()))
        .create(&file)
        .map_err(|e| internal(&what, e))?;
    // Readers open the table without creating it, so it must exist before the first read.
    let txn = begin_write(&db, &what)?;
    txn.open_table(STATE).map_err(|e| internal(&what, e))?;
    txn.commit().map_err(|e| internal(&what, e))?;
    Ok((db, file))
}

/// A guest is discarded without running destructors (the WIT has no `close`), so the file is
/// never shut down cleanly and every open repairs it, quickly thanks to [`begin_write`]. A slow
/// repair (a file from an older build, or a crash mid-commit) should say why the open is slow.
fn repair_logger(file: PathBuf) -> impl Fn(&mut redb::RepairSession) + 'static {
    let said = Cell::new(false);
    move |_| {
        if !said.replace(true) {
            log(
                Level::Info,
                &format!("repairing {} after an unclean shutdown", file.display()),
            );
        }
    }
}

/// Every open follows an unclean shutdown (see [`repair_logger`]); without quick repair that
/// open walks the whole file (about 1.3 s per 100k small keys, measured), with it the open is
/// near instant for the price of a second sync per commit.
fn begin_write(db: &Database, context: &str) -> Result<WriteTransaction, StateError> {
    let mut txn = db.begin_write().map_err(|e| internal(context, e))?;
    txn.set_quick_repair(true);
    Ok(txn)
}

/// The live items under `keys`, in order; expired rows read as missing and are then removed.
pub fn get_many(
    db: &Database,
    keys: &[&str],
    now_ms: u64,
) -> Result<Vec<Option<StoredItem>>, StateError> {
    let mut expired = Vec::new();
    let items = {
        let txn = db.begin_read().map_err(|e| internal("get", e))?;
        let table = txn.open_table(STATE).map_err(|e| internal("get", e))?;
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
            let row = table.get(*key).map_err(|e| internal("get", e))?;
            items.push(row.and_then(|row| {
                let (version, expires_at_ms, content_type, data) = row.value();
                if is_expired(expires_at_ms, now_ms) {
                    expired.push(*key);
                    return None;
                }
                Some(StoredItem {
                    data: data.to_vec(),
                    etag: Some(version.to_string()),
                    metadata: expires_at_ms
                        .map(|at| vec![(TTL_EXPIRE_TIME.to_owned(), format_rfc3339(at))])
                        .unwrap_or_default(),
                    content_type: content_type.map(str::to_owned),
                })
            }));
        }
        items
    };
    // Cleaning up is best effort: the answer is already right without it.
    if !expired.is_empty() {
        if let Err(e) = purge(db, &expired, now_ms) {
            log(Level::Warn, &format!("removing expired keys: {e}"));
        }
    }
    Ok(items)
}

/// Removes rows that are still expired when the write transaction looks at them.
fn purge(db: &Database, keys: &[&str], now_ms: u64) -> Result<(), StateError> {
    let txn = begin_write(db, "purge")?;
    {
        let mut table = RedbTable {
            table: txn.open_table(STATE).map_err(|e| internal("purge", e))?,
            now_ms,
        };
        for key in keys {
            if table.liveness(key)? == Liveness::Expired {
                table.remove(key)?;
            }
        }
    }
    txn.commit().map_err(|e| internal("purge", e))
}

/// Applies `ops` in one write transaction; dropping it uncommitted on error rolls them all back.
pub fn write(
    db: &Database,
    ops: &[Op<'_>],
    batch_metadata: &Metadata,
    now_ms: u64,
) -> Result<(), StateError> {
    if ops.is_empty() {
        return Ok(());
    }
    let txn = begin_write(db, "write")?;
    {
        let mut table = RedbTable {
            table: txn.open_table(STATE).map_err(|e| internal("write", e))?,
            now_ms,
        };
        apply(&mut table, ops, batch_metadata, now_ms)?;
    }
    txn.commit().map_err(|e| internal("commit", e))
}

#[derive(Debug, PartialEq, Eq)]
enum Liveness {
    Missing,
    Expired,
    Live(u64),
}

struct RedbTable<'txn> {
    table: redb::Table<'txn, &'static str, Row>,
    now_ms: u64,
}

impl RedbTable<'_> {
    fn liveness(&self, key: &str) -> Result<Liveness, StateError> {
        let Some(row) = self.table.get(key).map_err(|e| internal("read", e))? else {
            return Ok(Liveness::Missing);
        };
        let (version, expires_at_ms, _, _) = row.value();
        Ok(if is_expired(expires_at_ms, self.now_ms) {
            Liveness::Expired
        } else {
            Liveness::Live(version)
        })
    }
}

impl Table for RedbTable<'_> {
    fn etag(&mut self, key: &str) -> Result<Option<String>, StateError> {
        Ok(match self.liveness(key)? {
            Liveness::Live(version) => Some(version.to_string()),
            Liveness::Missing | Liveness::Expired => None,
        })
    }

    /// ETags are decimal versions, as in Dapr's state.redis.
    fn validate_etag(&self, etag: &str) -> Result<(), StateError> {
        etag.parse::<u64>()
            .map(drop)
            .map_err(|_| StateError::EtagInvalid)
    }

    fn put(&mut self, item: &Upsert<'_>, expires_at_ms: Option<u64>) -> Result<(), StateError> {
        // A key that is gone (or expired) starts again at 1, as a fresh Redis hash does.
        let version = match self.liveness(item.key)? {
            Liveness::Live(v) => v.checked_add(1).ok_or_else(|| {
                StateError::Internal(format!("version of key {:?} overflowed", item.key))
            })?,
            Liveness::Missing | Liveness::Expired => 1,
        };
        let row = (version, expires_at_ms, item.content_type, item.value);
        self.table
            .insert(item.key, row)
            .map_err(|e| internal("write", e))?;
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), StateError> {
        self.table.remove(key).map_err(|e| internal("delete", e))?;
        Ok(())
    }
}

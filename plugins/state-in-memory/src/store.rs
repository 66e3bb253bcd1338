//! The map itself. Every write is a batch run against a staged view and committed only when
//! every operation passed, so bulk writes and transactions are all-or-nothing.

use std::cell::RefCell;
use std::collections::HashMap;

use state_common::bindings::exports::blockhost::plugin::state_store::StoredItem;
use state_common::{
    apply, format_rfc3339, is_expired, Metadata, Op, Staged, StateError, Table, Upsert,
    TTL_EXPIRE_TIME,
};
use uuid::Uuid;

/// Keys nobody reads again would keep their memory forever under lazy expiry alone; sweeping
/// once per `max(len, SWEEP_MIN)` writes bounds that at O(1) amortised per write.
const SWEEP_MIN: usize = 1024;

struct Entry {
    data: Vec<u8>,
    etag: String,
    expires_at_ms: Option<u64>,
    content_type: Option<String>,
}

#[derive(Default)]
struct Store {
    items: HashMap<String, Entry>,
    writes_since_sweep: usize,
}

thread_local! {
    static STORE: RefCell<Store> = RefCell::default();
}

/// The live item under `key`; an expired one is purged on the way.
pub fn get(key: &str, now_ms: u64) -> Option<StoredItem> {
    STORE.with_borrow_mut(|store| {
        if store
            .items
            .get(key)
            .is_some_and(|e| is_expired(e.expires_at_ms, now_ms))
        {
            store.items.remove(key);
        }
        store.items.get(key).map(|e| StoredItem {
            data: e.data.clone(),
            etag: Some(e.etag.clone()),
            metadata: e
                .expires_at_ms
                .map(|at| vec![(TTL_EXPIRE_TIME.to_owned(), format_rfc3339(at))])
                .unwrap_or_default(),
            content_type: e.content_type.clone(),
        })
    })
}

pub fn write(ops: &[Op<'_>], batch_metadata: &Metadata, now_ms: u64) -> Result<(), StateError> {
    STORE.with_borrow_mut(|store| {
        let mut table = MemTable {
            staged: Staged::new(&store.items),
            now_ms,
        };
        apply(&mut table, ops, batch_metadata, now_ms)?;
        table.staged.into_changes().write_to(&mut store.items);

        store.writes_since_sweep += ops.len();
        if store.writes_since_sweep >= store.items.len().max(SWEEP_MIN) {
            store
                .items
                .retain(|_, e| !is_expired(e.expires_at_ms, now_ms));
            store.writes_since_sweep = 0;
        }
        Ok(())
    })
}

struct MemTable<'a> {
    staged: Staged<'a, Entry>,
    now_ms: u64,
}

impl Table for MemTable<'_> {
    fn etag(&mut self, key: &str) -> Result<Option<String>, StateError> {
        Ok(self
            .staged
            .get(key)
            .filter(|e| !is_expired(e.expires_at_ms, self.now_ms))
            .map(|e| e.etag.clone()))
    }

    // Any string is a well-formed ETag here: one we did not issue is simply a mismatch.

    fn put(&mut self, item: &Upsert<'_>, expires_at_ms: Option<u64>) -> Result<(), StateError> {
        let entry = Entry {
            data: item.value.to_vec(),
            // As Dapr's in-memory store: a fresh random UUID per write.
            etag: Uuid::new_v4().to_string(),
            expires_at_ms,
            content_type: item.content_type.map(str::to_owned),
        };
        self.staged.put(item.key, entry);
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Result<(), StateError> {
        self.staged.remove(key);
        Ok(())
    }
}

//! One write path for every state write: `set` and `delete` are batches of one, and
//! `bulk-set`, `bulk-delete` and `transact` are all-or-nothing batches. (Dapr fans bulk writes
//! out and may apply some of them; blockhost's own stores never do.)

use std::collections::HashMap;

use crate::{
    check_delete, check_set, expires_at_ms, lookup, parse_ttl, requested_etag, Concurrency,
    Metadata, StateError, TTL_IN_SECONDS,
};

/// A set request, borrowed from the plugin's WIT record.
#[derive(Debug, Clone, Copy)]
pub struct Upsert<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub etag: Option<&'a str>,
    pub metadata: &'a Metadata,
    pub concurrency: Concurrency,
    pub content_type: Option<&'a str>,
}

/// A delete request, borrowed from the plugin's WIT record.
#[derive(Debug, Clone, Copy)]
pub struct Remove<'a> {
    pub key: &'a str,
    pub etag: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
pub enum Op<'a> {
    Upsert(Upsert<'a>),
    Delete(Remove<'a>),
}

/// The storage a batch runs against. Its reads must see the batch's own earlier writes, and its
/// writes must stay invisible to everyone else until the owner commits them: a redb write
/// transaction, or a [`Staged`] view of an in-memory map. When [`apply`] fails the owner drops
/// them, which is what makes a batch atomic.
pub trait Table {
    /// The ETag of the live (unexpired) item under `key`, `None` if there is none.
    fn etag(&mut self, key: &str) -> Result<Option<String>, StateError>;

    /// Rejects an ETag this store can never have produced (`etag-invalid`).
    fn validate_etag(&self, _etag: &str) -> Result<(), StateError> {
        Ok(())
    }

    /// Stores the item with a fresh ETag; `expires_at_ms` is `None` for no expiry.
    fn put(&mut self, item: &Upsert<'_>, expires_at_ms: Option<u64>) -> Result<(), StateError>;

    /// Removes `key` (live or expired); a missing key is not an error.
    fn remove(&mut self, key: &str) -> Result<(), StateError>;
}

/// Checks and applies `ops` in order, each against the state left by the ones before it. Stops
/// at the first failure, leaving the caller to discard what `table` holds.
///
/// `batch_metadata` is the transaction-level metadata: an operation without its own
/// `ttlInSeconds` takes the batch's, as Dapr copies request metadata into every operation.
pub fn apply<T: Table + ?Sized>(
    table: &mut T,
    ops: &[Op<'_>],
    batch_metadata: &Metadata,
    now_ms: u64,
) -> Result<(), StateError> {
    for op in ops {
        match op {
            Op::Upsert(u) => {
                let ttl_source = if lookup(u.metadata, TTL_IN_SECONDS).is_some() {
                    u.metadata
                } else {
                    batch_metadata
                };
                let expiry = parse_ttl(ttl_source)?.map(|s| expires_at_ms(now_ms, s));
                if let Some(etag) = requested_etag(u.etag) {
                    table.validate_etag(etag)?;
                }
                let stored = table.etag(u.key)?;
                check_set(stored.as_deref(), u.etag, u.concurrency)?;
                table.put(u, expiry)?;
            }
            Op::Delete(d) => {
                if let Some(etag) = requested_etag(d.etag) {
                    table.validate_etag(etag)?;
                }
                let stored = table.etag(d.key)?;
                check_delete(stored.as_deref(), d.etag)?;
                // Also when nothing is live: this purges an expired leftover.
                table.remove(d.key)?;
            }
        }
    }
    Ok(())
}

/// A batch's private view of a map: reads see the batch's own writes, the map sees none of
/// them until [`Changes::write_to`].
pub struct Staged<'a, V> {
    base: &'a HashMap<String, V>,
    changes: HashMap<String, Option<V>>,
}

/// The writes of a finished batch, `None` meaning removed.
pub struct Changes<V>(HashMap<String, Option<V>>);

impl<'a, V> Staged<'a, V> {
    pub fn new(base: &'a HashMap<String, V>) -> Self {
        Self {
            base,
            changes: HashMap::new(),
        }
    }

    /// The value the batch currently sees, expired or not.
    pub fn get(&self, key: &str) -> Option<&V> {
        match self.changes.get(key) {
            Some(staged) => staged.as_ref(),
            None => self.base.get(key),
        }
    }

    pub fn put(&mut self, key: &str, value: V) {
        self.changes.insert(key.to_owned(), Some(value));
    }

    pub fn remove(&mut self, key: &str) {
        self.changes.insert(key.to_owned(), None);
    }

    pub fn into_changes(self) -> Changes<V> {
        Changes(self.changes)
    }
}

impl<V> Changes<V> {
    pub fn write_to(self, base: &mut HashMap<String, V>) {
        for (key, value) in self.0 {
            match value {
                Some(v) => base.insert(key, v),
                None => base.remove(&key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::is_expired;
    use Concurrency::{FirstWrite, LastWrite};

    const NOW: u64 = 1_000_000;

    #[derive(Debug, Clone, PartialEq)]
    struct Item {
        value: Vec<u8>,
        etag: String,
        expires: Option<u64>,
    }

    /// A numeric-ETag table over a staged map, like the stores build theirs.
    struct TestTable<'a> {
        staged: Staged<'a, Item>,
        next_etag: u64,
    }

    impl Table for TestTable<'_> {
        fn etag(&mut self, key: &str) -> Result<Option<String>, StateError> {
            Ok(self
                .staged
                .get(key)
                .filter(|i| !is_expired(i.expires, NOW))
                .map(|i| i.etag.clone()))
        }
        fn validate_etag(&self, etag: &str) -> Result<(), StateError> {
            etag.parse::<u64>()
                .map(drop)
                .map_err(|_| StateError::EtagInvalid)
        }
        fn put(&mut self, u: &Upsert<'_>, expires: Option<u64>) -> Result<(), StateError> {
            self.next_etag += 1;
            let item = Item {
                value: u.value.to_vec(),
                etag: self.next_etag.to_string(),
                expires,
            };
            self.staged.put(u.key, item);
            Ok(())
        }
        fn remove(&mut self, key: &str) -> Result<(), StateError> {
            self.staged.remove(key);
            Ok(())
        }
    }

    /// Runs a batch the way the in-memory store does: commit only on success.
    fn run(
        base: &mut HashMap<String, Item>,
        ops: &[Op<'_>],
        batch_md: &Metadata,
    ) -> Result<(), StateError> {
        let mut table = TestTable {
            staged: Staged::new(base),
            next_etag: 100,
        };
        apply(&mut table, ops, batch_md, NOW)?;
        table.staged.into_changes().write_to(base);
        Ok(())
    }

    fn item(etag: &str, expires: Option<u64>) -> Item {
        Item {
            value: b"old".to_vec(),
            etag: etag.into(),
            expires,
        }
    }

    fn set<'a>(key: &'a str, etag: Option<&'a str>, c: Concurrency, md: &'a Metadata) -> Op<'a> {
        Op::Upsert(Upsert {
            key,
            value: b"new",
            etag,
            metadata: md,
            concurrency: c,
            content_type: None,
        })
    }

    fn del<'a>(key: &'a str, etag: Option<&'a str>) -> Op<'a> {
        Op::Delete(Remove { key, etag })
    }

    fn ttl(v: &str) -> Vec<(String, String)> {
        vec![(TTL_IN_SECONDS.to_string(), v.to_string())]
    }

    #[test]
    fn later_ops_see_earlier_ones() {
        let mut base = HashMap::new();
        let ops = [
            set("a", None, FirstWrite, &[]),
            set("a", None, FirstWrite, &[]),
        ];
        assert_eq!(run(&mut base, &ops, &[]), Err(StateError::EtagMismatch));
        assert!(base.is_empty());

        base.insert("a".into(), item("1", None));
        let ops = [del("a", Some("1")), set("a", None, FirstWrite, &[])];
        assert_eq!(run(&mut base, &ops, &[]), Ok(()));
        assert_eq!(base["a"].value, b"new");

        let ops = [
            set("a", None, LastWrite, &[]),
            set("a", Some("101"), LastWrite, &[]),
        ];
        assert_eq!(run(&mut base, &ops, &[]), Ok(()));
        assert_eq!(base["a"].etag, "102");
    }

    #[test]
    fn a_failing_op_discards_the_whole_batch() {
        let mut base = HashMap::from([("a".to_string(), item("1", None))]);
        let before = base.clone();
        let ops = [
            set("b", None, LastWrite, &[]),
            del("a", None),
            set("c", Some("7"), LastWrite, &[]),
        ];
        assert_eq!(run(&mut base, &ops, &[]), Err(StateError::EtagMismatch));
        assert_eq!(base, before);
    }

    #[test]
    fn invalid_etag_is_reported_before_a_mismatch() {
        let mut base = HashMap::new();
        let ops = [set("a", Some("not-a-number"), LastWrite, &[])];
        assert_eq!(run(&mut base, &ops, &[]), Err(StateError::EtagInvalid));
        assert_eq!(
            run(&mut base, &[del("a", Some("x"))], &[]),
            Err(StateError::EtagInvalid)
        );
        // An empty ETag is no ETag, so it is never validated.
        assert_eq!(run(&mut base, &[del("a", Some(""))], &[]), Ok(()));
    }

    #[test]
    fn expired_items_count_as_missing() {
        let mut base = HashMap::from([("a".to_string(), item("1", Some(NOW)))]);
        assert_eq!(
            run(&mut base, &[set("a", Some("1"), LastWrite, &[])], &[]),
            Err(StateError::EtagMismatch)
        );
        assert_eq!(
            run(&mut base, &[del("a", Some("1"))], &[]),
            Err(StateError::EtagMismatch)
        );
        assert_eq!(run(&mut base, &[del("a", None)], &[]), Ok(()));
        assert!(base.is_empty(), "delete purges the expired leftover");

        base.insert("a".into(), item("1", Some(NOW)));
        assert_eq!(
            run(&mut base, &[set("a", None, FirstWrite, &[])], &[]),
            Ok(())
        );
    }

    #[test]
    fn ttl_comes_from_the_op_then_the_batch() {
        let mut base = HashMap::new();
        let (op_ttl, batch_ttl, never) = (ttl("10"), ttl("60"), ttl("-1"));
        let ops = [
            set("own", None, LastWrite, &op_ttl),
            set("inherited", None, LastWrite, &[]),
            set("persist", None, LastWrite, &never),
        ];
        assert_eq!(run(&mut base, &ops, &batch_ttl), Ok(()));
        assert_eq!(base["own"].expires, Some(NOW + 10_000));
        assert_eq!(base["inherited"].expires, Some(NOW + 60_000));
        assert_eq!(base["persist"].expires, None);
    }

    #[test]
    fn a_bad_ttl_fails_the_batch() {
        let mut base = HashMap::new();
        let bad = ttl("soon");
        let ops = [
            set("a", None, LastWrite, &[]),
            set("b", None, LastWrite, &bad),
        ];
        assert!(matches!(
            run(&mut base, &ops, &[]),
            Err(StateError::InvalidArgument(m)) if m.contains("soon")
        ));
        assert!(base.is_empty());
    }
}

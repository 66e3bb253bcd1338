//! The WIT `state-store` interface, derived from the two primitives every state plugin has.
//!
//! A single get is a read of one key, and set, delete, the bulk writes and a transaction are all
//! one atomic batch of [`Op`]s, so a plugin provides [`Backend::read`] and [`Backend::write`] and
//! gets [`state_store::Guest`] from the blanket impl below.

use crate::bindings::exports::blockhost::plugin::state_store::{
    self, BulkGetItem, DeleteRequest, Error, GetRequest, Operation, SetRequest, StoredItem,
};
use crate::{Metadata, Op, StateError};

/// One key's answer in a read: its live item (`None` if missing) or why that key alone could
/// not be read.
pub type ReadResult = Result<Option<StoredItem>, String>;

/// A state store's read and write paths; implementing it implements [`state_store::Guest`].
pub trait Backend {
    /// Reads `keys`, answering in order. An `Err` fails the whole call.
    fn read(keys: &[&str]) -> Result<Vec<ReadResult>, StateError>;

    /// Applies `ops` atomically and in order: all of them, or none if any check fails.
    /// `batch_metadata` is the transaction's metadata (empty for the other writes).
    fn write(ops: &[Op<'_>], batch_metadata: &Metadata) -> Result<(), StateError>;
}

impl<T: Backend> state_store::Guest for T {
    fn get(request: GetRequest) -> Result<Option<StoredItem>, Error> {
        match T::read(&[request.key.as_str()])?.pop() {
            Some(item) => item.map_err(Error::Internal),
            None => Ok(None),
        }
    }

    fn set(request: SetRequest) -> Result<(), Error> {
        Ok(T::write(&[Op::from(&request)], &[])?)
    }

    fn delete(request: DeleteRequest) -> Result<(), Error> {
        Ok(T::write(&[Op::from(&request)], &[])?)
    }

    fn bulk_get(requests: Vec<GetRequest>) -> Result<Vec<BulkGetItem>, Error> {
        let keys: Vec<&str> = requests.iter().map(|r| r.key.as_str()).collect();
        let items = T::read(&keys)?;
        Ok(requests
            .into_iter()
            .zip(items)
            .map(|(r, item)| {
                let (item, error) = match item {
                    Ok(item) => (item, None),
                    Err(error) => (None, Some(error)),
                };
                BulkGetItem {
                    key: r.key,
                    item,
                    error,
                }
            })
            .collect())
    }

    fn bulk_set(requests: Vec<SetRequest>) -> Result<(), Error> {
        write::<T, _>(&requests, &[])
    }

    fn bulk_delete(requests: Vec<DeleteRequest>) -> Result<(), Error> {
        write::<T, _>(&requests, &[])
    }

    fn transact(operations: Vec<Operation>, metadata: state_store::Metadata) -> Result<(), Error> {
        write::<T, _>(&operations, &metadata)
    }
}

/// Writes `requests` as one batch.
fn write<'a, T: Backend, R>(requests: &'a [R], batch_metadata: &Metadata) -> Result<(), Error>
where
    Op<'a>: From<&'a R>,
{
    let ops: Vec<Op<'a>> = requests.iter().map(Op::from).collect();
    Ok(T::write(&ops, batch_metadata)?)
}

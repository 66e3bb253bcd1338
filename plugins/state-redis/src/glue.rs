//! Conversions between the generated WIT types and `state-common`'s.

use crate::bindings::exports::blockhost::plugin::state_store::{
    Concurrency as WitConcurrency, DeleteRequest, Error, Operation, SetRequest,
};
use state_common::{Concurrency, Op, Remove, StateError, Upsert};

pub fn upsert(r: &SetRequest) -> Op<'_> {
    Op::Upsert(Upsert {
        key: &r.key,
        value: &r.value,
        etag: r.etag.as_deref(),
        metadata: &r.metadata,
        concurrency: match r.concurrency {
            WitConcurrency::LastWrite => Concurrency::LastWrite,
            WitConcurrency::FirstWrite => Concurrency::FirstWrite,
        },
        content_type: r.content_type.as_deref(),
    })
}

pub fn remove(r: &DeleteRequest) -> Op<'_> {
    Op::Delete(Remove {
        key: &r.key,
        etag: r.etag.as_deref(),
    })
}

pub fn operation(o: &Operation) -> Op<'_> {
    match o {
        Operation::Upsert(r) => upsert(r),
        Operation::Delete(r) => remove(r),
    }
}

pub fn to_wit(e: StateError) -> Error {
    match e {
        StateError::NotFound => Error::NotFound,
        StateError::EtagMismatch => Error::EtagMismatch,
        StateError::EtagInvalid => Error::EtagInvalid,
        StateError::InvalidArgument(m) => Error::InvalidArgument(m),
        StateError::Unsupported(m) => Error::Unsupported(m),
        StateError::Unavailable(m) => Error::Unavailable(m),
        StateError::Internal(m) => Error::Internal(m),
    }
}

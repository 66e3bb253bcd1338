//! Conversions between the generated WIT types and this crate's.

use crate::bindings::exports::blockhost::plugin::state_store::{
    Concurrency as WitConcurrency, DeleteRequest, Error, Operation, SetRequest,
};
use crate::{Concurrency, Op, Remove, StateError, Upsert};

impl From<WitConcurrency> for Concurrency {
    fn from(c: WitConcurrency) -> Self {
        match c {
            WitConcurrency::LastWrite => Self::LastWrite,
            WitConcurrency::FirstWrite => Self::FirstWrite,
        }
    }
}

impl<'a> From<&'a SetRequest> for Op<'a> {
    fn from(r: &'a SetRequest) -> Self {
        Op::Upsert(Upsert {
            key: &r.key,
            value: &r.value,
            etag: r.etag.as_deref(),
            metadata: &r.metadata,
            concurrency: r.concurrency.into(),
            content_type: r.content_type.as_deref(),
        })
    }
}

impl<'a> From<&'a DeleteRequest> for Op<'a> {
    fn from(r: &'a DeleteRequest) -> Self {
        Op::Delete(Remove {
            key: &r.key,
            etag: r.etag.as_deref(),
        })
    }
}

impl<'a> From<&'a Operation> for Op<'a> {
    fn from(o: &'a Operation) -> Self {
        match o {
            Operation::Upsert(r) => r.into(),
            Operation::Delete(r) => r.into(),
        }
    }
}

impl From<StateError> for Error {
    fn from(e: StateError) -> Self {
        match e {
            StateError::NotFound => Self::NotFound,
            StateError::EtagMismatch => Self::EtagMismatch,
            StateError::EtagInvalid => Self::EtagInvalid,
            StateError::InvalidArgument(m) => Self::InvalidArgument(m),
            StateError::Unsupported(m) => Self::Unsupported(m),
            StateError::Unavailable(m) => Self::Unavailable(m),
            StateError::Internal(m) => Self::Internal(m),
        }
    }
}

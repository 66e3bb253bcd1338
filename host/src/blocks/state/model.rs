//! The state block's own request and answer types, and the Dapr options they carry.

use crate::blocks::{BlockError, Metadata};

use super::StateOp;

/// `options.concurrency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    LastWrite,
    FirstWrite,
}

impl Concurrency {
    /// Dapr's names; absent or empty means last-write.
    pub fn parse(value: Option<&str>, op: StateOp) -> Result<Self, BlockError> {
        match value.unwrap_or_default() {
            "" | "last-write" => Ok(Self::LastWrite),
            "first-write" => Ok(Self::FirstWrite),
            other => Err(BlockError::invalid(
                op.code(),
                format!("invalid concurrency '{other}': use first-write or last-write"),
            )),
        }
    }
}

/// `options.consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Eventual,
    Strong,
}

impl Consistency {
    /// Dapr's names; absent or empty means eventual.
    pub fn parse(value: Option<&str>, op: StateOp) -> Result<Self, BlockError> {
        match value.unwrap_or_default() {
            "" | "eventual" => Ok(Self::Eventual),
            "strong" => Ok(Self::Strong),
            other => Err(BlockError::invalid(
                op.code(),
                format!("invalid consistency '{other}': use strong or eventual"),
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GetRequest {
    pub key: String,
    pub metadata: Metadata,
    pub consistency: Consistency,
}

#[derive(Debug, Clone)]
pub struct StoredItem {
    /// The bytes exactly as they were set.
    pub data: Vec<u8>,
    pub etag: Option<String>,
    /// Answered as `metadata.<name>` (e.g. `ttlExpireTime`).
    pub metadata: Metadata,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SetRequest {
    pub key: String,
    pub value: Vec<u8>,
    pub etag: Option<String>,
    pub metadata: Metadata,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeleteRequest {
    pub key: String,
    pub etag: Option<String>,
    pub metadata: Metadata,
    pub concurrency: Concurrency,
    pub consistency: Consistency,
}

#[derive(Debug, Clone)]
pub struct BulkGetItem {
    pub key: String,
    /// `None` when the key does not exist.
    pub item: Option<StoredItem>,
    /// A per-key failure that does not fail the whole request.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Operation {
    Upsert(SetRequest),
    Delete(DeleteRequest),
}

impl Operation {
    /// A transaction operation's `operation` name; anything else is refused as daprd does.
    pub fn check_name(name: Option<&str>) -> Result<TransactionVerb, BlockError> {
        match name {
            Some("upsert") => Ok(TransactionVerb::Upsert),
            Some("delete") => Ok(TransactionVerb::Delete),
            other => Err(BlockError::invalid(
                "ERR_NOT_SUPPORTED_STATE_OPERATION",
                format!("operation type {} not supported", other.unwrap_or_default()),
            )),
        }
    }
}

/// The operation a transaction entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionVerb {
    Upsert,
    Delete,
}

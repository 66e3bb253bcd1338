//! The pub/sub block's own message types.

use crate::blocks::{BackendError, Metadata};

#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub topic: String,
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct BulkEntry {
    pub entry_id: String,
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct BulkFailure {
    pub entry_id: String,
    pub error: BackendError,
}

#[derive(Debug, Clone)]
pub struct IncomingMessage {
    /// The broker's identity of this delivery, used to settle it.
    pub id: String,
    pub topic: String,
    pub data: Vec<u8>,
    pub content_type: Option<String>,
    pub metadata: Metadata,
}

/// What becomes of one delivery at the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Processed (or forwarded to the dead-letter topic): remove it.
    Success,
    /// Deliver it again later.
    Retry,
    /// Discard it without processing.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct SettleFailure {
    pub id: String,
    pub error: BackendError,
}

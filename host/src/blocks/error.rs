//! One error model for every block. A backend (a plugin) reports a [`BackendError`]; a block
//! turns it, by Dapr's rules for that operation, into a [`BlockError`] that carries Dapr's
//! error code. Each transport maps [`ErrorKind`] to its own status once (HTTP in
//! `api/error.rs`), and sends the code as it is (HTTP `errorCode`, gRPC `ErrorInfo.reason`).

use std::fmt;

/// What went wrong, in terms every transport can map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named thing (component, key, secret) does not exist.
    NotFound,
    /// The request conflicts with the stored state (an ETag mismatch, a key that exists).
    Conflict,
    /// The request is malformed or names something it may not.
    Invalid,
    /// The app is not allowed to do this (scoping).
    PermissionDenied,
    /// The component cannot do this.
    Unsupported,
    /// The backend cannot be reached; retrying later may succeed.
    Unavailable,
    /// Anything else.
    Internal,
}

/// A failure reported by a block's backend, before a block gives it Dapr's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError {
    pub kind: ErrorKind,
    pub message: String,
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {}

/// A block's answer to a failed request: its kind, Dapr's error code and the message the
/// caller reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockError {
    pub kind: ErrorKind,
    /// Dapr's error code, e.g. `ERR_STATE_SAVE`.
    pub code: &'static str,
    pub message: String,
}

impl BlockError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, code, message)
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for BlockError {}

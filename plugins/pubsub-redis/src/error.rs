//! The plugin's failures, shaped like the WIT `error` variant but free of generated types so
//! the logic that produces them is testable natively.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubsubError {
    InvalidArgument(String),
    Unavailable(String),
    Internal(String),
}

pub type Result<T, E = PubsubError> = std::result::Result<T, E>;

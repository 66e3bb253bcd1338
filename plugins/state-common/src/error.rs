use std::fmt;

/// Mirrors the WIT `error` variant so the semantics modules stay free of generated types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    NotFound,
    EtagMismatch,
    EtagInvalid,
    InvalidArgument(String),
    Unsupported(String),
    Unavailable(String),
    Internal(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("not found"),
            Self::EtagMismatch => f.write_str("etag mismatch"),
            Self::EtagInvalid => f.write_str("invalid etag"),
            Self::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Self::Unsupported(m) => write!(f, "unsupported: {m}"),
            Self::Unavailable(m) => write!(f, "unavailable: {m}"),
            Self::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

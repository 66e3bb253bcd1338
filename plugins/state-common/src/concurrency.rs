use crate::StateError;

/// Dapr's `options.concurrency`; an unset option means last-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    #[default]
    LastWrite,
    FirstWrite,
}

/// Dapr's stores treat an empty ETag (e.g. an empty `If-Match`) as no ETag at all.
pub fn requested_etag(etag: Option<&str>) -> Option<&str> {
    etag.filter(|e| !e.is_empty())
}

/// Decides whether a write may proceed given the live item's ETag (`None` = no such key).
pub fn check_set(
    stored: Option<&str>,
    requested: Option<&str>,
    concurrency: Concurrency,
) -> Result<(), StateError> {
    match (requested_etag(requested), stored) {
        (Some(want), Some(have)) if want == have => Ok(()),
        // An ETag for a key that does not exist can never match.
        (Some(_), _) => Err(StateError::EtagMismatch),
        // blockhost applies first-write uniformly: any existing key blocks an ETag-less write
        // (state.redis only does so for keys that were themselves written first-write).
        (None, Some(_)) if concurrency == Concurrency::FirstWrite => Err(StateError::EtagMismatch),
        (None, _) => Ok(()),
    }
}

/// Decides whether a delete may proceed; deleting a missing key without an ETag succeeds.
pub fn check_delete(stored: Option<&str>, requested: Option<&str>) -> Result<(), StateError> {
    match requested_etag(requested) {
        None => Ok(()),
        Some(want) if stored == Some(want) => Ok(()),
        Some(_) => Err(StateError::EtagMismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Concurrency::{FirstWrite, LastWrite};

    const MISMATCH: Result<(), StateError> = Err(StateError::EtagMismatch);

    #[test]
    fn set_with_etag_must_match_the_stored_one() {
        for c in [LastWrite, FirstWrite] {
            assert_eq!(check_set(Some("1"), Some("1"), c), Ok(()));
            assert_eq!(check_set(Some("1"), Some("2"), c), MISMATCH);
            assert_eq!(check_set(None, Some("1"), c), MISMATCH);
        }
    }

    #[test]
    fn set_without_etag_depends_on_concurrency() {
        assert_eq!(check_set(None, None, LastWrite), Ok(()));
        assert_eq!(check_set(None, None, FirstWrite), Ok(()));
        assert_eq!(check_set(Some("1"), None, LastWrite), Ok(()));
        assert_eq!(check_set(Some("1"), None, FirstWrite), MISMATCH);
    }

    #[test]
    fn empty_etag_counts_as_none() {
        assert_eq!(check_set(Some("1"), Some(""), LastWrite), Ok(()));
        assert_eq!(check_set(Some("1"), Some(""), FirstWrite), MISMATCH);
        assert_eq!(check_delete(None, Some("")), Ok(()));
    }

    #[test]
    fn delete_rules() {
        assert_eq!(check_delete(None, None), Ok(()));
        assert_eq!(check_delete(Some("1"), None), Ok(()));
        assert_eq!(check_delete(Some("1"), Some("1")), Ok(()));
        assert_eq!(check_delete(Some("1"), Some("2")), MISMATCH);
        assert_eq!(check_delete(None, Some("1")), MISMATCH);
    }
}

//! Durations as the host reads them in YAML and flags: Go's (`5s`, `1m30s`, `250ms`), or a
//! bare number of seconds.

use std::time::Duration;

/// Parses a Go duration string (`go_duration`); a bare number is read as seconds.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    go_duration::nanos(text).map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("5 apples"), None);
        assert_eq!(parse("s"), None);
        assert_eq!(parse(""), None);
    }
}

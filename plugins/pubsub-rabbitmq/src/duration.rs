//! Go's `time.ParseDuration`, which daprd uses for `ttl` values.

use std::time::Duration;

/// A Go duration (`1.5s`, `300ms`, `1m30s`, `0`); a negative one is zero, as daprd clamps it.
/// `None` when the text is not a Go duration (a bare number other than 0 is not one).
pub fn go_duration(text: &str) -> Option<Duration> {
    let (negative, nanos) = go_duration::signed(text)?;
    Some(if negative {
        Duration::ZERO
    } else {
        Duration::from_nanos(nanos)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(go_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(go_duration("10us"), Some(Duration::from_micros(10)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        assert_eq!(go_duration("-1s"), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_the_rest() {
        for bad in ["", "10", "s", "5x", "five", "1..5s", "5 s", "-"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }
}

//! Durations as daprd reads them: a bare integer is milliseconds, anything else a Go duration
//! (`1.5s`, `300ms`, `1m30s`).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Zero (`0`, `0s`).
    Zero,
    /// A negative value.
    Negative,
    After(Duration),
}

pub fn parse_timeout(text: &str) -> Result<Timeout, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(match ms {
            0 => Timeout::Zero,
            n if n < 0 => Timeout::Negative,
            n => Timeout::After(Duration::from_millis(n.unsigned_abs())),
        });
    }
    let (negative, nanos) = go_duration::signed(text).ok_or_else(|| {
        format!(
            "{text:?} is not a duration: use milliseconds (500) or a Go duration (500ms, 2s, 1m)"
        )
    })?;
    Ok(match (negative, nanos) {
        (_, 0) => Timeout::Zero,
        (true, _) => Timeout::Negative,
        (false, n) => Timeout::After(Duration::from_nanos(n)),
    })
}

/// Whole milliseconds, rounded up so that a non-zero wait never becomes Redis's `0` ("forever").
pub fn ceil_millis(duration: Duration) -> u64 {
    let ms = duration.as_millis();
    let ms = if duration > Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)) {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(ms: u64) -> Result<Timeout, String> {
        Ok(Timeout::After(Duration::from_millis(ms)))
    }

    #[test]
    fn integers_are_milliseconds() {
        assert_eq!(parse_timeout("250"), after(250));
        assert_eq!(parse_timeout(" 60000 "), after(60_000));
        assert_eq!(parse_timeout("0"), Ok(Timeout::Zero));
        assert_eq!(parse_timeout("-1"), Ok(Timeout::Negative));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_timeout("5s"), after(5000));
        assert_eq!(parse_timeout("300ms"), after(300));
        assert_eq!(parse_timeout("1.5s"), after(1500));
        assert_eq!(parse_timeout("1m30s"), after(90_000));
        assert_eq!(parse_timeout("1h"), after(3_600_000));
        assert_eq!(
            parse_timeout("10us"),
            Ok(Timeout::After(Duration::from_micros(10)))
        );
        assert_eq!(parse_timeout("0s"), Ok(Timeout::Zero));
        assert_eq!(parse_timeout("-1s"), Ok(Timeout::Negative));
    }

    #[test]
    fn rejects_the_rest() {
        for bad in ["", "s", "5x", "five", "1..5s", "5 s", "1e3"] {
            let err = parse_timeout(bad).expect_err(bad);
            assert!(err.contains("duration"), "{err}");
        }
    }

    #[test]
    fn milliseconds_round_up() {
        assert_eq!(ceil_millis(Duration::ZERO), 0);
        assert_eq!(ceil_millis(Duration::from_micros(1)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(5)), 5);
        assert_eq!(ceil_millis(Duration::from_micros(5001)), 6);
    }
}

//! Timeouts as daprd reads them: a bare integer is milliseconds (negative: no timeout), anything
//! else a Go duration (`1.5s`, `300ms`, `1m30s`).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// `0`: the plugin's default.
    Default,
    /// A negative value: wait as long as the operating system does.
    Never,
    After(Duration),
}

pub fn parse_timeout(text: &str) -> Result<Timeout, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(match ms {
            0 => Timeout::Default,
            n if n < 0 => Timeout::Never,
            n => Timeout::After(Duration::from_millis(n.unsigned_abs())),
        });
    }
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let nanos = go_duration_nanos(body).ok_or_else(|| {
        format!(
            "{text:?} is not a duration: use milliseconds (500) or a Go duration (500ms, 2s, 1m)"
        )
    })?;
    Ok(match (negative, nanos) {
        (_, 0) => Timeout::Default,
        (true, _) => Timeout::Never,
        (false, n) => Timeout::After(Duration::from_nanos(n)),
    })
}

/// Go's `time.ParseDuration` without the sign: one or more `<number><unit>` parts.
fn go_duration_nanos(mut text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !text.is_empty() {
        let number_len = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let number: f64 = text[..number_len].parse().ok()?;
        text = &text[number_len..];
        let unit_len = text
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(text.len());
        let scale = match &text[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        text = &text[unit_len..];
        total += number * scale;
    }
    // A float keeps `1.5s` simple; anything past ~584 years is not a timeout anyone means.
    (total.is_finite() && total < u64::MAX as f64).then_some(total as u64)
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
        assert_eq!(parse_timeout("0"), Ok(Timeout::Default));
        assert_eq!(parse_timeout("-1"), Ok(Timeout::Never));
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
        assert_eq!(parse_timeout("0s"), Ok(Timeout::Default));
        assert_eq!(parse_timeout("-1s"), Ok(Timeout::Never));
    }

    #[test]
    fn rejects_the_rest() {
        for bad in ["", "s", "5x", "five", "1..5s", "5 s"] {
            let err = parse_timeout(bad).expect_err(bad);
            assert!(err.contains("duration"), "{err}");
        }
    }
}

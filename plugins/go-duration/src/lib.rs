//! Go's `time.ParseDuration`, which daprd uses for duration metadata. Callers decide what a
//! negative duration means to them, and their own readings of bare numbers (milliseconds,
//! seconds).

/// A whole Go duration: an optional sign, then `0` or `<number><unit>` parts. Returns whether
/// it is negative, and its size in nanoseconds; `None` when the text is not a Go duration.
pub fn signed(text: &str) -> Option<(bool, u64)> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if body == "0" {
        return Some((negative, 0));
    }
    nanos(body).map(|n| (negative, n))
}

/// Nanoseconds in one or more `<number><unit>` parts (`1.5s`, `1m30s`, `250ms`); `None`
/// when the text is not that. Saturates: nobody means a duration past ~584 years.
pub fn nanos(mut text: &str) -> Option<u64> {
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
    Some(if total.is_finite() && total < u64::MAX as f64 {
        total as u64
    } else {
        u64::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::{nanos, signed};

    #[test]
    fn signs_and_zero() {
        assert_eq!(signed("-1.5s"), Some((true, 1_500_000_000)));
        assert_eq!(signed("+2ms"), Some((false, 2_000_000)));
        assert_eq!(signed("0"), Some((false, 0)));
        assert_eq!(signed("-0"), Some((true, 0)));
        for bad in ["", "-", "5", "--1s"] {
            assert_eq!(signed(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(nanos("1.5s"), Some(1_500_000_000));
        assert_eq!(nanos("1m30s"), Some(90_000_000_000));
        assert_eq!(nanos("250ms"), Some(250_000_000));
        assert_eq!(nanos("3us"), Some(3_000));
        assert_eq!(nanos("100000000h"), Some(u64::MAX));
        for bad in ["", "s", "5", "5 s", "5x", "-1s", ".s"] {
            assert_eq!(nanos(bad), None, "{bad:?}");
        }
    }
}

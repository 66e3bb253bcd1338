//! The body of Go's `time.ParseDuration`, which daprd uses for duration metadata. Callers
//! handle the sign and their own readings of bare numbers (milliseconds, seconds, `0`).

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
    use super::nanos;

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

//! Reading the sidecar's captured log output.

/// `text` without ANSI escape sequences (colour codes), so assertions see plain log lines even
/// if the host colours its output.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // CSI: ESC [ parameters... final byte in '@'..='~'.
        if chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[34mDEBUG\u{1b}[0m \u{1b}[3mplugin\u{1b}[0m\u{1b}[2m=\u{1b}[0mx.wasm";
        assert_eq!(strip_ansi(coloured), "2026 DEBUG plugin=x.wasm");
    }
}

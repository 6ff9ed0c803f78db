//! Making text from elsewhere (an agent's message, a relay's error) safe to print: one line, and
//! nothing a terminal would act on, so a hostile peer cannot move the cursor, recolour the
//! terminal, reorder what follows or forge a line of output.

/// `text` on one line, with nothing a terminal would act on, and reversibly: `\\` is escaped
/// too (for stdout, which scripts parse).
pub(crate) fn escape(text: &str) -> String {
    escaped(text, true)
}

/// `text` on one line, with nothing a terminal would act on, backslashes left alone (for stderr,
/// which people read: a Windows path stays as it is).
pub(crate) fn one_line(text: &str) -> String {
    escaped(text, false)
}

fn escaped(text: &str, backslash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' if backslash => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') => {
                out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_one_event_on_one_line() {
        assert_eq!(escape("a\nb\\c\td\r"), "a\\nb\\\\c\\td\\r");
        assert_eq!(escape("\u{1b}[31mred"), "\\u{001b}[31mred");
        assert_eq!(escape("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(escape("don't \"quote\" é"), "don't \"quote\" é");
        assert_eq!(one_line("C:\\temp\n\u{1b}x"), "C:\\temp\\n\\u{001b}x");
    }
}

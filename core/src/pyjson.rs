//! JSON written byte for byte as the official SDK's Python `json.dumps` writes it.
//!
//! Two things depend on exact bytes: the message digest (a SHA-256 over sorted compact JSON,
//! compared across restarts and with receipts the official SDK wrote) and payload texts that
//! conformance vectors pin. Python differs from serde_json in three ways that matter: it escapes
//! every non-ASCII character as `\uXXXX` (`ensure_ascii`), its default separators carry a space,
//! and it prints floats with `repr` (`1e+16`, `1e-05`, `2.0`).

use serde_json::Value;
use std::fmt::Write as _;

/// How to lay out the JSON, mirroring `json.dumps` arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Style {
    /// Between items of arrays and objects: `", "` by default, `","` when compact.
    pub item_separator: &'static str,
    /// Between a key and its value: `": "` by default, `":"` when compact.
    pub key_separator: &'static str,
    /// Sort object keys (`sort_keys=True`); otherwise keep their insertion order.
    pub sort_keys: bool,
}

impl Style {
    /// `json.dumps(value)`: spaced separators, insertion order.
    pub const DEFAULT: Style = Style { item_separator: ", ", key_separator: ": ", sort_keys: false };
    /// `json.dumps(value, sort_keys=True, separators=(",", ":"))`, as the message digest uses.
    pub const SORTED_COMPACT: Style = Style { item_separator: ",", key_separator: ":", sort_keys: true };
}

/// Writes `value` as Python's `json.dumps` would with `style` and `ensure_ascii=True`.
///
/// ```
/// use pacerelle_core::pyjson::{dumps, Style};
/// let value = serde_json::json!({"b": 1.0, "a": "é"});
/// assert_eq!(dumps(&value, Style::DEFAULT), r#"{"b": 1.0, "a": "\u00e9"}"#);
/// assert_eq!(dumps(&value, Style::SORTED_COMPACT), r#"{"a":"\u00e9","b":1.0}"#);
/// ```
pub fn dumps(value: &Value, style: Style) -> String {
    let mut out = String::new();
    write_value(&mut out, value, style);
    out
}

fn write_value(out: &mut String, value: &Value, style: Style) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() => write_float(out, float),
            _ => out.push_str(&number.to_string()),
        },
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(style.item_separator);
                }
                write_value(out, item, style);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if style.sort_keys {
                // Python sorts str keys by code point; Rust's str order is byte order of UTF-8,
                // which is the same order.
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(style.item_separator);
                }
                write_string(out, key);
                out.push_str(style.key_separator);
                write_value(out, item, style);
            }
            out.push('}');
        }
    }
}

pub(crate) fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(ch),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits, positional notation while the decimal
/// exponent is in `-4 < decpt <= 16`, scientific (`1e+16`, `1.5e-05`) outside it.
pub(crate) fn write_float(out: &mut String, value: f64) {
    if !value.is_finite() {
        // serde_json cannot hold these; Python would write NaN/Infinity.
        out.push_str(if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        });
        return;
    }
    // `{:e}` yields the shortest round-trip digits, like Python's repr, in the form `d.ddde±x`.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let decpt = exponent + 1;
    if value.is_sign_negative() {
        out.push('-');
    }
    if decpt > -4 && decpt <= 16 {
        let length = digits.len() as i32;
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt < length {
            out.push_str(&digits[..decpt as usize]);
            out.push('.');
            out.push_str(&digits[decpt as usize..]);
        } else {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - length) as usize));
            out.push_str(".0");
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn float(value: f64) -> String {
        dumps(&json!(value), Style::DEFAULT)
    }

    #[test]
    fn floats_follow_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (123.456, "123.456"),
            (1e100, "1e+100"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
        ];
        for (value, expected) in cases {
            assert_eq!(float(value), expected, "repr of {value:e}");
        }
    }

    #[test]
    fn strings_escape_like_ensure_ascii() {
        let value = json!("a\"b\\c\n\t\u{1}\u{7f}é😀");
        let expected = "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\\u00e9\\ud83d\\ude00\"";
        assert_eq!(dumps(&value, Style::DEFAULT), expected);
    }

    #[test]
    fn sorted_compact_sorts_nested_objects() {
        let value = json!({"z": {"b": [1, {"d": null, "c": true}], "a": false}, "y": -3});
        assert_eq!(dumps(&value, Style::SORTED_COMPACT), r#"{"y":-3,"z":{"a":false,"b":[1,{"c":true,"d":null}]}}"#);
    }
}

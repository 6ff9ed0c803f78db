//! Reads a socket frame the way the official SDK's Python does: `json.loads`, truthiness,
//! `str()` and `base64.b64decode` without `validate`, so that a frame it accepts is accepted
//! here with the same ids, text and digest.
//!
//! serde_json is stricter than `json.loads` (no `NaN`/`Infinity`, integers limited to 64 bits,
//! nesting limited to 128 levels) and its `Value` cannot hold a NaN, so frames are first read
//! into [`PyValue`], which can, and only then converted for the rest of the SDK.

use serde_json::{Map, Number, Value};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;

/// Nesting depth read here. Python's own limit is its recursion limit (1,000) less the frames
/// already on its stack, about 980 under the SDK's event loop: frames nested between this and
/// that are read by Python and refused here (acknowledged and reported, never replayed forever).
pub const MAX_DEPTH: usize = 900;

/// Digits Python converts to an `int` (`sys.get_int_max_str_digits()`); a longer integer makes
/// `json.loads` raise `ValueError`, which the official SDK does not catch.
pub const MAX_INT_DIGITS: usize = 4300;

/// A JSON value as Python's `json.loads` makes it.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `null`, Python's `None`.
    None,
    /// `true` or `false`.
    Bool(bool),
    /// An integer of any size, as its decimal digits (with `-` when negative, never `-0`).
    Int(String),
    /// A float, including `NaN`, `Infinity` and `-Infinity`.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<PyValue>),
    /// An object, keys in first-seen order, a repeated key keeping its last value.
    Dict(Vec<(String, PyValue)>),
}

/// What [`loads`] read.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The value. When `unsupported` is set, the parts concerned are replaced (too deep by
    /// `None`, a lone surrogate by U+FFFD) so that the frame can still be named.
    pub value: PyValue,
    /// Why the official SDK cannot read this JSON either (`json.loads` raises something other
    /// than `JSONDecodeError`, which it does not catch), or why this SDK cannot (a lone
    /// surrogate has no UTF-8 form).
    pub unsupported: Option<&'static str>,
}

/// Python's `json.loads(text)` (strict, as the SDK calls it). `Err` is its `JSONDecodeError`.
pub fn loads(text: &str) -> Result<Loaded, String> {
    let mut parser = Parser { bytes: text.as_bytes(), pos: 0, unsupported: None };
    parser.skip_whitespace();
    let value = parser.value(1)?;
    parser.skip_whitespace();
    if parser.pos != parser.bytes.len() {
        return Err(parser.error("extra data"));
    }
    Ok(Loaded { value, unsupported: parser.unsupported })
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    unsupported: Option<&'static str>,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.pos)
    }

    fn flag(&mut self, reason: &'static str) {
        self.unsupported.get_or_insert(reason);
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        let matches = self.bytes[self.pos..].starts_with(literal.as_bytes());
        if matches {
            self.pos += literal.len();
        }
        matches
    }

    fn value(&mut self, depth: usize) -> Result<PyValue, String> {
        match self.bytes.get(self.pos) {
            Some(b'{' | b'[') if depth > MAX_DEPTH => {
                self.flag("nested deeper than Python reads");
                self.skip_nested()?;
                Ok(PyValue::None)
            }
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(PyValue::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat("null") => Ok(PyValue::None),
            _ if self.eat("true") => Ok(PyValue::Bool(true)),
            _ if self.eat("false") => Ok(PyValue::Bool(false)),
            _ if self.eat("NaN") => Ok(PyValue::Float(f64::NAN)),
            _ if self.eat("Infinity") => Ok(PyValue::Float(f64::INFINITY)),
            _ => Err(self.error("expecting value")),
        }
    }

    /// Skips an array or object without building it (nor recursing), strings included.
    fn skip_nested(&mut self) -> Result<(), String> {
        let mut open = 0usize;
        let mut in_string = false;
        while let Some(&byte) = self.bytes.get(self.pos) {
            self.pos += 1;
            match (in_string, byte) {
                (true, b'\\') => self.pos += 1,
                (true, b'"') | (false, b'"') => in_string = !in_string,
                (false, b'[' | b'{') => open += 1,
                (false, b']' | b'}') => {
                    open -= 1;
                    if open == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(self.error("unterminated value"))
    }

    fn object(&mut self, depth: usize) -> Result<PyValue, String> {
        self.pos += 1;
        let mut entries: Vec<(String, PyValue)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        self.skip_whitespace();
        if self.eat("}") {
            return Ok(PyValue::Dict(entries));
        }
        loop {
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error("expecting property name enclosed in double quotes"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if !self.eat(":") {
                return Err(self.error("expecting ':' delimiter"));
            }
            self.skip_whitespace();
            let value = self.value(depth + 1)?;
            // A repeated key keeps its first place and takes the last value, like a dict.
            match index.get(&key) {
                Some(&at) => entries[at].1 = value,
                None => {
                    index.insert(key.clone(), entries.len());
                    entries.push((key, value));
                }
            }
            self.skip_whitespace();
            if self.eat("}") {
                return Ok(PyValue::Dict(entries));
            }
            if !self.eat(",") {
                return Err(self.error("expecting ',' delimiter"));
            }
            self.skip_whitespace();
        }
    }

    fn array(&mut self, depth: usize) -> Result<PyValue, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.eat("]") {
            return Ok(PyValue::List(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_whitespace();
            if self.eat("]") {
                return Ok(PyValue::List(items));
            }
            if !self.eat(",") {
                return Err(self.error("expecting ',' delimiter"));
            }
            self.skip_whitespace();
        }
    }

    fn number(&mut self) -> Result<PyValue, String> {
        let start = self.pos;
        if self.eat("-Infinity") {
            return Ok(PyValue::Float(f64::NEG_INFINITY));
        }
        self.eat("-");
        let digits = |parser: &mut Self| {
            let from = parser.pos;
            while parser.bytes.get(parser.pos).is_some_and(u8::is_ascii_digit) {
                parser.pos += 1;
            }
            parser.pos - from
        };
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("expecting value")),
        }
        let mut float = false;
        // A fraction or exponent only counts when digits follow, as in Python's number regex.
        if self.bytes.get(self.pos) == Some(&b'.') && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
            digits(self);
            float = true;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            let mark = self.pos;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                self.pos = mark;
            } else {
                float = true;
            }
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|_| self.error("invalid number"))?;
        if float {
            return text.parse::<f64>().map(PyValue::Float).map_err(|_| self.error("invalid number"));
        }
        let unsigned = text.trim_start_matches('-');
        if unsigned.len() > MAX_INT_DIGITS {
            self.flag("an integer longer than Python converts");
            return Ok(PyValue::None);
        }
        Ok(PyValue::Int(if unsigned == "0" { "0".to_owned() } else { text.to_owned() }))
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(&byte) = self.bytes.get(self.pos) {
                if byte == b'"' || byte == b'\\' || byte < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Slices end at ASCII bytes, so they fall on character boundaries.
            out.push_str(std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|_| self.error("invalid text"))?);
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return Err(self.error("invalid control character")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let Some(&byte) = self.bytes.get(self.pos) else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        let simple = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = if (0xd800..0xdc00).contains(&unit)
                    && self.bytes[self.pos..].starts_with(b"\\u")
                    && let Some(low) = self.peek_low_surrogate()
                {
                    self.pos += 6;
                    0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                } else {
                    unit
                };
                out.push(char::from_u32(code).unwrap_or_else(|| {
                    self.flag("a lone surrogate, which has no UTF-8 form");
                    char::REPLACEMENT_CHARACTER
                }));
                return Ok(());
            }
            _ => return Err(self.error("invalid \\escape")),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let hex = self.bytes.get(self.pos..self.pos + 4).and_then(|digits| std::str::from_utf8(digits).ok());
        let unit = hex
            .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or_else(|| self.error("invalid \\uXXXX escape"))?;
        self.pos += 4;
        Ok(unit)
    }

    fn peek_low_surrogate(&self) -> Option<u32> {
        let digits = std::str::from_utf8(self.bytes.get(self.pos + 2..self.pos + 6)?).ok()?;
        if !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok().filter(|low| (0xdc00..0xe000).contains(low))
    }
}

impl PyValue {
    /// The value of `key` in a dict (`dict.get`).
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(entries) => entries.iter().find(|(name, _)| name == key).map(|(_, value)| value),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(text) => Some(text),
            _ => None,
        }
    }

    /// Python's `bool(value)`: `None`, `False`, zero, `""`, `[]` and `{}` are false; NaN is true.
    pub fn truthy(&self) -> bool {
        match self {
            PyValue::None => false,
            PyValue::Bool(value) => *value,
            PyValue::Int(digits) => digits != "0",
            PyValue::Float(value) => *value != 0.0,
            PyValue::Str(text) => !text.is_empty(),
            PyValue::List(items) => !items.is_empty(),
            PyValue::Dict(entries) => !entries.is_empty(),
        }
    }

    /// Python's `str(value)`, as an f-string writes it (`3`, `2.5`, `nan`, `True`, `[1, 'a']`).
    /// Exact for everything but containers holding non-ASCII text, whose `repr` depends on
    /// Unicode's printable classes and is approximated.
    pub fn py_str(&self) -> String {
        match self {
            PyValue::Str(text) => text.clone(),
            other => other.py_repr(),
        }
    }

    fn py_repr(&self) -> String {
        match self {
            PyValue::None => "None".into(),
            PyValue::Bool(true) => "True".into(),
            PyValue::Bool(false) => "False".into(),
            PyValue::Int(digits) => digits.clone(),
            PyValue::Float(value) if value.is_nan() => "nan".into(),
            PyValue::Float(value) if value.is_infinite() => (if *value > 0.0 { "inf" } else { "-inf" }).into(),
            PyValue::Float(value) => {
                let mut out = String::new();
                crate::pyjson::write_float(&mut out, *value);
                out
            }
            PyValue::Str(text) => str_repr(text),
            PyValue::List(items) => format!("[{}]", items.iter().map(PyValue::py_repr).collect::<Vec<_>>().join(", ")),
            PyValue::Dict(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(key, value)| format!("{}: {}", str_repr(key), value.py_repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The value for the rest of the SDK. serde_json cannot hold what Python can: NaN and the
    /// infinities become `null`, integers beyond 64 bits the nearest float.
    pub fn to_json(&self) -> Value {
        match self {
            PyValue::None => Value::Null,
            PyValue::Bool(value) => Value::Bool(*value),
            PyValue::Int(digits) => digits
                .parse::<i64>()
                .map(Number::from)
                .or_else(|_| digits.parse::<u64>().map(Number::from))
                .ok()
                .or_else(|| digits.parse::<f64>().ok().and_then(Number::from_f64))
                .map_or(Value::Null, Value::Number),
            PyValue::Float(value) => Number::from_f64(*value).map_or(Value::Null, Value::Number),
            PyValue::Str(text) => Value::String(text.clone()),
            PyValue::List(items) => Value::Array(items.iter().map(PyValue::to_json).collect()),
            PyValue::Dict(entries) => Value::Object(json_object(entries)),
        }
    }

    /// `json.dumps(value, sort_keys=True, separators=(",", ":"))` (ASCII, NaN allowed).
    fn dumps_sorted_compact(&self, out: &mut String) {
        match self {
            PyValue::None => out.push_str("null"),
            PyValue::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            PyValue::Int(digits) => out.push_str(digits),
            PyValue::Float(value) => crate::pyjson::write_float(out, *value),
            PyValue::Str(text) => crate::pyjson::write_string(out, text),
            PyValue::List(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.dumps_sorted_compact(out);
                }
                out.push(']');
            }
            PyValue::Dict(entries) => {
                let mut sorted: Vec<&(String, PyValue)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (index, (key, value)) in sorted.into_iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    crate::pyjson::write_string(out, key);
                    out.push(':');
                    value.dumps_sorted_compact(out);
                }
                out.push('}');
            }
        }
    }
}

/// A dict's entries as a serde_json object.
pub fn json_object(entries: &[(String, PyValue)]) -> Map<String, Value> {
    entries.iter().map(|(key, value)| (key.clone(), value.to_json())).collect()
}

/// The official SDK's message digest of a frame read by [`loads`]: the hex SHA-256 of the sorted
/// compact JSON of its `from`, `from_device_id`, `conversation_id`, `payload_b64`, `encrypted`,
/// `to`, `reply_to_message_id` and `attachments`, absent ones as `null`. Unlike a digest
/// of the serde_json form it keeps NaN, infinities and big integers as Python writes them.
pub fn message_digest(frame: &PyValue) -> String {
    let covered = PyValue::Dict(
        crate::agent::digest::FIELDS
            .iter()
            .map(|field| ((*field).to_owned(), frame.get(field).cloned().unwrap_or(PyValue::None)))
            .collect(),
    );
    let mut text = String::new();
    covered.dumps_sorted_compact(&mut text);
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Python's `repr(str)` for ASCII text (non-ASCII characters are kept, printable or not).
fn str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    let mut out = String::from(quote);
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            _ if ch == quote => {
                out.push('\\');
                out.push(ch);
            }
            _ if (ch as u32) < 0x20 || ch == '\u{7f}' => out.push_str(&format!("\\x{:02x}", ch as u32)),
            _ => out.push(ch),
        }
    }
    out.push(quote);
    out
}

/// Why [`b64decode`] failed, in Python's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Base64Error {
    /// One base64 character too many for a whole number of bytes.
    #[error("number of data characters cannot be 1 more than a multiple of 4")]
    OneCharTooMany,
    /// The data ends inside a group, without the padding that would close it.
    #[error("incorrect padding")]
    IncorrectPadding,
}

/// `base64.b64decode(text.encode())`, without `validate=True`, as the official SDK decodes
/// `payload_b64`: characters outside the standard alphabet are skipped, decoding stops at the
/// padding that completes a group (what follows is ignored), `=` where no padding can be is
/// skipped, and trailing bits are not checked.
///
/// ```
/// use pacerelle_core::wire::python::b64decode;
/// assert_eq!(b64decode("aGk=").unwrap(), b"hi");
/// assert_eq!(b64decode(" a\nG*k=tail").unwrap(), b"hi");
/// assert!(b64decode("aGk").is_err());
/// ```
pub fn b64decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let (mut quad, mut left, mut pads) = (0u8, 0u32, 0u8);
    for byte in text.bytes() {
        if byte == b'=' {
            if quad >= 2 {
                pads += 1;
                if quad + pads >= 4 {
                    return Ok(out);
                }
            }
            continue;
        }
        let Some(sextet) = sextet(byte) else {
            continue;
        };
        pads = 0;
        match quad {
            0 => left = sextet,
            1 => {
                out.push(((left << 2) | (sextet >> 4)) as u8);
                left = sextet & 0x0f;
            }
            2 => {
                out.push(((left << 4) | (sextet >> 2)) as u8);
                left = sextet & 0x03;
            }
            _ => out.push(((left << 6) | sextet) as u8),
        }
        quad = (quad + 1) % 4;
    }
    match quad {
        0 => Ok(out),
        1 => Err(Base64Error::OneCharTooMany),
        _ => Err(Base64Error::IncorrectPadding),
    }
}

fn sextet(byte: u8) -> Option<u32> {
    Some(match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_reads_what_python_reads() {
        let loaded =
            loads(r#"{"a": [NaN, Infinity, -Infinity, 123456789012345678901234567890, -0, 1E2], "a": 1, "b": 2}"#)
                .unwrap();
        assert_eq!(loaded.unsupported, None);
        // The repeated key keeps its place and its last value.
        assert_eq!(
            loaded.value,
            PyValue::Dict(vec![("a".into(), PyValue::Int("1".into())), ("b".into(), PyValue::Int("2".into()))])
        );
        let PyValue::List(items) =
            loads("[NaN, Infinity, -Infinity, 123456789012345678901234567890, -0, 1E2]").unwrap().value
        else {
            panic!("not a list")
        };
        assert!(matches!(items[0], PyValue::Float(value) if value.is_nan()));
        assert_eq!(items[1..3], [PyValue::Float(f64::INFINITY), PyValue::Float(f64::NEG_INFINITY)]);
        assert_eq!(items[3], PyValue::Int("123456789012345678901234567890".into()));
        assert_eq!(items[4..], [PyValue::Int("0".into()), PyValue::Float(100.0)]);
    }

    #[test]
    fn loads_refuses_what_python_refuses() {
        for text in
            ["", "nan", "+1", "01", "1.", ".5", "[1,]", "{'a':1}", "\"a\nb\"", "\"\\x\"", "[", "1 2", "-", "inf"]
        {
            assert!(loads(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn what_python_raises_on_is_flagged_but_still_read() {
        let deep = format!(r#"{{"id":"m","x":{}{}}}"#, "[".repeat(MAX_DEPTH + 5), "]".repeat(MAX_DEPTH + 5));
        let loaded = loads(&deep).unwrap();
        assert!(loaded.unsupported.is_some());
        assert_eq!(loaded.value.get("id"), Some(&PyValue::Str("m".into())));
        let shallow = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(loads(&shallow).unwrap().unsupported, None);
        let long = format!("[{}]", "7".repeat(MAX_INT_DIGITS + 1));
        assert!(loads(&long).unwrap().unsupported.is_some());
        assert!(loads(r#""\ud800x""#).unwrap().unsupported.is_some());
        assert_eq!(loads(r#""\ud83d\ude00""#).unwrap().value, PyValue::Str("😀".into()));
    }

    #[test]
    fn str_and_truthiness_follow_python() {
        let value = loads(r#"[3, 2.0, 1e16, NaN, true, null, [1, "a'b", {"k": false}], "s"]"#).unwrap().value;
        let PyValue::List(items) = value else { panic!("not a list") };
        let strs: Vec<String> = items.iter().map(PyValue::py_str).collect();
        assert_eq!(strs, ["3", "2.0", "1e+16", "nan", "True", "None", r#"[1, "a'b", {'k': False}]"#, "s"]);
        let falsy = loads(r#"[0, 0.0, -0.0, "", [], {}, false, null]"#).unwrap().value;
        let PyValue::List(items) = falsy else { panic!("not a list") };
        assert!(items.iter().all(|item| !item.truthy()));
        assert!(PyValue::Float(f64::NAN).truthy());
    }

    #[test]
    fn b64decode_is_as_lenient_as_python() {
        for (text, expected) in [
            ("aGk=", Ok(&b"hi"[..])),
            ("aGk==", Ok(b"hi")),
            ("aGk===", Ok(b"hi")),
            ("=aGk=", Ok(b"hi")),
            ("a Gk=\n", Ok(b"hi")),
            ("a_Gk=", Ok(b"hi")),
            ("a\u{e9}Gk=", Ok(b"hi")),
            ("aGk=junk", Ok(b"hi")),
            ("YQ==YQ==", Ok(b"a")),
            ("YQ=x=", Ok(b"a\x0c")),
            ("", Ok(b"")),
            ("aGk", Err(Base64Error::IncorrectPadding)),
            ("aG=k", Err(Base64Error::IncorrectPadding)),
            ("YWJj=YQ", Err(Base64Error::IncorrectPadding)),
            ("Y===", Err(Base64Error::OneCharTooMany)),
        ] {
            assert_eq!(b64decode(text), expected.map(<[u8]>::to_vec), "{text:?}");
        }
    }
}

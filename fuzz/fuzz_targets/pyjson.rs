//! `pyjson::dumps` (Python's `json.dumps`, byte for byte) on any JSON value: in both styles the
//! output must be ASCII JSON that reads back to the same value.
//!
//! serde_json reads Python's float spellings (`1e+16`, `1e-05`) fine, and NaN and infinities
//! cannot come out of parsed JSON, so every output must re-parse. Floats are compared through
//! Rust's correctly rounded parser: serde_json as pacerelle-core builds it (without
//! `float_roundtrip`) reads some floats one ULP off (see `pacerelle_fuzz::same_modulo_float_parsing`);
//! every float's Python spelling must denote exactly that float.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_core::pyjson::{Style, dumps};
use pacerelle_fuzz::{float_spelled_exactly, floats, same_modulo_float_parsing};
use serde_json::Value;

fn python_float(value: f64) -> String {
    dumps(&Value::from(value), Style::DEFAULT)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(value) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    for style in [Style::DEFAULT, Style::SORTED_COMPACT] {
        let out = dumps(&value, style);
        // ensure_ascii: the output is ASCII only.
        assert!(out.is_ascii(), "non-ASCII output {out:?}");
        let back: Value = match serde_json::from_str(&out) {
            Ok(back) => back,
            Err(error) => panic!("dumps wrote invalid JSON ({error}): {out:?} from {value}"),
        };
        assert!(
            same_modulo_float_parsing(&value, &back, &python_float),
            "round trip through {out:?} ({style:?}) read back {back} instead of {value}"
        );
    }
    let mut found = Vec::new();
    floats(&value, &mut found);
    for float in found {
        assert!(float_spelled_exactly(float, &python_float), "{float:e} written as {}", python_float(float));
    }
});

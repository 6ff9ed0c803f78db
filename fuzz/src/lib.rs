//! Helpers shared by the fuzz targets in `fuzz_targets/`.

pub mod signal;

use serde_json::Value;

/// Whether `reparsed` is `original` read back from JSON text that `float_text` wrote.
///
/// Exact equality, except for floats: serde_json built without its `float_roundtrip` feature
/// (as pacerelle-core builds it, and so as this fuzz crate must, to fuzz the same code) does
/// not always round correctly: it reads `6E81` as `5.999999999999999e81` and
/// `5.999999999999999e+81` as `5.999999999999998e81`. A float therefore counts as the same
/// when `float_text(original)` spells `original` exactly (checked with Rust's correctly rounded
/// `str::parse::<f64>`) and serde_json's reading of it is within a rounding error.
pub fn same_modulo_float_parsing(original: &Value, reparsed: &Value, float_text: &dyn Fn(f64) -> String) -> bool {
    match (original, reparsed) {
        (Value::Number(a), Value::Number(b)) if a.is_f64() => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else { return false };
            if !b.is_f64() {
                return false;
            }
            if x == y {
                return true;
            }
            float_spelled_exactly(x, float_text) && ((x - y).abs() <= x.abs().max(y.abs()) * 1e-14)
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_modulo_float_parsing(x, y, float_text))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(key, x)| b.get(key).is_some_and(|y| same_modulo_float_parsing(x, y, float_text)))
        }
        (a, b) => a == b,
    }
}

/// Whether `float_text(value)` reads back, correctly rounded, as exactly `value`.
pub fn float_spelled_exactly(value: f64, float_text: &dyn Fn(f64) -> String) -> bool {
    let text = float_text(value);
    text.parse::<f64>().is_ok_and(|back| back.to_bits() == value.to_bits())
}

/// Every float in `value`, depth first.
pub fn floats(value: &Value, out: &mut Vec<f64>) {
    match value {
        Value::Number(number) if number.is_f64() => out.extend(number.as_f64()),
        Value::Array(items) => items.iter().for_each(|item| floats(item, out)),
        Value::Object(map) => map.values().for_each(|item| floats(item, out)),
        _ => {}
    }
}

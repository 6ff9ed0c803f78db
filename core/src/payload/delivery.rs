//! `pacerelle.delivery`: an encrypted payload that carries the conversation's archive key along
//! with the real message body.

use super::history::is_identifier;
use super::json_object;
use crate::aead::KEY_LEN;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use zeroize::Zeroizing;

/// A conversation's archive key (`history_key`).
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryKey {
    /// Its id.
    pub key_id: String,
    /// Its epoch (always 1 in `history-v1`).
    pub epoch: u64,
    /// The 32-byte AES-256-GCM key, wiped on drop.
    pub raw_key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for HistoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryKey")
            .field("key_id", &self.key_id)
            .field("epoch", &self.epoch)
            .field("raw_key", &"<redacted>")
            .finish()
    }
}

/// Why a delivery payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// `v` is not 1 or `body` is not a string.
    #[error("invalid conversation history delivery")]
    InvalidDelivery,
    /// `history_key` is not exactly `{key_id, epoch: 1, raw_key_b64}` with a 32-byte key.
    #[error("invalid conversation history key")]
    InvalidHistoryKey,
}

/// Reads a decrypted payload: `Some((body, key))` for a `pacerelle.delivery`, `None` when the
/// text is anything else (it is then the payload itself).
pub fn unwrap_delivery(text: &str) -> Result<Option<(String, HistoryKey)>, DeliveryError> {
    let Some(object) = json_object(text) else {
        return Ok(None);
    };
    if object.get("type").and_then(Value::as_str) != Some("pacerelle.delivery") {
        return Ok(None);
    }
    // The official SDK compares `v != 1` in Python, where `1.0` and `true` also equal 1.
    let version_one = match object.get("v") {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::Number(number)) => number.as_f64() == Some(1.0),
        _ => false,
    };
    let body = match object.get("body") {
        Some(Value::String(body)) if version_one => body.clone(),
        _ => return Err(DeliveryError::InvalidDelivery),
    };
    let key = validate_history_key(object.get("history_key").unwrap_or(&Value::Null))?;
    Ok(Some((body, key)))
}

/// Checks a `history_key` value: exactly the fields `key_id` (an identifier), `epoch` (the
/// integer 1) and `raw_key_b64` (base64 of 32 bytes).
pub fn validate_history_key(value: &Value) -> Result<HistoryKey, DeliveryError> {
    let invalid = DeliveryError::InvalidHistoryKey;
    let object = value.as_object().ok_or(invalid.clone())?;
    if object.len() != 3 {
        return Err(invalid);
    }
    let key_id = object.get("key_id").and_then(Value::as_str).filter(|id| is_identifier(id)).ok_or(invalid.clone())?;
    let epoch = object.get("epoch").filter(|epoch| epoch.is_u64()).and_then(Value::as_u64);
    if epoch != Some(1) {
        return Err(invalid);
    }
    let raw = object.get("raw_key_b64").and_then(Value::as_str).ok_or(invalid.clone())?;
    let bytes = Zeroizing::new(STANDARD.decode(raw).map_err(|_| invalid.clone())?);
    let raw_key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| invalid)?;
    Ok(HistoryKey { key_id: key_id.to_owned(), epoch: 1, raw_key: Zeroizing::new(raw_key) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn delivery_unwraps_body_and_key() {
        let text = json!({"type": "pacerelle.delivery", "v": 1, "body": "hi",
                          "history_key": {"key_id": "k1", "epoch": 1, "raw_key_b64": KEY}})
        .to_string();
        let (body, key) = unwrap_delivery(&text).unwrap().unwrap();
        assert_eq!(body, "hi");
        assert_eq!(key.key_id, "k1");
        assert_eq!(key.raw_key[31], 31);
        assert!(!format!("{key:?}").contains(KEY));
    }

    #[test]
    fn other_texts_are_not_deliveries() {
        for text in ["hi", "{}", r#"{"type":"widget.response"}"#, "{bad"] {
            assert_eq!(unwrap_delivery(text), Ok(None), "{text}");
        }
    }

    #[test]
    fn bad_deliveries_and_keys_are_errors() {
        let good_key = json!({"key_id": "k1", "epoch": 1, "raw_key_b64": KEY});
        let delivery = |v: Value, body: Value, key: Value| {
            unwrap_delivery(
                &json!({"type": "pacerelle.delivery", "v": v, "body": body, "history_key": key}).to_string(),
            )
        };
        assert_eq!(delivery(json!(2), json!("b"), good_key.clone()), Err(DeliveryError::InvalidDelivery));
        assert_eq!(delivery(json!(1), json!(5), good_key.clone()), Err(DeliveryError::InvalidDelivery));
        for key in [
            json!({"key_id": "k1", "epoch": 2, "raw_key_b64": KEY}),
            json!({"key_id": "k1", "epoch": 1.0, "raw_key_b64": KEY}),
            json!({"key_id": "k:1", "epoch": 1, "raw_key_b64": KEY}),
            json!({"key_id": "", "epoch": 1, "raw_key_b64": KEY}),
            json!({"key_id": "k1", "epoch": 1, "raw_key_b64": "AAAA"}),
            json!({"key_id": "k1", "epoch": 1, "raw_key_b64": KEY, "extra": 0}),
            json!(null),
        ] {
            assert_eq!(delivery(json!(1), json!("b"), key.clone()), Err(DeliveryError::InvalidHistoryKey), "{key}");
        }
    }
}

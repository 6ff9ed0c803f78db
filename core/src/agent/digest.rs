//! The message digest that tells a replay from a conflicting message with the same id.

use crate::pyjson;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// The fields the digest covers, as the official SDK lists them.
pub(crate) const FIELDS: [&str; 8] = [
    "from",
    "from_device_id",
    "conversation_id",
    "payload_b64",
    "encrypted",
    "to",
    "reply_to_message_id",
    "attachments",
];

/// Hex SHA-256 of the sorted compact JSON of the frame's routing fields and payload (absent
/// fields as `null`), byte-compatible with the official SDK's receipts.
///
/// ```
/// let frame = serde_json::json!({"type": "MSG", "id": "m", "from": "u", "conversation_id": "c"});
/// let digest = pacerelle_core::agent::message_digest(frame.as_object().unwrap());
/// assert_eq!(digest.len(), 64);
/// ```
pub fn message_digest(frame: &Map<String, Value>) -> String {
    let covered: Map<String, Value> =
        FIELDS.iter().map(|field| ((*field).to_owned(), frame.get(*field).cloned().unwrap_or(Value::Null))).collect();
    let text = pyjson::dumps(&Value::Object(covered), pyjson::Style::SORTED_COMPACT);
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's digest of this frame (computed with the official SDK's formula). `6E81` parses to
    /// a float whose shortest repr needs exact float parsing on both sides to agree.
    #[test]
    fn digest_matches_python_for_hard_floats() {
        let frame: Value = serde_json::from_str(
            r#"{"type":"MSG","id":"m","from":"u","conversation_id":"c","payload_b64":"aGk=","encrypted":false,
                "attachments":[{"id":"a","size":1,"width":6E81}]}"#,
        )
        .unwrap();
        assert_eq!(
            message_digest(frame.as_object().unwrap()),
            "b9243ecb4e6cfb56c5aaa402d98baa3a7accca7ebdbc4bb143ce476b8aa51898"
        );
    }
}

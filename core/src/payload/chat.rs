//! `chat.message` payloads and attachment metadata: what the relay may see and what it may not.
//!
//! A file's real name, type, size, dimensions, key and IV travel only inside the encrypted
//! payload; the envelope's public entry is redacted to `attachment` /
//! `application/octet-stream`. A reader trusts the encrypted metadata over the envelope's.

use crate::message::Attachment;
use crate::pyjson;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The name every public attachment entry shows the relay.
pub const REDACTED_NAME: &str = "attachment";
/// The MIME type every public attachment entry shows the relay.
pub const REDACTED_MIME: &str = "application/octet-stream";
/// Longest `name`/`mime` (in characters) a reader keeps from a payload.
pub const MAX_METADATA_CHARS: usize = 512;

/// What an encrypted `chat.message` says about one attachment.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AttachmentSecret {
    /// Base64 AES-256-GCM key.
    pub key_b64: String,
    /// Base64 IV.
    pub iv_b64: String,
    /// Real file name, when a string of 1 to 512 characters.
    pub name: Option<String>,
    /// Real MIME type, same rule.
    pub mime: Option<String>,
    /// Real size, when a non-negative integer.
    pub size: Option<u64>,
    /// Width, same rule.
    pub width: Option<u64>,
    /// Height, same rule.
    pub height: Option<u64>,
    /// Duration, same rule.
    pub duration_ms: Option<u64>,
}

impl std::fmt::Debug for AttachmentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentSecret")
            .field("key_b64", &"<redacted>")
            .field("name", &self.name)
            .field("mime", &self.mime)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// The public, redacted entry of an outbound envelope's `attachments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PublicAttachment {
    /// The attachment id.
    pub id: String,
    /// Always [`REDACTED_NAME`] when we send.
    pub name: String,
    /// Always [`REDACTED_MIME`] when we send.
    pub mime: String,
    /// Plaintext size.
    pub size: u64,
    /// The blob.
    pub blob_id: String,
    /// Hex SHA-256 of the ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Thumbnail blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_blob_id: Option<String>,
}

impl PublicAttachment {
    /// The redacted public entry for `attachment`.
    pub fn redacted(attachment: &Attachment) -> Self {
        PublicAttachment {
            id: attachment.id.clone(),
            name: REDACTED_NAME.into(),
            mime: REDACTED_MIME.into(),
            size: attachment.size,
            blob_id: attachment.blob_id.clone(),
            sha256: attachment.sha256.clone().filter(|hash| !hash.is_empty()),
            thumbnail_blob_id: attachment.thumbnail_blob_id.clone().filter(|id| !id.is_empty()),
        }
    }
}

/// The payload text for `text` with `attachments`: a `chat.message` when some attachment has a
/// key and IV, else `text` unchanged.
///
/// ```
/// use pacerelle_core::payload::chat::encode_chat_payload;
/// assert_eq!(encode_chat_payload("hi", &[]), "hi");
/// ```
pub fn encode_chat_payload(text: &str, attachments: &[Attachment]) -> String {
    let secrets: Vec<Value> = attachments
        .iter()
        .filter(|attachment| {
            attachment.key_b64.as_deref().is_some_and(|key| !key.is_empty())
                && attachment.iv_b64.as_deref().is_some_and(|iv| !iv.is_empty())
        })
        .map(|attachment| {
            let mut entry = Map::new();
            entry.insert("id".into(), json!(attachment.id));
            entry.insert("blob_id".into(), json!(attachment.blob_id));
            entry.insert("key_b64".into(), json!(attachment.key_b64));
            entry.insert("iv_b64".into(), json!(attachment.iv_b64));
            entry.insert("name".into(), json!(attachment.name));
            entry.insert("mime".into(), json!(attachment.mime));
            entry.insert("size".into(), json!(attachment.size));
            for (field, value) in
                [("width", attachment.width), ("height", attachment.height), ("duration_ms", attachment.duration_ms)]
            {
                if let Some(value) = value {
                    entry.insert(field.into(), json!(value));
                }
            }
            Value::Object(entry)
        })
        .collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    let mut payload = Map::new();
    payload.insert("kind".into(), json!("chat.message"));
    payload.insert("text".into(), json!(text));
    payload.insert("attachments".into(), Value::Array(secrets));
    pyjson::dumps(&Value::Object(payload), pyjson::Style::DEFAULT)
}

/// Reads the attachment secrets of a `chat.message` (`attachments` of any JSON shape).
pub(crate) fn read_secrets(attachments: Option<&Value>) -> BTreeMap<String, AttachmentSecret> {
    let mut secrets = BTreeMap::new();
    let Some(Value::Array(items)) = attachments else {
        return secrets;
    };
    for item in items {
        let Value::Object(item) = item else { continue };
        let (Some(id), Some(key_b64), Some(iv_b64)) = (
            item.get("id").and_then(Value::as_str),
            item.get("key_b64").and_then(Value::as_str),
            item.get("iv_b64").and_then(Value::as_str),
        ) else {
            continue;
        };
        secrets.insert(
            id.to_owned(),
            AttachmentSecret {
                key_b64: key_b64.to_owned(),
                iv_b64: iv_b64.to_owned(),
                name: metadata_text(item.get("name")),
                mime: metadata_text(item.get("mime")),
                size: count(item.get("size")),
                width: count(item.get("width")),
                height: count(item.get("height")),
                duration_ms: count(item.get("duration_ms")),
            },
        );
    }
    secrets
}

/// Attachments from an envelope's public `attachments` (any JSON shape), with encrypted
/// metadata from `secrets` taking precedence.
///
/// An entry counts only with string `id`, `name`, `mime`, `blob_id` and a non-negative integer
/// `size`; others are skipped.
pub fn merge_attachments(raw: Option<&Value>, secrets: &BTreeMap<String, AttachmentSecret>) -> Vec<Attachment> {
    let Some(Value::Array(items)) = raw else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let item = item.as_object()?;
            let text = |field: &str| item.get(field).and_then(Value::as_str).map(str::to_owned);
            let (id, name, mime, blob_id) = (text("id")?, text("name")?, text("mime")?, text("blob_id")?);
            let size = envelope_int(item.get("size"))?;
            let secret = secrets.get(&id);
            Some(Attachment {
                name: secret.and_then(|s| s.name.clone()).unwrap_or(name),
                mime: secret.and_then(|s| s.mime.clone()).unwrap_or(mime),
                size: secret.and_then(|s| s.size).unwrap_or(size),
                blob_id,
                sha256: text("sha256"),
                width: secret.and_then(|s| s.width).or_else(|| envelope_int(item.get("width"))),
                height: secret.and_then(|s| s.height).or_else(|| envelope_int(item.get("height"))),
                duration_ms: secret.and_then(|s| s.duration_ms).or_else(|| envelope_int(item.get("duration_ms"))),
                thumbnail_blob_id: text("thumbnail_blob_id"),
                key_b64: secret.map(|s| s.key_b64.clone()),
                iv_b64: secret.map(|s| s.iv_b64.clone()),
                id,
            })
        })
        .collect()
}

/// A `name`/`mime` value a reader keeps: a string of 1 to 512 characters.
fn metadata_text(value: Option<&Value>) -> Option<String> {
    let text = value?.as_str()?;
    let length = text.chars().count();
    (1..=MAX_METADATA_CHARS).contains(&length).then(|| text.to_owned())
}

/// A count a reader keeps from encrypted metadata: a non-negative JSON integer (not a bool, not
/// a float).
fn count(value: Option<&Value>) -> Option<u64> {
    value?.as_u64()
}

/// An integer from the public envelope. The official SDK checks `isinstance(value, int)`,
/// which in Python also admits `true`/`false` (as 1/0); we read those the same way so both
/// SDKs see the same attachment list. Negative integers cannot be sizes and are refused.
fn envelope_int(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Bool(flag) => Some(u64::from(*flag)),
        other => other.as_u64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            id: "a1".into(),
            name: "report.pdf".into(),
            mime: "application/pdf".into(),
            size: 1234,
            blob_id: "b1".into(),
            sha256: Some("ff".into()),
            width: Some(10),
            key_b64: Some("key".into()),
            iv_b64: Some("iv".into()),
            ..Default::default()
        }
    }

    #[test]
    fn chat_payload_matches_python_layout() {
        assert_eq!(
            encode_chat_payload("hé", &[attachment()]),
            r#"{"kind": "chat.message", "text": "h\u00e9", "attachments": [{"id": "a1", "blob_id": "b1", "key_b64": "key", "iv_b64": "iv", "name": "report.pdf", "mime": "application/pdf", "size": 1234, "width": 10}]}"#
        );
        let keyless = Attachment { key_b64: None, ..attachment() };
        assert_eq!(encode_chat_payload("x", &[keyless]), "x");
    }

    #[test]
    fn public_entry_hides_name_and_type() {
        let public = serde_json::to_string(&PublicAttachment::redacted(&attachment())).unwrap();
        assert_eq!(
            public,
            r#"{"id":"a1","name":"attachment","mime":"application/octet-stream","size":1234,"blob_id":"b1","sha256":"ff"}"#
        );
    }

    #[test]
    fn secrets_override_envelope() {
        let payload = encode_chat_payload("t", &[attachment()]);
        let parsed = super::super::parse_payload(&payload);
        let envelope = serde_json::to_value(vec![PublicAttachment::redacted(&attachment())]).unwrap();
        let merged = merge_attachments(Some(&envelope), &parsed.secrets);
        assert_eq!(merged, vec![attachment()]);
    }

    #[test]
    fn invalid_envelope_entries_are_skipped() {
        let raw = json!([
            {"id": "ok", "name": "n", "mime": "m", "blob_id": "b", "size": 1},
            {"id": "no-size", "name": "n", "mime": "m", "blob_id": "b"},
            {"id": "float", "name": "n", "mime": "m", "blob_id": "b", "size": 1.5},
            {"id": 3, "name": "n", "mime": "m", "blob_id": "b", "size": 1},
            "not an object"
        ]);
        let merged = merge_attachments(Some(&raw), &BTreeMap::new());
        assert_eq!(merged.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["ok"]);
        assert!(merge_attachments(Some(&json!({"id": "x"})), &BTreeMap::new()).is_empty());
    }

    #[test]
    fn metadata_rules() {
        assert_eq!(metadata_text(Some(&json!(""))), None);
        assert_eq!(metadata_text(Some(&json!("é".repeat(512)))), Some("é".repeat(512)));
        assert_eq!(metadata_text(Some(&json!("x".repeat(513)))), None);
        assert_eq!(count(Some(&json!(true))), None);
        assert_eq!(count(Some(&json!(-1))), None);
        assert_eq!(count(Some(&json!(2.0))), None);
        assert_eq!(count(Some(&json!(7))), Some(7));
    }
}

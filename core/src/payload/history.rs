//! Conversation history (`history-v1`): each outbound message sealed for the conversation's
//! archive under its archive key, bound to who said what, where.

use crate::aead::{self, IV_LEN, KEY_LEN};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

/// The highest epoch allowed: JavaScript's largest safe integer, `2^53 - 1`.
pub const MAX_EPOCH: u64 = (1 << 53) - 1;

/// Who wrote an archived message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderType {
    /// An agent.
    Agent,
    /// A person.
    Human,
}

impl SenderType {
    /// The word used in the associated data.
    pub fn as_str(self) -> &'static str {
        match self {
            SenderType::Agent => "agent",
            SenderType::Human => "human",
        }
    }
}

/// What an archive record is bound to; a reader supplies what it expects, not what the record
/// claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryContext<'a> {
    /// The conversation.
    pub conversation_id: &'a str,
    /// The message.
    pub message_id: &'a str,
    /// Its sender.
    pub sender_id: &'a str,
    /// Agent or person.
    pub sender_type: SenderType,
    /// The archive key's id.
    pub key_id: &'a str,
    /// The archive key's epoch.
    pub epoch: u64,
}

/// The `history_record` of an outbound `MSG`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// The archive key's id.
    pub key_id: String,
    /// Its epoch.
    pub epoch: u64,
    /// Base64 of the 12-byte IV.
    pub iv_b64: String,
    /// Base64 of ciphertext and tag.
    pub ciphertext_b64: String,
    /// Always 1.
    pub aad_version: u64,
}

/// Why a record could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// An identifier is empty or contains `:` or a control character.
    #[error("history identifier `{0}` must be non-empty, without colons or control characters")]
    InvalidIdentifier(&'static str),
    /// The epoch is outside `1..=2^53-1`.
    #[error("history epoch must be a positive safe integer")]
    InvalidEpoch,
    /// The record is not a JSON object with the expected fields.
    #[error("history record is malformed: {0}")]
    Malformed(&'static str),
    /// `aad_version` is not the integer 1.
    #[error("unsupported conversation history version")]
    UnsupportedVersion,
    /// The record's key id or epoch is not what the reader expects.
    #[error("history record does not match the expected key and epoch")]
    MetadataMismatch,
    /// IV not 12 bytes or ciphertext shorter than a tag.
    #[error("invalid history IV or authentication tag length")]
    InvalidLength,
    /// Decryption failed.
    #[error(transparent)]
    Open(#[from] aead::OpenError),
    /// The plaintext is not UTF-8.
    #[error("history plaintext is not UTF-8")]
    NotUtf8,
}

/// The associated data binding a record to its context.
///
/// ```
/// use pacerelle_core::payload::history::{associated_data, HistoryContext, SenderType};
/// let context = HistoryContext {
///     conversation_id: "c", message_id: "m", sender_id: "a", sender_type: SenderType::Agent,
///     key_id: "k", epoch: 1,
/// };
/// assert_eq!(associated_data(&context)?, "pacerelle:conversation-history:v1:c:m:a:agent:k:1");
/// # Ok::<(), pacerelle_core::payload::history::HistoryError>(())
/// ```
pub fn associated_data(context: &HistoryContext<'_>) -> Result<String, HistoryError> {
    for (name, value) in [
        ("conversation_id", context.conversation_id),
        ("message_id", context.message_id),
        ("sender_id", context.sender_id),
        ("key_id", context.key_id),
    ] {
        if !is_identifier(value) {
            return Err(HistoryError::InvalidIdentifier(name));
        }
    }
    if !(1..=MAX_EPOCH).contains(&context.epoch) {
        return Err(HistoryError::InvalidEpoch);
    }
    Ok(format!(
        "pacerelle:conversation-history:v1:{}:{}:{}:{}:{}:{}",
        context.conversation_id,
        context.message_id,
        context.sender_id,
        context.sender_type.as_str(),
        context.key_id,
        context.epoch
    ))
}

/// Non-empty, no `:`, no control character (below 0x20, or 0x7f).
pub(crate) fn is_identifier(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| c == ':' || (c as u32) < 0x20 || c as u32 == 0x7f)
}

/// Seals `plaintext` for the archive. `iv` must be fresh for every record.
pub fn seal(
    plaintext: &str,
    raw_key: &[u8; KEY_LEN],
    iv: &[u8; IV_LEN],
    context: &HistoryContext<'_>,
) -> Result<HistoryRecord, HistoryError> {
    let aad = associated_data(context)?;
    let ciphertext = aead::seal(raw_key, iv, plaintext.as_bytes(), aad.as_bytes());
    Ok(HistoryRecord {
        key_id: context.key_id.to_owned(),
        epoch: context.epoch,
        iv_b64: STANDARD.encode(iv),
        ciphertext_b64: STANDARD.encode(ciphertext),
        aad_version: 1,
    })
}

/// Opens a record (as received, any JSON) that the reader expects under `context`.
pub fn open(record: &Value, raw_key: &[u8], context: &HistoryContext<'_>) -> Result<String, HistoryError> {
    let aad = associated_data(context)?;
    let record = record.as_object().ok_or(HistoryError::Malformed("not an object"))?;
    // Only the JSON integer 1; `1.0` and `true` are other versions.
    if !record.get("aad_version").is_some_and(|v| v.is_u64() && v.as_u64() == Some(1)) {
        return Err(HistoryError::UnsupportedVersion);
    }
    let epoch_matches = record.get("epoch").is_some_and(|v| v.as_u64() == Some(context.epoch) && !v.is_f64());
    if record.get("key_id").and_then(Value::as_str) != Some(context.key_id) || !epoch_matches {
        return Err(HistoryError::MetadataMismatch);
    }
    let field = |name: &'static str| -> Result<Vec<u8>, HistoryError> {
        let text = record.get(name).and_then(Value::as_str).ok_or(HistoryError::Malformed(name))?;
        STANDARD.decode(text).map_err(|_| HistoryError::Malformed(name))
    };
    let iv = field("iv_b64")?;
    let ciphertext = field("ciphertext_b64")?;
    if iv.len() != IV_LEN || ciphertext.len() < aead::TAG_LEN {
        return Err(HistoryError::InvalidLength);
    }
    let plaintext: Zeroizing<Vec<u8>> = aead::open(raw_key, &iv, &ciphertext, aad.as_bytes())?;
    String::from_utf8(plaintext.to_vec()).map_err(|_| HistoryError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(epoch: u64) -> HistoryContext<'static> {
        HistoryContext {
            conversation_id: "c1",
            message_id: "m1",
            sender_id: "agent-1",
            sender_type: SenderType::Agent,
            key_id: "k1",
            epoch,
        }
    }

    #[test]
    fn seal_then_open() {
        let key = [3u8; 32];
        let record = seal("bonjour", &key, &[1u8; 12], &context(1)).unwrap();
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(open(&value, &key, &context(1)).unwrap(), "bonjour");
        assert_eq!(open(&value, &key, &context(2)), Err(HistoryError::MetadataMismatch));
        let other_message = HistoryContext { message_id: "m2", ..context(1) };
        assert!(matches!(open(&value, &key, &other_message), Err(HistoryError::Open(_))));
    }

    #[test]
    fn identifiers_and_epochs_are_checked() {
        assert_eq!(
            associated_data(&HistoryContext { key_id: "a:b", ..context(1) }),
            Err(HistoryError::InvalidIdentifier("key_id"))
        );
        assert_eq!(
            associated_data(&HistoryContext { sender_id: "a\u{7f}", ..context(1) }),
            Err(HistoryError::InvalidIdentifier("sender_id"))
        );
        assert_eq!(associated_data(&context(0)), Err(HistoryError::InvalidEpoch));
        assert_eq!(associated_data(&context(MAX_EPOCH + 1)), Err(HistoryError::InvalidEpoch));
        assert!(associated_data(&context(MAX_EPOCH)).is_ok());
    }

    #[test]
    fn version_must_be_integer_one() {
        let key = [3u8; 32];
        let mut value = serde_json::to_value(seal("x", &key, &[1u8; 12], &context(1)).unwrap()).unwrap();
        for version in [serde_json::json!(1.0), serde_json::json!(true), serde_json::json!(2)] {
            value["aad_version"] = version;
            assert_eq!(open(&value, &key, &context(1)), Err(HistoryError::UnsupportedVersion));
        }
    }
}

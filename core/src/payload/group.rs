//! Group payloads: the AES-256-GCM group key a person distributes through each member's Signal
//! session, and the group message sealed once under it for every member.

use crate::aead::{self, IV_LEN, KEY_LEN};
use crate::pyjson;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

/// `type` of a group key distribution plaintext.
pub const SENDER_KEY_TYPE: &str = "pacerelle.group.sender_key";
/// `type` of a group message.
pub const MESSAGE_TYPE: &str = "pacerelle.group.message";
/// The only algorithm.
pub const ALGORITHM: &str = "AES-256-GCM";

/// A group key, as distributed (`pacerelle.group.sender_key`).
#[derive(Clone, PartialEq, Eq)]
pub struct GroupKey {
    /// The group conversation.
    pub conversation_id: String,
    /// The key's id.
    pub key_id: String,
    /// Its epoch (at least 1); senders use the highest they hold.
    pub epoch: u64,
    /// The key, wiped on drop.
    pub raw_key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupKey")
            .field("conversation_id", &self.conversation_id)
            .field("key_id", &self.key_id)
            .field("epoch", &self.epoch)
            .field("raw_key", &"<redacted>")
            .finish()
    }
}

/// A group message's outer fields (`pacerelle.group.message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupCiphertext {
    /// The group conversation.
    pub conversation_id: String,
    /// The key it was sealed under.
    pub key_id: String,
    /// That key's epoch.
    pub epoch: i64,
    /// Base64 IV.
    pub iv_b64: String,
    /// Base64 ciphertext and tag.
    pub ciphertext_b64: String,
}

/// Why a group message could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Not a `pacerelle.group.message` of the expected shape.
    #[error("invalid group ciphertext")]
    InvalidCiphertext,
    /// Sealed for another conversation.
    #[error("group message belongs to another conversation")]
    WrongConversation,
    /// Sealed under another key or epoch.
    #[error("group message was sealed under another key")]
    WrongKey,
    /// Decryption failed.
    #[error(transparent)]
    Open(#[from] aead::OpenError),
    /// The plaintext is not UTF-8.
    #[error("group plaintext is not UTF-8")]
    NotUtf8,
}

/// Reads a group-key distribution plaintext; `None` unless it has exactly the right shape.
pub fn parse_sender_key(text: &str) -> Option<GroupKey> {
    let object = serde_json::from_str::<Value>(text).ok()?;
    let object = object.as_object()?;
    let string = |field: &str| object.get(field).and_then(Value::as_str);
    if string("type") != Some(SENDER_KEY_TYPE) || !is_version_one(object.get("v")) || string("alg") != Some(ALGORITHM) {
        return None;
    }
    // At most `i64::MAX`: a group message names its epoch as a signed integer (and its
    // associated data with it), so a key beyond that could seal messages nobody opens, and the
    // newest-epoch rule would then make it every later send's key. Python has no such bound; no
    // real epoch comes near it.
    let epoch = object
        .get("epoch")
        .filter(|epoch| !epoch.is_f64())?
        .as_u64()
        .filter(|&epoch| epoch >= 1 && i64::try_from(epoch).is_ok())?;
    let raw = Zeroizing::new(STANDARD.decode(string("raw_key_b64")?).ok()?);
    Some(GroupKey {
        conversation_id: string("conversation_id")?.to_owned(),
        key_id: string("key_id")?.to_owned(),
        epoch,
        raw_key: Zeroizing::new(raw.as_slice().try_into().ok()?),
    })
}

/// Reads a group message's outer JSON; `None` unless it has exactly the right shape.
pub fn parse_ciphertext(text: &str) -> Option<GroupCiphertext> {
    let object = serde_json::from_str::<Value>(text).ok()?;
    let object = object.as_object()?;
    let string = |field: &str| object.get(field).and_then(Value::as_str).map(str::to_owned);
    if string("type").as_deref() != Some(MESSAGE_TYPE)
        || !is_version_one(object.get("v"))
        || string("alg").as_deref() != Some(ALGORITHM)
    {
        return None;
    }
    Some(GroupCiphertext {
        conversation_id: string("conversation_id")?,
        key_id: string("key_id")?,
        epoch: object.get("epoch").filter(|epoch| !epoch.is_f64())?.as_i64()?,
        iv_b64: string("iv_b64")?,
        ciphertext_b64: string("ciphertext_b64")?,
    })
}

/// The official SDK compares `v != 1` in Python, where `1.0` and `true` equal 1 as well.
fn is_version_one(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::Number(number)) => number.as_f64() == Some(1.0),
        _ => false,
    }
}

/// The associated data of a group message.
pub fn associated_data(conversation_id: &str, key_id: &str, epoch: i64) -> String {
    format!("pacerelle:group-message:v1:{conversation_id}:{key_id}:{epoch}")
}

/// Seals `plaintext` under `key`, returning the message's `payload_b64`.
pub fn seal(key: &GroupKey, iv: &[u8; IV_LEN], plaintext: &str) -> String {
    let epoch = i64::try_from(key.epoch).unwrap_or(i64::MAX);
    let aad = associated_data(&key.conversation_id, &key.key_id, epoch);
    let ciphertext = aead::seal(&key.raw_key, iv, plaintext.as_bytes(), aad.as_bytes());
    let mut object = Map::new();
    object.insert("type".into(), json!(MESSAGE_TYPE));
    object.insert("v".into(), json!(1));
    object.insert("alg".into(), json!(ALGORITHM));
    object.insert("conversation_id".into(), json!(key.conversation_id));
    object.insert("key_id".into(), json!(key.key_id));
    object.insert("epoch".into(), json!(key.epoch));
    object.insert("iv_b64".into(), json!(STANDARD.encode(iv)));
    object.insert("ciphertext_b64".into(), json!(STANDARD.encode(ciphertext)));
    let compact = pyjson::Style { item_separator: ",", key_separator: ":", sort_keys: false };
    STANDARD.encode(pyjson::dumps(&Value::Object(object), compact))
}

/// Opens a group message's `payload_b64` in `conversation_id` with `key`.
pub fn open(key: &GroupKey, conversation_id: &str, payload_b64: &str) -> Result<String, GroupError> {
    let outer = STANDARD.decode(payload_b64).map_err(|_| GroupError::InvalidCiphertext)?;
    let outer = std::str::from_utf8(&outer).map_err(|_| GroupError::InvalidCiphertext)?;
    let message = parse_ciphertext(outer).ok_or(GroupError::InvalidCiphertext)?;
    if message.conversation_id != conversation_id || key.conversation_id != conversation_id {
        return Err(GroupError::WrongConversation);
    }
    if message.key_id != key.key_id || u64::try_from(message.epoch).ok() != Some(key.epoch) {
        return Err(GroupError::WrongKey);
    }
    let decode = |text: &str| STANDARD.decode(text).map_err(|_| GroupError::InvalidCiphertext);
    let aad = associated_data(conversation_id, &message.key_id, message.epoch);
    let plaintext = aead::open(
        key.raw_key.as_slice(),
        &decode(&message.iv_b64)?,
        &decode(&message.ciphertext_b64)?,
        aad.as_bytes(),
    )?;
    String::from_utf8(plaintext.to_vec()).map_err(|_| GroupError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(epoch: u64) -> GroupKey {
        GroupKey { conversation_id: "g1".into(), key_id: "k1".into(), epoch, raw_key: Zeroizing::new([5u8; 32]) }
    }

    #[test]
    fn seal_then_open() {
        let payload = seal(&key(2), &[4u8; 12], "salut");
        assert_eq!(open(&key(2), "g1", &payload).unwrap(), "salut");
        assert_eq!(open(&key(3), "g1", &payload), Err(GroupError::WrongKey));
        assert_eq!(open(&key(2), "g2", &payload), Err(GroupError::WrongConversation));
        assert_eq!(open(&key(2), "g1", "bm90IGpzb24="), Err(GroupError::InvalidCiphertext));
    }

    #[test]
    fn sender_keys_need_the_exact_shape() {
        let good = r#"{"type":"pacerelle.group.sender_key","v":1,"alg":"AES-256-GCM","conversation_id":"g","key_id":"k","epoch":1,"raw_key_b64":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}"#;
        assert_eq!(parse_sender_key(good).unwrap().epoch, 1);
        for (from, to) in [
            ("\"epoch\":1", "\"epoch\":0"),
            ("\"epoch\":1", "\"epoch\":1.0"),
            ("\"epoch\":1", "\"epoch\":9223372036854775808"),
            ("AES-256-GCM", "AES-128-GCM"),
            ("Hh8=", "Hg=="),
        ] {
            assert!(parse_sender_key(&good.replace(from, to)).is_none(), "{to}");
        }
        assert!(!format!("{:?}", parse_sender_key(good).unwrap()).contains("AAECAw"));
    }
}

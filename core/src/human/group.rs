//! Group conversations on the person side, without I/O: who a group key goes to, the keys a
//! person holds per conversation and epoch, and the checks a distributed sender key must pass
//! before it is held (the official SDK's, in `_sync_group_keys` and `_parse_group_sender_key`).
//!
//! A person who creates (or rotates) a group's key distributes it to every other member through
//! that member's Signal session: agents fetch theirs with `GET /agent/group-keys`, other persons
//! with the development relay's `GET /person/group-keys`. Every member seals its group messages
//! once, under the highest epoch it holds; older epochs keep opening.

use crate::aead::{IV_LEN, KEY_LEN};
use crate::payload::group::{self, ALGORITHM, GroupError, GroupKey, SENDER_KEY_TYPE};
use crate::wire::http::GroupKeyEnvelope;
use crate::{Rng, ids, pyjson};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// What kind of party a group member is: it decides where its prekey bundle is fetched and how
/// its Signal session is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberKind {
    /// An agent (bundle at `/person/agents/{id}/prekey-bundle`).
    Agent,
    /// Another person (bundle at `/person/persons/{id}/prekey-bundle`).
    Person,
}

/// A member a group key is distributed to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupMember {
    /// The member's id.
    pub id: String,
    /// Agent or person.
    pub kind: MemberKind,
}

impl GroupMember {
    /// An agent member.
    pub fn agent(id: impl Into<String>) -> Self {
        GroupMember { id: id.into(), kind: MemberKind::Agent }
    }

    /// A person member.
    pub fn person(id: impl Into<String>) -> Self {
        GroupMember { id: id.into(), kind: MemberKind::Person }
    }

    /// The local name of this person's Signal session with the member in `conversation_id`.
    pub fn session_name(&self, conversation_id: &str) -> String {
        match self.kind {
            MemberKind::Agent => super::agent_session_name(&self.id, conversation_id),
            MemberKind::Person => person_session_name(&self.id, conversation_id),
        }
    }

    /// Where the member's prekey bundle is fetched.
    pub fn bundle_path(&self) -> String {
        let id = crate::wire::http::percent_encode(&self.id);
        match self.kind {
            MemberKind::Agent => format!("/person/agents/{id}/prekey-bundle"),
            MemberKind::Person => format!("/person/persons/{id}/prekey-bundle"),
        }
    }
}

/// The local name of a person's Signal session with another person in `conversation_id`; both
/// sides name the session after the peer, so each finds the other's envelopes.
pub fn person_session_name(person_id: &str, conversation_id: &str) -> String {
    format!("person:{person_id}:{conversation_id}")
}

/// A fresh group key for `conversation_id` at `epoch`: 32 random bytes and a UUID v4 id.
pub fn new_key(conversation_id: &str, epoch: u64, rng: &mut Rng) -> GroupKey {
    let mut raw = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(raw.as_mut());
    GroupKey { conversation_id: conversation_id.to_owned(), key_id: ids::uuid_v4(rng), epoch, raw_key: raw }
}

/// The `pacerelle.group.sender_key` plaintext carrying `key`, compact JSON in the field order
/// PROTOCOL.md lists (what the official SDK reads back with `_parse_group_sender_key`). Wiped
/// on drop: it holds the key.
pub fn sender_key_plaintext(key: &GroupKey) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(256));
    out.push_str("{\"type\":");
    pyjson::write_string(&mut out, SENDER_KEY_TYPE);
    out.push_str(",\"v\":1,\"alg\":");
    pyjson::write_string(&mut out, ALGORITHM);
    out.push_str(",\"conversation_id\":");
    pyjson::write_string(&mut out, &key.conversation_id);
    out.push_str(",\"key_id\":");
    pyjson::write_string(&mut out, &key.key_id);
    out.push_str(&format!(",\"epoch\":{},\"raw_key_b64\":\"", key.epoch));
    let encoded = Zeroizing::new(STANDARD.encode(key.raw_key.as_slice()));
    out.push_str(&encoded);
    out.push_str("\"}");
    out
}

/// Why a distributed group key was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderKeyRejected {
    /// The envelope names another conversation than the one asked for.
    #[error("group key envelope belongs to another conversation")]
    WrongConversation,
    /// The envelope is not an object with string `key_id`, `sender_id`, `envelope_b64` and an
    /// integer `epoch`.
    #[error("invalid group key envelope")]
    InvalidEnvelope,
    /// `envelope_b64` is not base64.
    #[error("group key envelope is not base64")]
    NotBase64,
    /// The Signal session with its sender did not open it.
    #[error("group key envelope did not decrypt: {0}")]
    Decrypt(String),
    /// The plaintext is not a `pacerelle.group.sender_key` of the exact shape (epoch ≥ 1, key
    /// of 32 bytes).
    #[error("invalid group sender key")]
    InvalidSenderKey,
    /// The key's own conversation, id or epoch differ from its envelope's.
    #[error("group sender key does not match its distribution envelope")]
    Mismatch,
}

/// Reads one entry of a group-key list as the official SDK does: the conversation must be the
/// one asked for and the fields of the right types.
pub fn read_envelope(value: &serde_json::Value, conversation_id: &str) -> Result<GroupKeyEnvelope, SenderKeyRejected> {
    if value.get("conversation_id").and_then(serde_json::Value::as_str) != Some(conversation_id) {
        return Err(SenderKeyRejected::WrongConversation);
    }
    // `epoch` must be a JSON integer (Python's `type(epoch) is int`), never `1.0` or `true`.
    if value.get("epoch").is_none_or(|epoch| !(epoch.is_i64() || epoch.is_u64())) {
        return Err(SenderKeyRejected::InvalidEnvelope);
    }
    serde_json::from_value(value.clone()).map_err(|_| SenderKeyRejected::InvalidEnvelope)
}

/// Checks a decrypted sender key against its envelope: the exact shape, then the same
/// conversation, id and epoch.
pub fn accept_sender_key(envelope: &GroupKeyEnvelope, plaintext: &[u8]) -> Result<GroupKey, SenderKeyRejected> {
    let text = std::str::from_utf8(plaintext).map_err(|_| SenderKeyRejected::InvalidSenderKey)?;
    let key = group::parse_sender_key(text).ok_or(SenderKeyRejected::InvalidSenderKey)?;
    if key.conversation_id != envelope.conversation_id || key.key_id != envelope.key_id || key.epoch != envelope.epoch {
        return Err(SenderKeyRejected::Mismatch);
    }
    Ok(key)
}

/// Why a group message could not be read with the keys held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupReadError {
    /// Its key is not held (yet): fetch the group's keys, then try again.
    #[error("group key {key_id} (epoch {epoch}) is not held")]
    MissingKey {
        /// The key's id.
        key_id: String,
        /// Its epoch.
        epoch: i64,
    },
    /// The message is not a group message of this conversation, or does not open.
    #[error(transparent)]
    Invalid(#[from] GroupError),
}

/// The group keys a person holds, by conversation, epoch and key id.
#[derive(Debug, Default)]
pub struct GroupKeyring {
    keys: BTreeMap<String, BTreeMap<(u64, String), GroupKey>>,
}

impl GroupKeyring {
    /// An empty keyring.
    pub fn new() -> Self {
        GroupKeyring::default()
    }

    /// Holds `key`; `false` when a key with its conversation, id and epoch was held already
    /// (which is kept: a held key is never replaced).
    pub fn insert(&mut self, key: GroupKey) -> bool {
        let slot = self.keys.entry(key.conversation_id.clone()).or_default();
        let index = (key.epoch, key.key_id.clone());
        if slot.contains_key(&index) {
            return false;
        }
        slot.insert(index, key);
        true
    }

    /// Whether the key `key_id` at `epoch` of `conversation_id` is held.
    pub fn holds(&self, conversation_id: &str, key_id: &str, epoch: u64) -> bool {
        self.get(conversation_id, key_id, epoch).is_some()
    }

    /// The key `key_id` at `epoch` of `conversation_id`.
    pub fn get(&self, conversation_id: &str, key_id: &str, epoch: u64) -> Option<&GroupKey> {
        self.keys.get(conversation_id)?.get(&(epoch, key_id.to_owned()))
    }

    /// The key new messages of `conversation_id` are sealed under: the highest epoch held (the
    /// greatest key id among keys of one epoch, so every member picks the same one).
    pub fn latest(&self, conversation_id: &str) -> Option<&GroupKey> {
        self.keys.get(conversation_id)?.values().next_back()
    }

    /// The highest epoch held for `conversation_id` (0 with none).
    pub fn highest_epoch(&self, conversation_id: &str) -> u64 {
        self.latest(conversation_id).map_or(0, |key| key.epoch)
    }

    /// Seals `plaintext` for `conversation_id` under its latest key with `iv`; `None` without a
    /// key. Returns the message's `payload_b64` and the key's epoch.
    pub fn seal(&self, conversation_id: &str, iv: &[u8; IV_LEN], plaintext: &str) -> Option<(String, u64)> {
        let key = self.latest(conversation_id)?;
        Some((group::seal(key, iv, plaintext), key.epoch))
    }

    /// Opens a group message of `conversation_id` with the key it names.
    pub fn open(&self, conversation_id: &str, payload_b64: &str) -> Result<String, GroupReadError> {
        let (key_id, epoch) = named_key(conversation_id, payload_b64)?;
        let key = u64::try_from(epoch)
            .ok()
            .and_then(|held| self.get(conversation_id, &key_id, held))
            .ok_or(GroupReadError::MissingKey { key_id, epoch })?;
        Ok(group::open(key, conversation_id, payload_b64)?)
    }
}

/// The key (id, epoch) a group message of `conversation_id` says it was sealed under.
pub fn named_key(conversation_id: &str, payload_b64: &str) -> Result<(String, i64), GroupError> {
    let outer = STANDARD.decode(payload_b64).map_err(|_| GroupError::InvalidCiphertext)?;
    let outer = std::str::from_utf8(&outer).map_err(|_| GroupError::InvalidCiphertext)?;
    let message = group::parse_ciphertext(outer).ok_or(GroupError::InvalidCiphertext)?;
    if message.conversation_id != conversation_id {
        return Err(GroupError::WrongConversation);
    }
    Ok((message.key_id, message.epoch))
}

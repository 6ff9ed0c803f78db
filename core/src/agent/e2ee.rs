//! The agent's end-to-end encryption: the session names a message is tried under, inbound
//! payloads decrypted (and a `pacerelle.delivery` unwrapped into its body and the conversation's
//! archive key), outbound payloads encrypted with their archive record.
//!
//! Session names are the official SDK's: `human:{user}:{conversation}:device:{device}` when the
//! frame names a device, else `human:{user}:{conversation}`; a message that does not open under
//! the device name is tried under the conversation name (older clients), and replies then use
//! whichever name holds a session.

use crate::Rng;
use crate::e2ee::backend::{BackendError, SignalBackend};
use crate::e2ee::message::Framed;
use crate::payload::delivery::{HistoryKey, unwrap_delivery};
use crate::payload::history::{self, HistoryContext, HistoryRecord, SenderType};
use crate::store::{E2eeChanges, E2eeSnapshot, IdentityKeyBytes, SecretBytes, StoredHistoryKey};
use crate::wire::InboundMsg;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Why an encrypted message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundCryptoError {
    /// `payload_b64` is not base64.
    #[error("the ciphertext is not base64")]
    Base64,
    /// No session opens it (the sessions are unchanged).
    #[error(transparent)]
    Decrypt(BackendError),
    /// It decrypted, but the plaintext is not UTF-8.
    #[error("the plaintext is not UTF-8")]
    NotUtf8,
    /// A `pacerelle.delivery` that does not follow `history-v1`.
    #[error(transparent)]
    Delivery(#[from] crate::payload::delivery::DeliveryError),
    /// A group message that is not a `pacerelle.group.message` of this conversation, or does not
    /// open under the key it names.
    #[error(transparent)]
    Group(#[from] crate::payload::group::GroupError),
    /// The group key a group message names is not held, and the group's keys did not bring it.
    #[error("group key {key_id} (epoch {epoch}) is not held")]
    MissingGroupKey {
        /// The key's id.
        key_id: String,
        /// Its epoch.
        epoch: i64,
    },
    /// The group's keys could not be fetched or read (`GET /agent/group-keys`).
    #[error(transparent)]
    GroupKeys(#[from] super::groups::GroupSyncError),
    /// The delivery carries another archive key for a conversation that already has one.
    #[error("conversation {conversation_id} already has another archive key")]
    HistoryKeyConflict {
        /// The conversation.
        conversation_id: String,
    },
}

/// Why a message could not be encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundCryptoError {
    /// No session with this person in this conversation: people start sessions, and this one
    /// has not written yet.
    #[error("no end-to-end session with {to} in conversation {conversation_id}")]
    NoSession {
        /// The person.
        to: String,
        /// The conversation.
        conversation_id: String,
    },
    /// No key of this group conversation is held yet: people distribute group keys, and none
    /// reached the agent (a fetch of the group's keys has been asked for; try again once it
    /// answered). Nothing is sent, never in plaintext.
    #[error("no group key is held for conversation {conversation_id}")]
    NoGroupKey {
        /// The group conversation.
        conversation_id: String,
    },
    /// The session failed to encrypt.
    #[error(transparent)]
    Encrypt(#[from] BackendError),
    /// The archive record could not be sealed (an identifier it binds is invalid).
    #[error(transparent)]
    History(#[from] history::HistoryError),
}

/// The session names for a person's message, in the order they are tried.
pub fn person_session_names(person: &str, conversation_id: &str, device_id: Option<&str>) -> Vec<String> {
    let conversation = format!("human:{person}:{conversation_id}");
    match device_id {
        Some(device) if !device.is_empty() => vec![format!("{conversation}:device:{device}"), conversation],
        _ => vec![conversation],
    }
}

/// A message that decrypted, before its contents are read.
pub(super) struct Decrypted {
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The session changes it made.
    pub changes: E2eeChanges,
    /// The identity key that spoke, when known.
    pub identity: Option<IdentityKeyBytes>,
}

/// What a decrypted message brings.
pub(super) struct Opened {
    /// The payload text (a delivery's body).
    pub text: String,
    /// Everything to commit with the message's receipt.
    pub changes: E2eeChanges,
}

/// An encrypted message that could not be read, with the session changes to commit anyway when
/// the session did open it (it has moved on and cannot open the message again).
pub(super) struct OpenFailure {
    /// Why.
    pub error: InboundCryptoError,
    /// To commit regardless (empty when no session opened the message).
    pub changes: E2eeChanges,
}

/// The message [`AgentE2ee::seal`] encrypts.
pub(super) struct Outbound<'a> {
    /// Its id (archive records bind it).
    pub message_id: &'a str,
    /// The conversation.
    pub conversation_id: &'a str,
    /// The person.
    pub to: &'a str,
    /// The person's device, when known.
    pub device_id: Option<&'a str>,
    /// The payload text.
    pub plaintext: &'a str,
}

/// What an encrypted message needs on the wire.
pub(super) struct Sealed {
    /// Base64 of the framed ciphertext.
    pub payload_b64: String,
    /// The archive record, when the conversation has an archive key.
    pub history_record: Option<HistoryRecord>,
    /// To commit before the frame goes out.
    pub changes: E2eeChanges,
}

/// The agent's keys, sessions and archive keys.
pub(super) struct AgentE2ee {
    account: Box<dyn SignalBackend>,
    history_keys: BTreeMap<String, HistoryKey>,
}

impl AgentE2ee {
    /// The agent's encryption over `account`, with the archive keys stored in `snapshot`.
    pub fn new(account: Box<dyn SignalBackend>, snapshot: &E2eeSnapshot) -> Self {
        let history_keys = snapshot
            .history_keys
            .iter()
            .filter_map(|(conversation, stored)| {
                let raw: [u8; 32] = stored.raw_key.expose().try_into().ok()?;
                let key =
                    HistoryKey { key_id: stored.key_id.clone(), epoch: stored.epoch, raw_key: Zeroizing::new(raw) };
                Some((conversation.clone(), key))
            })
            .collect();
        AgentE2ee { account, history_keys }
    }

    /// The Signal implementation (publication, identity key).
    pub fn account_mut(&mut self) -> &mut dyn SignalBackend {
        self.account.as_mut()
    }

    /// The identity key, serialized.
    pub fn identity_key(&self) -> [u8; 33] {
        self.account.identity_key()
    }

    /// Decrypts an inbound message under the first of its session names that opens it. On error
    /// no session changed.
    pub fn decrypt(&mut self, msg: &InboundMsg, rng: &mut Rng) -> Result<Decrypted, InboundCryptoError> {
        self.decrypt_from(&msg.from, &msg.conversation_id, msg.from_device_id.as_deref(), &msg.payload_b64, rng)
    }

    /// Decrypts `payload_b64` from `person` in `conversation_id` (a message, or a group key's
    /// envelope) under the first of its session names that opens it. On error no session
    /// changed.
    pub fn decrypt_from(
        &mut self,
        person: &str,
        conversation_id: &str,
        device_id: Option<&str>,
        payload_b64: &str,
        rng: &mut Rng,
    ) -> Result<Decrypted, InboundCryptoError> {
        // As leniently as the official SDK's `base64.b64decode` (no `validate`).
        let framed = crate::wire::python::b64decode(payload_b64).map_err(|_| InboundCryptoError::Base64)?;
        let names = person_session_names(person, conversation_id, device_id);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (plaintext, name, changes) =
            self.account.decrypt(&names, &framed, rng).map_err(InboundCryptoError::Decrypt)?;
        // The session says who spoke; a backend that cannot tell still shows the identity a
        // PreKey message names, which the message's successful decryption authenticated.
        let identity = self.account.remote_identity(&name).or_else(|| match Framed::decode(&framed) {
            Ok(Framed::PreKey(message)) => Some(message.identity_key.serialize()),
            _ => None,
        });
        Ok(Decrypted { plaintext, changes, identity })
    }

    /// Forgets a decryption whose changes will not be committed.
    pub fn discard(&mut self, changes: &E2eeChanges, committed: &E2eeSnapshot) -> Result<(), BackendError> {
        self.account.discard(changes, committed)
    }

    /// Reads a decrypted payload: its text, with a `pacerelle.delivery` unwrapped and its
    /// archive key learnt. When the contents are unusable the failure carries the session
    /// changes, which must still be committed (the session moved on and cannot open it again).
    pub fn finish(&mut self, msg: &InboundMsg, decrypted: Decrypted) -> Result<Opened, Box<OpenFailure>> {
        let Decrypted { plaintext, mut changes, .. } = decrypted;
        let fail = |error: InboundCryptoError, changes: E2eeChanges| Box::new(OpenFailure { error, changes });
        let Ok(text) = String::from_utf8(plaintext.to_vec()) else {
            return Err(fail(InboundCryptoError::NotUtf8, changes));
        };
        let (text, key) = match unwrap_delivery(&text) {
            Ok(Some((body, key))) => (body, Some(key)),
            Ok(None) => (text, None),
            Err(error) => return Err(fail(error.into(), changes)),
        };
        if let Some(key) = key {
            match self.history_keys.get(&msg.conversation_id) {
                Some(existing) if *existing == key => {}
                Some(_) => {
                    let conversation_id = msg.conversation_id.clone();
                    return Err(fail(InboundCryptoError::HistoryKeyConflict { conversation_id }, changes));
                }
                None => {
                    changes.put_history_keys.push((
                        msg.conversation_id.clone(),
                        StoredHistoryKey {
                            key_id: key.key_id.clone(),
                            epoch: key.epoch,
                            raw_key: SecretBytes::new(key.raw_key.to_vec()),
                        },
                    ));
                    self.history_keys.insert(msg.conversation_id.clone(), key);
                }
            }
        }
        Ok(Opened { text, changes })
    }

    /// Checks that a message to `to` could be encrypted (a session exists).
    pub fn check_session(
        &self,
        to: &str,
        conversation_id: &str,
        device_id: Option<&str>,
    ) -> Result<(), OutboundCryptoError> {
        self.session_name(to, conversation_id, device_id).map(|_| ())
    }

    fn session_name(
        &self,
        to: &str,
        conversation_id: &str,
        device_id: Option<&str>,
    ) -> Result<String, OutboundCryptoError> {
        person_session_names(to, conversation_id, device_id)
            .into_iter()
            .find(|name| self.account.has_session(name))
            .ok_or_else(|| OutboundCryptoError::NoSession {
                to: to.to_owned(),
                conversation_id: conversation_id.to_owned(),
            })
    }

    /// Encrypts `plaintext` for `to` in `conversation_id` (preferring the device's session),
    /// with an archive record bound to `message_id` when the conversation has an archive key.
    pub fn seal(
        &mut self,
        agent_id: &str,
        outbound: &Outbound<'_>,
        rng: &mut Rng,
    ) -> Result<Sealed, OutboundCryptoError> {
        let Outbound { message_id, conversation_id, to, device_id, plaintext } = *outbound;
        let name = self.session_name(to, conversation_id, device_id)?;
        let history_record = self.history_record(agent_id, conversation_id, message_id, plaintext, rng)?;
        let (framed, changes) = self.account.encrypt(&name, plaintext.as_bytes(), rng)?;
        Ok(Sealed { payload_b64: STANDARD.encode(framed), history_record, changes })
    }

    /// The archive record of `plaintext` (sent as `message_id` in `conversation_id`), when the
    /// conversation has an archive key; group messages carry one too, as the official SDK's do.
    pub fn history_record(
        &self,
        agent_id: &str,
        conversation_id: &str,
        message_id: &str,
        plaintext: &str,
        rng: &mut Rng,
    ) -> Result<Option<HistoryRecord>, OutboundCryptoError> {
        Ok(match self.history_keys.get(conversation_id) {
            Some(key) => {
                let mut iv = [0u8; crate::aead::IV_LEN];
                rng.fill_bytes(&mut iv);
                let context = HistoryContext {
                    conversation_id,
                    message_id,
                    sender_id: agent_id,
                    sender_type: SenderType::Agent,
                    key_id: &key.key_id,
                    epoch: key.epoch,
                };
                Some(history::seal(plaintext, &key.raw_key, &iv, &context)?)
            }
            None => None,
        })
    }
}

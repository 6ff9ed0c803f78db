//! Encrypted group conversations on the agent side: the group keys people distribute to the
//! agent, fetched when a group message names one the agent does not hold, and the group messages
//! parked until that fetch answers.
//!
//! A person distributes a group's AES-256-GCM key to every member through that member's Signal
//! session; the agent fetches its envelopes with `GET /agent/group-keys?conversation_id=...`,
//! checks each as the official SDK does (`_sync_group_keys`: the whole answer a list, each entry
//! of the asked conversation with string ids and an integer epoch), opens it with its sender's
//! session (device-scoped name first, then the conversation-scoped one) and holds the key only
//! when its own conversation, id and epoch are the envelope's. Keys already held are not
//! decrypted again: their envelope's Signal message key is spent. Processing stops at the first
//! envelope that fails, as the official SDK's loop raises there; what opened before it is kept.
//!
//! A group send syncs first, as the official SDK's does: it waits here, behind a fetch of its
//! group's keys, and is sealed when the answer comes, under the newest epoch then held. So a
//! rotation that removed a member is used from the first send after it, not only once a message
//! under the new key has arrived. A send joins a fetch already in flight for its group rather
//! than start another (two fetches would open the same envelopes twice, and a Signal message key
//! opens once). A send is refused at once, never sent in plaintext, when the agent holds no key
//! of the group at all ([`super::e2ee::OutboundCryptoError::NoGroupKey`]); the fetch still goes,
//! for the next send. Where the official SDK fails the send when the fetch fails, the agent seals
//! under the newest key it holds: the relay that could fail the fetch could as well answer it
//! without the newer envelope, so refusing would cost availability and protect nothing.

use super::e2ee::{AgentE2ee, InboundCryptoError};
use crate::Rng;
use crate::aead::{self, IV_LEN, KEY_LEN};
use crate::human::group::{SenderKeyRejected, accept_sender_key, read_envelope};
use crate::payload::group::{self as payload, GroupCiphertext, GroupError, GroupKey};
use crate::store::{E2eeChanges, GroupKeyId, SecretBytes, StoredGroupKey};
use crate::wire::http::{HttpMethod, HttpRequest, HttpResponse, RequestId, percent_encode};
use crate::wire::{InboundMsg, OutboundMsg};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Why a group's keys could not be fetched or taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupSyncError {
    /// The call did not reach the relay.
    #[error("the group keys could not be fetched: {0}")]
    Unreachable(String),
    /// The relay answered with an error status.
    #[error("the relay answered the group-key fetch with HTTP {0}")]
    Status(u16),
    /// The answer is not a JSON list.
    #[error("invalid group key response")]
    InvalidResponse,
    /// An envelope was refused (see [`SenderKeyRejected`]); those before it were kept.
    #[error(transparent)]
    Rejected(#[from] SenderKeyRejected),
}

/// Whether `msg` was sent to its conversation's group.
pub(super) fn is_group_msg(msg: &InboundMsg) -> bool {
    msg.to.as_deref().is_some_and(|to| crate::wire::agent::is_group_target(to, &msg.conversation_id))
}

/// The `GET /agent/group-keys` call for `conversation_id`.
pub(super) fn fetch_request(id: RequestId, conversation_id: &str) -> HttpRequest {
    HttpRequest {
        id,
        method: HttpMethod::Get,
        path: format!("/agent/group-keys?conversation_id={}", percent_encode(conversation_id)),
        content_type: None,
        body: Vec::new(),
    }
}

/// A group's key fetch in flight, and the messages waiting for it.
pub(super) struct Fetch {
    /// The group conversation.
    pub conversation_id: String,
    /// Messages whose key was not held, in arrival order.
    pub parked: Vec<InboundMsg>,
    /// Sends waiting to be sealed, in the order they were made.
    pub sends: Vec<ParkedSend>,
}

/// A group send waiting for its group's keys to be synced before it is sealed.
pub(super) struct ParkedSend {
    /// The frame, complete but for its `payload_b64`.
    pub frame: OutboundMsg,
    /// The payload to seal.
    pub plaintext: Zeroizing<String>,
    /// The key it is sealed under should the fetch bring none newer: the newest held when it
    /// was made.
    pub fallback: GroupKey,
    /// The message whose handler made the send, if it may be recorded with that message.
    pub handled: Option<String>,
}

/// The group key fetches in flight: at most one per conversation.
#[derive(Default)]
pub(super) struct Fetches {
    in_flight: BTreeMap<RequestId, Fetch>,
}

impl Fetches {
    /// Parks `msg` (if any) behind `conversation_id`'s fetch; returns the call to make when no
    /// fetch of that conversation is in flight (it then gets `id`). A message already parked
    /// (a replay) is not parked twice.
    pub fn park(&mut self, msg: Option<InboundMsg>, conversation_id: &str, id: RequestId) -> Option<HttpRequest> {
        let (fetch, call) = self.fetch_of(conversation_id, id);
        if let Some(msg) = msg
            && !fetch.parked.iter().any(|parked| parked.id == msg.id)
        {
            fetch.parked.push(msg);
        }
        call
    }

    /// Parks a send behind its group's fetch; returns the call to make when none is in flight
    /// (it then gets `id`).
    pub fn park_send(&mut self, send: ParkedSend, id: RequestId) -> Option<HttpRequest> {
        let (fetch, call) = self.fetch_of(&send.frame.conversation_id.clone(), id);
        fetch.sends.push(send);
        call
    }

    /// `conversation_id`'s fetch in flight, or a new one under `id` with the call to make.
    fn fetch_of(&mut self, conversation_id: &str, id: RequestId) -> (&mut Fetch, Option<HttpRequest>) {
        let existing = self.in_flight.iter().find(|(_, fetch)| fetch.conversation_id == conversation_id);
        let existing = existing.map(|(existing, _)| *existing);
        let call = existing.is_none().then(|| fetch_request(id, conversation_id));
        let fetch = self.in_flight.entry(existing.unwrap_or(id)).or_insert_with(|| Fetch {
            conversation_id: conversation_id.to_owned(),
            parked: Vec::new(),
            sends: Vec::new(),
        });
        (fetch, call)
    }

    /// Whether a send made by the handler of `message_id` waits to be sealed.
    pub fn has_sends_for(&self, message_id: &str) -> bool {
        self.sends().any(|send| send.handled.as_deref() == Some(message_id))
    }

    /// Sends waiting that will go through the outbox (no handled message records them).
    pub fn unrecorded_sends(&self) -> usize {
        self.sends().filter(|send| send.handled.is_none()).count()
    }

    fn sends(&self) -> impl Iterator<Item = &ParkedSend> {
        self.in_flight.values().flat_map(|fetch| &fetch.sends)
    }

    /// The fetch `request` answers, if it is one.
    pub fn answer(&mut self, request: RequestId) -> Option<Fetch> {
        self.in_flight.remove(&request)
    }

    /// Whether a message of this id waits for a fetch.
    pub fn is_parked(&self, message_id: &str) -> bool {
        self.in_flight.values().any(|fetch| fetch.parked.iter().any(|parked| parked.id == message_id))
    }
}

/// Reads a group message's outer JSON (base64 as leniently as the official SDK's `_unb64`); it
/// must be of `conversation_id`.
pub(super) fn named_key(conversation_id: &str, payload_b64: &str) -> Result<GroupCiphertext, GroupError> {
    let outer = crate::wire::python::b64decode(payload_b64).map_err(|_| GroupError::InvalidCiphertext)?;
    let outer = std::str::from_utf8(&outer).map_err(|_| GroupError::InvalidCiphertext)?;
    let message = payload::parse_ciphertext(outer).ok_or(GroupError::InvalidCiphertext)?;
    if message.conversation_id != conversation_id {
        return Err(GroupError::WrongConversation);
    }
    Ok(message)
}

/// The key a group message names, among `sets` of held keys.
pub(super) fn find<'a>(
    sets: &[&'a BTreeMap<GroupKeyId, StoredGroupKey>],
    message: &GroupCiphertext,
) -> Option<&'a StoredGroupKey> {
    let epoch = u64::try_from(message.epoch).ok()?;
    let id = (message.conversation_id.clone(), message.key_id.clone(), epoch);
    sets.iter().find_map(|keys| keys.get(&id))
}

/// Opens a group message with the key it names (the official associated data).
pub(super) fn open(key: &StoredGroupKey, message: &GroupCiphertext) -> Result<Zeroizing<Vec<u8>>, GroupError> {
    let decode = |text: &str| crate::wire::python::b64decode(text).map_err(|_| GroupError::InvalidCiphertext);
    let aad = payload::associated_data(&message.conversation_id, &message.key_id, message.epoch);
    Ok(aead::open(key.raw_key.expose(), &decode(&message.iv_b64)?, &decode(&message.ciphertext_b64)?, aad.as_bytes())?)
}

/// The key new messages of `conversation_id` are sealed under: the highest epoch held, and of
/// one epoch the greatest key id (the person client's rule, so members agree).
pub(super) fn latest(keys: &BTreeMap<GroupKeyId, StoredGroupKey>, conversation_id: &str) -> Option<GroupKey> {
    let start = (conversation_id.to_owned(), String::new(), 0);
    let key = keys
        .range(start..)
        .take_while(|((conversation, _, _), _)| conversation == conversation_id)
        .map(|(_, key)| key)
        .filter(|key| key.raw_key.expose().len() == KEY_LEN)
        .max_by(|a, b| (a.epoch, &a.key_id).cmp(&(b.epoch, &b.key_id)))?;
    Some(GroupKey {
        conversation_id: key.conversation_id.clone(),
        key_id: key.key_id.clone(),
        epoch: key.epoch,
        raw_key: Zeroizing::new(key.raw_key.expose().try_into().ok()?),
    })
}

/// Seals `plaintext` once for the whole group under `key`: the message's `payload_b64`, compact
/// JSON as the official SDK writes it.
pub(super) fn seal(key: &GroupKey, rng: &mut Rng, plaintext: &str) -> String {
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    payload::seal(key, &iv, plaintext)
}

/// What a fetch of a group's keys brought.
#[derive(Default)]
pub(super) struct Synced {
    /// Keys newly held.
    pub keys: Vec<StoredGroupKey>,
    /// The Signal session changes that opening their envelopes made.
    pub changes: E2eeChanges,
    /// Why the fetch, or an envelope, failed (keys before that envelope are kept).
    pub error: Option<GroupSyncError>,
}

/// Takes a `GET /agent/group-keys` answer for `conversation_id`: every envelope not held yet is
/// checked, opened with its sender's session and its key checked against it.
pub(super) fn sync(
    e2ee: &mut AgentE2ee,
    held: &BTreeMap<GroupKeyId, StoredGroupKey>,
    conversation_id: &str,
    result: Result<HttpResponse, String>,
    rng: &mut Rng,
) -> Synced {
    let mut synced = Synced::default();
    let entries = match result {
        Err(reason) => Err(GroupSyncError::Unreachable(reason)),
        Ok(response) if !response.is_success() => Err(GroupSyncError::Status(response.status)),
        Ok(response) => match serde_json::from_slice::<serde_json::Value>(&response.body) {
            Ok(serde_json::Value::Array(entries)) => Ok(entries),
            _ => Err(GroupSyncError::InvalidResponse),
        },
    };
    let entries = match entries {
        Ok(entries) => entries,
        Err(error) => {
            synced.error = Some(error);
            return synced;
        }
    };
    for entry in entries.iter().filter(|entry| entry.is_object()) {
        match take(e2ee, held, &synced.keys, entry, conversation_id, rng) {
            Ok(None) => {}
            Ok(Some((key, changes))) => {
                tracing::info!(conversation = %conversation_id, key_id = %key.key_id, epoch = key.epoch, "group key received");
                synced.keys.push(key);
                synced.changes.merge(changes);
            }
            Err(failure) => {
                let (error, changes) = *failure;
                synced.changes.merge(changes);
                synced.error = Some(error.into());
                break;
            }
        }
    }
    synced
}

/// One envelope: `None` when its key is held already; on error, the session changes to commit
/// anyway (a session that opened the envelope has moved on).
#[allow(clippy::type_complexity)]
fn take(
    e2ee: &mut AgentE2ee,
    held: &BTreeMap<GroupKeyId, StoredGroupKey>,
    taken: &[StoredGroupKey],
    entry: &serde_json::Value,
    conversation_id: &str,
    rng: &mut Rng,
) -> Result<Option<(StoredGroupKey, E2eeChanges)>, Box<(SenderKeyRejected, E2eeChanges)>> {
    let envelope = read_envelope(entry, conversation_id).map_err(|error| Box::new((error, E2eeChanges::default())))?;
    let id = (conversation_id.to_owned(), envelope.key_id.clone(), envelope.epoch);
    if held.contains_key(&id) || taken.iter().any(|key| key.id() == id) {
        return Ok(None);
    }
    let device = envelope.sender_device_id.as_deref().filter(|device| !device.is_empty());
    let decrypted = e2ee
        .decrypt_from(&envelope.sender_id, conversation_id, device, &envelope.envelope_b64, rng)
        .map_err(|error| {
            let rejected = match error {
                InboundCryptoError::Base64 => SenderKeyRejected::NotBase64,
                other => SenderKeyRejected::Decrypt(other.to_string()),
            };
            Box::new((rejected, E2eeChanges::default()))
        })?;
    match accept_sender_key(&envelope, &decrypted.plaintext) {
        Ok(key) => Ok(Some((
            StoredGroupKey {
                conversation_id: key.conversation_id.clone(),
                key_id: key.key_id.clone(),
                epoch: key.epoch,
                raw_key: SecretBytes::new(key.raw_key.to_vec()),
            },
            decrypted.changes,
        ))),
        Err(error) => Err(Box::new((error, decrypted.changes))),
    }
}

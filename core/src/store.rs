//! What an agent must persist, as small changes rather than one snapshot.
//!
//! The official SDK rewrites one blob holding every receipt on each message, so its cost grows
//! with history. The core instead emits [`StoreChanges`] (this receipt, that device) which a
//! store applies in one transaction, and receipts age out after a bounded window. A runtime
//! applies every change *before* acting on any later output: that ordering is what makes a
//! message's acknowledgement follow its acceptance commit. It may gather consecutive changes
//! into one commit ([`AgentStore::apply_batch`], group commit) as long as it holds back every
//! output that followed them until that commit is done.

use crate::Timestamp;
use std::collections::BTreeMap;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret bytes on their way to or from a store (private keys, session records): wiped when
/// dropped, never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes>)", self.0.len())
    }
}

/// The agent's long-term identity, written once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    /// The Curve25519 private key.
    pub private_key: SecretBytes,
    /// The registration id.
    pub registration_id: u32,
}

/// Which kind of prekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrekeyKind {
    /// A one-time Curve25519 prekey (deleted once used).
    OneTime,
    /// A signed Curve25519 prekey.
    Signed,
    /// A signed Kyber-1024 prekey.
    Kyber,
}

impl PrekeyKind {
    /// The kind's name in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            PrekeyKind::OneTime => "one-time",
            PrekeyKind::Signed => "signed",
            PrekeyKind::Kyber => "kyber",
        }
    }

    /// Reads [`Self::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [PrekeyKind::OneTime, PrekeyKind::Signed, PrekeyKind::Kyber].into_iter().find(|kind| kind.as_str() == text)
    }
}

/// A private prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPrekey {
    /// Its kind.
    pub kind: PrekeyKind,
    /// Its id (unique per kind).
    pub id: u32,
    /// The private key's bytes.
    pub private_key: SecretBytes,
}

/// A conversation's archive key (`history-v1`), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHistoryKey {
    /// The key's id.
    pub key_id: String,
    /// Its epoch.
    pub epoch: u64,
    /// The 32-byte AES-256-GCM key.
    pub raw_key: SecretBytes,
}

/// A group conversation's key, as a person distributed it to the agent through their Signal
/// session (`pacerelle.group.sender_key`); several per conversation, one per key id and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroupKey {
    /// The group conversation.
    pub conversation_id: String,
    /// The key's id.
    pub key_id: String,
    /// Its epoch (at least 1); the agent seals under the highest it holds.
    pub epoch: u64,
    /// The 32-byte AES-256-GCM key.
    pub raw_key: SecretBytes,
}

impl StoredGroupKey {
    /// Where the key is kept: (conversation, key id, epoch).
    pub fn id(&self) -> GroupKeyId {
        (self.conversation_id.clone(), self.key_id.clone(), self.epoch)
    }
}

/// A group key's place: (conversation, key id, epoch).
pub type GroupKeyId = (String, String, u64);

/// A person (or agent) and, when their frames name one, their device: whom an identity key
/// belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId {
    /// The person's (or agent's) id, the frame's `from`.
    pub user_id: String,
    /// The frame's `from_device_id`, when it names one.
    pub device_id: Option<String>,
}

impl PeerId {
    /// The peer `user_id`, on `device_id` when there is one.
    pub fn new(user_id: impl Into<String>, device_id: Option<impl Into<String>>) -> Self {
        PeerId { user_id: user_id.into(), device_id: device_id.map(Into::into) }
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.device_id {
            Some(device) => write!(f, "{} (device {device})", self.user_id),
            None => f.write_str(&self.user_id),
        }
    }
}

/// The serialized Curve25519 identity key of a peer (33 bytes, `0x05` first). Public, but
/// what the trust model rests on.
pub type IdentityKeyBytes = [u8; 33];

/// What the agent knows of a peer's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPeerIdentity {
    /// The identity key the agent trusts for this peer (the first one seen, or the one the app
    /// trusted last).
    pub trusted: IdentityKeyBytes,
    /// Another identity key that spoke for this peer and was refused (under
    /// [`crate::agent::TrustPolicy::Pinned`]), waiting for the app to trust it.
    pub pending: Option<IdentityKeyBytes>,
    /// When this peer was last heard from (the least recently heard go first when a person has
    /// too many devices and conversations).
    pub last_seen: Timestamp,
}

/// Changes to the end-to-end encryption state: keys and per-peer session records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct E2eeChanges {
    /// The identity, when it was just created.
    pub identity: Option<StoredIdentity>,
    /// The last prekey id handed out.
    pub prekey_counter: Option<u32>,
    /// Prekeys to insert (their private halves persist before their public halves are published).
    pub put_prekeys: Vec<StoredPrekey>,
    /// Prekeys to delete (a one-time prekey once used, old signed and Kyber prekeys).
    pub remove_prekeys: Vec<(PrekeyKind, u32)>,
    /// Session records to insert or replace, by peer name.
    pub put_sessions: Vec<(String, SecretBytes)>,
    /// Session records to delete, by peer name (a person's least recently used beyond the cap).
    pub remove_sessions: Vec<String>,
    /// Archive keys learnt, by conversation (never replaced once set).
    pub put_history_keys: Vec<(String, StoredHistoryKey)>,
    /// Peers' identity keys, as first seen or as the app trusted them.
    pub put_peer_identities: Vec<(PeerId, StoredPeerIdentity)>,
    /// Peers forgotten (their sessions evicted).
    pub remove_peer_identities: Vec<PeerId>,
    /// When one-time prekeys were last made and published.
    pub one_time_published_at: Option<Timestamp>,
}

impl E2eeChanges {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.identity.is_none()
            && self.prekey_counter.is_none()
            && self.put_prekeys.is_empty()
            && self.remove_prekeys.is_empty()
            && self.put_sessions.is_empty()
            && self.remove_sessions.is_empty()
            && self.put_history_keys.is_empty()
            && self.put_peer_identities.is_empty()
            && self.remove_peer_identities.is_empty()
            && self.one_time_published_at.is_none()
    }

    /// Adds `later` after these changes (later changes win).
    pub fn merge(&mut self, later: E2eeChanges) {
        if later.identity.is_some() {
            self.identity = later.identity.clone();
        }
        if later.prekey_counter.is_some() {
            self.prekey_counter = later.prekey_counter;
        }
        self.put_prekeys.extend(later.put_prekeys.iter().cloned());
        self.remove_prekeys.extend(later.remove_prekeys.iter().copied());
        for (name, record) in &later.put_sessions {
            self.put_sessions.retain(|(existing, _)| existing != name);
            self.remove_sessions.retain(|existing| existing != name);
            self.put_sessions.push((name.clone(), record.clone()));
        }
        for name in &later.remove_sessions {
            self.put_sessions.retain(|(existing, _)| existing != name);
            self.remove_sessions.push(name.clone());
        }
        self.put_history_keys.extend(later.put_history_keys.iter().cloned());
        for (peer, identity) in &later.put_peer_identities {
            self.put_peer_identities.retain(|(existing, _)| existing != peer);
            self.remove_peer_identities.retain(|existing| existing != peer);
            self.put_peer_identities.push((peer.clone(), identity.clone()));
        }
        for peer in &later.remove_peer_identities {
            self.put_peer_identities.retain(|(existing, _)| existing != peer);
            self.remove_peer_identities.push(peer.clone());
        }
        if later.one_time_published_at.is_some() {
            self.one_time_published_at = later.one_time_published_at;
        }
    }
}

/// The end-to-end encryption state as loaded at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct E2eeSnapshot {
    /// The identity, once created.
    pub identity: Option<StoredIdentity>,
    /// The last prekey id handed out.
    pub prekey_counter: Option<u32>,
    /// Private prekeys by kind and id.
    pub prekeys: BTreeMap<(PrekeyKind, u32), SecretBytes>,
    /// Session records by peer name.
    pub sessions: BTreeMap<String, SecretBytes>,
    /// Archive keys by conversation.
    pub history_keys: BTreeMap<String, StoredHistoryKey>,
    /// Peers' identity keys.
    pub peer_identities: BTreeMap<PeerId, StoredPeerIdentity>,
    /// When one-time prekeys were last made and published.
    pub one_time_published_at: Option<Timestamp>,
}

impl E2eeSnapshot {
    /// Applies `changes`.
    pub fn apply(&mut self, changes: &E2eeChanges) {
        if let Some(identity) = &changes.identity {
            self.identity = Some(identity.clone());
        }
        if let Some(counter) = changes.prekey_counter {
            self.prekey_counter = Some(counter);
        }
        for prekey in &changes.put_prekeys {
            self.prekeys.insert((prekey.kind, prekey.id), prekey.private_key.clone());
        }
        for key in &changes.remove_prekeys {
            self.prekeys.remove(key);
        }
        for (name, record) in &changes.put_sessions {
            self.sessions.insert(name.clone(), record.clone());
        }
        for name in &changes.remove_sessions {
            self.sessions.remove(name);
        }
        for (conversation, key) in &changes.put_history_keys {
            self.history_keys.insert(conversation.clone(), key.clone());
        }
        for (peer, identity) in &changes.put_peer_identities {
            self.peer_identities.insert(peer.clone(), identity.clone());
        }
        for peer in &changes.remove_peer_identities {
            self.peer_identities.remove(peer);
        }
        if let Some(at) = changes.one_time_published_at {
            self.one_time_published_at = Some(at);
        }
    }
}

/// A message the agent has decrypted (pending) or whose handler returned (accepted).
#[derive(Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The message id.
    pub message_id: String,
    /// Hex SHA-256 of the routing fields and payload (see [`crate::agent::message_digest`]).
    pub digest: String,
    /// The sender.
    pub from: String,
    /// The conversation.
    pub conversation_id: String,
    /// The sender's device, when named.
    pub from_device_id: Option<String>,
    /// The identity key of the session that decrypted it (end-to-end encrypted messages only).
    pub sender_identity: Option<IdentityKeyBytes>,
    /// Pending or accepted.
    pub state: ReceiptState,
}

impl std::fmt::Debug for Receipt {
    // A pending receipt holds decrypted text: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt")
            .field("message_id", &self.message_id)
            .field("from", &self.from)
            .field("conversation_id", &self.conversation_id)
            .field(
                "state",
                &match &self.state {
                    ReceiptState::Pending { .. } => "pending".to_owned(),
                    ReceiptState::Accepted { at } => format!("accepted at {}", at.as_millis()),
                },
            )
            .finish_non_exhaustive()
    }
}

/// Where a message stands.
#[derive(Clone, PartialEq, Eq)]
pub enum ReceiptState {
    /// Decoded, handed to the app, not yet accepted. A replay reuses `text` and never decodes
    /// (or decrypts) twice.
    Pending {
        /// The decoded payload text.
        text: String,
    },
    /// The app's handler returned; replays are acknowledged again without a second event.
    Accepted {
        /// When.
        at: Timestamp,
    },
}

/// A message that could not be read: how often it came, and whether the agent gave up on it.
///
/// An unreadable message is not acknowledged at first, so the relay delivers it again (its
/// session may be set up by a message still on its way); after a bounded number of deliveries
/// the agent acknowledges it and reports it undeliverable, so it cannot come back forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The message id.
    pub message_id: String,
    /// The digest of the last frame that failed under this id (see
    /// [`crate::agent::message_digest`]): once given up, only that same frame is acknowledged
    /// again unread; another one under the id (the genuine message after forged copies) is read.
    pub digest: String,
    /// The sender the frame named.
    pub from: String,
    /// The conversation the frame named.
    pub conversation_id: String,
    /// Deliveries that failed so far.
    pub attempts: u32,
    /// Why the last one failed (an error's text: ids and reasons, never contents).
    pub reason: String,
    /// The first failed delivery.
    pub first_at: Timestamp,
    /// When the agent acknowledged it and reported it undeliverable; replays are acknowledged
    /// again without another report.
    pub given_up_at: Option<Timestamp>,
}

/// A frame the agent sent, kept so it can be sent again byte for byte, under its original id,
/// when the relay may not have read it (see [`crate::agent`]'s module docs on lost replies).
///
/// Its text is what went on the socket: ciphertext for an end-to-end encrypted agent, base64
/// of the message for a plaintext one. It is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SentFrame {
    /// The message's id (the frame's `id`).
    pub id: String,
    /// The frame's exact text.
    pub frame: String,
}

impl std::fmt::Debug for SentFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SentFrame({}, <{} bytes>)", self.id, self.frame.len())
    }
}

/// A frame sent outside any handler, kept until the relay is proven to have read it (a pong to
/// a ping sent after it), and sent again at every connection until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its place in the outbox: entries are sent again in this order. Unique, increasing.
    pub seq: u64,
    /// The frame.
    pub sent: SentFrame,
}

/// One batch of changes to apply atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreChanges {
    /// Receipts to insert or replace, by message id.
    pub put_receipts: Vec<Receipt>,
    /// Receipts to delete (their sent frames with them).
    pub remove_receipts: Vec<String>,
    /// The frames a message's handler sent, by message id, written with its acceptance (they
    /// replace any recorded before; an empty list records none). A message accepted without
    /// sending anything has no entry.
    pub put_sent_frames: Vec<(String, Vec<SentFrame>)>,
    /// Outbox entries to insert (by [`OutboxEntry::seq`]).
    pub put_outbox: Vec<OutboxEntry>,
    /// Outbox entries the relay was proven to have read, to delete (by seq).
    pub remove_outbox: Vec<u64>,
    /// The last device seen per (person, conversation).
    pub put_last_devices: Vec<((String, String), String)>,
    /// Messages that failed to be read, to insert or replace, by message id.
    pub put_failures: Vec<DeliveryFailure>,
    /// Failure records to delete.
    pub remove_failures: Vec<String>,
    /// Group keys learnt, committed with the receipt (or failure record) of the message that
    /// needed them; a held key is never replaced nor removed.
    pub put_group_keys: Vec<StoredGroupKey>,
    /// Keys and sessions.
    pub e2ee: E2eeChanges,
}

impl StoreChanges {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.put_receipts.is_empty()
            && self.remove_receipts.is_empty()
            && self.put_sent_frames.is_empty()
            && self.put_outbox.is_empty()
            && self.remove_outbox.is_empty()
            && self.put_last_devices.is_empty()
            && self.put_failures.is_empty()
            && self.remove_failures.is_empty()
            && self.put_group_keys.is_empty()
            && self.e2ee.is_empty()
    }
}

/// Everything an agent persists, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentSnapshot {
    /// Receipts by message id.
    pub receipts: BTreeMap<String, Receipt>,
    /// The frames each accepted message's handler sent, by message id (only for messages that
    /// have a receipt, and sent something).
    pub sent_frames: BTreeMap<String, Vec<SentFrame>>,
    /// Frames sent outside handlers and not yet proven read by the relay, by seq.
    pub outbox: BTreeMap<u64, OutboxEntry>,
    /// Last device per (person, conversation).
    pub last_devices: BTreeMap<(String, String), String>,
    /// Messages that failed to be read, by message id.
    pub failures: BTreeMap<String, DeliveryFailure>,
    /// The group keys held, by (conversation, key id, epoch).
    pub group_keys: BTreeMap<GroupKeyId, StoredGroupKey>,
    /// Keys and sessions.
    pub e2ee: E2eeSnapshot,
}

impl AgentSnapshot {
    /// Applies `changes` to this snapshot (what an in-memory store does, and what every store
    /// must be equivalent to).
    pub fn apply(&mut self, changes: &StoreChanges) {
        for receipt in &changes.put_receipts {
            self.receipts.insert(receipt.message_id.clone(), receipt.clone());
        }
        for (id, frames) in &changes.put_sent_frames {
            if frames.is_empty() {
                self.sent_frames.remove(id);
            } else {
                self.sent_frames.insert(id.clone(), frames.clone());
            }
        }
        for id in &changes.remove_receipts {
            self.receipts.remove(id);
            self.sent_frames.remove(id);
        }
        for entry in &changes.put_outbox {
            self.outbox.insert(entry.seq, entry.clone());
        }
        for seq in &changes.remove_outbox {
            self.outbox.remove(seq);
        }
        for (key, device) in &changes.put_last_devices {
            self.last_devices.insert(key.clone(), device.clone());
        }
        for failure in &changes.put_failures {
            self.failures.insert(failure.message_id.clone(), failure.clone());
        }
        for id in &changes.remove_failures {
            self.failures.remove(id);
        }
        for key in &changes.put_group_keys {
            self.group_keys.insert(key.id(), key.clone());
        }
        self.e2ee.apply(&changes.e2ee);
    }
}

/// Where an agent's state lives between runs.
pub trait AgentStore: Send {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Everything persisted so far.
    fn load(&mut self) -> Result<AgentSnapshot, Self::Error>;

    /// Applies one batch, all or nothing.
    fn apply(&mut self, changes: &StoreChanges) -> Result<(), Self::Error>;

    /// Applies several changes, in order, as one commit (group commit): afterwards the store
    /// holds what applying each in turn would make of it, and a failure leaves none of them
    /// applied. A runtime hands over here every change the core emitted before an effect that
    /// depends on them (an acknowledgement, a ciphertext, a message for the app), so a burst
    /// of messages costs one durable commit instead of one each.
    ///
    /// The default applies each change in turn with [`AgentStore::apply`]: one commit each,
    /// and all or nothing across the batch only when `apply` cannot fail part-way through it
    /// (as in memory). A store that commits durably overrides it with one transaction; the
    /// store suite (`store_conformance`) checks both halves of the contract. Runtimes stay
    /// safe even with the default: they carry out nothing that followed a batch's first change
    /// until the whole batch is applied, and a prefix of a batch is what a crash between two
    /// commits leaves anyway.
    fn apply_batch(&mut self, batch: &[StoreChanges]) -> Result<(), Self::Error> {
        batch.iter().try_for_each(|changes| self.apply(changes))
    }
}

/// A store in memory: for tests, and for agents that need no state across restarts.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    snapshot: AgentSnapshot,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the store holds now.
    pub fn snapshot(&self) -> &AgentSnapshot {
        &self.snapshot
    }
}

impl AgentStore for MemoryStore {
    type Error = std::convert::Infallible;

    fn load(&mut self) -> Result<AgentSnapshot, Self::Error> {
        Ok(self.snapshot.clone())
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), Self::Error> {
        self.snapshot.apply(changes);
        Ok(())
    }

    fn apply_batch(&mut self, batch: &[StoreChanges]) -> Result<(), Self::Error> {
        // Nothing here can fail part-way, so applying in turn is all or nothing.
        batch.iter().for_each(|changes| self.snapshot.apply(changes));
        Ok(())
    }
}

/// An [`AgentStore`] with its error boxed, so runtimes can hold any store behind one type.
pub trait DynAgentStore: Send {
    /// See [`AgentStore::load`].
    fn load(&mut self) -> Result<AgentSnapshot, Box<dyn std::error::Error + Send + Sync>>;
    /// See [`AgentStore::apply`].
    fn apply(&mut self, changes: &StoreChanges) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
    /// See [`AgentStore::apply_batch`].
    fn apply_batch(&mut self, batch: &[StoreChanges]) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;
}

impl<S: AgentStore> DynAgentStore for S {
    fn load(&mut self) -> Result<AgentSnapshot, Box<dyn std::error::Error + Send + Sync>> {
        AgentStore::load(self).map_err(Into::into)
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        AgentStore::apply(self, changes).map_err(Into::into)
    }

    fn apply_batch(&mut self, batch: &[StoreChanges]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        AgentStore::apply_batch(self, batch).map_err(Into::into)
    }
}

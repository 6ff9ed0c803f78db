//! libsignal's stored records (its public `storage.proto`: `SessionStructure`,
//! `RecordStructure`, `PreKeyRecordStructure`, `SignedPreKeyRecordStructure`,
//! `IdentityKeyPairStructure`) turned into this SDK's keys and sessions.
//!
//! Every field is checked as our own stored records are (lengths, key encodings, the caps on
//! chains and skipped keys), and everything that can be derived is checked against what it
//! derives from: a public key against its private key, a Kyber public key against the private
//! key holding it. What does not map is refused with the field's name, never guessed.

use super::super::e2ee::chain::ChainKey;
use super::super::e2ee::keys::{KeyPair, PublicKey};
use super::super::e2ee::kyber::{self, KyberKeyPair};
use super::super::e2ee::pq::{PqError, PqRatchet};
use super::super::e2ee::ratchet::{MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS, PendingPreKey, ReceiverChain, SessionState};
use super::super::e2ee::session::{MAX_PREVIOUS_SESSIONS, SessionRecord};
use prost::Message as _;
use std::collections::VecDeque;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// libsignal's session version for PQXDH sessions with version-4 messages, the only one the
/// official runtime makes.
pub const SESSION_VERSION: u32 = 4;

/// Why a libsignal record does not map onto ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalRecordError {
    /// Not protobuf of the expected shape.
    #[error("the record does not decode as libsignal's")]
    Decode,
    /// A field is missing, has the wrong length or disagrees with another.
    #[error("the record's `{0}` is invalid")]
    Field(&'static str),
    /// A session of another version than [`SESSION_VERSION`].
    #[error("session version {0} is not supported (only {SESSION_VERSION})")]
    SessionVersion(u32),
    /// The session belongs to another identity than the one imported.
    #[error("the session's local identity is not the agent's")]
    NotOurSession,
    /// The session's SPQR state does not come over.
    #[error("its SPQR state: {0}")]
    PostQuantum(PqError),
}

/// What mapping a session record dropped, because this SDK keeps less.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Receiving chains beyond [`MAX_RECEIVER_CHAINS`] (the oldest).
    pub receiver_chains: usize,
    /// Skipped message keys beyond [`MAX_SKIPPED_KEYS`] per chain (the oldest), or kept by
    /// libsignal as final keys without their seed (this SDK needs the seed).
    pub skipped_keys: usize,
    /// Previous sessions beyond [`MAX_PREVIOUS_SESSIONS`] (the oldest).
    pub previous_sessions: usize,
}

impl Dropped {
    fn add(&mut self, other: Dropped) {
        self.receiver_chains += other.receiver_chains;
        self.skipped_keys += other.skipped_keys;
        self.previous_sessions += other.previous_sessions;
    }
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct IdentityKeyPairPb {
    #[prost(bytes = "vec", tag = "1")]
    public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    private_key: Vec<u8>,
}

/// `PreKeyRecordStructure`, and the first fields of `SignedPreKeyRecordStructure` (which
/// libsignal also uses for Kyber prekeys).
#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct PreKeyPb {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(bytes = "vec", tag = "2")]
    public_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    private_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct RecordPb {
    #[prost(message, optional, tag = "1")]
    current_session: Option<SessionPb>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    previous_sessions: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct SessionPb {
    #[prost(uint32, tag = "1")]
    session_version: u32,
    #[prost(bytes = "vec", tag = "2")]
    local_identity_public: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    remote_identity_public: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    root_key: Vec<u8>,
    #[prost(uint32, tag = "5")]
    previous_counter: u32,
    #[prost(message, optional, tag = "6")]
    sender_chain: Option<ChainPb>,
    #[prost(message, repeated, tag = "7")]
    receiver_chains: Vec<ChainPb>,
    #[prost(message, optional, tag = "9")]
    pending_pre_key: Option<PendingPreKeyPb>,
    #[prost(uint32, tag = "10")]
    remote_registration_id: u32,
    #[prost(uint32, tag = "11")]
    local_registration_id: u32,
    #[prost(bytes = "vec", tag = "13")]
    alice_base_key: Vec<u8>,
    #[prost(message, optional, tag = "14")]
    pending_kyber_pre_key: Option<PendingKyberPb>,
    #[prost(bytes = "vec", tag = "15")]
    pq_ratchet_state: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct ChainPb {
    #[prost(bytes = "vec", tag = "1")]
    sender_ratchet_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    sender_ratchet_key_private: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    chain_key: Option<ChainKeyPb>,
    #[prost(message, repeated, tag = "4")]
    message_keys: Vec<MessageKeyPb>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct ChainKeyPb {
    #[prost(uint32, tag = "1")]
    index: u32,
    #[prost(bytes = "vec", tag = "2")]
    key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct MessageKeyPb {
    #[prost(uint32, tag = "1")]
    index: u32,
    #[prost(bytes = "vec", tag = "5")]
    seed: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct PendingPreKeyPb {
    #[prost(uint32, optional, tag = "1")]
    pre_key_id: Option<u32>,
    #[prost(bytes = "vec", tag = "2")]
    base_key: Vec<u8>,
    #[prost(int32, tag = "3")]
    signed_pre_key_id: i32,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct PendingKyberPb {
    #[prost(uint32, tag = "1")]
    pre_key_id: u32,
    #[prost(bytes = "vec", tag = "2")]
    ciphertext: Vec<u8>,
}

fn secret(bytes: &[u8], field: &'static str) -> Result<[u8; 32], SignalRecordError> {
    bytes.try_into().map_err(|_| SignalRecordError::Field(field))
}

fn public(bytes: &[u8], field: &'static str) -> Result<PublicKey, SignalRecordError> {
    PublicKey::deserialize(bytes).map_err(|_| SignalRecordError::Field(field))
}

/// A Curve25519 key pair from its private key, checked against the public key stored with it.
fn pair(private: &[u8], stored_public: &[u8], field: &'static str) -> Result<KeyPair, SignalRecordError> {
    let pair = KeyPair::from_private_bytes(secret(private, field)?);
    if pair.public() != public(stored_public, field)? {
        return Err(SignalRecordError::Field(field));
    }
    Ok(pair)
}

/// The identity key pair in libsignal's `IdentityKeyPairStructure`.
pub fn identity(bytes: &[u8]) -> Result<KeyPair, SignalRecordError> {
    let pb = IdentityKeyPairPb::decode(bytes).map_err(|_| SignalRecordError::Decode)?;
    pair(&pb.private_key, &pb.public_key, "identity key")
}

/// A one-time or signed prekey (`PreKeyRecordStructure`, `SignedPreKeyRecordStructure`): its
/// id and key pair.
pub fn prekey(bytes: &[u8]) -> Result<(u32, KeyPair), SignalRecordError> {
    let pb = PreKeyPb::decode(bytes).map_err(|_| SignalRecordError::Decode)?;
    Ok((pb.id, pair(&pb.private_key, &pb.public_key, "prekey")?))
}

/// A Kyber prekey (a `SignedPreKeyRecordStructure` holding libsignal's `0x08`-typed Kyber-1024
/// keys): its id and key pair.
pub fn kyber_prekey(bytes: &[u8]) -> Result<(u32, KyberKeyPair), SignalRecordError> {
    let pb = PreKeyPb::decode(bytes).map_err(|_| SignalRecordError::Decode)?;
    let private = match pb.private_key.split_first() {
        Some((&kyber::KYBER1024_TYPE, private)) => private,
        _ => return Err(SignalRecordError::Field("Kyber private key")),
    };
    let pair = KyberKeyPair::from_private_bytes(private).map_err(|_| SignalRecordError::Field("Kyber private key"))?;
    if pair.public_serialized() != pb.public_key {
        return Err(SignalRecordError::Field("Kyber public key"));
    }
    Ok((pb.id, pair))
}

/// A receiving chain; the skipped keys it had to drop are counted in `dropped`.
fn receiver(pb: &ChainPb, dropped: &mut Dropped) -> Result<ReceiverChain, SignalRecordError> {
    let chain_key = pb.chain_key.as_ref().ok_or(SignalRecordError::Field("receiver chain key"))?;
    let mut skipped: Vec<(u32, Zeroizing<[u8; 32]>)> = Vec::new();
    for key in &pb.message_keys {
        // A key for a message the chain has not reached is never used: corrupt.
        if key.index >= chain_key.index {
            return Err(SignalRecordError::Field("skipped key index"));
        }
        if key.seed.is_empty() {
            // Kept as final keys only (libsignal before SPQR): this SDK needs the seed, since
            // a message's SPQR key is mixed in when it arrives.
            dropped.skipped_keys += 1;
            continue;
        }
        skipped.push((key.index, Zeroizing::new(secret(&key.seed, "skipped key seed")?)));
    }
    // libsignal keeps the newest first; ours are oldest first.
    skipped.sort_by_key(|(index, _)| *index);
    skipped.dedup_by_key(|(index, _)| *index);
    let excess = skipped.len().saturating_sub(MAX_SKIPPED_KEYS);
    dropped.skipped_keys += excess;
    Ok(ReceiverChain {
        ratchet_key: public(&pb.sender_ratchet_key, "receiver ratchet key")?,
        chain: ChainKey::new(secret(&chain_key.key, "receiver chain key")?, chain_key.index),
        skipped: skipped.into_iter().skip(excess).collect::<VecDeque<_>>(),
    })
}

/// One libsignal session as ours.
fn session(pb: &SessionPb, identity: &PublicKey, dropped: &mut Dropped) -> Result<SessionState, SignalRecordError> {
    if pb.session_version != SESSION_VERSION {
        return Err(SignalRecordError::SessionVersion(pb.session_version));
    }
    let local_identity = public(&pb.local_identity_public, "local identity")?;
    if local_identity != *identity {
        return Err(SignalRecordError::NotOurSession);
    }
    let sender = pb.sender_chain.as_ref().ok_or(SignalRecordError::Field("sender chain"))?;
    let sender_key = sender.chain_key.as_ref().ok_or(SignalRecordError::Field("sender chain key"))?;
    let sender_ratchet = pair(&sender.sender_ratchet_key_private, &sender.sender_ratchet_key, "sender ratchet key")?;
    // libsignal appends receiving chains and trims the oldest from the front, as we do.
    let excess = pb.receiver_chains.len().saturating_sub(MAX_RECEIVER_CHAINS);
    dropped.receiver_chains += excess;
    let receivers =
        pb.receiver_chains[excess..].iter().map(|chain| receiver(chain, dropped)).collect::<Result<Vec<_>, _>>()?;
    let pending_prekey = match (&pb.pending_pre_key, &pb.pending_kyber_pre_key) {
        (None, None) => None,
        (Some(pending), Some(kyber)) => {
            let ciphertext = &kyber.ciphertext;
            // A wrong-sized ciphertext would make every PreKey message unreadable.
            if ciphertext.len() != kyber::SERIALIZED_CIPHERTEXT_LEN || ciphertext[0] != kyber::KYBER1024_TYPE {
                return Err(SignalRecordError::Field("pending Kyber ciphertext"));
            }
            if public(&pending.base_key, "pending base key")? != public(&pb.alice_base_key, "base key")? {
                return Err(SignalRecordError::Field("pending base key"));
            }
            Some(PendingPreKey {
                prekey_id: pending.pre_key_id,
                signed_prekey_id: u32::try_from(pending.signed_pre_key_id)
                    .map_err(|_| SignalRecordError::Field("pending signed prekey id"))?,
                kyber_prekey_id: kyber.pre_key_id,
                kyber_ciphertext: ciphertext.clone(),
            })
        }
        // A version-4 session starts with both or neither.
        _ => return Err(SignalRecordError::Field("pending Kyber prekey")),
    };
    Ok(SessionState {
        local_identity,
        remote_identity: public(&pb.remote_identity_public, "remote identity")?,
        local_registration_id: pb.local_registration_id,
        remote_registration_id: pb.remote_registration_id,
        base_key: public(&pb.alice_base_key, "base key")?,
        root_key: Zeroizing::new(secret(&pb.root_key, "root key")?),
        sender_ratchet,
        sender_chain: ChainKey::new(secret(&sender_key.key, "sender chain key")?, sender_key.index),
        previous_counter: pb.previous_counter,
        receivers,
        pq: PqRatchet::from_upstream(&pb.pq_ratchet_state).map_err(SignalRecordError::PostQuantum)?,
        pending_prekey,
    })
}

/// A peer's sessions (libsignal's `RecordStructure`) as our [`SessionRecord`], checked to be
/// sessions of `identity`; with what was dropped because this SDK keeps less.
pub fn session_record(bytes: &[u8], identity: &PublicKey) -> Result<(SessionRecord, Dropped), SignalRecordError> {
    let pb = RecordPb::decode(bytes).map_err(|_| SignalRecordError::Decode)?;
    let mut dropped = Dropped::default();
    let current = pb.current_session.as_ref().map(|current| session(current, identity, &mut dropped)).transpose()?;
    let excess = pb.previous_sessions.len().saturating_sub(MAX_PREVIOUS_SESSIONS);
    let mut previous = Vec::new();
    // Both keep the newest previous session first.
    for bytes in pb.previous_sessions.iter().take(MAX_PREVIOUS_SESSIONS) {
        let pb = SessionPb::decode(bytes.as_slice()).map_err(|_| SignalRecordError::Decode)?;
        let mut counted = Dropped::default();
        previous.push(session(&pb, identity, &mut counted)?);
        dropped.add(counted);
    }
    dropped.previous_sessions += excess;
    Ok((SessionRecord { current, previous }, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(5)
    }

    #[test]
    fn keys_are_checked_against_their_public_halves() {
        let rng = &mut rng();
        let pair = KeyPair::generate(rng);
        let other = KeyPair::generate(rng);
        let record = |public: &KeyPair| IdentityKeyPairPb {
            public_key: public.public().serialize().to_vec(),
            private_key: pair.private_bytes().to_vec(),
        };
        assert_eq!(identity(&record(&pair).encode_to_vec()).unwrap().public(), pair.public());
        assert_eq!(identity(&record(&other).encode_to_vec()).err(), Some(SignalRecordError::Field("identity key")));
        assert_eq!(identity(b"\xff\xff").err(), Some(SignalRecordError::Decode));

        let kyber = KyberKeyPair::generate(rng);
        let kyber_record =
            |public: Vec<u8>, private: Vec<u8>| PreKeyPb { id: 9, public_key: public, private_key: private };
        let typed = [&[kyber::KYBER1024_TYPE][..], kyber.private_bytes()].concat();
        let good = kyber_record(kyber.public_serialized(), typed.clone());
        assert_eq!(kyber_prekey(&good.encode_to_vec()).unwrap().0, 9);
        let untyped = kyber_record(kyber.public_serialized(), kyber.private_bytes().to_vec());
        assert_eq!(kyber_prekey(&untyped.encode_to_vec()).err(), Some(SignalRecordError::Field("Kyber private key")));
        let other_public = kyber_record(KyberKeyPair::generate(rng).public_serialized(), typed);
        assert_eq!(
            kyber_prekey(&other_public.encode_to_vec()).err(),
            Some(SignalRecordError::Field("Kyber public key"))
        );
    }

    #[test]
    fn sessions_of_another_version_or_identity_are_refused() {
        let rng = &mut rng();
        let ours = KeyPair::generate(rng).public();
        let theirs = KeyPair::generate(rng).public();
        let session = |version, local: &PublicKey| {
            let mut session = SessionPb::default();
            session.session_version = version;
            session.local_identity_public = local.serialize().to_vec();
            session
        };
        let record = |session: SessionPb| RecordPb { current_session: Some(session), previous_sessions: Vec::new() };
        let refused = |session| session_record(&record(session).encode_to_vec(), &ours).err();
        assert_eq!(refused(session(3, &ours)), Some(SignalRecordError::SessionVersion(3)));
        assert_eq!(refused(session(4, &theirs)), Some(SignalRecordError::NotOurSession));
        assert_eq!(refused(session(4, &ours)), Some(SignalRecordError::Field("sender chain")));
        // An empty record is no session, and nothing is dropped.
        let (empty, dropped) = session_record(&[], &ours).unwrap();
        assert!(empty.is_empty());
        assert_eq!(dropped, Dropped::default());
    }
}

//! The persisted form of a [`SessionRecord`]: versioned protobuf, one record per peer name.
//!
//! The format is ours (the official runtime's snapshots are opaque and not meant to be read).
//! Every secret in it is wiped from memory once encoded or decoded, and decoding checks every
//! length, so a corrupt row is a precise error and never a panic. A stored record is also held
//! to what the code ever keeps (sessions, receiving chains, skipped keys, SPQR state): a corrupt
//! or hostile row holding more is refused before it is turned into sessions, so it can neither
//! allocate without bound nor make later messages cost more than their budget.

use super::chain::ChainKey;
use super::keys::{KeyPair, PublicKey};
use super::kyber;
use super::pq::{PqError, PqRatchet};
use super::ratchet::{MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS, PendingPreKey, ReceiverChain, SessionState};
use super::session::{MAX_PREVIOUS_SESSIONS, SessionRecord};
use prost::Message as _;
use std::collections::VecDeque;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The record format's version.
const FORMAT_VERSION: u32 = 1;

/// The most bytes one stored session can take: its keys and identities, [`MAX_RECEIVER_CHAINS`]
/// chains of [`MAX_SKIPPED_KEYS`] skipped keys (under 48 bytes each), a pending Kyber
/// ciphertext and an SPQR state at its own cap.
const MAX_SESSION_LEN: usize =
    4 * 1024 + MAX_RECEIVER_CHAINS * (128 + MAX_SKIPPED_KEYS * 48) + pacerelle_spqr::MAX_STATE_LEN;

/// The longest stored record read: a current session and [`MAX_PREVIOUS_SESSIONS`] previous
/// ones, each at the cap of one stored session (its keys, chains full of skipped keys, and an
/// SPQR state at [`pacerelle_spqr::MAX_STATE_LEN`]). Real records are far smaller; the
/// structural caps checked after decoding are what keep a record's cost bounded.
pub const MAX_RECORD_LEN: usize = (1 + MAX_PREVIOUS_SESSIONS) * MAX_SESSION_LEN;

/// Why stored bytes are not a session record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not protobuf of the expected shape.
    #[error("the session record does not decode")]
    Decode,
    /// Written by a newer (or unknown) format version.
    #[error("unsupported session record version {0}")]
    Version(u32),
    /// A field is missing or has the wrong length.
    #[error("the session record's `{0}` is invalid")]
    Field(&'static str),
    /// Longer than [`MAX_RECORD_LEN`].
    #[error("a session record of {0} bytes is longer than the {MAX_RECORD_LEN}-byte limit")]
    TooLarge(usize),
    /// It holds more of something than the code ever keeps.
    #[error("the session record holds {count} {what}, more than the {max} kept")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// How many it holds.
        count: usize,
        /// How many are ever kept.
        max: usize,
    },
    /// A session's SPQR state does not load (corrupt, or over SPQR's own limits).
    #[error("the session record's SPQR state: {0}")]
    PostQuantum(PqError),
}

/// Refuses `count` of `what` above `max`.
fn at_most(what: &'static str, count: usize, max: usize) -> Result<(), RecordError> {
    if count > max {
        return Err(RecordError::TooMany { what, count, max });
    }
    Ok(())
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct RecordProto {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(message, optional, tag = "2")]
    current: Option<StateProto>,
    #[prost(message, repeated, tag = "3")]
    previous: Vec<StateProto>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct StateProto {
    #[prost(bytes = "vec", tag = "1")]
    local_identity: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    remote_identity: Vec<u8>,
    #[prost(uint32, tag = "3")]
    local_registration_id: u32,
    #[prost(uint32, tag = "4")]
    remote_registration_id: u32,
    #[prost(bytes = "vec", tag = "5")]
    base_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    sender_ratchet_private: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    sender_chain_key: Vec<u8>,
    #[prost(uint32, tag = "9")]
    sender_chain_index: u32,
    #[prost(uint32, tag = "10")]
    previous_counter: u32,
    #[prost(message, repeated, tag = "11")]
    receivers: Vec<ReceiverProto>,
    #[prost(bytes = "vec", tag = "12")]
    pq: Vec<u8>,
    #[prost(message, optional, tag = "13")]
    pending: Option<PendingProto>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct ReceiverProto {
    #[prost(bytes = "vec", tag = "1")]
    ratchet_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    chain_key: Vec<u8>,
    #[prost(uint32, tag = "3")]
    chain_index: u32,
    #[prost(message, repeated, tag = "4")]
    skipped: Vec<SkippedProto>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct SkippedProto {
    #[prost(uint32, tag = "1")]
    index: u32,
    #[prost(bytes = "vec", tag = "2")]
    seed: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
struct PendingProto {
    #[prost(uint32, optional, tag = "1")]
    prekey_id: Option<u32>,
    #[prost(uint32, tag = "2")]
    signed_prekey_id: u32,
    #[prost(uint32, tag = "3")]
    kyber_prekey_id: u32,
    #[prost(bytes = "vec", tag = "4")]
    kyber_ciphertext: Vec<u8>,
}

fn secret(bytes: &[u8], field: &'static str) -> Result<[u8; 32], RecordError> {
    bytes.try_into().map_err(|_| RecordError::Field(field))
}

fn public(bytes: &[u8], field: &'static str) -> Result<PublicKey, RecordError> {
    PublicKey::deserialize(bytes).map_err(|_| RecordError::Field(field))
}

impl StateProto {
    fn from_state(state: &SessionState) -> Self {
        StateProto {
            local_identity: state.local_identity.serialize().to_vec(),
            remote_identity: state.remote_identity.serialize().to_vec(),
            local_registration_id: state.local_registration_id,
            remote_registration_id: state.remote_registration_id,
            base_key: state.base_key.serialize().to_vec(),
            root_key: state.root_key.to_vec(),
            sender_ratchet_private: state.sender_ratchet.private_bytes().to_vec(),
            sender_chain_key: state.sender_chain.key.to_vec(),
            sender_chain_index: state.sender_chain.index,
            previous_counter: state.previous_counter,
            receivers: state
                .receivers
                .iter()
                .map(|receiver| ReceiverProto {
                    ratchet_key: receiver.ratchet_key.serialize().to_vec(),
                    chain_key: receiver.chain.key.to_vec(),
                    chain_index: receiver.chain.index,
                    skipped: receiver
                        .skipped
                        .iter()
                        .map(|(index, seed)| SkippedProto { index: *index, seed: seed.to_vec() })
                        .collect(),
                })
                .collect(),
            // Moved out of its wiping wrapper, not copied: the proto wipes it in turn.
            pq: std::mem::take(&mut *state.pq.to_bytes()),
            pending: state.pending_prekey.as_ref().map(|pending| PendingProto {
                prekey_id: pending.prekey_id,
                signed_prekey_id: pending.signed_prekey_id,
                kyber_prekey_id: pending.kyber_prekey_id,
                kyber_ciphertext: pending.kyber_ciphertext.clone(),
            }),
        }
    }

    fn to_state(&self) -> Result<SessionState, RecordError> {
        at_most("receiving chains", self.receivers.len(), MAX_RECEIVER_CHAINS)?;
        let receivers = self
            .receivers
            .iter()
            .map(|receiver| {
                at_most("skipped keys in a chain", receiver.skipped.len(), MAX_SKIPPED_KEYS)?;
                let skipped = receiver
                    .skipped
                    .iter()
                    .map(|skipped| {
                        // A key kept for a message the chain has not reached yet is never used.
                        if skipped.index >= receiver.chain_index {
                            return Err(RecordError::Field("skipped index"));
                        }
                        Ok((skipped.index, Zeroizing::new(secret(&skipped.seed, "skipped seed")?)))
                    })
                    .collect::<Result<VecDeque<_>, RecordError>>()?;
                Ok(ReceiverChain {
                    ratchet_key: public(&receiver.ratchet_key, "receiver ratchet key")?,
                    chain: ChainKey::new(secret(&receiver.chain_key, "receiver chain key")?, receiver.chain_index),
                    skipped,
                })
            })
            .collect::<Result<Vec<_>, RecordError>>()?;
        Ok(SessionState {
            local_identity: public(&self.local_identity, "local identity")?,
            remote_identity: public(&self.remote_identity, "remote identity")?,
            local_registration_id: self.local_registration_id,
            remote_registration_id: self.remote_registration_id,
            base_key: public(&self.base_key, "base key")?,
            root_key: Zeroizing::new(secret(&self.root_key, "root key")?),
            sender_ratchet: KeyPair::from_private_bytes(secret(&self.sender_ratchet_private, "sender ratchet key")?),
            sender_chain: ChainKey::new(secret(&self.sender_chain_key, "sender chain key")?, self.sender_chain_index),
            previous_counter: self.previous_counter,
            receivers,
            pq: PqRatchet::from_bytes(&self.pq).map_err(RecordError::PostQuantum)?,
            pending_prekey: self
                .pending
                .as_ref()
                .map(|pending| {
                    // A wrong-sized ciphertext would make every PreKey message unreadable.
                    let ciphertext = &pending.kyber_ciphertext;
                    if ciphertext.len() != kyber::SERIALIZED_CIPHERTEXT_LEN || ciphertext[0] != kyber::KYBER1024_TYPE {
                        return Err(RecordError::Field("pending Kyber ciphertext"));
                    }
                    Ok(PendingPreKey {
                        prekey_id: pending.prekey_id,
                        signed_prekey_id: pending.signed_prekey_id,
                        kyber_prekey_id: pending.kyber_prekey_id,
                        kyber_ciphertext: ciphertext.clone(),
                    })
                })
                .transpose()?,
        })
    }
}

impl SessionRecord {
    /// The record's persisted bytes.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let proto = RecordProto {
            version: FORMAT_VERSION,
            current: self.current.as_ref().map(StateProto::from_state),
            previous: self.previous.iter().map(StateProto::from_state).collect(),
        };
        Zeroizing::new(proto.encode_to_vec())
    }

    /// Reads [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        let proto = RecordProto::decode(bytes).map_err(|_| RecordError::Decode)?;
        if proto.version != FORMAT_VERSION {
            return Err(RecordError::Version(proto.version));
        }
        at_most("previous sessions", proto.previous.len(), MAX_PREVIOUS_SESSIONS)?;
        Ok(SessionRecord {
            current: proto.current.as_ref().map(StateProto::to_state).transpose()?,
            previous: proto.previous.iter().map(StateProto::to_state).collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::tests::Party;
    use rand::SeedableRng;

    /// A record with one genuine session (the initiator's, after a reply: one receiving chain).
    fn one_session() -> SessionRecord {
        let rng = &mut rand::rngs::StdRng::seed_from_u64(40);
        let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
        let pq = PqRatchet::spqr_required;
        let (mut alice_record, mut bob_record) = (SessionRecord::new(), SessionRecord::new());
        alice_record.initiate(&alice.identity, &bob.bundle(rng, None), pq, rng).unwrap();
        bob_record.decrypt(&alice_record.encrypt(b"hi", rng).unwrap(), &bob, pq, rng).unwrap();
        alice_record.decrypt(&bob_record.encrypt(b"hi", rng).unwrap(), &alice, pq, rng).unwrap();
        alice_record
    }

    fn reload(record: &SessionRecord) -> Result<SessionRecord, RecordError> {
        SessionRecord::from_bytes(&record.to_bytes())
    }

    #[test]
    fn records_holding_more_than_is_ever_kept_are_refused() {
        let record = one_session();
        let state = record.current().unwrap().clone();
        assert_eq!(reload(&record).as_ref(), Ok(&record));

        let mut sessions = record.clone();
        sessions.previous = vec![state.clone(); MAX_PREVIOUS_SESSIONS];
        assert_eq!(reload(&sessions).as_ref(), Ok(&sessions), "the most sessions kept load");
        sessions.previous.push(state.clone());
        let too_many = RecordError::TooMany {
            what: "previous sessions",
            count: MAX_PREVIOUS_SESSIONS + 1,
            max: MAX_PREVIOUS_SESSIONS,
        };
        assert_eq!(reload(&sessions), Err(too_many));

        let mut chains = state.clone();
        chains.receivers = vec![state.receivers[0].clone(); MAX_RECEIVER_CHAINS + 1];
        let record = SessionRecord { current: Some(chains), previous: Vec::new() };
        let too_many =
            RecordError::TooMany { what: "receiving chains", count: MAX_RECEIVER_CHAINS + 1, max: MAX_RECEIVER_CHAINS };
        assert_eq!(reload(&record), Err(too_many));

        let mut skipped = state.clone();
        let receiver = &mut skipped.receivers[0];
        receiver.chain.index = u32::MAX;
        receiver.skipped = (0..MAX_SKIPPED_KEYS as u32).map(|index| (index, Zeroizing::new([5; 32]))).collect();
        let mut record = SessionRecord { current: Some(skipped), previous: Vec::new() };
        assert!(reload(&record).is_ok(), "the most skipped keys kept load");
        let receiver = &mut record.current.as_mut().unwrap().receivers[0];
        receiver.skipped.push_back((MAX_SKIPPED_KEYS as u32, Zeroizing::new([5; 32])));
        let too_many = RecordError::TooMany {
            what: "skipped keys in a chain",
            count: MAX_SKIPPED_KEYS + 1,
            max: MAX_SKIPPED_KEYS,
        };
        assert_eq!(reload(&record), Err(too_many));

        // A key kept for a message its chain has not reached is never used: corrupt.
        let mut ahead = state;
        let index = ahead.receivers[0].chain.index;
        ahead.receivers[0].skipped.push_back((index, Zeroizing::new([5; 32])));
        let record = SessionRecord { current: Some(ahead), previous: Vec::new() };
        assert_eq!(reload(&record), Err(RecordError::Field("skipped index")));
    }

    #[test]
    fn oversized_records_and_spqr_states_are_refused_before_decoding() {
        let too_long = vec![0u8; MAX_RECORD_LEN + 1];
        assert_eq!(SessionRecord::from_bytes(&too_long), Err(RecordError::TooLarge(MAX_RECORD_LEN + 1)));

        // A session whose SPQR state is over SPQR's own cap.
        let record = one_session();
        let mut proto = StateProto::from_state(record.current().unwrap());
        proto.pq = vec![1; pacerelle_spqr::MAX_STATE_LEN + 1];
        let bytes = RecordProto { version: FORMAT_VERSION, current: Some(proto), previous: Vec::new() }.encode_to_vec();
        let expected = RecordError::PostQuantum(PqError::Spqr(pacerelle_spqr::Error::StateTooLarge("state bytes")));
        assert_eq!(SessionRecord::from_bytes(&bytes), Err(expected));
    }
}

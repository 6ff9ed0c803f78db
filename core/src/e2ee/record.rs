//! The persisted form of a [`SessionRecord`]: versioned protobuf, one record per peer name.
//!
//! The format is ours (the official runtime's snapshots are opaque and not meant to be read).
//! Every secret in it is wiped from memory once encoded or decoded, and decoding checks every
//! length, so a corrupt row is a precise error and never a panic.

use super::chain::ChainKey;
use super::keys::{KeyPair, PublicKey};
use super::kyber;
use super::pq::PqRatchet;
use super::ratchet::{PendingPreKey, ReceiverChain, SessionState};
use super::session::SessionRecord;
use prost::Message as _;
use std::collections::VecDeque;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The record format's version.
const FORMAT_VERSION: u32 = 1;

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
            pq: state.pq.to_bytes().to_vec(),
            pending: state.pending_prekey.as_ref().map(|pending| PendingProto {
                prekey_id: pending.prekey_id,
                signed_prekey_id: pending.signed_prekey_id,
                kyber_prekey_id: pending.kyber_prekey_id,
                kyber_ciphertext: pending.kyber_ciphertext.clone(),
            }),
        }
    }

    fn to_state(&self) -> Result<SessionState, RecordError> {
        let receivers = self
            .receivers
            .iter()
            .map(|receiver| {
                let skipped = receiver
                    .skipped
                    .iter()
                    .map(|skipped| Ok((skipped.index, Zeroizing::new(secret(&skipped.seed, "skipped seed")?))))
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
            pq: PqRatchet::from_bytes(&self.pq).map_err(|_| RecordError::Field("pq"))?,
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
        let proto = RecordProto::decode(bytes).map_err(|_| RecordError::Decode)?;
        if proto.version != FORMAT_VERSION {
            return Err(RecordError::Version(proto.version));
        }
        Ok(SessionRecord {
            current: proto.current.as_ref().map(StateProto::to_state).transpose()?,
            previous: proto.previous.iter().map(StateProto::to_state).collect::<Result<_, _>>()?,
        })
    }
}

//! libsignal's version-4 ciphertext messages and the one-byte frame the official runtime puts
//! in front of them.
//!
//! A framed ciphertext is `0x01` + PreKey message (until the peer's first reply arrives) or
//! `0x02` + ordinary message. Both messages start with a version byte, `0x44` (message version 4,
//! current version 4). The ordinary message is protobuf followed by an 8-byte truncated
//! HMAC-SHA256 over both identity keys and everything before it; the PreKey message is protobuf
//! that wraps an ordinary message and carries the session-setup values.
//!
//! Decoding is strict and never panics: every length, version and required field is checked,
//! and each failure is its own [`MessageError`] variant.

use super::keys::{KeyError, PublicKey};
use super::kyber;
use hmac::{KeyInit as _, Mac as _};
use prost::Message as _;
use subtle::ConstantTimeEq as _;

/// The protocol version these messages carry (PQXDH with Kyber).
pub const VERSION: u8 = 4;
/// The version byte in front of every message: message version and current version.
pub const VERSION_BYTE: u8 = (VERSION << 4) | VERSION;
/// The frame byte of a PreKey message.
pub const FRAME_PREKEY: u8 = 0x01;
/// The frame byte of an ordinary message.
pub const FRAME_WHISPER: u8 = 0x02;
/// The length of an ordinary message's MAC.
pub const MAC_LEN: usize = 8;
/// The largest framed ciphertext accepted (64 KiB, a message of some 65,000 characters): more
/// than people type, and what keeps a frame's cost bounded, since every frame is MACed whole
/// before it is refused (about 0.5 ms for 64 KiB without SHA instructions; see BENCHMARKS.md).
/// Files travel as attachments, outside the message.
pub const MAX_FRAMED_LEN: usize = 64 * 1024;

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Nothing to decode.
    #[error("empty ciphertext")]
    Empty,
    /// Larger than [`MAX_FRAMED_LEN`].
    #[error("ciphertext of {0} bytes is larger than the {MAX_FRAMED_LEN}-byte limit")]
    TooLarge(usize),
    /// The frame byte is neither `0x01` nor `0x02`.
    #[error("unknown frame byte 0x{0:02x}")]
    UnknownFrame(u8),
    /// Too short to hold a version byte, a body and a MAC.
    #[error("message of {0} bytes is too short")]
    TooShort(usize),
    /// A message version other than 4.
    #[error("unsupported message version {0}")]
    UnsupportedVersion(u8),
    /// The protobuf does not parse.
    #[error("malformed protobuf")]
    Protobuf,
    /// A required field is missing.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A key field does not hold a valid key.
    #[error("invalid key in `{field}`: {error}")]
    Key {
        /// The field.
        field: &'static str,
        /// Why.
        error: KeyError,
    },
    /// The Kyber ciphertext has the wrong size or type.
    #[error("invalid Kyber ciphertext: {0}")]
    KyberCiphertext(kyber::KyberError),
    /// The message binds sender and recipient service addresses, which Pacerelle names never are.
    #[error("the message carries service addresses, which this protocol does not use")]
    UnexpectedAddresses,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignalMessageProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    ratchet_key: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "2")]
    counter: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    previous_counter: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    ciphertext: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pq_ratchet: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    addresses: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PreKeySignalMessageProto {
    #[prost(uint32, optional, tag = "1")]
    pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "2")]
    base_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    identity_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    message: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "5")]
    registration_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    signed_pre_key_id: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    kyber_pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "8")]
    kyber_ciphertext: Option<Vec<u8>>,
}

/// An ordinary (Double Ratchet) message, decoded; its MAC is checked later, once the receiver
/// has derived the message key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalMessage {
    /// The sender's current ratchet public key.
    pub ratchet_key: PublicKey,
    /// The message's index in the sender's chain.
    pub counter: u32,
    /// The length of the sender's previous chain (informational).
    pub previous_counter: u32,
    /// The AES-256-CBC ciphertext.
    pub ciphertext: Vec<u8>,
    /// The post-quantum ratchet's bytes (empty from a peer without SPQR).
    pub pq_ratchet: Vec<u8>,
    /// The exact bytes the MAC covers (version byte and protobuf).
    authenticated: Vec<u8>,
    mac: [u8; MAC_LEN],
}

/// What a sender needs to build an ordinary message.
pub struct SignalMessageParts<'a> {
    /// The sender's ratchet key.
    pub ratchet_key: &'a PublicKey,
    /// The message index.
    pub counter: u32,
    /// The previous chain's length.
    pub previous_counter: u32,
    /// The AES-256-CBC ciphertext.
    pub ciphertext: &'a [u8],
    /// The post-quantum ratchet's bytes.
    pub pq_ratchet: &'a [u8],
}

fn mac(
    mac_key: &[u8; 32],
    sender_identity: &PublicKey,
    receiver_identity: &PublicKey,
    content: &[u8],
) -> [u8; MAC_LEN] {
    let mut hmac = hmac::Hmac::<sha2::Sha256>::new_from_slice(mac_key).expect("HMAC takes keys of any length");
    hmac.update(&sender_identity.serialize());
    hmac.update(&receiver_identity.serialize());
    hmac.update(content);
    let full = hmac.finalize().into_bytes();
    let mut truncated = [0u8; MAC_LEN];
    truncated.copy_from_slice(&full[..MAC_LEN]);
    truncated
}

impl SignalMessage {
    /// Serializes a new message and its MAC, keyed by `mac_key` and bound to both identities.
    /// An empty post-quantum field is left out, as libsignal writes it.
    pub fn encode(
        parts: &SignalMessageParts<'_>,
        mac_key: &[u8; 32],
        sender_identity: &PublicKey,
        receiver_identity: &PublicKey,
    ) -> Vec<u8> {
        let pq_ratchet = (!parts.pq_ratchet.is_empty()).then_some(parts.pq_ratchet);
        Self::encode_with_field(parts, pq_ratchet, mac_key, sender_identity, receiver_identity)
    }

    /// [`Self::encode`] with the post-quantum field given explicitly: `None` leaves it out,
    /// `Some` writes it even when empty (which libsignal never does; for tests of peers).
    pub fn encode_with_field(
        parts: &SignalMessageParts<'_>,
        pq_ratchet: Option<&[u8]>,
        mac_key: &[u8; 32],
        sender_identity: &PublicKey,
        receiver_identity: &PublicKey,
    ) -> Vec<u8> {
        let proto = SignalMessageProto {
            ratchet_key: Some(parts.ratchet_key.serialize().to_vec()),
            counter: Some(parts.counter),
            previous_counter: Some(parts.previous_counter),
            ciphertext: Some(parts.ciphertext.to_vec()),
            pq_ratchet: pq_ratchet.map(<[u8]>::to_vec),
            addresses: None,
        };
        let mut out = Vec::with_capacity(1 + proto.encoded_len() + MAC_LEN);
        out.push(VERSION_BYTE);
        proto.encode(&mut out).expect("a Vec grows as needed");
        let tag = mac(mac_key, sender_identity, receiver_identity, &out);
        out.extend_from_slice(&tag);
        out
    }

    /// Decodes an ordinary message (without frame byte).
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() < 1 + MAC_LEN {
            return Err(MessageError::TooShort(bytes.len()));
        }
        check_version(bytes[0])?;
        let (authenticated, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let proto = SignalMessageProto::decode(&authenticated[1..]).map_err(|_| MessageError::Protobuf)?;
        if proto.addresses.is_some() {
            return Err(MessageError::UnexpectedAddresses);
        }
        let ratchet_key = proto.ratchet_key.ok_or(MessageError::MissingField("ratchet_key"))?;
        let ratchet_key =
            PublicKey::deserialize(&ratchet_key).map_err(|error| MessageError::Key { field: "ratchet_key", error })?;
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(tag);
        Ok(SignalMessage {
            ratchet_key,
            counter: proto.counter.ok_or(MessageError::MissingField("counter"))?,
            previous_counter: proto.previous_counter.unwrap_or(0),
            ciphertext: proto.ciphertext.ok_or(MessageError::MissingField("ciphertext"))?,
            pq_ratchet: proto.pq_ratchet.unwrap_or_default(),
            authenticated: authenticated.to_vec(),
            mac,
        })
    }

    /// How many bytes the MAC covers (the work of checking it, besides the two identities).
    pub fn authenticated_len(&self) -> usize {
        self.authenticated.len()
    }

    /// Whether the MAC is right for `mac_key` and the two identities (constant time).
    pub fn verify_mac(&self, mac_key: &[u8; 32], sender_identity: &PublicKey, receiver_identity: &PublicKey) -> bool {
        let expected = mac(mac_key, sender_identity, receiver_identity, &self.authenticated);
        expected.ct_eq(&self.mac).into()
    }
}

/// A session-starting message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreKeySignalMessage {
    /// The sender's registration id.
    pub registration_id: u32,
    /// The one-time prekey used, if any.
    pub prekey_id: Option<u32>,
    /// The signed prekey used.
    pub signed_prekey_id: u32,
    /// The Kyber prekey used.
    pub kyber_prekey_id: u32,
    /// The serialized (`0x08`) Kyber ciphertext.
    pub kyber_ciphertext: Vec<u8>,
    /// The sender's ephemeral base key.
    pub base_key: PublicKey,
    /// The sender's identity key.
    pub identity_key: PublicKey,
    /// The wrapped ordinary message.
    pub message: SignalMessage,
}

/// What a sender needs to wrap an ordinary message into a PreKey message.
pub struct PreKeyParts<'a> {
    /// The sender's registration id.
    pub registration_id: u32,
    /// The one-time prekey used, if any.
    pub prekey_id: Option<u32>,
    /// The signed prekey used.
    pub signed_prekey_id: u32,
    /// The Kyber prekey used.
    pub kyber_prekey_id: u32,
    /// The serialized Kyber ciphertext.
    pub kyber_ciphertext: &'a [u8],
    /// The sender's base key.
    pub base_key: &'a PublicKey,
    /// The sender's identity key.
    pub identity_key: &'a PublicKey,
}

impl PreKeySignalMessage {
    /// Serializes a PreKey message around an encoded ordinary `message`.
    pub fn encode(parts: &PreKeyParts<'_>, message: Vec<u8>) -> Vec<u8> {
        let proto = PreKeySignalMessageProto {
            pre_key_id: parts.prekey_id,
            base_key: Some(parts.base_key.serialize().to_vec()),
            identity_key: Some(parts.identity_key.serialize().to_vec()),
            message: Some(message),
            registration_id: Some(parts.registration_id),
            signed_pre_key_id: Some(parts.signed_prekey_id),
            kyber_pre_key_id: Some(parts.kyber_prekey_id),
            kyber_ciphertext: Some(parts.kyber_ciphertext.to_vec()),
        };
        let mut out = Vec::with_capacity(1 + proto.encoded_len());
        out.push(VERSION_BYTE);
        proto.encode(&mut out).expect("a Vec grows as needed");
        out
    }

    /// Decodes a PreKey message (without frame byte).
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let (&version, body) = bytes.split_first().ok_or(MessageError::TooShort(0))?;
        check_version(version)?;
        let proto = PreKeySignalMessageProto::decode(body).map_err(|_| MessageError::Protobuf)?;
        let key = |value: Option<Vec<u8>>, field: &'static str| -> Result<PublicKey, MessageError> {
            let bytes = value.ok_or(MessageError::MissingField(field))?;
            PublicKey::deserialize(&bytes).map_err(|error| MessageError::Key { field, error })
        };
        let kyber_ciphertext = proto.kyber_ciphertext.ok_or(MessageError::MissingField("kyber_ciphertext"))?;
        if kyber_ciphertext.len() != kyber::SERIALIZED_CIPHERTEXT_LEN {
            return Err(MessageError::KyberCiphertext(kyber::KyberError::Length {
                expected: kyber::SERIALIZED_CIPHERTEXT_LEN,
                actual: kyber_ciphertext.len(),
            }));
        }
        if kyber_ciphertext[0] != kyber::KYBER1024_TYPE {
            return Err(MessageError::KyberCiphertext(kyber::KyberError::UnknownType(kyber_ciphertext[0])));
        }
        Ok(PreKeySignalMessage {
            registration_id: proto.registration_id.unwrap_or(0),
            prekey_id: proto.pre_key_id,
            signed_prekey_id: proto.signed_pre_key_id.ok_or(MessageError::MissingField("signed_pre_key_id"))?,
            kyber_prekey_id: proto.kyber_pre_key_id.ok_or(MessageError::MissingField("kyber_pre_key_id"))?,
            kyber_ciphertext,
            base_key: key(proto.base_key, "base_key")?,
            identity_key: key(proto.identity_key, "identity_key")?,
            message: SignalMessage::decode(&proto.message.ok_or(MessageError::MissingField("message"))?)?,
        })
    }
}

fn check_version(byte: u8) -> Result<(), MessageError> {
    match byte >> 4 {
        VERSION => Ok(()),
        other => Err(MessageError::UnsupportedVersion(other)),
    }
}

/// A framed ciphertext, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// `0x01`: a session-starting message.
    PreKey(Box<PreKeySignalMessage>),
    /// `0x02`: an ordinary message.
    Whisper(SignalMessage),
}

impl Framed {
    /// Decodes a framed ciphertext as the official runtime writes them.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_FRAMED_LEN {
            return Err(MessageError::TooLarge(bytes.len()));
        }
        let (&frame, body) = bytes.split_first().ok_or(MessageError::Empty)?;
        match frame {
            FRAME_PREKEY => Ok(Framed::PreKey(Box::new(PreKeySignalMessage::decode(body)?))),
            FRAME_WHISPER => Ok(Framed::Whisper(SignalMessage::decode(body)?)),
            other => Err(MessageError::UnknownFrame(other)),
        }
    }
}

/// Puts the frame byte in front of an encoded message.
pub fn frame(frame_byte: u8, message: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 1);
    out.push(frame_byte);
    out.extend(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::keys::KeyPair;
    use rand::SeedableRng;

    fn keys() -> (PublicKey, PublicKey, PublicKey) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        (
            KeyPair::generate(&mut rng).public(),
            KeyPair::generate(&mut rng).public(),
            KeyPair::generate(&mut rng).public(),
        )
    }

    #[test]
    fn ordinary_messages_round_trip_and_bind_both_identities() {
        let (ratchet, alice, bob) = keys();
        let parts = SignalMessageParts {
            ratchet_key: &ratchet,
            counter: 7,
            previous_counter: 3,
            ciphertext: b"0123456789abcdef",
            pq_ratchet: &[1, 1, 1, 0],
        };
        let key = [9u8; 32];
        let bytes = SignalMessage::encode(&parts, &key, &alice, &bob);
        assert_eq!(bytes[0], 0x44);
        let message = SignalMessage::decode(&bytes).unwrap();
        assert_eq!((message.counter, message.previous_counter, message.ratchet_key), (7, 3, ratchet));
        assert_eq!(
            (message.ciphertext.as_slice(), message.pq_ratchet.as_slice()),
            (&b"0123456789abcdef"[..], &[1u8, 1, 1, 0][..])
        );
        assert!(message.verify_mac(&key, &alice, &bob));
        assert!(!message.verify_mac(&key, &bob, &alice), "direction is bound");
        assert!(!message.verify_mac(&[8u8; 32], &alice, &bob));
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 0x20;
            if let Ok(message) = SignalMessage::decode(&tampered) {
                assert!(!message.verify_mac(&key, &alice, &bob), "byte {index}");
            }
        }
    }

    #[test]
    fn malformed_messages_are_precise_errors() {
        let (ratchet, alice, bob) = keys();
        assert_eq!(Framed::decode(&[]), Err(MessageError::Empty));
        assert_eq!(Framed::decode(&[0x03, 0x44]), Err(MessageError::UnknownFrame(3)));
        assert_eq!(Framed::decode(&[0x02, 0x44, 1]), Err(MessageError::TooShort(2)));
        assert!(matches!(Framed::decode(&vec![2u8; MAX_FRAMED_LEN + 1]), Err(MessageError::TooLarge(_))));
        let parts = SignalMessageParts {
            ratchet_key: &ratchet,
            counter: 0,
            previous_counter: 0,
            ciphertext: b"x",
            pq_ratchet: &[],
        };
        let mut bytes = SignalMessage::encode(&parts, &[0; 32], &alice, &bob);
        bytes[0] = 0x33;
        assert_eq!(SignalMessage::decode(&bytes), Err(MessageError::UnsupportedVersion(3)));
        assert_eq!(
            SignalMessage::decode(&[0x44, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(MessageError::Protobuf)
        );
        assert_eq!(
            SignalMessage::decode(&[0x44, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(MessageError::MissingField("ratchet_key"))
        );
        assert_eq!(PreKeySignalMessage::decode(&[]), Err(MessageError::TooShort(0)));
    }

    #[test]
    fn prekey_messages_round_trip() {
        let (ratchet, alice, bob) = keys();
        let inner = SignalMessage::encode(
            &SignalMessageParts {
                ratchet_key: &ratchet,
                counter: 0,
                previous_counter: 0,
                ciphertext: b"c",
                pq_ratchet: &[],
            },
            &[1; 32],
            &alice,
            &bob,
        );
        let mut kyber_ciphertext = vec![0x08];
        kyber_ciphertext.extend([7u8; 1568]);
        let parts = PreKeyParts {
            registration_id: 70,
            prekey_id: Some(5),
            signed_prekey_id: 6,
            kyber_prekey_id: 6,
            kyber_ciphertext: &kyber_ciphertext,
            base_key: &bob,
            identity_key: &alice,
        };
        let framed = frame(FRAME_PREKEY, PreKeySignalMessage::encode(&parts, inner));
        let Framed::PreKey(message) = Framed::decode(&framed).unwrap() else { panic!("a PreKey message") };
        assert_eq!(
            (message.registration_id, message.prekey_id, message.signed_prekey_id, message.kyber_prekey_id),
            (70, Some(5), 6, 6)
        );
        assert_eq!((message.base_key, message.identity_key), (bob, alice));
        assert_eq!(message.message.ratchet_key, ratchet);
        assert_eq!(message.kyber_ciphertext, kyber_ciphertext);
    }
}

//! PQXDH session setup (Signal's "PQXDH" specification, as libsignal keys it), in both roles.
//!
//! The initiator checks the peer's two prekey signatures, makes a base key, computes
//! `0xFF×32 ‖ DH(IK_A, SPK_B) ‖ DH(EK_A, IK_B) ‖ DH(EK_A, SPK_B) [‖ DH(EK_A, OPK_B)] ‖ KEM(PQPK_B)`
//! and derives a root key, a chain key and the SPQR authentication key from it with
//! HKDF-SHA256 (no salt, info `WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024`). The responder
//! computes the same from its private prekeys and the PreKey message.

use super::chain::{ChainKey, Secret32, hkdf, root_step};
use super::keys::{KeyPair, PublicKey};
use super::kyber::{self, KyberError, KyberKeyPair};
use super::message::PreKeySignalMessage;
use super::pq::{PqFactory, Role};
use super::ratchet::{PendingPreKey, ReceiverChain, SessionState};
use super::xeddsa;
use crate::Rng;
use std::collections::VecDeque;
use zeroize::Zeroizing;

const KDF_INFO: &[u8] = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024";

/// Why a session could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The signed prekey's signature does not verify with the identity key.
    #[error("the signed prekey's signature does not verify")]
    BadSignedPrekeySignature,
    /// The Kyber prekey's signature does not verify with the identity key.
    #[error("the Kyber prekey's signature does not verify")]
    BadKyberPrekeySignature,
    /// The Kyber prekey or ciphertext is malformed.
    #[error("Kyber: {0}")]
    Kyber(#[from] KyberError),
    /// The PreKey message names a signed prekey we do not hold.
    #[error("unknown signed prekey {0}")]
    UnknownSignedPrekey(u32),
    /// The PreKey message names a Kyber prekey we do not hold.
    #[error("unknown Kyber prekey {0}")]
    UnknownKyberPrekey(u32),
    /// The PreKey message names a one-time prekey we do not hold (already used, or never ours).
    #[error("unknown or already used one-time prekey {0}")]
    UnknownOneTimePrekey(u32),
    /// The initiator's base key is not a canonical Curve25519 encoding.
    #[error("the base key is not canonical")]
    NonCanonicalBaseKey,
    /// The post-quantum ratchet could not be set up.
    #[error("post-quantum ratchet: {0}")]
    PostQuantum(#[from] super::pq::PqError),
}

/// A peer's prekey bundle, as fetched from the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerBundle {
    /// The peer's registration id.
    pub registration_id: u32,
    /// The peer's device id.
    pub device_id: u32,
    /// The peer's identity key.
    pub identity_key: PublicKey,
    /// The signed prekey's id.
    pub signed_prekey_id: u32,
    /// The signed prekey.
    pub signed_prekey: PublicKey,
    /// Its XEdDSA signature by the identity key.
    pub signed_prekey_signature: Vec<u8>,
    /// The Kyber prekey's id.
    pub kyber_prekey_id: u32,
    /// The serialized (`0x08`) Kyber-1024 prekey.
    pub kyber_prekey: Vec<u8>,
    /// Its XEdDSA signature by the identity key.
    pub kyber_prekey_signature: Vec<u8>,
    /// A one-time prekey, if the relay had one.
    pub one_time_prekey: Option<(u32, PublicKey)>,
}

/// Why a fetched bundle is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// A field is not standard base64.
    #[error("bundle field `{0}` is not base64")]
    Base64(&'static str),
    /// A key field is not a valid key.
    #[error("bundle field `{field}` is not a valid key: {error}")]
    Key {
        /// The field.
        field: &'static str,
        /// Why.
        error: super::keys::KeyError,
    },
    /// A one-time prekey id without its key, or the reverse.
    #[error("the one-time prekey's id and key come together")]
    HalfOneTimePrekey,
}

impl PeerBundle {
    /// Reads the relay's answer to a bundle fetch (base64 fields as PROTOCOL.md has them).
    pub fn from_fetched(fetched: &crate::wire::person::FetchedBundle) -> Result<Self, BundleError> {
        use base64::Engine as _;
        let decode = |text: &str, field: &'static str| {
            base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| BundleError::Base64(field))
        };
        let key = |text: &str, field: &'static str| {
            PublicKey::deserialize(&decode(text, field)?).map_err(|error| BundleError::Key { field, error })
        };
        let bundle = &fetched.bundle;
        let one_time_prekey = match (&fetched.prekey_id, &fetched.prekey_public) {
            (Some(id), Some(public)) => Some((*id, key(public, "prekey_public")?)),
            (None, None) => None,
            _ => return Err(BundleError::HalfOneTimePrekey),
        };
        Ok(PeerBundle {
            registration_id: bundle.registration_id,
            device_id: bundle.device_id,
            identity_key: key(&bundle.identity_key, "identity_key")?,
            signed_prekey_id: bundle.signed_prekey_id,
            signed_prekey: key(&bundle.signed_prekey_public, "signed_prekey_public")?,
            signed_prekey_signature: decode(&bundle.signed_prekey_signature, "signed_prekey_signature")?,
            kyber_prekey_id: bundle.kyber_prekey_id,
            kyber_prekey: decode(&bundle.kyber_prekey_public, "kyber_prekey_public")?,
            kyber_prekey_signature: decode(&bundle.kyber_prekey_signature, "kyber_prekey_signature")?,
            one_time_prekey,
        })
    }
}

/// Our long-term identity.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    /// The identity key pair.
    pub key_pair: KeyPair,
    /// Our registration id.
    pub registration_id: u32,
}

/// The private prekeys a PreKey message selected.
pub struct ResponderKeys<'a> {
    /// The signed prekey (also the first ratchet key).
    pub signed_prekey: &'a KeyPair,
    /// The Kyber prekey.
    pub kyber_prekey: &'a KyberKeyPair,
    /// The one-time prekey, when the message names one.
    pub one_time_prekey: Option<&'a KeyPair>,
}

fn derive(secrets: &[u8]) -> (Secret32, ChainKey, Secret32) {
    let mut okm = Zeroizing::new([0u8; 96]);
    hkdf(None, secrets, KDF_INFO, okm.as_mut());
    let mut root = Zeroizing::new([0u8; 32]);
    root.copy_from_slice(&okm[..32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    chain.copy_from_slice(&okm[32..64]);
    let mut pq_auth = Zeroizing::new([0u8; 32]);
    pq_auth.copy_from_slice(&okm[64..]);
    (root, ChainKey::new(*chain, 0), pq_auth)
}

/// Whether `key` is the canonical encoding of its field element (below 2^255 - 19, top bit clear).
fn is_canonical(key: &PublicKey) -> bool {
    let u = key.u_bytes();
    if u[31] & 0x80 != 0 {
        return false;
    }
    // Values from 2^255 - 19 to 2^255 - 1: 0x7f, then thirty 0xff, then a low byte >= 0xed.
    !(u[31] == 0x7f && u[1..31].iter().all(|&byte| byte == 0xff) && u[0] >= 0xed)
}

/// Sets up a session as the initiator, from the peer's bundle. The new session sends PreKey
/// messages until the peer replies.
pub fn initiate(
    local: &LocalIdentity,
    bundle: &PeerBundle,
    pq: PqFactory,
    rng: &mut Rng,
) -> Result<SessionState, SetupError> {
    let identity = bundle.identity_key.u_bytes();
    if !xeddsa::verify(identity, &bundle.signed_prekey.serialize(), &bundle.signed_prekey_signature) {
        return Err(SetupError::BadSignedPrekeySignature);
    }
    if !xeddsa::verify(identity, &bundle.kyber_prekey, &bundle.kyber_prekey_signature) {
        return Err(SetupError::BadKyberPrekeySignature);
    }
    let base = KeyPair::generate(rng);
    let mut secrets = Zeroizing::new(Vec::with_capacity(32 * 6));
    secrets.extend_from_slice(&[0xFF; 32]);
    secrets.extend_from_slice(local.key_pair.agree(&bundle.signed_prekey).as_ref());
    secrets.extend_from_slice(base.agree(&bundle.identity_key).as_ref());
    secrets.extend_from_slice(base.agree(&bundle.signed_prekey).as_ref());
    if let Some((_, one_time)) = &bundle.one_time_prekey {
        secrets.extend_from_slice(base.agree(one_time).as_ref());
    }
    let (kyber_ciphertext, kyber_secret) = kyber::encapsulate(&bundle.kyber_prekey, rng)?;
    secrets.extend_from_slice(kyber_secret.as_ref());
    let (root, chain, pq_auth) = derive(&secrets);

    let sender_ratchet = KeyPair::generate(rng);
    let (root, sender_chain) = root_step(&root, &bundle.signed_prekey, &sender_ratchet);
    Ok(SessionState {
        local_identity: local.key_pair.public(),
        remote_identity: bundle.identity_key,
        local_registration_id: local.registration_id,
        remote_registration_id: bundle.registration_id,
        base_key: base.public(),
        root_key: root,
        sender_ratchet,
        sender_chain,
        previous_counter: 0,
        receivers: vec![ReceiverChain { ratchet_key: bundle.signed_prekey, chain, skipped: VecDeque::new() }],
        pq: pq(&pq_auth, Role::Initiator)?,
        pending_prekey: Some(PendingPreKey {
            prekey_id: bundle.one_time_prekey.as_ref().map(|(id, _)| *id),
            signed_prekey_id: bundle.signed_prekey_id,
            kyber_prekey_id: bundle.kyber_prekey_id,
            kyber_ciphertext,
        }),
    })
}

/// Sets up a session as the responder, from a PreKey message and the private prekeys it names.
pub fn respond(
    local: &LocalIdentity,
    keys: &ResponderKeys<'_>,
    message: &PreKeySignalMessage,
    pq: PqFactory,
) -> Result<SessionState, SetupError> {
    if !is_canonical(&message.base_key) {
        return Err(SetupError::NonCanonicalBaseKey);
    }
    let mut secrets = Zeroizing::new(Vec::with_capacity(32 * 6));
    secrets.extend_from_slice(&[0xFF; 32]);
    secrets.extend_from_slice(keys.signed_prekey.agree(&message.identity_key).as_ref());
    secrets.extend_from_slice(local.key_pair.agree(&message.base_key).as_ref());
    secrets.extend_from_slice(keys.signed_prekey.agree(&message.base_key).as_ref());
    if let Some(one_time) = keys.one_time_prekey {
        secrets.extend_from_slice(one_time.agree(&message.base_key).as_ref());
    }
    secrets.extend_from_slice(keys.kyber_prekey.decapsulate(&message.kyber_ciphertext)?.as_ref());
    let (root, chain, pq_auth) = derive(&secrets);
    Ok(SessionState {
        local_identity: local.key_pair.public(),
        remote_identity: message.identity_key,
        local_registration_id: local.registration_id,
        remote_registration_id: message.registration_id,
        base_key: message.base_key,
        root_key: root,
        sender_ratchet: keys.signed_prekey.clone(),
        sender_chain: chain,
        previous_counter: 0,
        receivers: Vec::new(),
        pq: pq(&pq_auth, Role::Responder)?,
        pending_prekey: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_keys() {
        let key = |bytes: [u8; 32]| {
            let mut serialized = [0x05u8; 33];
            serialized[1..].copy_from_slice(&bytes);
            PublicKey::deserialize(&serialized).unwrap()
        };
        assert!(is_canonical(&key([9; 32])));
        let mut p = [0xff; 32];
        p[31] = 0x7f;
        p[0] = 0xec;
        assert!(is_canonical(&key(p)), "p - 1");
        p[0] = 0xed;
        assert!(!is_canonical(&key(p)), "p");
        let mut high = [0; 32];
        high[31] = 0x80;
        assert!(!is_canonical(&key(high)));
    }
}

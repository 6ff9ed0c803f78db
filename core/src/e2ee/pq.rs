//! The post-quantum slot of a session: what rides in each message's `pq_ratchet` field and the
//! key it mixes into that message's keys.
//!
//! This is where SPQR plugs into the Double Ratchet. Version 0 (no SPQR) sends an empty field and
//! mixes no key, and ignores whatever a peer sends, as the upstream library does for a session
//! negotiated down to version 0.

use zeroize::Zeroizing;

/// Why the post-quantum ratchet refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PqError {
    /// The stored state does not decode.
    #[error("the post-quantum ratchet state does not decode")]
    StateDecode,
}

/// Which side of a session this party is: SPQR keys each direction apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The party that processed a bundle and sent the first PreKey message ("A").
    Initiator,
    /// The party that received it ("B").
    Responder,
}

/// A session's post-quantum ratchet state.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PqRatchet {
    _version0: (),
}

/// What sending produced: the field's bytes and the key to mix, if any.
pub struct PqSent {
    /// The `pq_ratchet` field.
    pub message: Vec<u8>,
    /// The key to use as the message keys' HKDF salt.
    pub key: Option<Zeroizing<[u8; 32]>>,
}

impl PqRatchet {
    /// A version-0 slot: no post-quantum ratchet.
    pub fn version0() -> Self {
        PqRatchet::default()
    }

    /// The slot for a new session in `role`, keyed by the PQXDH-derived `auth_key`.
    pub fn version0_for(_auth_key: &[u8; 32], _role: Role) -> Self {
        PqRatchet::version0()
    }

    /// The next message's field and key.
    pub fn send(&mut self, _rng: &mut crate::Rng) -> Result<PqSent, PqError> {
        Ok(PqSent { message: Vec::new(), key: None })
    }

    /// Takes a received field; returns that message's key, if any.
    pub fn recv(&mut self, _message: &[u8]) -> Result<Option<Zeroizing<[u8; 32]>>, PqError> {
        Ok(None)
    }

    /// The state's bytes, for the session record.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(Vec::new())
    }

    /// Reads [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PqError> {
        if bytes.is_empty() { Ok(PqRatchet::version0()) } else { Err(PqError::StateDecode) }
    }
}

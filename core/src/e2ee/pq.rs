//! The post-quantum slot of a session: SPQR (`pacerelle-spqr`), what rides in each message's
//! `pq_ratchet` field and the key it mixes into that message's keys (the HKDF salt of
//! `WhisperMessageKeys`), which makes the Double Ratchet libsignal's triple ratchet.
//!
//! New sessions speak SPQR version 1. The [`PqPolicy`] decides whether a peer without SPQR is
//! accepted: by default it is not (the official runtime does the same), and a session that has
//! negotiated version 1 never goes back. Version 0 (no SPQR) exists for tests and for peers a
//! user explicitly allows.

use pacerelle_spqr as spqr;
use zeroize::Zeroizing;

/// Why the post-quantum ratchet refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PqError {
    /// SPQR refused it (tampered chunk, replay, below the minimum version, ...).
    #[error(transparent)]
    Spqr(#[from] spqr::Error),
}

/// Which side of a session this party is: SPQR keys each direction apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The party that processed a bundle and sent the first PreKey message ("A").
    Initiator,
    /// The party that received it ("B").
    Responder,
}

/// Whether new sessions accept a peer without SPQR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PqPolicy {
    /// Require SPQR version 1 from the first message (the default, as the official runtime).
    #[default]
    RequireSpqr,
    /// Speak SPQR version 1 but accept a peer that answers without it; the session then stays
    /// classical. Only for peers known to lack SPQR.
    AllowClassicalPeers,
}

impl PqPolicy {
    /// The factory for new sessions under this policy.
    pub fn factory(self) -> PqFactory {
        match self {
            PqPolicy::RequireSpqr => PqRatchet::spqr_required,
            PqPolicy::AllowClassicalPeers => PqRatchet::spqr_preferred,
        }
    }
}

/// A session's post-quantum ratchet state.
#[derive(Clone, Debug)]
pub struct PqRatchet(spqr::State);

impl PartialEq for PqRatchet {
    /// Equal when their persisted forms are (for tests and consistency checks).
    fn eq(&self, other: &Self) -> bool {
        *self.0.to_bytes() == *other.0.to_bytes()
    }
}

impl Eq for PqRatchet {}

/// What sending produced: the field's bytes and the key to mix, if any.
pub struct PqSent {
    /// The `pq_ratchet` field.
    pub message: Vec<u8>,
    /// The key to use as the message keys' HKDF salt.
    pub key: Option<Zeroizing<[u8; 32]>>,
}

/// How new sessions get their post-quantum slot.
pub type PqFactory = fn(&[u8; 32], Role) -> Result<PqRatchet, PqError>;

impl PqRatchet {
    fn with(
        auth_key: &[u8; 32],
        role: Role,
        version: spqr::Version,
        min_version: spqr::Version,
    ) -> Result<Self, PqError> {
        let direction = match role {
            Role::Initiator => spqr::Direction::A2B,
            Role::Responder => spqr::Direction::B2A,
        };
        let params = spqr::Params { direction, version, min_version, auth_key, chain_params: Default::default() };
        Ok(PqRatchet(spqr::State::new(params)?))
    }

    /// SPQR version 1, peers without it refused (the default policy).
    pub fn spqr_required(auth_key: &[u8; 32], role: Role) -> Result<Self, PqError> {
        Self::with(auth_key, role, spqr::Version::V1, spqr::Version::V1)
    }

    /// SPQR version 1, peers without it accepted.
    pub fn spqr_preferred(auth_key: &[u8; 32], role: Role) -> Result<Self, PqError> {
        Self::with(auth_key, role, spqr::Version::V1, spqr::Version::V0)
    }

    /// No SPQR at all (tests of the classical Double Ratchet, peers explicitly allowed).
    pub fn version0_for(auth_key: &[u8; 32], role: Role) -> Result<Self, PqError> {
        Self::with(auth_key, role, spqr::Version::V0, spqr::Version::V0)
    }

    /// The next message's field and key.
    pub fn send(&mut self, rng: &mut crate::Rng) -> Result<PqSent, PqError> {
        let sent = self.0.send(rng)?;
        Ok(PqSent { message: sent.message, key: sent.key })
    }

    /// Takes a received field; returns that message's key, if any. Run it on a copy of the
    /// session and keep the copy only once the message's MAC has verified: SPQR chunks are
    /// authenticated only as a whole, so a tampered chunk could otherwise spoil an epoch.
    pub fn recv(&mut self, message: &[u8]) -> Result<Option<Zeroizing<[u8; 32]>>, PqError> {
        Ok(self.0.recv(message)?)
    }

    /// Where version negotiation stands.
    pub fn version(&self) -> spqr::CurrentVersion {
        self.0.version()
    }

    /// The current SPQR epoch (0 without SPQR).
    pub fn epoch(&self) -> u64 {
        self.0.epoch()
    }

    /// The state's bytes, for the session record.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        self.0.to_bytes()
    }

    /// Reads [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PqError> {
        Ok(PqRatchet(spqr::State::from_bytes(bytes)?))
    }
}

//! The post-quantum slot of a session: SPQR (`pacerelle-spqr`), what rides in each message's
//! `pq_ratchet` field and the key it mixes into that message's keys (the HKDF salt of
//! `WhisperMessageKeys`), which makes the Double Ratchet libsignal's triple ratchet.
//!
//! New sessions speak SPQR version 1. The [`PqPolicy`] decides whether a peer without SPQR is
//! accepted: by default it is not (the official runtime does the same), and a session that has
//! negotiated version 1 never goes back. Version 0 (no SPQR) exists for tests and for peers a
//! user explicitly allows.
//!
//! Where version 1 is required or negotiated, a message whose field is anything else (absent,
//! empty, version 0, or a version we do not know) is refused with [`PqError::Downgrade`] before
//! any work: such a message mixes no SPQR key into its keys, so accepting it would let anyone
//! holding the classical keys alone forge messages. (SPQR itself, like upstream's, ignores a
//! field of an unknown version and gives no key.) In an ordinary message, a version-1 field
//! that names no key is refused too ([`PqError::KeylessOrdinaryMessage`]): only a session's
//! first (PreKey) messages may legitimately carry one.

use pacerelle_spqr as spqr;
use zeroize::Zeroizing;

/// The most chain keys one message's field may make SPQR derive: one per message it skips, as
/// far as the Double Ratchet allows ([`super::ratchet::MAX_FORWARD_JUMP`]), plus its own.
pub const MAX_PQ_KEYS_PER_MESSAGE: u32 = super::ratchet::MAX_FORWARD_JUMP + 1;

/// Why the post-quantum ratchet refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PqError {
    /// SPQR refused it (tampered chunk, replay, below the minimum version, ...).
    #[error(transparent)]
    Spqr(#[from] spqr::Error),
    /// SPQR version 1 is required or was negotiated, and the message's field is not version 1.
    #[error("SPQR downgrade refused: the message's SPQR field is {found}, but version 1 is {required}")]
    Downgrade {
        /// What the message carried.
        found: PqField,
        /// Why version 1 was required.
        required: PqRequirement,
    },
    /// An ordinary message whose version-1 field names no key (epoch 1, key 0). Only the first,
    /// PreKey, messages of a sender that accepts peers without SPQR carry one (it has a key for
    /// every message once it has heard back, and it sends ordinary messages only then), so in an
    /// ordinary message it can only be a downgrade: it would mix no SPQR key in.
    #[error("SPQR downgrade refused: an ordinary message's SPQR field names no key")]
    KeylessOrdinaryMessage,
    /// The field names a key further ahead of its chain than the message may be.
    #[error("the SPQR field needs {keys} chain keys derived, more than the {max} allowed")]
    TooFarAhead {
        /// How many keys it would derive.
        keys: u32,
        /// How many it may ([`MAX_PQ_KEYS_PER_MESSAGE`], or less for a new session's first).
        max: u32,
    },
}

/// What a message's `pq_ratchet` field holds, as far as versions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PqField {
    /// Nothing: the field is absent or empty (decoding reads both as an empty field).
    Empty,
    /// A field whose version byte is this (0, or a version we do not speak).
    Version(u8),
}

impl PqField {
    /// The field of `bytes`.
    pub fn of(bytes: &[u8]) -> PqField {
        bytes.first().map_or(PqField::Empty, |&version| PqField::Version(version))
    }
}

impl std::fmt::Display for PqField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PqField::Empty => f.write_str("absent or empty"),
            PqField::Version(version) => write!(f, "version {version}"),
        }
    }
}

/// Why a session requires SPQR version 1 of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PqRequirement {
    /// Its policy ([`PqPolicy::RequireSpqr`]) accepts no peer without SPQR.
    Policy,
    /// The peer already spoke version 1 in this session.
    Negotiated,
}

impl std::fmt::Display for PqRequirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PqRequirement::Policy => "required by policy",
            PqRequirement::Negotiated => "negotiated",
        })
    }
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

/// A received field taken in but not committed: see [`PqRatchet::receive`].
#[must_use = "the ratchet only moves on when the received field is committed"]
pub struct PqReceived<'a>(spqr::Received<'a>);

impl PqReceived<'_> {
    /// The message's SPQR key, if any: the salt of its message keys.
    pub fn key(&self) -> Option<&[u8; 32]> {
        self.0.key()
    }

    /// Moves the ratchet on (once the message's MAC has verified).
    pub fn commit(self) {
        drop(self.0.commit());
    }
}

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
        let params = spqr::Params { direction, version, min_version, auth_key, chain_params: Self::chain_params() };
        Ok(PqRatchet(spqr::State::new(params)?))
    }

    /// The state of a session of the official runtime, from upstream's persisted bytes (a
    /// libsignal session's `pq_ratchet_state`), with this SDK's chain limits (see
    /// [`crate::import`]).
    pub fn from_upstream(bytes: &[u8]) -> Result<Self, PqError> {
        Ok(PqRatchet(spqr::State::from_upstream(bytes, Self::chain_params())?))
    }

    /// Our bounds rather than upstream's: no message derives more keys than this SDK allows.
    fn chain_params() -> spqr::ChainParams {
        spqr::ChainParams { max_jump: MAX_PQ_KEYS_PER_MESSAGE, max_ooo_keys: super::ratchet::MAX_SKIPPED_KEYS as u32 }
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

    /// Why this session requires version 1 of every message, if it does.
    pub fn requirement(&self) -> Option<PqRequirement> {
        match self.0.version() {
            spqr::CurrentVersion::NegotiationComplete(spqr::Version::V1) => Some(PqRequirement::Negotiated),
            spqr::CurrentVersion::StillNegotiating { min_version: spqr::Version::V1, .. } => {
                Some(PqRequirement::Policy)
            }
            _ => None,
        }
    }

    /// Checks a received field without any work: refuses a downgrade and a field that would
    /// derive more than [`MAX_PQ_KEYS_PER_MESSAGE`] keys; returns how many it would derive.
    pub fn check(&self, message: &[u8]) -> Result<u32, PqError> {
        if let Some(required) = self.requirement()
            && message.first() != Some(&1)
        {
            return Err(PqError::Downgrade { found: PqField::of(message), required });
        }
        let keys = self.0.keys_to_derive(message);
        if keys > MAX_PQ_KEYS_PER_MESSAGE {
            return Err(PqError::TooFarAhead { keys, max: MAX_PQ_KEYS_PER_MESSAGE });
        }
        Ok(keys)
    }

    /// [`Self::check`] for the field of an ordinary (not PreKey) message, which must name a key
    /// whenever this session speaks SPQR version 1.
    pub fn check_ordinary(&self, message: &[u8]) -> Result<u32, PqError> {
        let keys = self.check(message)?;
        let speaks_v1 = self.0.version() != spqr::CurrentVersion::NegotiationComplete(spqr::Version::V0);
        if speaks_v1 && spqr::State::is_keyless(message) {
            return Err(PqError::KeylessOrdinaryMessage);
        }
        Ok(keys)
    }

    /// Takes a received field in: the result holds that message's key, and the ratchet moves
    /// on only when it is committed, which the caller does once the message's MAC has verified
    /// (SPQR chunks are authenticated only as a whole, so a tampered chunk must not count).
    pub fn receive(&mut self, message: &[u8]) -> Result<PqReceived<'_>, PqError> {
        self.check(message)?;
        Ok(PqReceived(self.0.receive(message)?))
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

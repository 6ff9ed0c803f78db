//! SPQR, Signal's Sparse Post-Quantum Ratchet, version 1 (the "ML-KEM Braid"), in safe Rust.
//!
//! SPQR runs beside the Double Ratchet and gives every message an extra 32-byte key that the
//! Double Ratchet mixes into its own message keys (the "triple ratchet"). Its keys come from a
//! fresh ML-KEM-768 exchange per *epoch*: the parties take turns sampling a key pair and
//! encapsulating to it, and because ML-KEM keys and ciphertexts are far too large for every
//! message, each one travels erasure-coded, a 32-byte chunk per message. Any message can be lost
//! or reordered; the epoch just completes a little later. Each agreed epoch secret seeds
//! per-direction symmetric chains that give one key per message.
//!
//! This crate is wire-compatible with spqr 1.5.1, the version the official Signal runtime
//! embeds: the same message bytes, the same keys, the same version negotiation. Its persisted
//! state format is its own ([`State::to_bytes`]).
//!
//! Use one [`State`] per session: call [`State::send`] for each outgoing message (put the bytes
//! in the Signal message's `pq_ratchet` field, mix the key into the message keys) and
//! [`State::recv`] with each incoming `pq_ratchet` field. Every failing call leaves the state as
//! it was. A caller that must check something else first (the Signal message's MAC) takes the
//! field in with [`State::receive`] and commits it only then; [`State::keys_to_derive`] tells,
//! without any work, what receiving a field would cost.
//!
//! ```
//! use pacerelle_spqr::{ChainParams, Direction, Params, State, Version};
//! use rand::SeedableRng;
//!
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1); // use an OS-seeded CSPRNG for real
//! let params = |direction| Params {
//!     direction,
//!     version: Version::V1,
//!     min_version: Version::V1,
//!     auth_key: b"session secret from PQXDH",
//!     chain_params: ChainParams::default(),
//! };
//! let mut alice = State::new(params(Direction::A2B))?;
//! let mut bob = State::new(params(Direction::B2A))?;
//!
//! let sent = alice.send(&mut rng)?;
//! let key = bob.recv(&sent.message)?;
//! assert_eq!(key.as_deref(), sent.key.as_deref());
//!
//! // Persist between messages; a failed call never needs a rollback.
//! let bob = State::from_bytes(&bob.to_bytes())?;
//! # let _ = bob;
//! # Ok::<(), pacerelle_spqr::Error>(())
//! ```
//!
//! Module map (all private): `gf16` and `erasure` are the erasure code, `kem` wraps incremental
//! ML-KEM-768, `kdf` holds the HKDF/HMAC labels, `auth` the braid's authenticator, `braid` the
//! epoch state machine, `chain` the per-message key chains, `wire` the message bytes and
//! `persist` the state bytes (with `persist::upstream`, which reads upstream's own state format
//! for [`State::from_upstream`]: how sessions of the official runtime come over).
//!
//! Dependencies, and why:
//! - `libcrux-ml-kem`: formally verified ML-KEM-768 with the incremental (header / key /
//!   two-part ciphertext) API SPQR needs, the same library upstream uses.
//! - `hkdf`, `hmac`, `sha2`: every SPQR derivation is HKDF-SHA-256 and every MAC HMAC-SHA-256.
//! - `prost` (derive only): the persisted state is a protobuf message, written by hand.
//! - `zeroize`: secrets (chain keys, authenticator keys, KEM seeds) are wiped when dropped.
//! - `thiserror`: the [`Error`] type.
//! - `rand_core`: callers supply the randomness ([`rand_core::CryptoRng`]).
//! - `tracing`: debug events on epoch transitions and version negotiation.

mod auth;
mod braid;
mod chain;
mod erasure;
mod gf16;
mod kdf;
mod kem;
mod persist;
mod wire;

use std::fmt;

use zeroize::Zeroizing;

pub use crate::persist::MAX_STATE_LEN;

use crate::braid::Braid;
use crate::chain::{Chain, KeyStep};

/// An SPQR protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// No SPQR: messages carry an empty `pq_ratchet` field and get no extra key.
    V0,
    /// The ML-KEM Braid.
    V1,
}

impl Version {
    /// The wire number of the version.
    fn number(self) -> u8 {
        match self {
            Version::V0 => 0,
            Version::V1 => 1,
        }
    }

    fn from_number(n: u64) -> Option<Version> {
        match n {
            0 => Some(Version::V0),
            1 => Some(Version::V1),
            _ => None,
        }
    }
}

/// Which party of the session this state belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The session initiator ("Alice"), who sends the first key.
    A2B,
    /// The responder ("Bob").
    B2A,
}

/// Limits on the receiving chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainParams {
    /// The most keys a received message may skip ahead of the last one (0 = default, 25 000).
    pub max_jump: u32,
    /// How many skipped keys are kept for late messages (0 = default, 2 000).
    pub max_ooo_keys: u32,
}

impl ChainParams {
    const DEFAULT: ChainParams = ChainParams { max_jump: 25_000, max_ooo_keys: 2_000 };
    /// The largest limits a state takes (upstream's defaults): they bound what one received
    /// message may derive and what a stored state may hold, so larger ones are refused.
    pub const MAX: ChainParams = ChainParams::DEFAULT;

    /// Zero means "the default", as in upstream's stored parameters.
    fn normalized(self) -> ChainParams {
        ChainParams {
            max_jump: if self.max_jump == 0 { Self::DEFAULT.max_jump } else { self.max_jump },
            max_ooo_keys: if self.max_ooo_keys == 0 { Self::DEFAULT.max_ooo_keys } else { self.max_ooo_keys },
        }
    }
}

impl Default for ChainParams {
    /// Upstream's defaults: `max_jump` 25 000, `max_ooo_keys` 2 000.
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What a new [`State`] is set up with.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    /// Our side of the session.
    pub direction: Direction,
    /// The highest version we speak (and start with).
    pub version: Version,
    /// The lowest version we accept from the peer.
    pub min_version: Version,
    /// The session secret both parties derive at session setup (any length).
    pub auth_key: &'a [u8],
    /// Chain limits.
    pub chain_params: ChainParams,
}

/// Where version negotiation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurrentVersion {
    /// Nothing received yet: the peer may still turn out to speak an older version.
    StillNegotiating {
        /// The version we currently speak.
        version: Version,
        /// The lowest version we would accept.
        min_version: Version,
    },
    /// Settled for the rest of the session.
    NegotiationComplete(Version),
}

/// The result of [`State::send`].
#[derive(Clone)]
pub struct Sent {
    /// The bytes to put in the Signal message's `pq_ratchet` field (empty in V0).
    pub message: Vec<u8>,
    /// The key to mix into this message's keys; `None` while there is none (V0, or before the
    /// peer has answered when the minimum version is V0).
    pub key: Option<Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sent").field("message_len", &self.message.len()).field("has_key", &self.key.is_some()).finish()
    }
}

/// Everything that can go wrong. Variant names follow upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Stored state bytes are malformed.
    #[error("state decode failed")]
    StateDecode,
    /// A received message is malformed.
    #[error("message decode failed")]
    MsgDecode,
    /// A header or ciphertext MAC did not verify.
    #[error("MAC verification failed")]
    MacVerifyFailed,
    /// A message names an epoch we cannot handle (too new, or already forgotten).
    #[error("epoch not in valid range: {0}")]
    EpochOutOfRange(u64),
    /// An empty (V0) message arrived after negotiating V1.
    #[error("version mismatch after negotiation")]
    VersionMismatch,
    /// The peer speaks a version below our minimum.
    #[error("peer version below our minimum version")]
    MinimumVersion,
    /// A message skips too far ahead of the chain (current index, requested index).
    #[error("key jump: {0} - {1}")]
    KeyJump(u32, u32),
    /// The message's key was discarded as too old.
    #[error("key trimmed: {0}")]
    KeyTrimmed(u32),
    /// The message's key was already used (a replay).
    #[error("key already requested: {0}")]
    KeyAlreadyRequested(u32),
    /// The peer's encapsulation key does not match its header, or a KEM input is malformed.
    #[error("erroneous data received from remote party")]
    ErroneousDataReceived,
    /// Sending would go back to an older epoch (corrupt state).
    #[error("send key epoch decreased ({0} -> {1})")]
    SendKeyEpochDecreased(u64, u64),
    /// The parameters are unusable.
    #[error("invalid params: {0}")]
    InvalidParams(&'static str),
    /// The state has no chain where one is needed (corrupt state).
    #[error("chain not available")]
    ChainNotAvailable,
    /// A chain has handed out 2^32 - 1 keys.
    #[error("chain exhausted")]
    ChainExhausted,
    /// Parts of the state disagree with each other (corrupt state).
    #[error("inconsistent state")]
    InconsistentState,
    /// Stored state bytes hold more than any state we write can (ours, not upstream's): the
    /// named part is over its limit, so it is refused before anything is allocated for it.
    #[error("stored state over its limit: {0}")]
    StateTooLarge(&'static str),
}

/// The settings kept until the first message from the peer settles the version.
#[derive(Clone)]
pub(crate) struct Negotiation {
    pub(crate) auth_key: Zeroizing<Vec<u8>>,
    pub(crate) direction: Direction,
    pub(crate) min_version: Version,
    pub(crate) chain_params: ChainParams,
}

impl Negotiation {
    fn chain(&self) -> Chain {
        Chain::new(&self.auth_key, self.direction, self.chain_params)
    }
}

/// A version 1 session.
#[derive(Clone)]
pub(crate) struct V1State {
    pub(crate) braid: Braid,
    /// Present until the first message from the peer arrives.
    pub(crate) negotiation: Option<Negotiation>,
    /// Present once a key has been needed.
    pub(crate) chain: Option<Chain>,
}

/// One party's SPQR state for one session.
///
/// `Clone` copies all secrets (the copy is wiped on drop too). `Debug` shows no secrets.
#[derive(Clone)]
pub struct State {
    /// `None` is version 0.
    pub(crate) v1: Option<V1State>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("State");
        d.field("version", &self.version());
        if let Some(v1) = &self.v1 {
            d.field("epoch", &v1.braid.epoch).field("phase", &v1.braid.phase.name());
            if let Some(chain) = &v1.chain {
                d.field("chain_epoch", &chain.current_epoch).field("send_epoch", &chain.send_epoch);
            }
        }
        d.finish_non_exhaustive()
    }
}

/// Version of a received `pq_ratchet` field: empty is V0, else its first byte (`None` for a
/// version we do not know, which is newer than ours).
fn message_version(message: &[u8]) -> Option<Version> {
    match message.first() {
        None => Some(Version::V0),
        Some(&b) => Version::from_number(u64::from(b)),
    }
}

/// The longest session secret a state takes (PQXDH gives 32 bytes).
pub const MAX_AUTH_KEY_LEN: usize = 64;

/// What receiving one message will change, once committed.
enum Change {
    /// Nothing: a version we do not know, or a state that is V0 for good.
    Nothing,
    /// The peer speaks V0 and we accept it: V0 for the rest of the session.
    Downgrade,
    /// A V1 message: the braid it leaves, and what happens to the chains.
    V1 { braid: Box<Braid>, chain: ChainChange },
}

/// What a V1 message changes in the chains.
enum ChainChange {
    /// Nothing (a message without key on the chain we hold).
    Keep,
    /// One receiving key handed out.
    Step(KeyStep),
    /// A new chain: started from the negotiation, or with the epoch this message completed.
    Replace(Chain),
}

/// A received message taken in by [`State::receive`] and not yet committed: its key is
/// [`Received::key`], and [`Received::commit`] moves the state on. Dropping it leaves the
/// state exactly as it was, so a caller can first check the message's MAC under the key.
#[must_use = "the state only moves on when the received message is committed"]
pub struct Received<'a> {
    state: &'a mut State,
    key: Option<Zeroizing<[u8; 32]>>,
    change: Change,
}

impl fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received").field("has_key", &self.key.is_some()).finish_non_exhaustive()
    }
}

impl Received<'_> {
    /// The message's key, if it has one.
    pub fn key(&self) -> Option<&[u8; 32]> {
        self.key.as_deref()
    }

    /// Moves the state on and returns the message's key.
    pub fn commit(self) -> Option<Zeroizing<[u8; 32]>> {
        match self.change {
            Change::Nothing => {}
            Change::Downgrade => {
                tracing::info!("spqr: peer speaks V0, negotiating down to V0 for the rest of the session");
                self.state.v1 = None;
            }
            Change::V1 { braid, chain } => {
                if let Some(v1) = self.state.v1.as_mut() {
                    v1.braid = *braid;
                    match chain {
                        ChainChange::Keep => {}
                        ChainChange::Step(step) => {
                            if let Some(current) = v1.chain.as_mut() {
                                current.apply(step);
                            }
                        }
                        ChainChange::Replace(new) => v1.chain = Some(new),
                    }
                    // Any V1 message from the peer settles the version.
                    v1.negotiation = None;
                }
            }
        }
        self.key
    }
}

impl State {
    /// A new session state. With `version` V0, SPQR is off for good.
    pub fn new(params: Params<'_>) -> Result<State, Error> {
        let chain_params = params.chain_params.normalized();
        if chain_params.max_jump > ChainParams::MAX.max_jump
            || chain_params.max_ooo_keys > ChainParams::MAX.max_ooo_keys
        {
            return Err(Error::InvalidParams("chain limits above ChainParams::MAX"));
        }
        if params.auth_key.len() > MAX_AUTH_KEY_LEN {
            return Err(Error::InvalidParams("auth key longer than 64 bytes"));
        }
        tracing::debug!(version = ?params.version, direction = ?params.direction, "spqr: new state");
        match params.version {
            Version::V0 => Ok(State { v1: None }),
            Version::V1 => {
                let braid = match params.direction {
                    Direction::A2B => Braid::new_a(params.auth_key),
                    Direction::B2A => Braid::new_b(params.auth_key),
                };
                let negotiation = Negotiation {
                    auth_key: Zeroizing::new(params.auth_key.to_vec()),
                    direction: params.direction,
                    min_version: params.min_version,
                    chain_params,
                };
                Ok(State { v1: Some(V1State { braid, negotiation: Some(negotiation), chain: None }) })
            }
        }
    }

    /// The bytes to put in the Signal message's `pq_ratchet` field, and the key to mix into
    /// this message's keys (`None` while there is no key, e.g. in V0).
    pub fn send<R: rand_core::CryptoRng + ?Sized>(&mut self, rng: &mut R) -> Result<Sent, Error> {
        let Some(current) = &self.v1 else {
            return Ok(Sent { message: Vec::new(), key: None });
        };
        let mut next = current.clone();
        let epoch = next.braid.epoch;
        let (payload, secret) = next.braid.send(rng)?;
        if next.chain.is_none() {
            match &next.negotiation {
                // A peer that must speak V1 gets keys from the first message on.
                Some(n) if n.min_version > Version::V0 => next.chain = Some(n.chain()),
                Some(_) => {}
                None => return Err(Error::ChainNotAvailable),
            }
        }
        let (index, key) = match next.chain.as_mut() {
            Some(chain) => {
                if let Some(s) = &secret {
                    chain.add_epoch(s.epoch, s.secret.as_slice())?;
                }
                let key_epoch = epoch.checked_sub(1).ok_or(Error::InconsistentState)?;
                let (index, key) = chain.send_key(key_epoch)?;
                (index, Some(key))
            }
            // Only a key sender that has received nothing gets here, and it agrees no secret
            // on send; a secret here means a corrupt state.
            None if secret.is_some() => return Err(Error::InconsistentState),
            None => (0, None),
        };
        let message = wire::Message { epoch, index, payload }.encode();
        self.v1 = Some(next);
        Ok(Sent { message, key })
    }

    /// Processes a received `pq_ratchet` field (possibly empty: a V0 peer) and returns that
    /// message's key.
    pub fn recv(&mut self, message: &[u8]) -> Result<Option<Zeroizing<[u8; 32]>>, Error> {
        Ok(self.receive(message)?.commit())
    }

    /// Takes in a received `pq_ratchet` field without moving the state on: the returned
    /// [`Received`] holds the message's key, and the state changes only if it is committed.
    /// Only a braid copy is made, never a copy of the chains' stored keys.
    pub fn receive(&mut self, message: &[u8]) -> Result<Received<'_>, Error> {
        let nothing = |state| Ok(Received { state, key: None, change: Change::Nothing });
        // Newer than anything we speak: ignore it and keep speaking our version.
        let Some(theirs) = message_version(message) else { return nothing(self) };
        // V0 for good: nothing to do, whatever the peer sends.
        let Some(current) = &self.v1 else { return nothing(self) };
        if theirs < Version::V1 {
            let Some(negotiation) = &current.negotiation else {
                return Err(Error::VersionMismatch);
            };
            if theirs < negotiation.min_version {
                return Err(Error::MinimumVersion);
            }
            return Ok(Received { state: self, key: None, change: Change::Downgrade });
        }
        let msg = wire::Message::decode(message)?;
        let mut braid = Box::new(current.braid.clone());
        let secret = braid.recv(msg.epoch, &msg.payload)?;
        // Decoding guarantees epoch >= 1.
        let key_epoch = msg.epoch.checked_sub(1).ok_or(Error::MsgDecode)?;
        let keyless = key_epoch == 0 && msg.index == 0;
        let (key, chain) = match (&current.chain, &secret) {
            (Some(chain), None) if keyless => (None, ChainChange::Keep),
            (Some(chain), None) => {
                let (key, step) = chain.prepare_recv_key(key_epoch, msg.index)?;
                (Some(key), ChainChange::Step(step))
            }
            // A new epoch or a first chain: rare, so the chain is copied whole.
            (chain, secret) => {
                let mut chain = match chain {
                    Some(chain) => chain.clone(),
                    None => current.negotiation.as_ref().ok_or(Error::ChainNotAvailable)?.chain(),
                };
                if let Some(s) = secret {
                    chain.add_epoch(s.epoch, s.secret.as_slice())?;
                }
                let key = if keyless { None } else { Some(chain.recv_key(key_epoch, msg.index)?) };
                (key, ChainChange::Replace(chain))
            }
        };
        Ok(Received { state: self, key, change: Change::V1 { braid, chain } })
    }

    /// Whether `message` is a well-formed version-1 message naming no key (epoch 1, key 0):
    /// what a sender that accepts peers without SPQR sends until it has heard from its peer.
    pub fn is_keyless(message: &[u8]) -> bool {
        message_version(message) == Some(Version::V1)
            && wire::Message::decode(message).is_ok_and(|msg| msg.epoch == 1 && msg.index == 0)
    }

    /// How many chain keys [`State::recv`] would derive for `message`, found without deriving
    /// any: lets a caller refuse a message whose work it will not pay for. 0 when it derives
    /// none (no key, a key already at hand, or a message refused before any derivation).
    pub fn keys_to_derive(&self, message: &[u8]) -> u32 {
        let Some(v1) = &self.v1 else { return 0 };
        if message_version(message) != Some(Version::V1) {
            return 0;
        }
        let Ok(msg) = wire::Message::decode(message) else { return 0 };
        let Some(key_epoch) = msg.epoch.checked_sub(1) else { return 0 };
        if key_epoch == 0 && msg.index == 0 {
            return 0;
        }
        match &v1.chain {
            Some(chain) => chain.steps_to(key_epoch, msg.index),
            // The chain the negotiation starts holds epoch 0, and the message may add epoch 1.
            None if key_epoch <= 1 => msg.index,
            None => 0,
        }
    }

    /// Where version negotiation stands.
    pub fn version(&self) -> CurrentVersion {
        match &self.v1 {
            None => CurrentVersion::NegotiationComplete(Version::V0),
            Some(V1State { negotiation: Some(n), .. }) => {
                CurrentVersion::StillNegotiating { version: Version::V1, min_version: n.min_version }
            }
            Some(_) => CurrentVersion::NegotiationComplete(Version::V1),
        }
    }

    /// The braid's current epoch (0 in V0). Epoch `n` messages carry keys from chain epoch
    /// `n - 1`.
    pub fn epoch(&self) -> u64 {
        self.v1.as_ref().map_or(0, |v1| v1.braid.epoch)
    }

    /// The state as bytes, in this crate's own versioned format (not upstream's).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        persist::encode(self)
    }

    /// A state from upstream's own persisted bytes (spqr 1.5's `PqRatchetState` protobuf, as
    /// libsignal keeps it in a session record), with `chain_params` for its chains: how a session
    /// of the official runtime comes over. Everything is checked as [`State::from_bytes`] checks
    /// our own states, and what upstream keeps in another form is checked against what it
    /// derives from (the module `persist::upstream` says what and how).
    pub fn from_upstream(bytes: &[u8], chain_params: ChainParams) -> Result<State, Error> {
        persist::upstream_decode(bytes, chain_params)
    }

    /// A state from [`State::to_bytes`] output. Empty input is a V0 state, as upstream treats
    /// an empty stored state.
    pub fn from_bytes(bytes: &[u8]) -> Result<State, Error> {
        persist::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn params(direction: Direction, version: Version, min_version: Version) -> Params<'static> {
        Params { direction, version, min_version, auth_key: &[41u8; 32], chain_params: ChainParams::default() }
    }

    #[test]
    fn version_order_and_defaults() {
        assert!(Version::V0 < Version::V1);
        assert_eq!(ChainParams::default(), ChainParams { max_jump: 25_000, max_ooo_keys: 2_000 });
        assert_eq!(Version::V1.number(), 1);
    }

    #[test]
    fn lockstep_keys_agree_and_epochs_advance() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut a = State::new(params(Direction::A2B, Version::V1, Version::V1)).unwrap();
        let mut b = State::new(params(Direction::B2A, Version::V1, Version::V1)).unwrap();
        for _ in 0..60 {
            let s = a.send(&mut rng).unwrap();
            assert_eq!(b.recv(&s.message).unwrap().map(|k| *k), s.key.map(|k| *k));
            let s = b.send(&mut rng).unwrap();
            assert_eq!(a.recv(&s.message).unwrap().map(|k| *k), s.key.map(|k| *k));
        }
        assert!(a.epoch() >= 2 && b.epoch() >= 2, "epochs {} {}", a.epoch(), b.epoch());
        assert_eq!(a.version(), CurrentVersion::NegotiationComplete(Version::V1));
        assert!(!format!("{a:?}").contains("41"), "Debug must not print secrets");
    }

    #[test]
    fn send_takes_a_dyn_rng() {
        let mut rng: Box<dyn rand_core::CryptoRng + Send> = Box::new(StdRng::seed_from_u64(3));
        let mut a = State::new(params(Direction::A2B, Version::V1, Version::V1)).unwrap();
        let sent = a.send(&mut *rng).unwrap();
        assert_eq!(&sent.message[..5], &[1, 1, 1, 1, 0]);
        assert!(sent.key.is_some());
    }

    #[test]
    fn v0_sends_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut a = State::new(params(Direction::A2B, Version::V0, Version::V0)).unwrap();
        let s = a.send(&mut rng).unwrap();
        assert!(s.message.is_empty() && s.key.is_none());
        assert_eq!(a.recv(&[1, 1, 1, 0]).unwrap(), None);
        assert_eq!(a.version(), CurrentVersion::NegotiationComplete(Version::V0));
    }

    /// Keys the receiving chains have derived so far (a received message only ever adds to it).
    fn received_keys(state: &State) -> u64 {
        let chain = state.v1.as_ref().and_then(|v1| v1.chain.as_ref());
        chain.map_or(0, |chain| chain.links.iter().map(|link| u64::from(link.recv.ctr)).sum())
    }

    /// Random bursts, losses and reordering: `keys_to_derive` is exactly the work `recv` does,
    /// an uncommitted `receive` changes nothing, and no state ever holds more than four epochs'
    /// chains (the decoder allows `persist::MAX_LINKS`).
    #[test]
    fn keys_to_derive_is_exact_and_receive_commits_only_when_asked() {
        use rand::RngExt as _;
        let mut rng = StdRng::seed_from_u64(9);
        let mut parties = [
            State::new(params(Direction::A2B, Version::V1, Version::V1)).unwrap(),
            State::new(params(Direction::B2A, Version::V1, Version::V1)).unwrap(),
        ];
        let mut in_flight: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        let mut most_links = 0;
        for _ in 0..1_000 {
            let from = rng.random_range(0..2usize);
            for _ in 0..rng.random_range(1..6) {
                let sent = parties[from].send(&mut rng).unwrap();
                if rng.random_bool(0.9) {
                    in_flight[1 - from].push(sent.message);
                }
            }
            let to = 1 - from;
            while !in_flight[to].is_empty() && rng.random_bool(0.7) {
                let pick = rng.random_range(0..in_flight[to].len().min(4));
                let message = in_flight[to].remove(pick);
                let state = &mut parties[to];
                let (before, keys) = (state.to_bytes(), state.keys_to_derive(&message));
                let derived = received_keys(state);
                let uncommitted = state.receive(&message).unwrap();
                drop(uncommitted);
                assert_eq!(state.to_bytes(), before, "an uncommitted message changed the state");
                state.recv(&message).unwrap();
                assert_eq!(received_keys(state) - derived, u64::from(keys));
                let links = state.v1.as_ref().and_then(|v1| v1.chain.as_ref()).map_or(0, |chain| chain.links.len());
                most_links = most_links.max(links);
            }
        }
        assert!(parties[0].epoch() >= 3, "epochs advanced: {}", parties[0].epoch());
        assert!((2..=4).contains(&most_links), "{most_links} links");
    }

    #[test]
    fn keyless_messages_are_the_first_of_a_sender_that_accepts_v0() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut a = State::new(params(Direction::A2B, Version::V1, Version::V0)).unwrap();
        let mut b = State::new(params(Direction::B2A, Version::V1, Version::V0)).unwrap();
        let first = a.send(&mut rng).unwrap();
        assert!(first.key.is_none() && State::is_keyless(&first.message));
        assert_eq!(b.recv(&first.message).unwrap(), None);
        let reply = b.send(&mut rng).unwrap();
        assert!(reply.key.is_some() && !State::is_keyless(&reply.message));
        a.recv(&reply.message).unwrap();
        assert!(!State::is_keyless(&a.send(&mut rng).unwrap().message), "keyed once it has heard back");
        assert!(!State::is_keyless(&[]) && !State::is_keyless(&[1, 1]) && !State::is_keyless(&[2, 1, 0, 0]));
    }

    #[test]
    fn limits_above_the_maximum_are_refused() {
        let mut p = params(Direction::A2B, Version::V1, Version::V1);
        p.chain_params = ChainParams { max_jump: ChainParams::MAX.max_jump + 1, max_ooo_keys: 1 };
        assert!(matches!(State::new(p), Err(Error::InvalidParams(_))));
        p.chain_params = ChainParams { max_jump: 1, max_ooo_keys: ChainParams::MAX.max_ooo_keys + 1 };
        assert!(matches!(State::new(p), Err(Error::InvalidParams(_))));
        let long_key = [1u8; MAX_AUTH_KEY_LEN + 1];
        let p = Params { auth_key: &long_key, ..params(Direction::A2B, Version::V1, Version::V1) };
        assert!(matches!(State::new(p), Err(Error::InvalidParams(_))));
    }

    #[test]
    fn negotiation() {
        let mut rng = StdRng::seed_from_u64(2);
        // min V0: an empty message downgrades for good.
        let mut a = State::new(params(Direction::A2B, Version::V1, Version::V0)).unwrap();
        assert_eq!(a.version(), CurrentVersion::StillNegotiating { version: Version::V1, min_version: Version::V0 });
        let first = a.send(&mut rng).unwrap();
        assert!(first.key.is_none(), "no key before the peer answers when V0 is allowed");
        assert_eq!(&first.message[..4], &[1, 1, 0, 1]);
        assert_eq!(a.recv(&[]).unwrap(), None);
        assert_eq!(a.version(), CurrentVersion::NegotiationComplete(Version::V0));
        assert!(a.send(&mut rng).unwrap().message.is_empty());

        // min V1: an empty message is refused, and the state is unchanged.
        let mut a = State::new(params(Direction::A2B, Version::V1, Version::V1)).unwrap();
        let before = a.to_bytes();
        assert_eq!(a.recv(&[]), Err(Error::MinimumVersion));
        assert_eq!(a.to_bytes(), before);

        // After a V1 message, an empty one is a mismatch.
        let mut a = State::new(params(Direction::A2B, Version::V1, Version::V0)).unwrap();
        let mut b = State::new(params(Direction::B2A, Version::V1, Version::V0)).unwrap();
        a.recv(&b.send(&mut rng).unwrap().message).unwrap();
        assert_eq!(a.version(), CurrentVersion::NegotiationComplete(Version::V1));
        assert_eq!(a.recv(&[]), Err(Error::VersionMismatch));
        // Unknown newer versions are ignored.
        assert_eq!(a.recv(&[2, 9, 9]), Ok(None));
    }
}

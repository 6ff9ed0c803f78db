//! Everything we hold for one peer name: the current session and a few older ones, and the
//! rules for which of them a framed ciphertext belongs to.
//!
//! As libsignal does: a PreKey message whose base key matches a session we hold goes to that
//! session (a peer repeating its first messages); otherwise it sets up a new session that becomes
//! current, the old one kept for late messages. An ordinary message may belong to any session
//! held, so it is tried in several; a failed attempt changes nothing (see [`super::ratchet`]),
//! so a message that fails to decrypt leaves the record exactly as it was.
//!
//! Unlike libsignal, what one message may cost is bounded, whoever wrote it: every session is
//! first screened from the message's counters and post-quantum field alone (no key derived, no
//! copy made), which rules out replays, downgrades and messages too far ahead; the sessions
//! that pass are tried in order of likelihood (those that know the message's ratchet key, then
//! those where it would turn the ratchet, each group current first), in at most
//! [`MAX_SESSIONS_TRIED`] of them, deriving at most [`MAX_KEYS_PER_MESSAGE`] keys and MACing at
//! most [`MAX_AUTHENTICATED_PER_MESSAGE`] bytes in all. A PreKey message for a new session is
//! held to [`MAX_NEW_SESSION_JUMP`] before its session is set up.

use super::keys::KeyPair;
use super::kyber::KyberKeyPair;
use super::message::{Framed, MAX_FRAMED_LEN, MessageError};
use super::pq::{PqError, PqFactory, Role};
use super::pqxdh::{self, LocalIdentity, PeerBundle, ResponderKeys, SetupError};
use super::ratchet::{Cost, MAX_FORWARD_JUMP, RatchetError, SessionState};
use crate::Rng;
use zeroize::Zeroizing;

/// Older sessions kept per peer (libsignal keeps 40).
pub const MAX_PREVIOUS_SESSIONS: usize = 40;

/// The most sessions one message is tried in (each try: at most one X25519 agreement, its
/// keys, an SPQR braid step and a MAC over the whole message). A genuine message almost always
/// opens in the first: the session that knows its ratchet key, else the current one; the
/// second covers a peer that turned its ratchet in the session before (a new session and a
/// reply in the old one having crossed).
pub const MAX_SESSIONS_TRIED: usize = 2;

/// How many messages the first message of a new session may skip (on both chains), where
/// [`MAX_FORWARD_JUMP`] applies to sessions already held. Its session must first be set up
/// (PQXDH: five X25519 agreements and a Kyber decapsulation) before its MAC can be checked, so
/// it gets less room; and it only skips the PreKey messages lost before it, which the relay
/// queues in order, so a few at most.
pub const MAX_NEW_SESSION_JUMP: u32 = 32;

/// The most chain keys (Double Ratchet and SPQR) one message may derive over all the sessions
/// it is tried in: enough for one message as far ahead as allowed on both chains.
pub const MAX_KEYS_PER_MESSAGE: u32 = 2 * (MAX_FORWARD_JUMP + 1);

/// The most bytes one message may have MACed over all the sessions it is tried in: one frame
/// at the size cap, or [`MAX_SESSIONS_TRIED`] frames of up to 40 KiB. Each try hashes the whole
/// message, so without this a large frame would cost its size once per session tried.
pub const MAX_AUTHENTICATED_PER_MESSAGE: usize = MAX_FRAMED_LEN + 16 * 1024;

/// What one message has left to spend.
struct Budget {
    tried: usize,
    keys_left: u32,
    bytes_left: usize,
}

impl Budget {
    fn new() -> Self {
        Budget { tried: 0, keys_left: MAX_KEYS_PER_MESSAGE, bytes_left: MAX_AUTHENTICATED_PER_MESSAGE }
    }

    /// Spends what trying the message in one more session costs, or says why it may not.
    fn spend(&mut self, cost: Cost) -> Result<(), RatchetError> {
        if self.tried >= MAX_SESSIONS_TRIED {
            return Err(RatchetError::NotTried { tried: self.tried });
        }
        if cost.keys > self.keys_left {
            return Err(RatchetError::KeysOverBudget { keys: cost.keys, left: self.keys_left });
        }
        if cost.bytes > self.bytes_left {
            return Err(RatchetError::BytesOverBudget { bytes: cost.bytes, left: self.bytes_left });
        }
        self.tried += 1;
        self.keys_left -= cost.keys;
        self.bytes_left -= cost.bytes;
        Ok(())
    }
}

/// The longest plaintext [`SessionRecord::encrypt`] takes: with padding, PreKey wrapping and
/// SPQR field (under 2 KiB together), its frame stays within [`MAX_FRAMED_LEN`], so that any
/// peer on this SDK can read it.
pub const MAX_PLAINTEXT_LEN: usize = MAX_FRAMED_LEN - 2 * 1024;

/// The private prekeys a responder holds, by id.
pub trait PrekeySource {
    /// Our identity.
    fn identity(&self) -> &LocalIdentity;
    /// The signed prekey with `id`.
    fn signed_prekey(&self, id: u32) -> Option<&KeyPair>;
    /// The Kyber prekey with `id`.
    fn kyber_prekey(&self, id: u32) -> Option<&KyberKeyPair>;
    /// The unused one-time prekey with `id`.
    fn one_time_prekey(&self, id: u32) -> Option<&KeyPair>;
}

/// Why a framed ciphertext does not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// It is not a well-formed message.
    #[error("malformed ciphertext: {0}")]
    Malformed(#[from] MessageError),
    /// An ordinary message for a peer we have no session with.
    #[error("no session with this peer")]
    NoSession,
    /// A PreKey message whose session could not be set up.
    #[error("session setup failed: {0}")]
    Setup(#[from] SetupError),
    /// Already decrypted once.
    #[error("duplicate message {counter}")]
    Duplicate {
        /// Its counter.
        counter: u32,
    },
    /// A PreKey message whose session was set up under another peer name (another person,
    /// conversation or device): the same first message delivered again.
    #[error("the session's first message was already received under another name")]
    ReplayedFirstMessage,
    /// A PreKey message for a session we hold, naming another identity than that session's.
    #[error("the PreKey message's identity key is not its session's")]
    IdentityMismatch,
    /// No session we hold decrypts it; each attempt's reason, current session first.
    #[error("no session decrypts the message ({})", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Failed(Vec<RatchetError>),
}

/// Why a message could not be encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    /// No session with this peer yet: fetch its bundle and [`SessionRecord::initiate`] first.
    #[error("no session with this peer")]
    NoSession,
    /// The post-quantum ratchet failed.
    #[error("{0}")]
    Ratchet(#[from] RatchetError),
    /// Longer than [`MAX_PLAINTEXT_LEN`]: its frame would be refused as too large.
    #[error("a plaintext of {0} bytes is longer than the {MAX_PLAINTEXT_LEN}-byte limit")]
    TooLarge(usize),
}

/// A successful decryption.
pub struct Decrypted {
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The one-time prekey this message consumed: delete it, in the same commit as the record.
    pub consumed_one_time_prekey: Option<u32>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext_len", &self.plaintext.len())
            .field("consumed_one_time_prekey", &self.consumed_one_time_prekey)
            .finish()
    }
}

/// The sessions held for one peer name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionRecord {
    pub(crate) current: Option<SessionState>,
    pub(crate) previous: Vec<SessionState>,
}

impl SessionRecord {
    /// An empty record.
    pub fn new() -> Self {
        SessionRecord::default()
    }

    /// Whether it holds no session at all.
    pub fn is_empty(&self) -> bool {
        self.current.is_none() && self.previous.is_empty()
    }

    /// The current session, if any.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// Makes `state` current, keeping the old current session as a previous one.
    fn promote(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            self.previous.insert(0, old);
            self.previous.truncate(MAX_PREVIOUS_SESSIONS);
        }
    }

    /// Starts a new session from the peer's bundle (PQXDH as initiator); it becomes current.
    pub fn initiate(
        &mut self,
        local: &LocalIdentity,
        bundle: &PeerBundle,
        pq: PqFactory,
        rng: &mut Rng,
    ) -> Result<(), SetupError> {
        let state = pqxdh::initiate(local, bundle, pq, rng)?;
        self.promote(state);
        Ok(())
    }

    /// Encrypts with the current session. Changes nothing when it fails.
    pub fn encrypt(&mut self, plaintext: &[u8], rng: &mut Rng) -> Result<Vec<u8>, EncryptError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(EncryptError::TooLarge(plaintext.len()));
        }
        let current = self.current.as_mut().ok_or(EncryptError::NoSession)?;
        Ok(current.encrypt(plaintext, rng)?)
    }

    /// The session at `position` (0 is the current one when there is one, then the previous).
    fn state_mut(&mut self, position: usize) -> Option<&mut SessionState> {
        match (&mut self.current, position) {
            (Some(current), 0) => Some(current),
            (Some(_), position) => self.previous.get_mut(position - 1),
            (None, position) => self.previous.get_mut(position),
        }
    }

    /// Makes the session at `position` current after it decrypted a message.
    fn promote_from(&mut self, position: usize) {
        let index = match self.current {
            Some(_) if position == 0 => return,
            Some(_) => position - 1,
            None => position,
        };
        if index < self.previous.len() {
            let state = self.previous.remove(index);
            self.promote(state);
        }
    }

    /// Decrypts a framed ciphertext. On error the record is unchanged. Its work is bounded
    /// (see the module documentation), whatever the frame holds.
    pub fn decrypt(
        &mut self,
        framed: &[u8],
        keys: &dyn PrekeySource,
        pq: PqFactory,
        rng: &mut Rng,
    ) -> Result<Decrypted, DecryptError> {
        match Framed::decode(framed)? {
            Framed::Whisper(message) => {
                if self.is_empty() {
                    return Err(DecryptError::NoSession);
                }
                // Screening: cheap, in every session; a replay is final, as libsignal has it.
                let mut errors: Vec<(usize, RatchetError)> = Vec::new();
                let (mut knows_key, mut turns_ratchet) = (Vec::new(), Vec::new());
                let states = self.current.iter().chain(self.previous.iter()).enumerate();
                for (position, state) in states {
                    match state.screen(&message) {
                        Ok(cost) if cost.ratchet_step => turns_ratchet.push((position, cost)),
                        Ok(cost) => knows_key.push((position, cost)),
                        Err(RatchetError::Duplicate { counter }) => return Err(DecryptError::Duplicate { counter }),
                        Err(error) => errors.push((position, error)),
                    }
                }
                let mut budget = Budget::new();
                for (position, cost) in knows_key.into_iter().chain(turns_ratchet) {
                    if let Err(error) = budget.spend(cost) {
                        errors.push((position, error));
                        continue;
                    }
                    let Some(state) = self.state_mut(position) else { continue };
                    match state.decrypt(&message, rng) {
                        Ok(plaintext) => {
                            self.promote_from(position);
                            return Ok(Decrypted { plaintext, consumed_one_time_prekey: None });
                        }
                        Err(RatchetError::Duplicate { counter }) => return Err(DecryptError::Duplicate { counter }),
                        Err(error) => errors.push((position, error)),
                    }
                }
                errors.sort_by_key(|(position, _)| *position);
                Err(DecryptError::Failed(errors.into_iter().map(|(_, error)| error).collect()))
            }
            Framed::PreKey(message) => {
                let failed = |error: RatchetError| match error {
                    RatchetError::Duplicate { counter } => DecryptError::Duplicate { counter },
                    other => DecryptError::Failed(vec![other]),
                };
                let known = self
                    .current
                    .iter()
                    .chain(self.previous.iter())
                    .position(|state| *state.base_key() == message.base_key);
                if let Some(position) = known {
                    let state = self.state_mut(position).ok_or(DecryptError::NoSession)?;
                    if *state.remote_identity() != message.identity_key {
                        return Err(DecryptError::IdentityMismatch);
                    }
                    let plaintext = state.decrypt_prekey_message(&message.message, rng).map_err(failed)?;
                    self.promote_from(position);
                    return Ok(Decrypted { plaintext, consumed_one_time_prekey: None });
                }
                // A new session. What needs no secret is checked before PQXDH's public-key
                // work: the first message's counter, and its SPQR field against a session as
                // `pq` makes them (the key given here only seeds that throwaway check).
                let counter = message.message.counter;
                if counter > MAX_NEW_SESSION_JUMP {
                    return Err(failed(RatchetError::TooFarAhead { counter, jump: counter }));
                }
                let probe = pq(&[0; 32], Role::Responder).map_err(SetupError::PostQuantum)?;
                let pq_keys = probe.check(&message.message.pq_ratchet).map_err(|error| failed(error.into()))?;
                if pq_keys > MAX_NEW_SESSION_JUMP + 1 {
                    let error = PqError::TooFarAhead { keys: pq_keys, max: MAX_NEW_SESSION_JUMP + 1 };
                    return Err(failed(error.into()));
                }
                let signed = keys
                    .signed_prekey(message.signed_prekey_id)
                    .ok_or(SetupError::UnknownSignedPrekey(message.signed_prekey_id))?;
                let kyber = keys
                    .kyber_prekey(message.kyber_prekey_id)
                    .ok_or(SetupError::UnknownKyberPrekey(message.kyber_prekey_id))?;
                let one_time = match message.prekey_id {
                    Some(id) => Some(keys.one_time_prekey(id).ok_or(SetupError::UnknownOneTimePrekey(id))?),
                    None => None,
                };
                let responder = ResponderKeys { signed_prekey: signed, kyber_prekey: kyber, one_time_prekey: one_time };
                let mut state = pqxdh::respond(keys.identity(), &responder, &message, pq)?;
                let plaintext = state.decrypt_prekey_message(&message.message, rng).map_err(failed)?;
                self.promote(state);
                Ok(Decrypted { plaintext, consumed_one_time_prekey: message.prekey_id })
            }
        }
    }
}

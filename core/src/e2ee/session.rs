//! Everything we hold for one peer name: the current session and a few older ones, and the
//! rules for which of them a framed ciphertext belongs to.
//!
//! As libsignal does: a PreKey message whose base key matches a session we hold goes to that
//! session (a peer repeating its first messages); otherwise it sets up a new session that becomes
//! current, the old one kept for late messages. An ordinary message tries the current session,
//! then the older ones. Every attempt runs on a copy, so a message that fails to decrypt leaves
//! the record exactly as it was.

use super::keys::KeyPair;
use super::kyber::KyberKeyPair;
use super::message::{Framed, MessageError};
use super::pq::PqFactory;
use super::pqxdh::{self, LocalIdentity, PeerBundle, ResponderKeys, SetupError};
use super::ratchet::{RatchetError, SessionState};
use crate::Rng;
use zeroize::Zeroizing;

/// Older sessions kept per peer (libsignal keeps 40).
pub const MAX_PREVIOUS_SESSIONS: usize = 40;

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

    /// Encrypts with the current session.
    pub fn encrypt(&mut self, plaintext: &[u8], rng: &mut Rng) -> Result<Vec<u8>, EncryptError> {
        let current = self.current.as_mut().ok_or(EncryptError::NoSession)?;
        Ok(current.encrypt(plaintext, rng)?)
    }

    /// Decrypts a framed ciphertext. On error the record is unchanged.
    pub fn decrypt(
        &mut self,
        framed: &[u8],
        keys: &dyn PrekeySource,
        pq: PqFactory,
        rng: &mut Rng,
    ) -> Result<Decrypted, DecryptError> {
        match Framed::decode(framed)? {
            Framed::Whisper(message) => {
                let mut errors = Vec::new();
                let candidates = self.current.iter().chain(self.previous.iter()).enumerate();
                for (position, state) in candidates {
                    let mut attempt = state.clone();
                    match attempt.decrypt(&message, rng) {
                        Ok(plaintext) => {
                            if position == 0 && self.current.is_some() {
                                self.current = Some(attempt);
                            } else {
                                let index = position - usize::from(self.current.is_some());
                                self.previous.remove(index);
                                self.promote(attempt);
                            }
                            return Ok(Decrypted { plaintext, consumed_one_time_prekey: None });
                        }
                        Err(RatchetError::Duplicate { counter }) => return Err(DecryptError::Duplicate { counter }),
                        Err(error) => errors.push(error),
                    }
                }
                if errors.is_empty() { Err(DecryptError::NoSession) } else { Err(DecryptError::Failed(errors)) }
            }
            Framed::PreKey(message) => {
                let known = self
                    .current
                    .iter()
                    .chain(self.previous.iter())
                    .position(|state| *state.base_key() == message.base_key);
                let (mut attempt, consumed, position) = match known {
                    Some(position) => {
                        let state = if position == 0 && self.current.is_some() {
                            self.current.clone()
                        } else {
                            self.previous.get(position - usize::from(self.current.is_some())).cloned()
                        };
                        let state = state.ok_or(DecryptError::NoSession)?;
                        if *state.remote_identity() != message.identity_key {
                            return Err(DecryptError::IdentityMismatch);
                        }
                        (state, None, Some(position))
                    }
                    None => {
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
                        let responder =
                            ResponderKeys { signed_prekey: signed, kyber_prekey: kyber, one_time_prekey: one_time };
                        (pqxdh::respond(keys.identity(), &responder, &message, pq)?, message.prekey_id, None)
                    }
                };
                let plaintext = attempt.decrypt(&message.message, rng).map_err(|error| match error {
                    RatchetError::Duplicate { counter } => DecryptError::Duplicate { counter },
                    other => DecryptError::Failed(vec![other]),
                })?;
                match position {
                    Some(0) if self.current.is_some() => self.current = Some(attempt),
                    Some(position) => {
                        self.previous.remove(position - usize::from(self.current.is_some()));
                        self.promote(attempt);
                    }
                    None => self.promote(attempt),
                }
                Ok(Decrypted { plaintext, consumed_one_time_prekey: consumed })
            }
        }
    }
}

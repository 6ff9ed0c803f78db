//! The seam between the state machines and a Signal implementation: the native one
//! ([`Account`]) by default, or another behind the same calls (the official runtime, in
//! `pacerelle-official-runtime`).
//!
//! Every call returns the [`E2eeChanges`] to commit and changes nothing when it fails, so the
//! agent's guarantees (keys persisted before they are published, a session's new state committed
//! with the message it opened) hold whichever implementation runs.

use super::account::{Account, AccountError, OneTimeStock};
use super::bundle::PublicationError;
use super::pqxdh::{PeerBundle, SetupError};
use super::session::{DecryptError, EncryptError};
use crate::Rng;
use crate::store::{E2eeChanges, E2eeSnapshot};
use crate::wire::http::{OneTimePrekeysBody, PrekeyBundleBody};
use zeroize::Zeroizing;

/// Why a Signal operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No session opens the ciphertext (or it is malformed, or a duplicate).
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// The message could not be encrypted.
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
    /// A session could not be set up from a bundle.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// No new prekeys can be made.
    #[error(transparent)]
    Publication(#[from] PublicationError),
    /// Stored state does not load.
    #[error(transparent)]
    State(#[from] AccountError),
    /// Another implementation refused, in its own words.
    #[error("{operation} failed: {reason}")]
    Other {
        /// What was asked.
        operation: &'static str,
        /// Its answer.
        reason: String,
    },
}

/// A new publication: the changes to commit first (private halves), then the two bodies.
pub type Published = (E2eeChanges, PrekeyBundleBody, OneTimePrekeysBody);

/// What the agent and person state machines need from a Signal implementation.
pub trait SignalBackend: Send {
    /// The identity key, serialized (33 bytes, `0x05`).
    fn identity_key(&self) -> [u8; 33];

    /// A new prekey publication, with a batch of one-time prekeys.
    fn publish(&mut self, rng: &mut Rng) -> Result<Published, BackendError>;

    /// The bundle again without new one-time prekeys (an empty one-time body), for the
    /// implementations that track their one-time prekeys ([`Self::one_time_stock`]). By default
    /// a full publication: an implementation that cannot tell what it holds makes a batch every
    /// time, as the official SDK does, and keeps every key it made.
    fn publish_bundle(&mut self, rng: &mut Rng) -> Result<Published, BackendError> {
        self.publish(rng)
    }

    /// The unused one-time prekeys held, when the implementation can tell; the agent then makes
    /// new ones only when they are needed (see [`super::account`]).
    fn one_time_stock(&self) -> Option<OneTimeStock> {
        None
    }

    /// Whether a session with `peer` exists.
    fn has_session(&self, peer: &str) -> bool;

    /// Starts a session with `peer` from its bundle.
    fn start_session(&mut self, peer: &str, bundle: &PeerBundle, rng: &mut Rng) -> Result<E2eeChanges, BackendError>;

    /// Encrypts `plaintext` for `peer` into a framed ciphertext.
    fn encrypt(&mut self, peer: &str, plaintext: &[u8], rng: &mut Rng) -> Result<(Vec<u8>, E2eeChanges), BackendError>;

    /// Decrypts a framed ciphertext from the first of `peers` that opens it; returns the
    /// plaintext and the name that worked.
    fn decrypt(
        &mut self,
        peers: &[&str],
        framed: &[u8],
        rng: &mut Rng,
    ) -> Result<(Zeroizing<Vec<u8>>, String, E2eeChanges), BackendError>;

    /// The identity key of the current session with `peer` (after a decryption: the session
    /// that decrypted it), when the implementation can tell. Without it, the agent knows a
    /// peer's identity from the PreKey messages that start its sessions.
    fn remote_identity(&self, _peer: &str) -> Option<[u8; 33]> {
        None
    }

    /// Forgets what an operation did in memory whose `changes` will not be committed (a message
    /// refused after it decrypted, say from an identity the app has not trusted): whatever
    /// `changes` touch goes back to its state in `committed`.
    fn discard(&mut self, changes: &E2eeChanges, committed: &E2eeSnapshot) -> Result<(), BackendError>;

    /// The post-quantum ratchet of the current session with `peer`: its SPQR epoch and whether
    /// version 1 was negotiated, when the implementation can tell (diagnostics and tests).
    fn pq_status(&self, _peer: &str) -> Option<PqStatus> {
        None
    }
}

/// Where a session's post-quantum ratchet stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PqStatus {
    /// The SPQR epoch (0 without SPQR).
    pub epoch: u64,
    /// Whether SPQR version 1 was negotiated with the peer (settled, not downgraded).
    pub version1: bool,
}

impl SignalBackend for Account {
    fn identity_key(&self) -> [u8; 33] {
        Account::identity_key(self).serialize()
    }

    fn publish(&mut self, rng: &mut Rng) -> Result<Published, BackendError> {
        Ok(Account::publish(self, rng)?)
    }

    fn publish_bundle(&mut self, rng: &mut Rng) -> Result<Published, BackendError> {
        Ok(Account::republish_bundle(self, rng)?)
    }

    fn one_time_stock(&self) -> Option<OneTimeStock> {
        Some(Account::one_time_stock(self))
    }

    fn has_session(&self, peer: &str) -> bool {
        Account::has_session(self, peer)
    }

    fn start_session(&mut self, peer: &str, bundle: &PeerBundle, rng: &mut Rng) -> Result<E2eeChanges, BackendError> {
        Ok(Account::start_session(self, peer, bundle, rng)?)
    }

    fn encrypt(&mut self, peer: &str, plaintext: &[u8], rng: &mut Rng) -> Result<(Vec<u8>, E2eeChanges), BackendError> {
        Ok(Account::encrypt(self, peer, plaintext, rng)?)
    }

    fn decrypt(
        &mut self,
        peers: &[&str],
        framed: &[u8],
        rng: &mut Rng,
    ) -> Result<(Zeroizing<Vec<u8>>, String, E2eeChanges), BackendError> {
        Ok(Account::decrypt(self, peers, framed, rng)?)
    }

    fn remote_identity(&self, peer: &str) -> Option<[u8; 33]> {
        Account::remote_identity(self, peer).map(|key| key.serialize())
    }

    fn discard(&mut self, changes: &E2eeChanges, committed: &E2eeSnapshot) -> Result<(), BackendError> {
        Ok(Account::discard(self, changes, committed)?)
    }

    fn pq_status(&self, peer: &str) -> Option<PqStatus> {
        let pq = self.session(peer)?.current()?.pq();
        let version1 = pq.version() == pacerelle_spqr::CurrentVersion::NegotiationComplete(pacerelle_spqr::Version::V1);
        Some(PqStatus { epoch: pq.epoch(), version1 })
    }
}

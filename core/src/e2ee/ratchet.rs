//! One Double Ratchet session with one peer: its chains, skipped message keys and post-quantum
//! slot, and how it encrypts and decrypts ordinary messages.
//!
//! Decryption mutates the state it is given; callers ([`super::session::SessionRecord`]) run it
//! on a copy and keep the copy only on success, so a message that fails leaves the session
//! exactly as it was.

use super::chain::{ChainKey, MessageKeys, Secret32, root_step};
use super::keys::{KeyPair, PublicKey};
use super::message::{
    FRAME_PREKEY, FRAME_WHISPER, PreKeyParts, PreKeySignalMessage, SignalMessage, SignalMessageParts, frame,
};
use super::pq::{PqError, PqRatchet};
use crate::Rng;
use std::collections::VecDeque;
use zeroize::Zeroizing;

/// How far ahead of a chain a message may be (libsignal's bound).
pub const MAX_FORWARD_JUMP: u32 = 25_000;
/// Skipped message keys kept per receiving chain; older ones are dropped.
pub const MAX_SKIPPED_KEYS: usize = 2_000;
/// Receiving chains kept per session; older ones are dropped.
pub const MAX_RECEIVER_CHAINS: usize = 5;

/// Why a message does not decrypt in a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatchetError {
    /// This message was already decrypted (or its key was dropped as too old).
    #[error("message {counter} was already received")]
    Duplicate {
        /// Its counter.
        counter: u32,
    },
    /// The counter is further ahead of its chain than [`MAX_FORWARD_JUMP`].
    #[error("message {counter} is {jump} messages ahead of its chain")]
    TooFarAhead {
        /// Its counter.
        counter: u32,
        /// How far ahead.
        jump: u32,
    },
    /// The MAC does not match: tampered, or not for this session.
    #[error("the message's MAC does not verify")]
    BadMac,
    /// The MAC matched but the plaintext's padding is wrong.
    #[error("the message's padding is invalid")]
    BadPadding,
    /// The post-quantum ratchet refused the message.
    #[error("post-quantum ratchet: {0}")]
    PostQuantum(#[from] PqError),
}

/// The prekeys a session's first messages name, until the peer's first reply proves the
/// peer has the session (then ordinary messages follow).
#[derive(Clone, PartialEq, Eq)]
pub struct PendingPreKey {
    /// The one-time prekey used, if any.
    pub prekey_id: Option<u32>,
    /// The signed prekey used.
    pub signed_prekey_id: u32,
    /// The Kyber prekey used.
    pub kyber_prekey_id: u32,
    /// The serialized Kyber ciphertext.
    pub kyber_ciphertext: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ReceiverChain {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) chain: ChainKey,
    /// Seeds of messages skipped on this chain, oldest first: their SPQR keys only come with
    /// the messages themselves, so the seed (not the final keys) is what waits.
    pub(crate) skipped: VecDeque<(u32, Secret32)>,
}

/// A Double Ratchet session with one peer.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionState {
    pub(crate) local_identity: PublicKey,
    pub(crate) remote_identity: PublicKey,
    pub(crate) local_registration_id: u32,
    pub(crate) remote_registration_id: u32,
    /// The initiator's base key: identifies the session when PreKey messages are repeated.
    pub(crate) base_key: PublicKey,
    pub(crate) root_key: Secret32,
    pub(crate) sender_ratchet: KeyPair,
    pub(crate) sender_chain: ChainKey,
    pub(crate) previous_counter: u32,
    pub(crate) receivers: Vec<ReceiverChain>,
    pub(crate) pq: PqRatchet,
    pub(crate) pending_prekey: Option<PendingPreKey>,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("remote_identity", &self.remote_identity)
            .field("base_key", &self.base_key)
            .field("sending_index", &self.sender_chain.index())
            .field("receiver_chains", &self.receivers.len())
            .field("pending_prekey", &self.pending_prekey.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionState {
    /// The peer's identity key.
    pub fn remote_identity(&self) -> &PublicKey {
        &self.remote_identity
    }

    /// The initiator's base key.
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }

    /// Whether messages still go out as PreKey messages (no reply received yet).
    pub fn awaiting_reply(&self) -> bool {
        self.pending_prekey.is_some()
    }

    /// The post-quantum slot.
    pub fn pq(&self) -> &PqRatchet {
        &self.pq
    }

    /// Encrypts `plaintext` into a framed ciphertext (`0x01` PreKey or `0x02` ordinary).
    pub fn encrypt(&mut self, plaintext: &[u8], rng: &mut Rng) -> Result<Vec<u8>, RatchetError> {
        // SPQR's `send` changes nothing when it fails, and nothing below can fail.
        let pq_sent = self.pq.send(rng)?;
        let keys = MessageKeys::derive(&self.sender_chain.message_seed(), pq_sent.key.as_deref());
        let ciphertext = keys.encrypt(plaintext);
        let message = SignalMessage::encode(
            &SignalMessageParts {
                ratchet_key: &self.sender_ratchet.public(),
                counter: self.sender_chain.index(),
                previous_counter: self.previous_counter,
                ciphertext: &ciphertext,
                pq_ratchet: &pq_sent.message,
            },
            keys.mac_key(),
            &self.local_identity,
            &self.remote_identity,
        );
        let framed = match &self.pending_prekey {
            Some(pending) => frame(
                FRAME_PREKEY,
                PreKeySignalMessage::encode(
                    &PreKeyParts {
                        registration_id: self.local_registration_id,
                        prekey_id: pending.prekey_id,
                        signed_prekey_id: pending.signed_prekey_id,
                        kyber_prekey_id: pending.kyber_prekey_id,
                        kyber_ciphertext: &pending.kyber_ciphertext,
                        base_key: &self.base_key,
                        identity_key: &self.local_identity,
                    },
                    message,
                ),
            ),
            None => frame(FRAME_WHISPER, message),
        };
        self.sender_chain = self.sender_chain.next();
        Ok(framed)
    }

    /// Decrypts an ordinary message, advancing this state. Run it on a copy: on error the
    /// state may be half-advanced.
    pub fn decrypt(&mut self, message: &SignalMessage, rng: &mut Rng) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        let chain_position = self.receiver_chain_for(&message.ratchet_key, rng);
        let seed = self.message_seed(chain_position, message.counter)?;
        let pq_key = self.pq.recv(&message.pq_ratchet)?;
        let keys = MessageKeys::derive(&seed, pq_key.as_deref());
        if !message.verify_mac(keys.mac_key(), &self.remote_identity, &self.local_identity) {
            return Err(RatchetError::BadMac);
        }
        let plaintext = keys.decrypt(&message.ciphertext).map_err(|_| RatchetError::BadPadding)?;
        self.pending_prekey = None;
        Ok(plaintext)
    }

    /// The position of the receiving chain for `their_ratchet`, stepping the ratchet (a new
    /// receiving chain and a new sending chain) when the peer has turned it.
    fn receiver_chain_for(&mut self, their_ratchet: &PublicKey, rng: &mut Rng) -> usize {
        if let Some(position) = self.receivers.iter().position(|chain| chain.ratchet_key == *their_ratchet) {
            return position;
        }
        let (root, receiving) = root_step(&self.root_key, their_ratchet, &self.sender_ratchet);
        let new_ratchet = KeyPair::generate(rng);
        let (root, sending) = root_step(&root, their_ratchet, &new_ratchet);
        self.root_key = root;
        self.receivers.push(ReceiverChain { ratchet_key: *their_ratchet, chain: receiving, skipped: VecDeque::new() });
        if self.receivers.len() > MAX_RECEIVER_CHAINS {
            self.receivers.remove(0);
        }
        // libsignal records the last index used, not the count; the field is informational.
        self.previous_counter = self.sender_chain.index().saturating_sub(1);
        self.sender_ratchet = new_ratchet;
        self.sender_chain = sending;
        self.receivers.len() - 1
    }

    /// The message-key seed for `counter` on the chain at `position`, storing the seeds of any
    /// messages skipped on the way.
    fn message_seed(&mut self, position: usize, counter: u32) -> Result<Secret32, RatchetError> {
        let receiver = &mut self.receivers[position];
        let index = receiver.chain.index();
        if counter < index {
            let found = receiver.skipped.iter().position(|(skipped, _)| *skipped == counter);
            return match found.and_then(|at| receiver.skipped.remove(at)) {
                Some((_, seed)) => Ok(seed),
                None => Err(RatchetError::Duplicate { counter }),
            };
        }
        let jump = counter - index;
        if jump > MAX_FORWARD_JUMP {
            return Err(RatchetError::TooFarAhead { counter, jump });
        }
        let mut chain = receiver.chain.clone();
        while chain.index() < counter {
            receiver.skipped.push_back((chain.index(), chain.message_seed()));
            if receiver.skipped.len() > MAX_SKIPPED_KEYS {
                receiver.skipped.pop_front();
            }
            chain = chain.next();
        }
        let seed = chain.message_seed();
        receiver.chain = chain.next();
        Ok(seed)
    }
}

//! One Double Ratchet session with one peer: its chains, skipped message keys and post-quantum
//! slot, and how it encrypts and decrypts ordinary messages.
//!
//! Decryption is all or nothing without copying the session: the keys are derived aside, the
//! post-quantum field is taken in uncommitted, and only once the MAC has verified does anything
//! change, so a message that fails leaves the session exactly as it was. What a message may
//! cost is bounded before any of that work: [`SessionState::screen`] refuses, from the
//! counters and the post-quantum field alone, a message that is a replay, a downgrade or too
//! far ahead, and tells the caller how many keys trying it would derive.

use super::chain::{ChainKey, MessageKeys, Secret32, root_step};
use super::keys::{KeyPair, PublicKey};
use super::message::{
    FRAME_PREKEY, FRAME_WHISPER, PreKeyParts, PreKeySignalMessage, SignalMessage, SignalMessageParts, frame,
};
use super::pq::{PqError, PqRatchet};
use crate::Rng;
use std::collections::VecDeque;
use zeroize::Zeroizing;

/// How many messages a received message may skip on its chain: one that skips more is refused
/// before any key is derived. libsignal allows 25,000; here the per-frame work budget rules.
/// Every skipped message costs a Double Ratchet and an SPQR chain step before the MAC can be
/// checked, so this bound is what makes the worst frame cheap (see BENCHMARKS.md). A person's
/// app skips messages only when some it encrypted never reach us (lost, or re-encrypted on a
/// retry; the relay queues the rest in order), which is a handful, not hundreds. A message
/// past the bound cannot be read, nor later ones on its chain until the peer turns its ratchet
/// (on reading a message from us).
pub const MAX_FORWARD_JUMP: u32 = 100;
/// Skipped message keys kept per receiving chain; older ones are dropped (libsignal's bound).
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
    /// The counter is further ahead of its chain than allowed: [`MAX_FORWARD_JUMP`], or
    /// [`super::session::MAX_NEW_SESSION_JUMP`] for the first message of a new session.
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
    /// Not tried in this session: the message had already been tried in as many sessions as
    /// one message may be ([`super::session::MAX_SESSIONS_TRIED`]).
    #[error("not tried: the message was already tried in {tried} sessions")]
    NotTried {
        /// How many sessions it was tried in.
        tried: usize,
    },
    /// Not tried in this session: the keys it would derive here exceed what the message has
    /// left of its budget ([`super::session::MAX_KEYS_PER_MESSAGE`]).
    #[error("not tried: it would derive {keys} keys here, and only {left} are left of its budget")]
    KeysOverBudget {
        /// The keys trying it here would derive.
        keys: u32,
        /// What was left of the budget.
        left: u32,
    },
    /// Not tried in this session: authenticating it once more would exceed the bytes the
    /// message may have authenticated ([`super::session::MAX_AUTHENTICATED_PER_MESSAGE`]).
    #[error("not tried: authenticating its {bytes} bytes again would exceed its budget ({left} bytes left)")]
    BytesOverBudget {
        /// The bytes its MAC covers.
        bytes: usize,
        /// What was left of the budget.
        left: usize,
    },
}

/// What trying a message in a session costs, as [`SessionState::screen`] finds it without
/// deriving anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Whether the message turns the ratchet here (one X25519 agreement before the MAC check).
    pub ratchet_step: bool,
    /// The chain keys it derives, Double Ratchet and SPQR together.
    pub keys: u32,
    /// The bytes its MAC check hashes.
    pub bytes: usize,
}

/// How a message arrived: on its own, or wrapped in a PreKey message.
#[derive(Clone, Copy)]
enum Framing {
    Ordinary,
    PreKey,
}

/// Where a message's message-key seed comes from, and what taking it changes.
enum Seed {
    /// A skipped key kept by the chain at `chain`, at position `at` of its list.
    Skipped { chain: usize, at: usize, seed: Secret32 },
    /// A chain run forward: the seed, the chain after it and the seeds skipped on the way.
    Ahead { chain: Chain, seed: Secret32, next: ChainKey, skipped: Vec<(u32, Secret32)> },
}

/// Which receiving chain a message runs forward.
enum Chain {
    /// The one at this position.
    Known(usize),
    /// The one the peer's new ratchet key makes; the root key after that half step.
    New(Secret32),
}

impl Seed {
    fn seed(&self) -> &Secret32 {
        match self {
            Seed::Skipped { seed, .. } | Seed::Ahead { seed, .. } => seed,
        }
    }
}

/// Runs `from` forward to `counter` (not behind it) without changing it: the seed, the chain
/// after it, and the skipped seeds the chain would keep.
fn run_ahead(from: &ChainKey, counter: u32) -> (Secret32, ChainKey, Vec<(u32, Secret32)>) {
    let mut chain = from.clone();
    let mut skipped = Vec::new();
    while chain.index() < counter {
        let index = chain.index();
        let (seed, next) = chain.step();
        skipped.push((index, seed));
        chain = next;
    }
    if skipped.len() > MAX_SKIPPED_KEYS {
        skipped.drain(..skipped.len() - MAX_SKIPPED_KEYS);
    }
    (chain.message_seed(), chain.next(), skipped)
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
        // SPQR's `send` changes nothing when it fails, and nothing after it can fail.
        let pq_sent = self.pq.send(rng)?;
        let pq_field = (!pq_sent.message.is_empty()).then_some(pq_sent.message.as_slice());
        Ok(self.seal(plaintext, pq_field, pq_sent.key.as_deref()))
    }

    /// Encrypts like [`Self::encrypt`], but with `pq_field` as the message's post-quantum field
    /// (`None`: left out) and no SPQR key mixed into its keys, without touching the SPQR state:
    /// what a peer without SPQR sends, or one forging a downgrade with the classical keys
    /// alone. For tests of how peers treat such messages; sessions never send one themselves.
    pub fn encrypt_without_spqr(&mut self, plaintext: &[u8], pq_field: Option<&[u8]>) -> Vec<u8> {
        self.seal(plaintext, pq_field, None)
    }

    /// Encrypts under the next sending key (salted with `pq_key`), framed as the session's
    /// messages currently are, and moves the sending chain on.
    fn seal(&mut self, plaintext: &[u8], pq_field: Option<&[u8]>, pq_key: Option<&[u8; 32]>) -> Vec<u8> {
        let keys = MessageKeys::derive(&self.sender_chain.message_seed(), pq_key);
        let ciphertext = keys.encrypt(plaintext);
        let message = SignalMessage::encode_with_field(
            &SignalMessageParts {
                ratchet_key: &self.sender_ratchet.public(),
                counter: self.sender_chain.index(),
                previous_counter: self.previous_counter,
                ciphertext: &ciphertext,
                pq_ratchet: pq_field.unwrap_or_default(),
            },
            pq_field,
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
        framed
    }

    /// What trying ordinary message `message` here costs, found from its counter and
    /// post-quantum field alone; or why it cannot decrypt here: a replay
    /// ([`RatchetError::Duplicate`]), too far ahead of its chain ([`RatchetError::TooFarAhead`]),
    /// a downgrade or an SPQR key too far ahead ([`RatchetError::PostQuantum`]).
    pub fn screen(&self, message: &SignalMessage) -> Result<Cost, RatchetError> {
        self.screen_as(message, Framing::Ordinary)
    }

    fn screen_as(&self, message: &SignalMessage, framing: Framing) -> Result<Cost, RatchetError> {
        let counter = message.counter;
        let (ratchet_step, keys) = match self.receivers.iter().find(|chain| chain.ratchet_key == message.ratchet_key) {
            Some(receiver) => {
                let index = receiver.chain.index();
                if counter < index {
                    if !receiver.skipped.iter().any(|(skipped, _)| *skipped == counter) {
                        return Err(RatchetError::Duplicate { counter });
                    }
                    (false, 0)
                } else {
                    let jump = counter - index;
                    if jump > MAX_FORWARD_JUMP {
                        return Err(RatchetError::TooFarAhead { counter, jump });
                    }
                    (false, jump + 1)
                }
            }
            // A ratchet key never seen: a new chain, which starts at 0.
            None if counter > MAX_FORWARD_JUMP => return Err(RatchetError::TooFarAhead { counter, jump: counter }),
            None => (true, counter + 1),
        };
        let pq_keys = match framing {
            Framing::Ordinary => self.pq.check_ordinary(&message.pq_ratchet)?,
            Framing::PreKey => self.pq.check(&message.pq_ratchet)?,
        };
        Ok(Cost { ratchet_step, keys: keys + pq_keys, bytes: message.authenticated_len() })
    }

    /// Decrypts an ordinary message, advancing this state; on error the state is unchanged.
    /// Its work is bounded by [`Self::screen`], which it runs first.
    pub fn decrypt(&mut self, message: &SignalMessage, rng: &mut Rng) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        self.open(message, Framing::Ordinary, rng)
    }

    /// [`Self::decrypt`] for the message a PreKey message wraps, whose SPQR field may name no
    /// key (a sender that accepts peers without SPQR, before it has heard back).
    pub fn decrypt_prekey_message(
        &mut self,
        message: &SignalMessage,
        rng: &mut Rng,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        self.open(message, Framing::PreKey, rng)
    }

    fn open(
        &mut self,
        message: &SignalMessage,
        framing: Framing,
        rng: &mut Rng,
    ) -> Result<Zeroizing<Vec<u8>>, RatchetError> {
        self.screen_as(message, framing)?;
        let plan = match self.receivers.iter().position(|chain| chain.ratchet_key == message.ratchet_key) {
            Some(chain) if message.counter < self.receivers[chain].chain.index() => {
                let skipped = &self.receivers[chain].skipped;
                let at = skipped.iter().position(|(index, _)| *index == message.counter);
                let at = at.ok_or(RatchetError::Duplicate { counter: message.counter })?;
                Seed::Skipped { chain, at, seed: skipped[at].1.clone() }
            }
            Some(chain) => {
                let (seed, next, skipped) = run_ahead(&self.receivers[chain].chain, message.counter);
                Seed::Ahead { chain: Chain::Known(chain), seed, next, skipped }
            }
            // A new ratchet key: only the receiving half of the ratchet step is needed to read
            // the message; the sending half (a key generation, an agreement) waits for the MAC.
            None => {
                let (root, receiving) = root_step(&self.root_key, &message.ratchet_key, &self.sender_ratchet);
                let (seed, next, skipped) = run_ahead(&receiving, message.counter);
                Seed::Ahead { chain: Chain::New(root), seed, next, skipped }
            }
        };
        let pq = self.pq.receive(&message.pq_ratchet)?;
        let keys = MessageKeys::derive(plan.seed(), pq.key());
        if !message.verify_mac(keys.mac_key(), &self.remote_identity, &self.local_identity) {
            return Err(RatchetError::BadMac);
        }
        let plaintext = keys.decrypt(&message.ciphertext).map_err(|_| RatchetError::BadPadding)?;
        // The message is genuine: from here on, everything is committed.
        pq.commit();
        match plan {
            Seed::Skipped { chain, at, .. } => {
                self.receivers[chain].skipped.remove(at);
            }
            Seed::Ahead { chain, next, skipped, .. } => {
                let position = match chain {
                    Chain::Known(position) => position,
                    Chain::New(root) => self.step_ratchet(message.ratchet_key, root, next.clone(), rng),
                };
                let receiver = &mut self.receivers[position];
                receiver.skipped.extend(skipped);
                while receiver.skipped.len() > MAX_SKIPPED_KEYS {
                    receiver.skipped.pop_front();
                }
                receiver.chain = next;
            }
        }
        self.pending_prekey = None;
        Ok(plaintext)
    }

    /// Completes a ratchet step the peer made with `their_ratchet`: `root` is the root key
    /// after the receiving half, which gave the chain `receiving`; a fresh ratchet key makes
    /// the new sending chain. Returns the new receiving chain's position.
    fn step_ratchet(&mut self, their_ratchet: PublicKey, root: Secret32, receiving: ChainKey, rng: &mut Rng) -> usize {
        let new_ratchet = KeyPair::generate(rng);
        let (root, sending) = root_step(&root, &their_ratchet, &new_ratchet);
        self.root_key = root;
        self.receivers.push(ReceiverChain { ratchet_key: their_ratchet, chain: receiving, skipped: VecDeque::new() });
        if self.receivers.len() > MAX_RECEIVER_CHAINS {
            self.receivers.remove(0);
        }
        // libsignal records the last index used, not the count; the field is informational.
        self.previous_counter = self.sender_chain.index().saturating_sub(1);
        self.sender_ratchet = new_ratchet;
        self.sender_chain = sending;
        self.receivers.len() - 1
    }
}

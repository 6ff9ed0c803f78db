//! A deterministic pair of native Signal sessions, and a model of what each delivery must do,
//! for the `session_decrypt` target and the seed generator (`examples/signal_seeds.rs`).
//!
//! Alice (side 0) starts a session from Bob's (side 1) bundle; a short conversation follows so
//! that both sides have sending and receiving chains and Alice sends ordinary messages. One of
//! Alice's PreKey messages is kept undelivered, so the fuzzer can deliver it late.
//!
//! [`Harness::deliver`] checks every delivery against a model of the receiving side:
//! - a failed decryption leaves the record byte-identical;
//! - a success yields the plaintext of a real message to that side that was not delivered yet
//!   (plaintexts are unique), which then counts as delivered;
//! - a real message is decrypted exactly once: its first delivery succeeds and later ones are
//!   [`DecryptError::Duplicate`], unless its receiving chain has been dropped (a session keeps
//!   [`MAX_RECEIVER_CHAINS`]), in which case every delivery fails.
//!
//! The model rests on one property of the Double Ratchet: a side can only meet a peer ratchet
//! key it has never seen when that key is the peer's next one (the peer makes it in answer to
//! this side's current key), so such a message always opens a new receiving chain.

use pacerelle_core::e2ee::account::PqFactory;
use pacerelle_core::e2ee::keys::{KeyPair, PublicKey};
use pacerelle_core::e2ee::kyber::KyberKeyPair;
use pacerelle_core::e2ee::message::{Framed, PreKeySignalMessage};
use pacerelle_core::e2ee::pq::PqRatchet;
use pacerelle_core::e2ee::pqxdh::{LocalIdentity, PeerBundle};
use pacerelle_core::e2ee::ratchet::MAX_RECEIVER_CHAINS;
use pacerelle_core::e2ee::session::{DecryptError, PrekeySource, SessionRecord};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::OnceLock;

/// The post-quantum ratchet new sessions get: SPQR version 1 required, as the SDK makes them.
pub const PQ: PqFactory = PqRatchet::spqr_required;

/// The signed and Kyber prekey id both parties publish.
pub const SIGNED_PREKEY_ID: u32 = 7;
/// The one-time prekey id both parties publish.
pub const ONE_TIME_PREKEY_ID: u32 = 100;

/// Side 0.
pub const ALICE: usize = 0;
/// Side 1.
pub const BOB: usize = 1;

/// One party's private keys (a minimal [`PrekeySource`]: one prekey of each kind).
pub struct Party {
    /// Identity and registration id.
    pub identity: LocalIdentity,
    /// Signed prekey ([`SIGNED_PREKEY_ID`]).
    pub signed: KeyPair,
    /// Kyber prekey ([`SIGNED_PREKEY_ID`]).
    pub kyber: KyberKeyPair,
    /// One-time prekey ([`ONE_TIME_PREKEY_ID`]).
    pub one_time: KeyPair,
}

impl PrekeySource for Party {
    fn identity(&self) -> &LocalIdentity {
        &self.identity
    }
    fn signed_prekey(&self, id: u32) -> Option<&KeyPair> {
        (id == SIGNED_PREKEY_ID).then_some(&self.signed)
    }
    fn kyber_prekey(&self, id: u32) -> Option<&KyberKeyPair> {
        (id == SIGNED_PREKEY_ID).then_some(&self.kyber)
    }
    // Kept after use: the record must refuse a second setup by matching the base key, and a
    // forged PreKey message with a new base key should reach the full PQXDH path.
    fn one_time_prekey(&self, id: u32) -> Option<&KeyPair> {
        (id == ONE_TIME_PREKEY_ID).then_some(&self.one_time)
    }
}

impl Party {
    fn new(rng: &mut StdRng, registration_id: u32) -> Self {
        Party {
            identity: LocalIdentity { key_pair: KeyPair::generate(rng), registration_id },
            signed: KeyPair::generate(rng),
            kyber: KyberKeyPair::generate(rng),
            one_time: KeyPair::generate(rng),
        }
    }

    /// The bundle a peer starts a session from (with the one-time prekey).
    pub fn bundle(&self, rng: &mut StdRng) -> PeerBundle {
        let signed_public = self.signed.public().serialize();
        let kyber_public = self.kyber.public_serialized();
        PeerBundle {
            registration_id: self.identity.registration_id,
            device_id: 1,
            identity_key: self.identity.key_pair.public(),
            signed_prekey_id: SIGNED_PREKEY_ID,
            signed_prekey: self.signed.public(),
            signed_prekey_signature: self.identity.key_pair.sign(&signed_public, rng).to_vec(),
            kyber_prekey_id: SIGNED_PREKEY_ID,
            kyber_prekey: kyber_public.clone(),
            kyber_prekey_signature: self.identity.key_pair.sign(&kyber_public, rng).to_vec(),
            one_time_prekey: Some((ONE_TIME_PREKEY_ID, self.one_time.public())),
        }
    }
}

/// A real message, as sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The receiving side.
    pub to: usize,
    /// Its plaintext (unique).
    pub plaintext: Vec<u8>,
    /// The framed ciphertext.
    pub framed: Vec<u8>,
    /// The sender's ratchet key it carries.
    pub ratchet_key: PublicKey,
    /// Its index in that sender chain.
    pub counter: u32,
    /// Whether the receiver has decrypted it.
    pub delivered: bool,
}

/// Both sides' records, the messages sent so far and the model of each receiver.
pub struct Harness {
    parties: &'static [Party; 2],
    records: [SessionRecord; 2],
    /// Per side: the peer ratchet keys it holds a receiving chain for, oldest first (as
    /// `SessionState::receivers`).
    known: [Vec<PublicKey>; 2],
    /// Per side: every peer ratchet key it ever held a receiving chain for.
    seen: [Vec<PublicKey>; 2],
    /// Every real message, in sending order.
    pub sent: Vec<Sent>,
    /// A real PreKey message (Alice's first), for forging others around it.
    pub prekey_template: PreKeySignalMessage,
    rng: StdRng,
    next_text: u32,
}

fn parties() -> &'static [Party; 2] {
    static PARTIES: OnceLock<[Party; 2]> = OnceLock::new();
    PARTIES.get_or_init(|| {
        let rng = &mut StdRng::seed_from_u64(0x5EED_0001);
        [Party::new(rng, 1111), Party::new(rng, 2222)]
    })
}

impl Harness {
    /// The harness after the setup conversation (built once, cloned per call: setup costs a
    /// Kyber key generation and encapsulation, far more than a fuzz input).
    pub fn established() -> Harness {
        static TEMPLATE: OnceLock<Harness> = OnceLock::new();
        let template = TEMPLATE.get_or_init(Harness::build);
        Harness {
            parties: template.parties,
            records: template.records.clone(),
            known: template.known.clone(),
            seen: template.seen.clone(),
            sent: template.sent.clone(),
            prekey_template: template.prekey_template.clone(),
            // `StdRng` cannot be cloned; a fixed seed keeps every input reproducible.
            rng: StdRng::seed_from_u64(0x5EED_0003),
            next_text: template.next_text,
        }
    }

    fn build() -> Harness {
        let parties = parties();
        let mut rng = StdRng::seed_from_u64(0x5EED_0002);
        let bundle = parties[BOB].bundle(&mut rng);
        let mut alice = SessionRecord::new();
        alice
            .initiate(&parties[ALICE].identity, &bundle, PQ, &mut rng)
            .expect("Alice starts a session from Bob's bundle");
        let first = alice.encrypt(b"setup: first", &mut rng).expect("Alice encrypts");
        let Ok(Framed::PreKey(prekey_template)) = Framed::decode(&first) else {
            panic!("Alice's first message is a PreKey message")
        };
        let mut harness = Harness {
            parties,
            records: [alice, SessionRecord::new()],
            // Alice's session starts with a receiving chain under Bob's signed prekey.
            known: [vec![bundle.signed_prekey], Vec::new()],
            seen: [vec![bundle.signed_prekey], Vec::new()],
            sent: Vec::new(),
            prekey_template: *prekey_template,
            rng,
            next_text: 0,
        };
        let first = harness.record_sent(ALICE, b"setup: first".to_vec(), first);
        let late = harness.send(ALICE, 3);
        let consumed = harness.deliver_expecting(BOB, first);
        assert_eq!(consumed, Some(ONE_TIME_PREKEY_ID), "the first PreKey message uses the one-time prekey");
        for (from, length) in [(BOB, 5), (ALICE, 40), (BOB, 0), (ALICE, 16)] {
            let index = harness.send(from, length);
            harness.deliver_expecting(1 - from, index);
        }
        assert!(!harness.sent[late].delivered && harness.sent[late].framed[0] == 0x01, "a late PreKey message");
        assert!(harness.records.iter().all(|record| record.current().is_some_and(|state| !state.awaiting_reply())));
        harness
    }

    /// Both records.
    pub fn records(&self) -> &[SessionRecord; 2] {
        &self.records
    }

    /// The peer ratchet keys and base key in play, for forging messages under them.
    pub fn keys(&self) -> Vec<PublicKey> {
        let mut keys: Vec<PublicKey> = self.seen.iter().flatten().copied().collect();
        keys.push(self.prekey_template.base_key);
        keys.push(self.parties[ALICE].identity.key_pair.public());
        keys
    }

    /// Encrypts a fresh message of `length` bytes (unique text, padded) from `from`; returns its
    /// index in [`Self::sent`].
    pub fn send(&mut self, from: usize, length: usize) -> usize {
        let mut plaintext = format!("{from}:{}:", self.next_text).into_bytes();
        self.next_text += 1;
        plaintext.resize(plaintext.len().max(length), b'.');
        let framed = self.records[from].encrypt(&plaintext, &mut self.rng).expect("an established session encrypts");
        self.record_sent(from, plaintext, framed)
    }

    fn record_sent(&mut self, from: usize, plaintext: Vec<u8>, framed: Vec<u8>) -> usize {
        let (ratchet_key, counter) = match Framed::decode(&framed).expect("our own ciphertext decodes") {
            Framed::PreKey(message) => (message.message.ratchet_key, message.message.counter),
            Framed::Whisper(message) => (message.ratchet_key, message.counter),
        };
        self.sent.push(Sent { to: 1 - from, plaintext, framed, ratchet_key, counter, delivered: false });
        self.sent.len() - 1
    }

    /// Delivers real message `index` to its receiver and checks the model's prediction; returns
    /// the consumed one-time prekey on success.
    pub fn deliver_real(&mut self, index: usize) -> Option<u32> {
        let Sent { to, ratchet_key, counter, delivered, .. } = self.sent[index];
        let has_chain = self.known[to].contains(&ratchet_key);
        let must_open = !delivered && (has_chain || !self.seen[to].contains(&ratchet_key));
        let framed = self.sent[index].framed.clone();
        match self.deliver(to, &framed) {
            Ok((opened, consumed)) => {
                assert_eq!(opened, index, "a real message opens as itself");
                consumed
            }
            Err(error) => {
                assert!(!must_open, "real message {index} to side {to} failed on its first delivery: {error}");
                if delivered && has_chain {
                    assert_eq!(error, DecryptError::Duplicate { counter }, "a second delivery is a duplicate");
                }
                None
            }
        }
    }

    fn deliver_expecting(&mut self, to: usize, index: usize) -> Option<u32> {
        assert_eq!(self.sent[index].to, to);
        let consumed = self.deliver_real(index);
        assert!(self.sent[index].delivered, "message {index} was delivered");
        consumed
    }

    /// Delivers any bytes to side `to`. On success returns the index of the real message it
    /// opened and the consumed one-time prekey; checks the invariants of the [module docs](self).
    pub fn deliver(&mut self, to: usize, framed: &[u8]) -> Result<(usize, Option<u32>), DecryptError> {
        let before = self.records[to].to_bytes();
        let result = self.records[to].decrypt(framed, &self.parties[to], PQ, &mut self.rng);
        match result {
            Ok(decrypted) => {
                let index = self
                    .sent
                    .iter()
                    .position(|sent| sent.to == to && !sent.delivered && sent.plaintext == *decrypted.plaintext)
                    .unwrap_or_else(|| {
                        panic!("side {to} decrypted something that is not an undelivered message to it: {framed:02x?}")
                    });
                self.sent[index].delivered = true;
                let key = self.sent[index].ratchet_key;
                if !self.known[to].contains(&key) {
                    self.known[to].push(key);
                    self.seen[to].push(key);
                    if self.known[to].len() > MAX_RECEIVER_CHAINS {
                        self.known[to].remove(0);
                    }
                }
                Ok((index, decrypted.consumed_one_time_prekey))
            }
            Err(error) => {
                assert!(*self.records[to].to_bytes() == *before, "a failed decryption ({error}) changed the record");
                let _ = error.to_string();
                Err(error)
            }
        }
    }

    /// A fresh message each way still decrypts, and both records survive persistence.
    pub fn assert_still_converses(&mut self) {
        for from in [ALICE, BOB] {
            let index = self.send(from, 24);
            assert!(!self.sent[index].framed.is_empty());
            self.deliver_real(index);
            assert!(self.sent[index].delivered, "a fresh message from side {from} decrypts");
        }
        for record in &self.records {
            assert_eq!(SessionRecord::from_bytes(&record.to_bytes()).as_ref(), Ok(record), "a record reads back");
        }
    }
}

//! Two native parties talking: setup in both roles, ordering, duplicates, tampering.

use super::keys::KeyPair;
use super::kyber::KyberKeyPair;
use super::pq::PqRatchet;
use super::pqxdh::{LocalIdentity, PeerBundle};
use super::session::{DecryptError, PrekeySource, SessionRecord};
use rand::SeedableRng;
use std::collections::HashMap;

pub(crate) struct Party {
    pub identity: LocalIdentity,
    pub signed: (u32, KeyPair),
    pub kyber: (u32, KyberKeyPair),
    pub one_time: HashMap<u32, KeyPair>,
}

impl PrekeySource for Party {
    fn identity(&self) -> &LocalIdentity {
        &self.identity
    }
    fn signed_prekey(&self, id: u32) -> Option<&KeyPair> {
        (self.signed.0 == id).then_some(&self.signed.1)
    }
    fn kyber_prekey(&self, id: u32) -> Option<&KyberKeyPair> {
        (self.kyber.0 == id).then_some(&self.kyber.1)
    }
    fn one_time_prekey(&self, id: u32) -> Option<&KeyPair> {
        self.one_time.get(&id)
    }
}

impl Party {
    pub fn new(rng: &mut crate::Rng, registration_id: u32) -> Self {
        let mut one_time = HashMap::new();
        for id in 100..105 {
            one_time.insert(id, KeyPair::generate(rng));
        }
        Party {
            identity: LocalIdentity { key_pair: KeyPair::generate(rng), registration_id },
            signed: (7, KeyPair::generate(rng)),
            kyber: (7, KyberKeyPair::generate(rng)),
            one_time,
        }
    }

    pub fn bundle(&self, rng: &mut crate::Rng, one_time: Option<u32>) -> PeerBundle {
        let signed_public = self.signed.1.public().serialize();
        let kyber_public = self.kyber.1.public_serialized();
        PeerBundle {
            registration_id: self.identity.registration_id,
            device_id: 1,
            identity_key: self.identity.key_pair.public(),
            signed_prekey_id: self.signed.0,
            signed_prekey: self.signed.1.public(),
            signed_prekey_signature: self.identity.key_pair.sign(&signed_public, rng).to_vec(),
            kyber_prekey_id: self.kyber.0,
            kyber_prekey: kyber_public.clone(),
            kyber_prekey_signature: self.identity.key_pair.sign(&kyber_public, rng).to_vec(),
            one_time_prekey: one_time.map(|id| (id, self.one_time[&id].public())),
        }
    }
}

/// New sessions as the SDK makes them: SPQR version 1 required.
const PQ: super::pq::PqFactory = PqRatchet::spqr_required;

#[test]
fn a_conversation_with_setup_reordering_duplicates_and_tampering() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(21);
    let (alice, mut bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let (mut alice_record, mut bob_record) = (SessionRecord::new(), SessionRecord::new());
    alice_record.initiate(&alice.identity, &bob.bundle(rng, Some(101)), PQ, rng).unwrap();

    let first = alice_record.encrypt(b"hello", rng).unwrap();
    let second = alice_record.encrypt(b"again", rng).unwrap();
    assert_eq!((first[0], first[1], second[0]), (0x01, 0x44, 0x01), "PreKey messages until a reply");
    // Out of order, and the second message sets the session up.
    let decrypted = bob_record.decrypt(&second, &bob, PQ, rng).unwrap();
    assert_eq!((decrypted.plaintext.as_slice(), decrypted.consumed_one_time_prekey), (&b"again"[..], Some(101)));
    bob.one_time.remove(&101);
    let decrypted = bob_record.decrypt(&first, &bob, PQ, rng).unwrap();
    assert_eq!((decrypted.plaintext.as_slice(), decrypted.consumed_one_time_prekey), (&b"hello"[..], None));
    let before = bob_record.clone();
    assert_eq!(bob_record.decrypt(&first, &bob, PQ, rng).unwrap_err(), DecryptError::Duplicate { counter: 0 });
    assert_eq!(bob_record, before, "a duplicate changes nothing");

    let reply = bob_record.encrypt(b"hi alice", rng).unwrap();
    assert_eq!(reply[0], 0x02);
    assert_eq!(alice_record.decrypt(&reply, &alice, PQ, rng).unwrap().plaintext.as_slice(), b"hi alice");
    let after_reply = alice_record.encrypt(b"ordinary now", rng).unwrap();
    assert_eq!(after_reply[0], 0x02);

    for index in 0..after_reply.len() {
        let mut tampered = after_reply.clone();
        tampered[index] ^= 0x01;
        let before = bob_record.clone();
        assert!(bob_record.decrypt(&tampered, &bob, PQ, rng).is_err(), "byte {index}");
        assert_eq!(bob_record, before, "byte {index} left the record unchanged");
    }
    assert_eq!(bob_record.decrypt(&after_reply, &bob, PQ, rng).unwrap().plaintext.as_slice(), b"ordinary now");
}

fn reload(record: &SessionRecord) -> SessionRecord {
    let restored = SessionRecord::from_bytes(&record.to_bytes()).expect("a record reads back");
    assert_eq!(&restored, record, "serialization is lossless");
    restored
}

#[test]
fn random_interleavings_decrypt_exactly_once_across_restarts() {
    use rand::RngExt as _;
    let rng = &mut rand::rngs::StdRng::seed_from_u64(22);
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let (mut records, parties) = ([SessionRecord::new(), SessionRecord::new()], [&alice, &bob]);
    records[0].initiate(&alice.identity, &bob.bundle(rng, None), PQ, rng).unwrap();
    // Bob can only send once he has received.
    let first = records[0].encrypt(b"m-0-0", rng).unwrap();
    assert_eq!(records[1].decrypt(&first, &bob, PQ, rng).unwrap().plaintext.as_slice(), b"m-0-0");
    let mut in_flight: [Vec<(Vec<u8>, String, usize)>; 2] = [Vec::new(), Vec::new()];
    let mut delivered = 0;
    for step in 0..600 {
        let sender = rng.random_range(0..2usize);
        if rng.random_bool(0.55) {
            let text = format!("m-{sender}-{step}");
            let framed = records[sender].encrypt(text.as_bytes(), rng).unwrap();
            in_flight[sender].push((framed, text, step));
        }
        let receiver = 1 - sender;
        let queue = &mut in_flight[sender];
        if !queue.is_empty() && rng.random_bool(0.6) {
            // Reordered within a window, and never held back so long that the receiver has
            // dropped the message's chain (it keeps five).
            let pick = if step - queue[0].2 > 12 { 0 } else { rng.random_range(0..queue.len().min(8)) };
            let (framed, text, _) = queue.remove(pick);
            let got = records[receiver].decrypt(&framed, parties[receiver], PQ, rng).unwrap();
            assert_eq!(got.plaintext.as_slice(), text.as_bytes());
            delivered += 1;
            let before = records[receiver].clone();
            assert!(matches!(
                records[receiver].decrypt(&framed, parties[receiver], PQ, rng),
                Err(DecryptError::Duplicate { .. })
            ));
            assert_eq!(records[receiver], before);
        }
        if step % 50 == 0 {
            records = [reload(&records[0]), reload(&records[1])];
        }
    }
    assert!(delivered > 200, "{delivered}");
}

#[test]
fn corrupt_records_are_errors() {
    use super::record::RecordError;
    assert_eq!(SessionRecord::from_bytes(&[0xff, 0xff]), Err(RecordError::Decode));
    assert_eq!(SessionRecord::from_bytes(&[0x08, 0x02]), Err(RecordError::Version(2)));
    assert_eq!(SessionRecord::from_bytes(&[0x08, 0x01]), Ok(SessionRecord::new()));
    let rng = &mut rand::rngs::StdRng::seed_from_u64(23);
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let mut record = SessionRecord::new();
    record.initiate(&alice.identity, &bob.bundle(rng, None), PQ, rng).unwrap();
    let bytes = record.to_bytes();
    for cut in 0..bytes.len() {
        let _ = SessionRecord::from_bytes(&bytes[..cut]); // never panics
    }
}

#[test]
fn accounts_publish_converse_and_restart_from_their_changes() {
    use super::account::Account;
    use crate::store::E2eeSnapshot;
    use crate::wire::person::FetchedBundle;
    let rng = &mut rand::rngs::StdRng::seed_from_u64(24);
    let (mut agent_store, mut person_store) = (E2eeSnapshot::default(), E2eeSnapshot::default());
    let (mut agent, changes) = Account::load_or_create(&agent_store, PQ, rng).unwrap();
    assert!(changes.identity.is_some() && changes.prekey_counter.is_some());
    agent_store.apply(&changes);
    let (changes, bundle, one_time) = agent.publish(rng).unwrap();
    assert_eq!(changes.put_prekeys.len(), 52, "signed, Kyber and 50 one-time private halves first");
    agent_store.apply(&changes);
    let (mut person, changes) = Account::load_or_create(&person_store, PQ, rng).unwrap();
    person_store.apply(&changes);

    let chosen = &one_time.one_time_prekeys[3];
    let fetched =
        FetchedBundle { bundle, prekey_id: Some(chosen.prekey_id), prekey_public: Some(chosen.public_key.clone()) };
    let peer = PeerBundle::from_fetched(&fetched).unwrap();
    person_store.apply(&person.start_session("agent:a", &peer, rng).unwrap());
    let (framed, changes) = person.encrypt("agent:a", b"hello agent", rng).unwrap();
    person_store.apply(&changes);

    // The agent tries the device-scoped name first, then the conversation-scoped one.
    let names = ["human:p:c:device:d1", "human:p:c"];
    let (plaintext, name, changes) = agent.decrypt(&names, &framed, rng).unwrap();
    assert_eq!((plaintext.as_slice(), name.as_str()), (&b"hello agent"[..], "human:p:c:device:d1"));
    assert_eq!(changes.remove_prekeys, [(crate::store::PrekeyKind::OneTime, chosen.prekey_id)], "used once");
    agent_store.apply(&changes);

    // Restarted from its store, the agent continues the conversation.
    let (mut agent, changes) = Account::load_or_create(&agent_store, PQ, rng).unwrap();
    assert!(changes.is_empty(), "nothing new on a restart");
    let (reply, changes) = agent.encrypt(&name, b"hello person", rng).unwrap();
    agent_store.apply(&changes);
    let (plaintext, _, _) = person.decrypt(&["agent:a"], &reply, rng).unwrap();
    assert_eq!(plaintext.as_slice(), b"hello person");

    // A second person replaying the same PreKey message under another name is refused by its
    // base key, before the consumed one-time prekey is even looked for.
    let error = agent.decrypt(&["human:q:c"], &framed, rng).unwrap_err();
    assert_eq!(error, DecryptError::ReplayedFirstMessage);
    assert!(agent.decrypt(&["human:p:c:device:d1"], &[0x02, 0x44], rng).is_err());
}

mod properties {
    //! For arbitrary schedules: every message decrypts exactly once, whatever the order within
    //! a window; records survive serialization at every step; a flipped byte never decrypts and
    //! never changes the receiver.
    use super::*;
    use crate::e2ee::message::{FRAME_PREKEY, Framed};
    use crate::e2ee::ratchet::MAX_RECEIVER_CHAINS;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Action {
        /// Party 0 or 1 sends a message.
        Send(usize),
        /// The oldest-but-`skip` message in flight to party `to` is delivered.
        Deliver { to: usize, skip: usize },
        /// Deliver an already delivered message again.
        Replay(usize),
        /// Flip one byte of a message in flight and deliver that.
        Tamper { to: usize, byte: usize, bit: u8 },
        /// Reload both records from their bytes.
        Restart,
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            4 => (0..2usize).prop_map(Action::Send),
            4 => (0..2usize, 0..6usize).prop_map(|(to, skip)| Action::Deliver { to, skip }),
            1 => (0..2usize).prop_map(Action::Replay),
            1 => (0..2usize, any::<usize>(), 0..8u8).prop_map(|(to, byte, bit)| Action::Tamper { to, byte, bit }),
            1 => Just(Action::Restart),
        ]
    }

    /// Delivers a real message: it must decrypt to its plaintext, unless it was held back past
    /// the bound on kept receiving chains (`MAX_RECEIVER_CHAINS`, as libsignal): then its
    /// chain is gone, and it must fail leaving the record as it was. Returns whether it opened.
    fn deliver(
        record: &mut SessionRecord,
        party: &Party,
        framed: &[u8],
        text: &[u8],
        rng: &mut rand::rngs::StdRng,
    ) -> Result<bool, TestCaseError> {
        let before = record.clone();
        match record.decrypt(framed, party, PQ, rng) {
            Ok(got) => {
                prop_assert_eq!(got.plaintext.as_slice(), text);
                Ok(true)
            }
            Err(error) => {
                let message = match Framed::decode(framed).expect("a real message decodes") {
                    Framed::Whisper(message) => message,
                    Framed::PreKey(prekey) => prekey.message,
                };
                let kept = before
                    .current()
                    .is_some_and(|state| state.receivers.iter().any(|chain| chain.ratchet_key == message.ratchet_key));
                prop_assert!(!kept, "a message on a kept chain failed: {:?}", error);
                prop_assert_eq!(before.current().map(|state| state.receivers.len()), Some(MAX_RECEIVER_CHAINS));
                prop_assert_eq!(&*record, &before);
                Ok(false)
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn schedules_deliver_each_message_exactly_once(seed: u64, actions in proptest::collection::vec(action(), 1..120)) {
            let rng = &mut rand::rngs::StdRng::seed_from_u64(seed);
            let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
            let parties = [&alice, &bob];
            let mut records = [SessionRecord::new(), SessionRecord::new()];
            records[0].initiate(&alice.identity, &bob.bundle(rng, Some(100)), PQ, rng).unwrap();
            // Bob can write once he has read Alice's first message.
            let first = records[0].encrypt(b"0", rng).unwrap();
            records[1].decrypt(&first, &bob, PQ, rng).unwrap();
            let mut in_flight: [Vec<(Vec<u8>, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
            let mut delivered: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
            let mut counter = 0u32;
            for action in actions {
                match action {
                    Action::Send(from) => {
                        counter += 1;
                        let text = counter.to_be_bytes().to_vec();
                        let framed = records[from].encrypt(&text, rng).unwrap();
                        in_flight[1 - from].push((framed, text));
                    }
                    Action::Deliver { to, skip } => {
                        if in_flight[to].is_empty() { continue; }
                        let (framed, text) = in_flight[to].remove(skip.min(in_flight[to].len() - 1));
                        if deliver(&mut records[to], parties[to], &framed, &text, rng)? {
                            delivered[to].push(framed);
                        }
                    }
                    Action::Replay(to) => {
                        let Some(framed) = delivered[to].last() else { continue };
                        let before = records[to].clone();
                        let error = records[to].decrypt(framed, parties[to], PQ, rng).unwrap_err();
                        prop_assert!(matches!(error, DecryptError::Duplicate { .. }), "{:?}", error);
                        prop_assert_eq!(&records[to], &before);
                    }
                    Action::Tamper { to, byte, bit } => {
                        let Some((framed, text)) = in_flight[to].first().cloned() else { continue };
                        let mut tampered = framed.clone();
                        let index = byte % tampered.len();
                        tampered[index] ^= 1 << bit;
                        let before = records[to].clone();
                        match records[to].decrypt(&tampered, parties[to], PQ, rng) {
                            Err(_) => prop_assert_eq!(&records[to], &before),
                            // A PreKey message's setup fields (registration id, prekey ids of a
                            // session already set up) are not authenticated, in libsignal too:
                            // such a change still yields exactly the sender's plaintext, and
                            // the message counts as delivered.
                            Ok(got) => {
                                prop_assert_eq!(framed[0], FRAME_PREKEY);
                                prop_assert_eq!(got.plaintext.as_slice(), text.as_slice());
                                in_flight[to].remove(0);
                                delivered[to].push(framed);
                            }
                        }
                    }
                    Action::Restart => {
                        for record in &mut records {
                            let restored = SessionRecord::from_bytes(&record.to_bytes()).unwrap();
                            prop_assert_eq!(&restored, &*record);
                            *record = restored;
                        }
                    }
                }
            }
            // Whatever is still in flight arrives, in any order, exactly once (or, past the bound on
            // kept chains, fails without a trace).
            for to in 0..2 {
                while let Some((framed, text)) = in_flight[to].pop() {
                    deliver(&mut records[to], parties[to], &framed, &text, rng)?;
                }
            }
        }
    }
}

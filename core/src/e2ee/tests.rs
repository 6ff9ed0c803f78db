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

/// Two parties after Alice's first message and Bob's reply: each side has received a message,
/// so SPQR version 1 is negotiated on both.
fn established(
    rng: &mut rand::rngs::StdRng,
    alice_pq: super::pq::PqFactory,
    bob_pq: super::pq::PqFactory,
) -> (Party, Party, SessionRecord, SessionRecord) {
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let (mut alice_record, mut bob_record) = (SessionRecord::new(), SessionRecord::new());
    alice_record.initiate(&alice.identity, &bob.bundle(rng, None), alice_pq, rng).unwrap();
    let first = alice_record.encrypt(b"first", rng).unwrap();
    bob_record.decrypt(&first, &bob, bob_pq, rng).unwrap();
    let reply = bob_record.encrypt(b"reply", rng).unwrap();
    alice_record.decrypt(&reply, &alice, alice_pq, rng).unwrap();
    (alice, bob, alice_record, bob_record)
}

/// A message from `record`'s current session without SPQR: `field` as its post-quantum field
/// and no SPQR key in its keys. The session itself does not move on.
fn without_spqr(record: &SessionRecord, text: &[u8], field: Option<&[u8]>) -> Vec<u8> {
    record.current().unwrap().clone().encrypt_without_spqr(text, field)
}

/// The fields of a downgrade: absent, present but empty, version 0, and a version nobody
/// speaks yet (SPQR ignores those and gives no key, so they downgrade just the same).
const DOWNGRADES: [(Option<&[u8]>, super::pq::PqField); 4] = [
    (None, super::pq::PqField::Empty),
    (Some(&[]), super::pq::PqField::Empty),
    (Some(&[0, 1, 1, 0]), super::pq::PqField::Version(0)),
    (Some(&[2, 1, 1, 0]), super::pq::PqField::Version(2)),
];

/// Delivers `framed`, expects exactly `expected`, and checks the record did not change a byte.
fn refused(
    record: &mut SessionRecord,
    party: &Party,
    pq: super::pq::PqFactory,
    framed: &[u8],
    expected: DecryptError,
    rng: &mut rand::rngs::StdRng,
) {
    let before = record.to_bytes();
    assert_eq!(record.decrypt(framed, party, pq, rng).unwrap_err(), expected);
    assert!(*record.to_bytes() == *before, "a refused message changed the record");
}

fn pq_refused(error: super::pq::PqError) -> DecryptError {
    DecryptError::Failed(vec![super::ratchet::RatchetError::PostQuantum(error)])
}

#[test]
fn a_responder_refuses_a_first_message_without_spqr_and_keeps_nothing() {
    use super::pq::{PqError, PqRequirement};
    let rng = &mut rand::rngs::StdRng::seed_from_u64(30);
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let mut alice_record = SessionRecord::new();
    alice_record.initiate(&alice.identity, &bob.bundle(rng, Some(100)), PQ, rng).unwrap();
    let mut bob_record = SessionRecord::new();
    for (field, found) in DOWNGRADES {
        let framed = without_spqr(&alice_record, b"hello", field);
        assert_eq!(framed[0], super::message::FRAME_PREKEY);
        let expected = pq_refused(PqError::Downgrade { found, required: PqRequirement::Policy });
        refused(&mut bob_record, &bob, PQ, &framed, expected, rng);
        assert!(bob_record.is_empty(), "no session was set up");
    }
    // The genuine first message still sets the session up, with the one-time prekey unused.
    let framed = alice_record.encrypt(b"hello", rng).unwrap();
    let opened = bob_record.decrypt(&framed, &bob, PQ, rng).unwrap();
    assert_eq!((opened.plaintext.as_slice(), opened.consumed_one_time_prekey), (&b"hello"[..], Some(100)));
}

#[test]
fn after_negotiation_a_message_without_spqr_is_refused_in_both_roles() {
    use super::pq::{PqError, PqPolicy, PqRequirement};
    let rng = &mut rand::rngs::StdRng::seed_from_u64(31);
    // Under either policy: once the peer spoke version 1, it must go on speaking it.
    for policy in [PqPolicy::RequireSpqr, PqPolicy::AllowClassicalPeers] {
        let pq = policy.factory();
        let (alice, bob, mut alice_record, mut bob_record) = established(rng, pq, pq);
        for (field, found) in DOWNGRADES {
            let expected = pq_refused(PqError::Downgrade { found, required: PqRequirement::Negotiated });
            // Bob, the responder, from the initiator...
            let framed = without_spqr(&alice_record, b"downgraded", field);
            assert_eq!(framed[0], super::message::FRAME_WHISPER);
            refused(&mut bob_record, &bob, pq, &framed, expected.clone(), rng);
            // ... and Alice, the initiator, from the responder.
            let framed = without_spqr(&bob_record, b"downgraded", field);
            refused(&mut alice_record, &alice, pq, &framed, expected, rng);
        }
        // The sessions go on.
        let framed = alice_record.encrypt(b"still here", rng).unwrap();
        assert_eq!(bob_record.decrypt(&framed, &bob, pq, rng).unwrap().plaintext.as_slice(), b"still here");
        let framed = bob_record.encrypt(b"me too", rng).unwrap();
        assert_eq!(alice_record.decrypt(&framed, &alice, pq, rng).unwrap().plaintext.as_slice(), b"me too");
    }
}

#[test]
fn an_ordinary_message_whose_spqr_field_names_no_key_is_refused() {
    use super::pq::{PqError, PqPolicy};
    let rng = &mut rand::rngs::StdRng::seed_from_u64(36);
    // Epoch 1, key 0, no braid payload: a version-1 field that gives no key.
    let keyless: &[u8] = &[1, 1, 0, 0];
    for policy in [PqPolicy::RequireSpqr, PqPolicy::AllowClassicalPeers] {
        let pq = policy.factory();
        let (alice, bob, mut alice_record, mut bob_record) = established(rng, pq, pq);
        let expected = pq_refused(PqError::KeylessOrdinaryMessage);
        let framed = without_spqr(&alice_record, b"keyless", Some(keyless));
        refused(&mut bob_record, &bob, pq, &framed, expected.clone(), rng);
        let framed = without_spqr(&bob_record, b"keyless", Some(keyless));
        refused(&mut alice_record, &alice, pq, &framed, expected, rng);
    }

    // Such fields are what an initiator accepting peers without SPQR sends before it hears
    // back, in PreKey messages: a responder requiring SPQR still reads them, late ones too.
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let permissive = PqPolicy::AllowClassicalPeers.factory();
    let mut alice_record = SessionRecord::new();
    alice_record.initiate(&alice.identity, &bob.bundle(rng, None), permissive, rng).unwrap();
    let (first, second) = (alice_record.encrypt(b"first", rng).unwrap(), alice_record.encrypt(b"second", rng).unwrap());
    assert!(pacerelle_spqr::State::is_keyless(&whisper(&first).pq_ratchet));
    let mut bob_record = SessionRecord::new();
    assert_eq!(bob_record.decrypt(&first, &bob, PQ, rng).unwrap().plaintext.as_slice(), b"first");
    let reply = bob_record.encrypt(b"reply", rng).unwrap();
    assert_eq!(alice_record.decrypt(&reply, &alice, permissive, rng).unwrap().plaintext.as_slice(), b"reply");
    assert_eq!(bob_record.decrypt(&second, &bob, PQ, rng).unwrap().plaintext.as_slice(), b"second");
    let framed = alice_record.encrypt(b"keyed now", rng).unwrap();
    assert!(!pacerelle_spqr::State::is_keyless(&whisper(&framed).pq_ratchet));
    assert_eq!(bob_record.decrypt(&framed, &bob, PQ, rng).unwrap().plaintext.as_slice(), b"keyed now");
}

#[test]
fn the_permissive_policy_accepts_a_peer_without_spqr_before_negotiation() {
    use super::pq::{PqError, PqPolicy, PqRequirement};
    use pacerelle_spqr::{CurrentVersion, Version};
    let rng = &mut rand::rngs::StdRng::seed_from_u64(32);
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let permissive = PqPolicy::AllowClassicalPeers.factory();
    let mut alice_record = SessionRecord::new();
    alice_record.initiate(&alice.identity, &bob.bundle(rng, None), PqRatchet::version0_for, rng).unwrap();
    let first = alice_record.encrypt(b"no spqr here", rng).unwrap();
    let Ok(super::message::Framed::PreKey(message)) = super::message::Framed::decode(&first) else { panic!() };
    assert!(message.message.pq_ratchet.is_empty(), "a classical peer sends no SPQR field");

    // The default policy refuses it...
    let mut strict = SessionRecord::new();
    let expected = pq_refused(PqError::Downgrade { found: super::pq::PqField::Empty, required: PqRequirement::Policy });
    refused(&mut strict, &bob, PQ, &first, expected, rng);
    // ... the permissive one converses, and the session settles on version 0.
    let mut bob_record = SessionRecord::new();
    assert_eq!(bob_record.decrypt(&first, &bob, permissive, rng).unwrap().plaintext.as_slice(), b"no spqr here");
    let bob_pq = bob_record.current().unwrap().pq();
    assert_eq!(bob_pq.version(), CurrentVersion::NegotiationComplete(Version::V0));
    for round in 0..3 {
        let text = format!("reply {round}");
        let framed = bob_record.encrypt(text.as_bytes(), rng).unwrap();
        assert_eq!(
            alice_record.decrypt(&framed, &alice, PqRatchet::version0_for, rng).unwrap().plaintext.as_slice(),
            text.as_bytes()
        );
        let framed = alice_record.encrypt(text.as_bytes(), rng).unwrap();
        assert_eq!(bob_record.decrypt(&framed, &bob, permissive, rng).unwrap().plaintext.as_slice(), text.as_bytes());
    }
}

/// `(epoch, index)` of an SPQR version-1 field.
fn pq_position(field: &[u8]) -> (u64, u64) {
    let mut values = [0u64; 2];
    let mut at = 1;
    for value in &mut values {
        let mut shift = 0;
        loop {
            let byte = field[at];
            at += 1;
            *value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    (values[0], values[1])
}

/// An SPQR version-1 field naming key `index` of epoch `epoch`, with no braid payload.
fn pq_field(epoch: u64, index: u64) -> Vec<u8> {
    let mut out = vec![1];
    for mut value in [epoch, index] {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    out.push(0);
    out
}

/// An ordinary message nobody can MAC (a relay writing frames), as `framed` names.
fn forged_frame(ratchet_key: &super::keys::PublicKey, counter: u32, pq: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    use super::message::{FRAME_WHISPER, SignalMessage, SignalMessageParts, frame};
    let parts = SignalMessageParts { ratchet_key, counter, previous_counter: 0, ciphertext, pq_ratchet: pq };
    let nobody = KeyPair::from_private_bytes([9; 32]).public();
    frame(FRAME_WHISPER, SignalMessage::encode(&parts, &[7; 32], &nobody, &nobody))
}

fn whisper(framed: &[u8]) -> super::message::SignalMessage {
    match super::message::Framed::decode(framed).unwrap() {
        super::message::Framed::Whisper(message) => message,
        super::message::Framed::PreKey(prekey) => prekey.message,
    }
}

#[test]
fn a_message_too_far_ahead_is_refused_before_any_key_is_derived() {
    use super::ratchet::{MAX_FORWARD_JUMP, RatchetError};
    let rng = &mut rand::rngs::StdRng::seed_from_u64(33);
    let (_, bob, mut alice_record, mut bob_record) = established(rng, PQ, PQ);
    // As far ahead as allowed: accepted, and a lost one is still read late.
    let mut lost = Vec::new();
    for _ in 0..MAX_FORWARD_JUMP {
        lost.push(alice_record.encrypt(b"lost", rng).unwrap());
    }
    let framed = alice_record.encrypt(b"far", rng).unwrap();
    assert_eq!(bob_record.decrypt(&framed, &bob, PQ, rng).unwrap().plaintext.as_slice(), b"far");
    assert_eq!(bob_record.decrypt(&lost[0], &bob, PQ, rng).unwrap().plaintext.as_slice(), b"lost");
    // One more: refused.
    for _ in 0..=MAX_FORWARD_JUMP {
        alice_record.encrypt(b"lost", rng).unwrap();
    }
    let framed = alice_record.encrypt(b"too far", rng).unwrap();
    let counter = whisper(&framed).counter;
    let expected = DecryptError::Failed(vec![RatchetError::TooFarAhead { counter, jump: MAX_FORWARD_JUMP + 1 }]);
    refused(&mut bob_record, &bob, PQ, &framed, expected, rng);
}

#[test]
fn a_first_message_too_far_ahead_is_refused_before_session_setup() {
    use super::pq::{MAX_PQ_KEYS_PER_MESSAGE, PqError};
    use super::ratchet::RatchetError;
    use super::session::MAX_NEW_SESSION_JUMP;
    let rng = &mut rand::rngs::StdRng::seed_from_u64(34);
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let mut alice_record = SessionRecord::new();
    alice_record.initiate(&alice.identity, &bob.bundle(rng, Some(100)), PQ, rng).unwrap();
    let mut first_messages = Vec::new();
    for _ in 0..=MAX_NEW_SESSION_JUMP + 1 {
        first_messages.push(alice_record.encrypt(b"hello", rng).unwrap());
    }
    // One past the bound for a new session: refused before PQXDH...
    let late = &first_messages[MAX_NEW_SESSION_JUMP as usize + 1];
    let jump = MAX_NEW_SESSION_JUMP + 1;
    let expected = DecryptError::Failed(vec![RatchetError::TooFarAhead { counter: jump, jump }]);
    let mut bob_record = SessionRecord::new();
    refused(&mut bob_record, &bob, PQ, late, expected, rng);
    // ... and so is a first message whose SPQR key alone is past it.
    let message = whisper(&first_messages[0]);
    let (epoch, _) = pq_position(&message.pq_ratchet);
    let keys = MAX_NEW_SESSION_JUMP + 2;
    let Ok(super::message::Framed::PreKey(prekey)) = super::message::Framed::decode(&first_messages[0]) else {
        panic!("a PreKey message")
    };
    let inner = super::message::SignalMessage::encode(
        &super::message::SignalMessageParts {
            ratchet_key: &message.ratchet_key,
            counter: 0,
            previous_counter: 0,
            ciphertext: &message.ciphertext,
            pq_ratchet: &pq_field(epoch, u64::from(keys)),
        },
        &[7; 32],
        &prekey.identity_key,
        &bob.identity.key_pair.public(),
    );
    let parts = super::message::PreKeyParts {
        registration_id: prekey.registration_id,
        prekey_id: prekey.prekey_id,
        signed_prekey_id: prekey.signed_prekey_id,
        kyber_prekey_id: prekey.kyber_prekey_id,
        kyber_ciphertext: &prekey.kyber_ciphertext,
        base_key: &prekey.base_key,
        identity_key: &prekey.identity_key,
    };
    let framed =
        super::message::frame(super::message::FRAME_PREKEY, super::message::PreKeySignalMessage::encode(&parts, inner));
    let expected = pq_refused(PqError::TooFarAhead { keys, max: MAX_NEW_SESSION_JUMP + 1 });
    assert!(keys < MAX_PQ_KEYS_PER_MESSAGE, "held to the new-session bound, not the general one");
    refused(&mut bob_record, &bob, PQ, &framed, expected, rng);
    // At the bound: accepted, and the earlier first messages are read late.
    let at_bound = &first_messages[MAX_NEW_SESSION_JUMP as usize];
    assert_eq!(bob_record.decrypt(at_bound, &bob, PQ, rng).unwrap().plaintext.as_slice(), b"hello");
    assert_eq!(bob_record.decrypt(&first_messages[0], &bob, PQ, rng).unwrap().plaintext.as_slice(), b"hello");
}

#[test]
fn an_spqr_key_too_far_ahead_is_refused_before_any_key_is_derived() {
    use super::pq::{MAX_PQ_KEYS_PER_MESSAGE, PqError};
    let rng = &mut rand::rngs::StdRng::seed_from_u64(35);
    let (_, bob, mut alice_record, mut bob_record) = established(rng, PQ, PQ);
    // The next genuine message, with its SPQR index moved one key past what may be derived.
    let message = whisper(&alice_record.encrypt(b"next", rng).unwrap());
    let (epoch, index) = pq_position(&message.pq_ratchet);
    let last_received = index - 1;
    let keys = MAX_PQ_KEYS_PER_MESSAGE + 1;
    let field = pq_field(epoch, last_received + u64::from(keys));
    let framed = forged_frame(&message.ratchet_key, message.counter, &field, &message.ciphertext);
    let expected = pq_refused(PqError::TooFarAhead { keys, max: MAX_PQ_KEYS_PER_MESSAGE });
    refused(&mut bob_record, &bob, PQ, &framed, expected, rng);
}

/// Bob's record holding three sessions Alice started one after the other (so three states a
/// message with an unknown ratchet key may be tried in), and Alice's newest.
fn three_sessions(rng: &mut rand::rngs::StdRng) -> (Party, SessionRecord) {
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let mut bob_record = SessionRecord::new();
    for _ in 0..3 {
        let mut alice_record = SessionRecord::new();
        alice_record.initiate(&alice.identity, &bob.bundle(rng, None), PQ, rng).unwrap();
        bob_record.decrypt(&alice_record.encrypt(b"hi", rng).unwrap(), &bob, PQ, rng).unwrap();
    }
    assert_eq!(bob_record.previous.len(), 2);
    (bob, bob_record)
}

#[test]
fn a_message_is_tried_in_at_most_two_sessions() {
    use super::ratchet::RatchetError;
    use super::session::MAX_SESSIONS_TRIED;
    let rng = &mut rand::rngs::StdRng::seed_from_u64(36);
    let (bob, mut bob_record) = three_sessions(rng);
    // A ratchet key no session knows, counter 0, the SPQR key after the one each session has:
    // every session could turn its ratchet for it.
    let stranger = KeyPair::generate(rng).public();
    let framed = forged_frame(&stranger, 0, &pq_field(1, 2), &[0; 32]);
    let expected = DecryptError::Failed(vec![
        RatchetError::BadMac,
        RatchetError::BadMac,
        RatchetError::NotTried { tried: MAX_SESSIONS_TRIED },
    ]);
    refused(&mut bob_record, &bob, PQ, &framed, expected, rng);
}

#[test]
fn a_message_derives_at_most_its_key_budget_over_all_sessions() {
    use super::ratchet::{MAX_FORWARD_JUMP, RatchetError};
    use super::session::MAX_KEYS_PER_MESSAGE;
    let rng = &mut rand::rngs::StdRng::seed_from_u64(37);
    let (bob, mut bob_record) = three_sessions(rng);
    let stranger = KeyPair::generate(rng).public();
    // Each try: MAX_FORWARD_JUMP + 1 Double Ratchet keys and one SPQR key.
    let framed = forged_frame(&stranger, MAX_FORWARD_JUMP, &pq_field(1, 2), &[0; 32]);
    let keys = MAX_FORWARD_JUMP + 2;
    let over = RatchetError::KeysOverBudget { keys, left: MAX_KEYS_PER_MESSAGE - keys };
    let expected = DecryptError::Failed(vec![RatchetError::BadMac, over.clone(), over]);
    refused(&mut bob_record, &bob, PQ, &framed, expected, rng);
}

#[test]
fn a_message_is_authenticated_at_most_its_byte_budget_over_all_sessions() {
    use super::ratchet::RatchetError;
    use super::session::MAX_AUTHENTICATED_PER_MESSAGE;
    let rng = &mut rand::rngs::StdRng::seed_from_u64(38);
    let (bob, mut bob_record) = three_sessions(rng);
    let stranger = KeyPair::generate(rng).public();
    let framed = forged_frame(&stranger, 0, &pq_field(1, 2), &vec![0; 48 * 1024]);
    let bytes = whisper(&framed).authenticated_len();
    let over = RatchetError::BytesOverBudget { bytes, left: MAX_AUTHENTICATED_PER_MESSAGE - bytes };
    let expected = DecryptError::Failed(vec![RatchetError::BadMac, over.clone(), over]);
    refused(&mut bob_record, &bob, PQ, &framed, expected, rng);
}

#[test]
fn frames_and_plaintexts_past_the_size_cap_are_refused() {
    use super::message::{MAX_FRAMED_LEN, MessageError};
    use super::session::{EncryptError, MAX_PLAINTEXT_LEN};
    let rng = &mut rand::rngs::StdRng::seed_from_u64(39);
    let (alice, bob) = (Party::new(rng, 1), Party::new(rng, 2));
    let mut alice_record = SessionRecord::new();
    alice_record.initiate(&alice.identity, &bob.bundle(rng, Some(100)), PQ, rng).unwrap();
    let before = alice_record.to_bytes();
    let too_long = vec![b'a'; MAX_PLAINTEXT_LEN + 1];
    assert_eq!(alice_record.encrypt(&too_long, rng).unwrap_err(), EncryptError::TooLarge(MAX_PLAINTEXT_LEN + 1));
    assert!(*alice_record.to_bytes() == *before, "a refused plaintext changed the record");
    // The longest plaintext fits a frame, PreKey wrapping included, and opens.
    let longest = vec![b'a'; MAX_PLAINTEXT_LEN];
    let framed = alice_record.encrypt(&longest, rng).unwrap();
    assert!(framed.len() <= MAX_FRAMED_LEN, "{} bytes", framed.len());
    let mut bob_record = SessionRecord::new();
    assert_eq!(bob_record.decrypt(&framed, &bob, PQ, rng).unwrap().plaintext.as_slice(), longest.as_slice());
    let oversized = vec![0x02; MAX_FRAMED_LEN + 1];
    let expected = DecryptError::Malformed(MessageError::TooLarge(MAX_FRAMED_LEN + 1));
    refused(&mut bob_record, &bob, PQ, &oversized, expected, rng);
}

mod properties {
    //! For arbitrary schedules: every message decrypts exactly once, whatever the order within
    //! a window and however many before it were lost (schedules lose fewer than
    //! `MAX_FORWARD_JUMP`, so every skipped key stays within reach); records survive
    //! serialization at every step; a flipped byte never decrypts and never changes the receiver.
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
        /// Lose the oldest-but-`skip` message in flight to party `to`: later ones skip its key.
        Lose { to: usize, skip: usize },
        /// Reload both records from their bytes.
        Restart,
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            4 => (0..2usize).prop_map(Action::Send),
            4 => (0..2usize, 0..6usize).prop_map(|(to, skip)| Action::Deliver { to, skip }),
            1 => (0..2usize).prop_map(Action::Replay),
            1 => (0..2usize, any::<usize>(), 0..8u8).prop_map(|(to, byte, bit)| Action::Tamper { to, byte, bit }),
            1 => (0..2usize, 0..6usize).prop_map(|(to, skip)| Action::Lose { to, skip }),
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
                    Action::Lose { to, skip } => {
                        if in_flight[to].is_empty() { continue; }
                        in_flight[to].remove(skip.min(in_flight[to].len() - 1));
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

//! Our native Signal implementation (PQXDH, the Double Ratchet, SPQR) against the official
//! runtime, in-process: long conversations in both roles, with random interleaving of
//! directions, reordering within a window, duplicates that must be refused, and restarts of the
//! native side from its persisted state. Every plaintext must arrive exactly once.
//!
//! The SPQR experiment of issue 3, asserted: the runtime (libsignal with spqr 1.5.1) creates every
//! session with SPQR minimum version 1 and mixes an SPQR key into the message keys from the very
//! first message. A native peer without SPQR (version 0) cannot read the runtime's first message
//! (its MAC fails) and is refused outright as an initiator. With SPQR, it converses.

use pacerelle_conformance::peers::{NativePeer, peer_bundle, runtime};
use pacerelle_core::e2ee::message::{FRAME_PREKEY, FRAME_WHISPER, Framed};
use pacerelle_core::e2ee::pq::{PqPolicy, PqRatchet};
use pacerelle_core::e2ee::ratchet::RatchetError;
use pacerelle_core::e2ee::session::DecryptError;
use pacerelle_official_runtime::{RuntimeError, RuntimeStore};
use pacerelle_spqr::{CurrentVersion, Version};
use rand::{RngExt as _, SeedableRng};
use std::collections::VecDeque;

const NATIVE_NAME: &str = "agent:a";
const RUNTIME_NAME: &str = "human:p:c";

/// One end of a conversation.
enum End {
    Native(Box<NativePeer>),
    Runtime(RuntimeStore),
}

impl End {
    /// The name this end knows its peer by.
    fn peer_name(&self) -> &'static str {
        match self {
            End::Native(_) => RUNTIME_NAME,
            End::Runtime(_) => NATIVE_NAME,
        }
    }

    fn encrypt(&mut self, plaintext: &[u8], rng: &mut rand::rngs::StdRng) -> Vec<u8> {
        let peer = self.peer_name();
        match self {
            End::Native(native) => {
                let (framed, changes) = native.account.encrypt(peer, plaintext, rng).expect("native encrypts");
                native.commit(&changes);
                framed
            }
            End::Runtime(store) => {
                let framed = store.encrypt(peer, plaintext).expect("runtime encrypts");
                // Proof the runtime's side runs SPQR version 1, never downgraded: every message
                // it sends carries a version-1 SPQR field.
                let message = match Framed::decode(&framed).expect("the runtime's framing") {
                    Framed::PreKey(prekey) => prekey.message,
                    Framed::Whisper(message) => message,
                };
                assert_eq!(message.pq_ratchet.first(), Some(&1), "the runtime speaks SPQR version 1");
                framed
            }
        }
    }

    fn decrypt(&mut self, framed: &[u8], rng: &mut rand::rngs::StdRng) -> Result<Vec<u8>, String> {
        let peer = self.peer_name();
        match self {
            End::Native(native) => match native.account.decrypt(&[peer], framed, rng) {
                Ok((plaintext, _, changes)) => {
                    native.commit(&changes);
                    Ok(plaintext.to_vec())
                }
                Err(error) => Err(format!("native: {error}")),
            },
            End::Runtime(store) => store.decrypt(peer, framed).map(|p| p.to_vec()).map_err(|e| format!("runtime: {e}")),
        }
    }

    fn is_duplicate_refusal(&self, error: &str) -> bool {
        match self {
            End::Native(_) => error.starts_with("native: duplicate message"),
            // The runtime reports a replay as a Signal protocol error (-2).
            End::Runtime(_) => error == format!("runtime: {}", RuntimeError::Protocol),
        }
    }
}

struct Stats {
    delivered: usize,
    duplicates_refused: usize,
    restarts: usize,
    native_epoch: u64,
}

/// Runs `messages` messages between `ends[0]` (who spoke first, already delivered) and
/// `ends[1]`, in random directions, reordered within `window`, with a duplicate delivered now
/// and then and the native end restarted from its store every `restart_every` messages.
fn converse(
    ends: &mut [End; 2],
    messages: usize,
    window: usize,
    restart_every: usize,
    rng: &mut rand::rngs::StdRng,
) -> Stats {
    let mut in_flight: [VecDeque<(Vec<u8>, Vec<u8>)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut stats = Stats { delivered: 0, duplicates_refused: 0, restarts: 0, native_epoch: 0 };
    let mut sent = 0;
    while sent < messages || in_flight.iter().any(|queue| !queue.is_empty()) {
        // Bursts in one direction, then the other: SPQR epochs need both to talk.
        let from = rng.random_range(0..2usize);
        if sent < messages {
            for _ in 0..rng.random_range(1..4usize).min(messages - sent) {
                let plaintext = format!("message {sent} from {from}").into_bytes();
                let framed = ends[from].encrypt(&plaintext, rng);
                in_flight[1 - from].push_back((framed, plaintext));
                sent += 1;
                if sent % restart_every == 0 {
                    for end in ends.iter_mut() {
                        if let End::Native(native) = end {
                            native.restart(rng);
                            stats.restarts += 1;
                        }
                    }
                }
            }
        }
        for to in 0..2 {
            let deliveries = rng.random_range(0..=in_flight[to].len().min(4));
            for _ in 0..deliveries {
                let queue = &mut in_flight[to];
                // Reordered within the window: any of the oldest `window` messages may come next.
                let pick = rng.random_range(0..queue.len().min(window));
                let (framed, plaintext) = queue.remove(pick).expect("picked within the queue");
                let got = ends[to].decrypt(&framed, rng).unwrap_or_else(|error| panic!("message lost: {error}"));
                assert_eq!(got, plaintext);
                stats.delivered += 1;
                if rng.random_bool(0.02) {
                    let error = ends[to].decrypt(&framed, rng).expect_err("a duplicate must be refused");
                    assert!(ends[to].is_duplicate_refusal(&error), "{error}");
                    stats.duplicates_refused += 1;
                }
            }
        }
    }
    for end in ends.iter() {
        if let End::Native(native) = end {
            let record = native.account.session(end.peer_name()).expect("a session");
            let pq = record.current().expect("a current session").pq();
            assert_eq!(pq.version(), CurrentVersion::NegotiationComplete(Version::V1), "never downgraded");
            stats.native_epoch = pq.epoch();
        }
    }
    stats
}

/// 5,000 messages with restarts every 1,000; every one arrives exactly once and SPQR turns over
/// at least ten epochs.
fn long_conversation(ends: &mut [End; 2], rng: &mut rand::rngs::StdRng) {
    let stats = converse(ends, 5_000, 6, 1_000, rng);
    assert_eq!(stats.delivered, 5_000);
    assert!(stats.duplicates_refused > 0 && stats.restarts >= 3);
    assert!(stats.native_epoch >= 10, "SPQR epochs advanced: {}", stats.native_epoch);
    eprintln!(
        "delivered {}, duplicates refused {}, restarts {}, SPQR epoch {}",
        stats.delivered, stats.duplicates_refused, stats.restarts, stats.native_epoch
    );
}

#[test]
fn a_runtime_person_starts_and_converses_with_a_native_agent() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(41);
    let mut agent = NativePeer::new(PqPolicy::RequireSpqr.factory(), rng);
    let bundle = agent.publish_for_runtime(7, rng);
    let mut person = runtime().new_store(RUNTIME_NAME).unwrap();
    person.process_prekey_bundle(NATIVE_NAME, &bundle).unwrap();
    let mut ends = [End::Runtime(person), End::Native(Box::new(agent))];
    let first = ends[0].encrypt(b"hello agent", rng);
    assert_eq!(first[0], FRAME_PREKEY);
    assert_eq!(ends[1].decrypt(&first, rng).unwrap(), b"hello agent");
    let reply = ends[1].encrypt(b"hello person", rng);
    assert_eq!(reply[0], FRAME_WHISPER, "the responder never sends PreKey messages");
    assert_eq!(ends[0].decrypt(&reply, rng).unwrap(), b"hello person");

    long_conversation(&mut ends, rng);
}

#[test]
fn a_native_person_starts_and_converses_with_a_runtime_agent() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(42);
    let mut agent = runtime().new_store(NATIVE_NAME).unwrap();
    let bundle = agent.generate_prekey_bundle(3, 4, 4).unwrap();
    let mut person = NativePeer::new(PqPolicy::RequireSpqr.factory(), rng);
    let changes = person.account.start_session(RUNTIME_NAME, &peer_bundle(&bundle), rng).unwrap();
    person.commit(&changes);
    // The runtime store plays the agent here; it knows the native person as RUNTIME_NAME's peer.
    let mut ends = [End::Native(Box::new(person)), End::Runtime(agent)];
    let first = ends[0].encrypt(b"hello agent", rng);
    assert_eq!(first[0], FRAME_PREKEY);
    assert_eq!(ends[1].decrypt(&first, rng).unwrap(), b"hello agent");

    long_conversation(&mut ends, rng);
}

#[test]
fn a_peer_without_spqr_cannot_read_the_runtime_and_is_refused_by_it() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(31);
    let mut agent = NativePeer::new(PqRatchet::version0_for, rng);
    let bundle = agent.publish_for_runtime(0, rng);
    let mut person = runtime().new_store(RUNTIME_NAME).unwrap();
    person.process_prekey_bundle(NATIVE_NAME, &bundle).unwrap();
    let framed = person.encrypt(NATIVE_NAME, b"hello").unwrap();
    let Framed::PreKey(message) = Framed::decode(&framed).unwrap() else { panic!("a PreKey message") };
    assert_eq!(message.message.pq_ratchet.first(), Some(&1), "an SPQR version-1 message rides along");
    let before = agent.store.clone();
    let error = agent.account.decrypt(&[RUNTIME_NAME], &framed, rng).unwrap_err();
    assert_eq!(error, DecryptError::Failed(vec![RatchetError::BadMac]));
    assert_eq!(agent.store, before, "a failed decrypt commits nothing");

    let mut runtime_agent = runtime().new_store(NATIVE_NAME).unwrap();
    let bundle = runtime_agent.generate_prekey_bundle(3, 4, 4).unwrap();
    let mut classical = NativePeer::new(PqRatchet::version0_for, rng);
    let changes = classical.account.start_session(NATIVE_NAME, &peer_bundle(&bundle), rng).unwrap();
    classical.commit(&changes);
    let (framed, _) = classical.account.encrypt(NATIVE_NAME, b"hello", rng).unwrap();
    let Framed::PreKey(message) = Framed::decode(&framed).unwrap() else { panic!("a PreKey message") };
    assert!(message.message.pq_ratchet.is_empty(), "version 0 sends no SPQR field");
    assert!(matches!(runtime_agent.decrypt(RUNTIME_NAME, &framed), Err(RuntimeError::Protocol)));
}

#[test]
fn tampering_fails_without_breaking_the_session() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(43);
    let mut agent = NativePeer::new(PqPolicy::RequireSpqr.factory(), rng);
    let bundle = agent.publish_for_runtime(1, rng);
    let mut person = runtime().new_store(RUNTIME_NAME).unwrap();
    person.process_prekey_bundle(NATIVE_NAME, &bundle).unwrap();
    let mut ends = [End::Runtime(person), End::Native(Box::new(agent))];
    let first = ends[0].encrypt(b"hello", rng);
    ends[1].decrypt(&first, rng).unwrap();
    let reply = ends[1].encrypt(b"hi", rng);
    ends[0].decrypt(&reply, rng).unwrap();
    // Every byte of an ordinary runtime message, the SPQR chunk included, flipped in turn.
    let framed = ends[0].encrypt(b"the real one", rng);
    assert_eq!(framed[0], FRAME_WHISPER);
    let End::Native(native) = &ends[1] else { unreachable!() };
    let before = native.store.clone();
    for index in 0..framed.len() {
        let mut tampered = framed.clone();
        tampered[index] ^= 0x10;
        assert!(ends[1].decrypt(&tampered, rng).is_err(), "byte {index} accepted");
    }
    let End::Native(native) = &ends[1] else { unreachable!() };
    assert_eq!(native.store, before, "no failed attempt committed anything");
    assert_eq!(ends[1].decrypt(&framed, rng).unwrap(), b"the real one");
    let stats = converse(&mut ends, 100, 4, 50, rng);
    assert_eq!(stats.delivered, 100);
}

/// The post-quantum fields of a downgrade, by name: absent, present but empty, version 0, a
/// version nobody speaks yet, and version 1 naming no key (epoch 1, key 0).
const DOWNGRADES: [(&str, Option<&[u8]>); 5] = [
    ("absent", None),
    ("empty", Some(&[])),
    ("version 0", Some(&[0, 1, 1, 0])),
    ("version 2", Some(&[2, 1, 1, 0])),
    ("version 1 without key", Some(&[1, 1, 0, 0])),
];

/// A message from the native `peer`'s current session with `remote` carrying `field` as its
/// post-quantum field and no SPQR key in its keys: sealed with the classical keys alone, as a
/// peer without SPQR (or one forging a downgrade with those keys) would. The native session
/// does not move on.
fn without_spqr(peer: &NativePeer, remote: &str, field: Option<&[u8]>) -> Vec<u8> {
    let record = peer.account.session(remote).expect("a session");
    record.current().expect("a current session").clone().encrypt_without_spqr(b"downgraded", field)
}

/// A native party and a runtime store with a session in which the runtime receives from the
/// native side next: the runtime as responder before its first message (`negotiated` false),
/// or after SPQR version 1 is negotiated on both sides, as responder or as initiator. Returns
/// the native party, the runtime store and the name each knows the other by.
fn runtime_receiving(
    negotiated: bool,
    runtime_initiates: bool,
    rng: &mut rand::rngs::StdRng,
) -> (NativePeer, RuntimeStore, &'static str, &'static str) {
    let mut native = NativePeer::new(PqPolicy::RequireSpqr.factory(), rng);
    if runtime_initiates {
        let bundle = native.publish_for_runtime(2, rng);
        let mut store = runtime().new_store(RUNTIME_NAME).unwrap();
        store.process_prekey_bundle(NATIVE_NAME, &bundle).unwrap();
        let first = store.encrypt(NATIVE_NAME, b"hello").unwrap();
        native.account.decrypt(&[RUNTIME_NAME], &first, rng).unwrap();
        let (reply, _) = native.account.encrypt(RUNTIME_NAME, b"hi", rng).unwrap();
        store.decrypt(NATIVE_NAME, &reply).unwrap();
        let more = store.encrypt(NATIVE_NAME, b"more").unwrap();
        native.account.decrypt(&[RUNTIME_NAME], &more, rng).unwrap();
        return (native, store, RUNTIME_NAME, NATIVE_NAME);
    }
    let mut store = runtime().new_store(NATIVE_NAME).unwrap();
    let bundle = store.generate_prekey_bundle(3, 4, 4).unwrap();
    native.account.start_session(RUNTIME_NAME, &peer_bundle(&bundle), rng).unwrap();
    if negotiated {
        let (framed, _) = native.account.encrypt(RUNTIME_NAME, b"hello", rng).unwrap();
        store.decrypt(RUNTIME_NAME, &framed).unwrap();
        let reply = store.encrypt(RUNTIME_NAME, b"hi").unwrap();
        native.account.decrypt(&[RUNTIME_NAME], &reply, rng).unwrap();
    }
    (native, store, RUNTIME_NAME, RUNTIME_NAME)
}

/// Issue 9, no SPQR downgrade, checked against the runtime. Messages whose SPQR field gives no
/// key, sealed with the session's classical keys alone (no SPQR key mixed in), sent to the
/// runtime as responder to a first message, and after negotiation as responder and initiator.
/// The runtime refuses an absent, empty or version-0 field (`-2`) and its session goes on; but a
/// field naming a version it does not know (2), or version 1 with no key (epoch 1, key 0), gives
/// no key there either (as in spqr 1.5.1), and the message is accepted without any SPQR key: a
/// downgrade the native side refuses (`PqError::Downgrade`, and `KeylessOrdinaryMessage` in an
/// ordinary message; see `core/src/e2ee/tests.rs`).
#[test]
fn the_runtime_refuses_fields_below_version_1_but_reads_fields_without_a_key() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(44);
    for (negotiated, runtime_initiates) in [(false, false), (true, false), (true, true)] {
        for (name, field) in DOWNGRADES {
            let (mut native, mut store, native_names_runtime, runtime_names_native) =
                runtime_receiving(negotiated, runtime_initiates, rng);
            let role = format!("negotiated {negotiated}, runtime initiated {runtime_initiates}, field {name}");
            let framed = without_spqr(&native, native_names_runtime, field);
            let outcome = store.decrypt(runtime_names_native, &framed);
            let (genuine, _) = native.account.encrypt(native_names_runtime, b"genuine", rng).unwrap();
            let (next, _) = native.account.encrypt(native_names_runtime, b"next", rng).unwrap();
            if name == "version 2" || name == "version 1 without key" {
                assert_eq!(outcome.expect("read without SPQR").as_slice(), b"downgraded", "{role}");
                // The genuine message of the same counter is then a replay to the runtime.
                assert!(matches!(store.decrypt(runtime_names_native, &genuine), Err(RuntimeError::Protocol)), "{role}");
            } else {
                assert!(matches!(outcome, Err(RuntimeError::Protocol)), "{role}: {outcome:?}");
                let opened = store.decrypt(runtime_names_native, &genuine).expect("the session goes on");
                assert_eq!(opened.as_slice(), b"genuine", "{role}");
            }
            assert_eq!(store.decrypt(runtime_names_native, &next).unwrap().as_slice(), b"next", "{role}");
        }
    }
}

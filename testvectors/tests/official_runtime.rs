//! The official Signal runtime (`libsignalwrap.so` from `pacerelle` 0.1.0a8), driven in process
//! through `pacerelle-official-runtime`: two stores converse, out of order, across restarts, and
//! the runtime refuses what it must. These are the behaviours our native implementation has to
//! reproduce, and the peer it is tested against.
//!
//! Observed (and asserted below):
//! - Bundles: identity key 33 bytes (`0x05`), one-time and signed prekeys 33 bytes (`0x05`),
//!   signatures 64 bytes, Kyber prekey 1569 bytes (`0x08`), device id 1, the ids as given.
//! - Frames: the initiator's messages are `0x01` (PreKey, ~1.76 kB for a short text: they carry
//!   the Kyber ciphertext) until it has decrypted a reply, then `0x02`; the responder's are `0x02`
//!   from the first. PreKey messages may arrive in any order.
//! - Status codes: encrypting without a session, replaying a message (PreKey or ordinary),
//!   flipping a bit of the ciphertext's body or MAC, decrypting under the wrong sender name, a
//!   one-time prekey already used by another session, an unknown one-time prekey id, a changed
//!   bit in either bundle signature, the signed prekey or the identity key, a signature cut to 10
//!   bytes, and a new identity under a name that already has one: -2 (protocol error). Empty input, a lone frame byte, frame bytes
//!   `0x00`/`0x03`, the other valid frame byte on a real message, truncated messages and garbage:
//!   -3 (deserialize error). A bundle key of the wrong length or type: -4 (invalid input). No
//!   input tried made the runtime abort, and every refusal left the session usable.
//! - Snapshots: opaque (a fresh store's is 113 bytes, ~5.9 kB once it holds a Kyber prekey);
//!   importing garbage, an empty or a truncated snapshot returns null (our `Import` error). An
//!   imported store continues every conversation, including messages sent before the export. A
//!   store restored from an *older* snapshot decrypts a message again that the newer state had
//!   already consumed: replay protection lasts only as long as the state is saved after every
//!   decryption.
//! - Threads: separate stores of one loaded runtime work concurrently from several threads, and a
//!   store moved to another thread keeps working (the runtime has no thread-bound state).
//! - The Python binding (`agent_gateway_sdk._SignalStore`) and ours agree: each accepts the other's
//!   bundles and each decrypts what the other encrypted (the Python side across a snapshot).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_conformance::peers::runtime;
use pacerelle_official_runtime::{OfficialRuntime, PrekeyBundle, RuntimeError, RuntimeStore};
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;

const AGENT: &str = "agent:a";
const HUMAN: &str = "human:h:c";

/// An agent and a human store where the human has processed the agent's bundle (no message yet).
fn pair() -> (RuntimeStore, RuntimeStore, PrekeyBundle) {
    let runtime = runtime();
    let mut agent = runtime.new_store(AGENT).unwrap();
    let mut human = runtime.new_store(HUMAN).unwrap();
    let bundle = agent.generate_prekey_bundle(11, 22, 33).unwrap();
    human.process_prekey_bundle(AGENT, &bundle).unwrap();
    (agent, human, bundle)
}

/// A pair that has exchanged one message each way, so both sides send ordinary (`0x02`) messages.
fn conversing_pair() -> (RuntimeStore, RuntimeStore) {
    let (mut agent, mut human, _) = pair();
    exchange(&mut human, HUMAN, &mut agent, AGENT, b"hello agent");
    exchange(&mut agent, AGENT, &mut human, HUMAN, b"hello human");
    (agent, human)
}

/// Encrypts `plaintext` from `sender` to `receiver` and asserts it decrypts to the same bytes;
/// returns the framed ciphertext.
fn exchange(
    sender: &mut RuntimeStore,
    sender_name: &str,
    receiver: &mut RuntimeStore,
    receiver_name: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let framed = sender.encrypt(receiver_name, plaintext).unwrap();
    let decrypted = receiver.decrypt(sender_name, &framed).unwrap();
    assert_eq!(&decrypted[..], plaintext);
    framed
}

/// Both directions still work (after a refusal, an import, ...), and once the human has read a
/// reply both send ordinary (`0x02`) messages.
fn assert_still_converses(agent: &mut RuntimeStore, human: &mut RuntimeStore, tag: &str) {
    exchange(human, HUMAN, agent, AGENT, format!("{tag}: to the agent").as_bytes());
    let to_human = exchange(agent, AGENT, human, HUMAN, format!("{tag}: to the human").as_bytes());
    let to_agent = exchange(human, HUMAN, agent, AGENT, format!("{tag}: to the agent again").as_bytes());
    assert_eq!((to_human[0], to_agent[0]), (0x02, 0x02), "{tag}");
}

/// Whether an error is the one a case expects.
type Expected = fn(&RuntimeError) -> bool;

/// SplitMix64: a reproducible delivery order without depending on `rand`'s API.
struct Shuffler(u64);

impl Shuffler {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[test]
fn bundles_have_the_official_sizes_and_prekey_frames_last_until_the_first_reply() {
    let (mut agent, mut human, bundle) = pair();
    assert_eq!((bundle.prekey_id, bundle.signed_prekey_id, bundle.kyber_prekey_id), (11, 22, 33));
    assert_eq!(bundle.device_id, 1);
    assert_eq!((bundle.identity_key.len(), bundle.identity_key[0]), (33, 0x05));
    assert_eq!((bundle.prekey_public.len(), bundle.prekey_public[0]), (33, 0x05));
    assert_eq!((bundle.signed_prekey_public.len(), bundle.signed_prekey_public[0]), (33, 0x05));
    assert_eq!(bundle.signed_prekey_signature.len(), 64);
    assert_eq!((bundle.kyber_prekey_public.len(), bundle.kyber_prekey_public[0]), (1569, 0x08));
    assert_eq!(bundle.kyber_prekey_signature.len(), 64);
    // Two stores get different identities.
    let other = runtime().new_store("agent:b").unwrap().generate_prekey_bundle(11, 22, 33).unwrap();
    assert_ne!(other.identity_key, bundle.identity_key);

    // Until the agent replies, every message from the initiator is a PreKey message (0x01), and
    // the agent takes them in any order.
    let first: Vec<Vec<u8>> = (0..3).map(|n| human.encrypt(AGENT, format!("early {n}").as_bytes()).unwrap()).collect();
    assert!(first.iter().all(|framed| framed[0] == 0x01), "PreKey frames before any reply");
    assert!(first[0].len() > 1569, "a PreKey message carries the Kyber ciphertext: {}", first[0].len());
    for n in [2, 0, 1] {
        assert_eq!(&agent.decrypt(HUMAN, &first[n]).unwrap()[..], format!("early {n}").as_bytes());
    }
    // The responder's messages are ordinary from the start.
    let reply = agent.encrypt(HUMAN, b"reply").unwrap();
    assert_eq!(reply[0], 0x02);
    // Sent before the reply was read: still PreKey.
    let before_reading = human.encrypt(AGENT, b"before reading").unwrap();
    assert_eq!(before_reading[0], 0x01);
    assert_eq!(&human.decrypt(AGENT, &reply).unwrap()[..], b"reply");
    let after_reading = human.encrypt(AGENT, b"after reading").unwrap();
    assert_eq!(after_reading[0], 0x02, "ordinary frames once a reply was decrypted");
    assert_eq!(&agent.decrypt(HUMAN, &after_reading).unwrap()[..], b"after reading");
    assert_eq!(&agent.decrypt(HUMAN, &before_reading).unwrap()[..], b"before reading");

    // Empty and large plaintexts round-trip.
    exchange(&mut human, HUMAN, &mut agent, AGENT, b"");
    exchange(&mut agent, AGENT, &mut human, HUMAN, &vec![0xa5; 256 * 1024]);
}

#[test]
fn two_hundred_messages_each_way_out_of_order() {
    let (mut agent, mut human, _) = pair();
    let mut shuffler = Shuffler(0x5eed);
    // Each round, each side sends a batch of 10 delivered in a shuffled order, except one message
    // held back and delivered only in the next round, after both ratchets have moved on.
    let mut held: [Option<(String, Vec<u8>)>; 2] = [None, None];
    let mut delivered = [0; 2];
    for round in 0..20 {
        for direction in 0..2 {
            let (sender, sender_name, receiver, receiver_name) = if direction == 0 {
                (&mut human, HUMAN, &mut agent, AGENT)
            } else {
                (&mut agent, AGENT, &mut human, HUMAN)
            };
            let mut batch: Vec<(String, Vec<u8>)> = (0..10)
                .map(|n| {
                    let text = format!("{sender_name} -> {receiver_name}: round {round} message {n}");
                    let framed = sender.encrypt(receiver_name, text.as_bytes()).unwrap();
                    // PreKey frames until the human has decrypted the agent's first batch.
                    let expected_frame = if direction == 0 && round == 0 { 0x01 } else { 0x02 };
                    assert_eq!(framed[0], expected_frame, "{text}");
                    (text, framed)
                })
                .collect();
            shuffler.shuffle(&mut batch);
            let late = held[direction].replace(batch.pop().unwrap());
            batch.extend(late);
            for (text, framed) in &batch {
                let plaintext = receiver.decrypt(sender_name, framed).unwrap_or_else(|error| panic!("{text}: {error}"));
                assert_eq!(&plaintext[..], text.as_bytes());
            }
            delivered[direction] += batch.len();
        }
    }
    for (direction, late) in held.into_iter().enumerate() {
        let (text, framed) = late.unwrap();
        let (receiver, sender_name) = if direction == 0 { (&mut agent, HUMAN) } else { (&mut human, AGENT) };
        assert_eq!(&receiver.decrypt(sender_name, &framed).unwrap()[..], text.as_bytes());
        delivered[direction] += 1;
    }
    assert_eq!(delivered, [200, 200]);
}

#[test]
fn a_replayed_message_is_refused_and_the_session_survives() {
    let (mut agent, mut human, _) = pair();
    // A PreKey message, replayed.
    let prekey_message = exchange(&mut human, HUMAN, &mut agent, AGENT, b"once");
    assert_eq!(prekey_message[0], 0x01);
    assert!(matches!(agent.decrypt(HUMAN, &prekey_message), Err(RuntimeError::Protocol)));
    // Ordinary messages, replayed in both directions (one of them after later messages).
    let to_human = exchange(&mut agent, AGENT, &mut human, HUMAN, b"reply once");
    let to_agent = exchange(&mut human, HUMAN, &mut agent, AGENT, b"ordinary once");
    assert_eq!((to_human[0], to_agent[0]), (0x02, 0x02));
    assert!(matches!(human.decrypt(AGENT, &to_human), Err(RuntimeError::Protocol)));
    assert!(matches!(agent.decrypt(HUMAN, &to_agent), Err(RuntimeError::Protocol)));
    assert_still_converses(&mut agent, &mut human, "after replays");
    assert!(matches!(agent.decrypt(HUMAN, &to_agent), Err(RuntimeError::Protocol)));
    assert!(matches!(agent.decrypt(HUMAN, &prekey_message), Err(RuntimeError::Protocol)));
    assert_still_converses(&mut agent, &mut human, "after late replays");
}

#[test]
fn malformed_ciphertexts_get_mapped_errors_and_the_session_survives() {
    let (mut agent, mut human) = conversing_pair();
    let message = human.encrypt(AGENT, b"the real one").unwrap();
    let with = |change: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = message.clone();
        change(&mut bytes);
        bytes
    };
    let garbage = |frame: u8| {
        let mut bytes = vec![frame];
        bytes.extend((0..200u32).map(|n| (n.wrapping_mul(37) + 11) as u8));
        bytes
    };
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        ("empty", vec![], |e| matches!(e, RuntimeError::Deserialize)),
        ("a lone 0x01", vec![0x01], |e| matches!(e, RuntimeError::Deserialize)),
        ("a lone 0x02", vec![0x02], |e| matches!(e, RuntimeError::Deserialize)),
        ("garbage framed 0x01", garbage(0x01), |e| matches!(e, RuntimeError::Deserialize)),
        ("garbage framed 0x02", garbage(0x02), |e| matches!(e, RuntimeError::Deserialize)),
        ("frame byte 0x00", with(&|m| m[0] = 0x00), |e| matches!(e, RuntimeError::Deserialize)),
        ("frame byte 0x03", with(&|m| m[0] = 0x03), |e| matches!(e, RuntimeError::Deserialize)),
        ("frame byte 0x01 on an ordinary message", with(&|m| m[0] = 0x01), |e| matches!(e, RuntimeError::Deserialize)),
        ("truncated by 10 bytes", with(&|m| m.truncate(m.len() - 10)), |e| matches!(e, RuntimeError::Deserialize)),
        ("truncated to half", with(&|m| m.truncate(m.len() / 2)), |e| matches!(e, RuntimeError::Deserialize)),
        ("last byte (MAC) flipped", with(&|m| *m.last_mut().unwrap() ^= 0x01), |e| matches!(e, RuntimeError::Protocol)),
        (
            "a body byte flipped",
            with(&|m| {
                let at = m.len() - 12;
                m[at] ^= 0x40;
            }),
            |e| matches!(e, RuntimeError::Protocol),
        ),
    ];
    for (label, input, expected) in &cases {
        let error = agent.decrypt(HUMAN, input).map(|_| ()).expect_err(label);
        assert!(expected(&error), "{label}: {error:?}");
    }
    // Under the wrong sender name: no session with that name.
    assert!(matches!(agent.decrypt("human:someone-else:c", &message), Err(RuntimeError::Protocol)));
    // A PreKey message taken apart the same ways.
    let (mut fresh_agent, mut fresh_human, _) = pair();
    let prekey_message = fresh_human.encrypt(AGENT, b"first").unwrap();
    for (label, input) in [
        ("frame byte 0x02 on a PreKey message", {
            let mut bytes = prekey_message.clone();
            bytes[0] = 0x02;
            bytes
        }),
        ("a truncated PreKey message", prekey_message[..prekey_message.len() - 10].to_vec()),
    ] {
        assert!(matches!(fresh_agent.decrypt(HUMAN, &input), Err(RuntimeError::Deserialize)), "{label}");
    }
    assert_eq!(&fresh_agent.decrypt(HUMAN, &prekey_message).unwrap()[..], b"first");

    // Nothing above disturbed either session.
    assert_eq!(&agent.decrypt(HUMAN, &message).unwrap()[..], b"the real one");
    assert_still_converses(&mut agent, &mut human, "after malformed input");
    assert_still_converses(&mut fresh_agent, &mut fresh_human, "after malformed PreKey input");
}

#[test]
fn export_then_import_continues_the_conversation_both_ways() {
    let (mut agent, mut human) = conversing_pair();
    // In flight across the restart, both ways.
    let in_flight_to_agent = human.encrypt(AGENT, b"sent before the agent restarted").unwrap();
    let in_flight_to_human = agent.encrypt(HUMAN, b"sent before the human restarted").unwrap();
    let agent_snapshot = agent.export().unwrap();
    let human_snapshot = human.export().unwrap();
    assert!(agent_snapshot.len() > 1569, "the snapshot holds the Kyber prekey: {}", agent_snapshot.len());
    drop((agent, human));

    let runtime = runtime();
    let mut agent = runtime.import_store(AGENT, &agent_snapshot).unwrap();
    let mut human = runtime.import_store(HUMAN, &human_snapshot).unwrap();
    assert_eq!(agent.local_name(), AGENT);
    assert_eq!(&agent.decrypt(HUMAN, &in_flight_to_agent).unwrap()[..], b"sent before the agent restarted");
    assert_eq!(&human.decrypt(AGENT, &in_flight_to_human).unwrap()[..], b"sent before the human restarted");
    assert_still_converses(&mut agent, &mut human, "after import");
    for n in 0..20 {
        exchange(&mut human, HUMAN, &mut agent, AGENT, format!("after import {n}").as_bytes());
        exchange(&mut agent, AGENT, &mut human, HUMAN, format!("answer {n}").as_bytes());
    }
    // The replay defence survived the restart.
    assert!(matches!(agent.decrypt(HUMAN, &in_flight_to_agent), Err(RuntimeError::Protocol)));

    // An older snapshot rolls the state back: the message it had not yet seen decrypts again.
    let before = agent.export().unwrap();
    let message = exchange(&mut human, HUMAN, &mut agent, AGENT, b"consumed after the snapshot");
    let mut rolled_back = runtime.import_store(AGENT, &before).unwrap();
    assert_eq!(&rolled_back.decrypt(HUMAN, &message).unwrap()[..], b"consumed after the snapshot");

    // Snapshots the runtime did not make are refused.
    assert!(matches!(runtime.import_store(AGENT, b""), Err(RuntimeError::Import)));
    assert!(matches!(runtime.import_store(AGENT, b"not a snapshot"), Err(RuntimeError::Import)));
    assert!(matches!(runtime.import_store(AGENT, &before[..before.len() / 2]), Err(RuntimeError::Import)));
    // A fresh store exports and imports too.
    let empty = runtime.new_store("agent:fresh").unwrap().export().unwrap();
    assert!(!empty.is_empty());
    runtime.import_store("agent:fresh", &empty).unwrap();
}

#[test]
fn bad_bundles_are_refused_by_process_prekey_bundle() {
    let runtime = runtime();
    let mut agent = runtime.new_store(AGENT).unwrap();
    let bundle = agent.generate_prekey_bundle(1, 2, 3).unwrap();
    let mut human = runtime.new_store(HUMAN).unwrap();

    let mut cases: Vec<(String, PrekeyBundle, Expected)> = Vec::new();
    for (index, flip) in [(0usize, 0x01u8), (31, 0x10), (63, 0x80)] {
        let mut bad = bundle.clone();
        bad.signed_prekey_signature[index] ^= flip;
        cases.push((format!("signed-prekey signature byte {index}"), bad, |e| matches!(e, RuntimeError::Protocol)));
        let mut bad = bundle.clone();
        bad.kyber_prekey_signature[index] ^= flip;
        cases.push((format!("Kyber signature byte {index}"), bad, |e| matches!(e, RuntimeError::Protocol)));
    }
    let mut bad = bundle.clone();
    bad.identity_key[7] ^= 0x02;
    cases.push(("another identity key".into(), bad, |e| matches!(e, RuntimeError::Protocol)));
    let mut bad = bundle.clone();
    bad.signed_prekey_public[9] ^= 0x04;
    cases.push(("a changed signed prekey".into(), bad, |e| matches!(e, RuntimeError::Protocol)));
    let mut bad = bundle.clone();
    bad.signed_prekey_signature.truncate(10);
    cases.push(("a short signature".into(), bad, |e| matches!(e, RuntimeError::Protocol)));
    let mut bad = bundle.clone();
    bad.identity_key.clear();
    cases.push(("an empty identity key".into(), bad, |e| matches!(e, RuntimeError::InvalidInput)));
    let mut bad = bundle.clone();
    bad.kyber_prekey_public.truncate(100);
    cases.push(("a short Kyber key".into(), bad, |e| matches!(e, RuntimeError::InvalidInput)));
    let mut bad = bundle.clone();
    bad.prekey_public[0] = 0x07;
    cases.push(("an unknown key type".into(), bad, |e| matches!(e, RuntimeError::InvalidInput)));
    for (label, bad, expected) in &cases {
        let error = human.process_prekey_bundle(AGENT, bad).expect_err(label);
        assert!(expected(&error), "{label}: {error:?}");
        assert!(matches!(human.encrypt(AGENT, b"x"), Err(RuntimeError::Protocol)), "{label}: no session was made");
    }

    // The refusals changed nothing: the real bundle starts a working session.
    human.process_prekey_bundle(AGENT, &bundle).unwrap();
    assert_eq!(exchange(&mut human, HUMAN, &mut agent, AGENT, b"after refusals")[0], 0x01);
    assert_still_converses(&mut agent, &mut human, "after bad bundles");

    // The store remembers the agent's identity: another identity under the same name is refused.
    let impostor = runtime.new_store(AGENT).unwrap().generate_prekey_bundle(1, 2, 3).unwrap();
    assert!(matches!(human.process_prekey_bundle(AGENT, &impostor), Err(RuntimeError::Protocol)));
    // One-time prekeys are single-use: a second person using the same bundle gets a session the
    // agent cannot accept, and an unknown one-time prekey id is refused the same way.
    for (name, prekey_id) in [("human:second:c", bundle.prekey_id), ("human:third:c", 99)] {
        let mut other = runtime.new_store(name).unwrap();
        other.process_prekey_bundle(AGENT, &PrekeyBundle { prekey_id, ..bundle.clone() }).unwrap();
        let framed = other.encrypt(AGENT, b"too late").unwrap();
        assert!(matches!(agent.decrypt(name, &framed), Err(RuntimeError::Protocol)), "{name}");
    }
}

#[test]
fn encrypting_without_a_session_and_invalid_names_are_errors() {
    let runtime = runtime();
    let mut store = runtime.new_store(HUMAN).unwrap();
    assert!(matches!(store.encrypt(AGENT, b"x"), Err(RuntimeError::Protocol)));
    assert!(matches!(store.decrypt(AGENT, &[0x02, 1, 2, 3]), Err(RuntimeError::Deserialize)));

    let invalid = |result: Result<(), RuntimeError>, role: &str| {
        assert!(matches!(&result, Err(RuntimeError::InvalidName { role: r, .. }) if *r == role), "{role}: {result:?}");
    };
    for name in ["", "agent:a\0b", "\0"] {
        invalid(runtime.new_store(name).map(|_| ()), "local");
        invalid(runtime.import_store(name, b"snapshot").map(|_| ()), "local");
        invalid(store.encrypt(name, b"x").map(|_| ()), "remote");
        invalid(store.decrypt(name, &[0x02]).map(|_| ()), "remote");
    }
    let (mut agent, mut human, bundle) = pair();
    invalid(human.process_prekey_bundle("agent:\0a", &bundle), "remote");
    let error = runtime.new_store("agent:a\0b").unwrap_err().to_string();
    assert_eq!(error, r#"invalid local name "agent:a\0b": it contains a NUL byte"#);
    // Names are arbitrary text otherwise.
    runtime.new_store("agent:ünïcödé 🙂").unwrap();
    exchange(&mut human, HUMAN, &mut agent, AGENT, b"names checked");
}

#[test]
fn loading_fails_clearly() {
    let missing = std::env::temp_dir().join("pacerelle-no-such-dir").join("libsignalwrap.so");
    let error = OfficialRuntime::load(&missing).unwrap_err();
    assert!(matches!(&error, RuntimeError::Load { path, .. } if *path == missing), "{error:?}");
    assert!(error.to_string().contains("cannot load the Signal runtime"), "{error}");

    // A file that is not a library.
    let not_a_library = pacerelle_conformance::vectors_dir().join("Cargo.toml");
    assert!(matches!(OfficialRuntime::load(&not_a_library), Err(RuntimeError::Load { .. })));

    // A real library that is not the runtime (the C library every Linux process has loaded).
    let error = OfficialRuntime::load("libc.so.6").unwrap_err();
    assert!(matches!(&error, RuntimeError::MissingSymbol { symbol: "signal_store_new", .. }), "{error:?}");
}

#[test]
fn stores_work_from_several_threads() {
    let runtime = runtime();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let runtime = Arc::clone(&runtime);
            scope.spawn(move || {
                let agent_name = format!("agent:thread-{thread}");
                let human_name = format!("human:thread-{thread}:c");
                let mut agent = runtime.new_store(&agent_name).unwrap();
                let mut human = runtime.new_store(&human_name).unwrap();
                let bundle = agent.generate_prekey_bundle(thread, thread, thread).unwrap();
                human.process_prekey_bundle(&agent_name, &bundle).unwrap();
                for n in 0..50 {
                    exchange(&mut human, &human_name, &mut agent, &agent_name, format!("{thread}/{n}").as_bytes());
                    exchange(&mut agent, &agent_name, &mut human, &human_name, format!("{thread}\\{n}").as_bytes());
                }
            });
        }
    });
    // A store moved to another thread keeps its sessions.
    let (agent, mut human) = conversing_pair();
    let framed = human.encrypt(AGENT, b"to another thread").unwrap();
    let agent = std::thread::spawn(move || {
        let mut agent = agent;
        assert_eq!(&agent.decrypt(HUMAN, &framed).unwrap()[..], b"to another thread");
        agent
    })
    .join()
    .unwrap();
    let mut agent = agent;
    assert_still_converses(&mut agent, &mut human, "after moving threads");
}

/// The official Python binding's side of the cross-check, as a `person` store named
/// `human:py:c` talking to `agent:rust`. Modes (JSON on stdin):
/// - `accept`: process `bundle`, encrypt `plaintext`; returns the framed message and a snapshot;
/// - `decrypt`: restore `snapshot`, decrypt `framed`; returns the plaintext.
const PYTHON_PEER: &str = r#"
import base64, json, sys
from agent_gateway_sdk import SignalPreKeyBundle, _SignalStore

request = json.load(sys.stdin)
b64 = lambda data: base64.b64encode(data).decode()
try:
    if request["mode"] == "accept":
        store = _SignalStore("human:py:c")
        store.process_prekey_bundle("agent:rust", SignalPreKeyBundle(**request["bundle"]))
        framed = store.encrypt("agent:rust", base64.b64decode(request["plaintext"]))
        result = {"ok": True, "framed": b64(framed), "snapshot": b64(store.export_bytes())}
    else:
        store = _SignalStore.from_snapshot("human:py:c", base64.b64decode(request["snapshot"]))
        plaintext = store.decrypt("agent:rust", base64.b64decode(request["framed"]))
        result = {"ok": True, "plaintext": b64(plaintext)}
    store.close()
except Exception as error:  # the runtime's refusal is the answer
    result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
json.dump(result, sys.stdout)
"#;

fn python_peer(request: &Value) -> Value {
    let mut child = pacerelle_conformance::python()
        .args(["-c", PYTHON_PEER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the Python peer ran: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The official SDK's JSON shape of a bundle (`SignalPreKeyBundle`, keys in base64).
fn bundle_json(bundle: &PrekeyBundle) -> Value {
    json!({
        "registration_id": bundle.registration_id, "device_id": bundle.device_id,
        "identity_key": STANDARD.encode(&bundle.identity_key),
        "signed_prekey_id": bundle.signed_prekey_id,
        "signed_prekey_public": STANDARD.encode(&bundle.signed_prekey_public),
        "signed_prekey_signature": STANDARD.encode(&bundle.signed_prekey_signature),
        "kyber_prekey_id": bundle.kyber_prekey_id,
        "kyber_prekey_public": STANDARD.encode(&bundle.kyber_prekey_public),
        "kyber_prekey_signature": STANDARD.encode(&bundle.kyber_prekey_signature),
        "prekey_id": bundle.prekey_id, "prekey_public": STANDARD.encode(&bundle.prekey_public),
    })
}

fn bytes(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().expect("base64 text")).expect("base64")
}

#[test]
fn the_python_binding_and_ours_agree() {
    let runtime = runtime();
    let mut agent = runtime.new_store("agent:rust").unwrap();
    let bundle = agent.generate_prekey_bundle(7, 8, 9).unwrap();

    // A bundle read through our wrapper is taken whole by the Python binding, which starts a
    // session and encrypts to us.
    let accepted = python_peer(&json!({
        "mode": "accept", "bundle": bundle_json(&bundle), "plaintext": STANDARD.encode("from Python"),
    }));
    assert_eq!(accepted["ok"], true, "{accepted}");
    let framed = bytes(&accepted["framed"]);
    assert_eq!(framed[0], 0x01);
    assert_eq!(&agent.decrypt("human:py:c", &framed).unwrap()[..], b"from Python");

    // Our reply, decrypted by the Python binding from its snapshot.
    let reply = agent.encrypt("human:py:c", b"from Rust").unwrap();
    let decrypted = python_peer(&json!({
        "mode": "decrypt", "snapshot": accepted["snapshot"], "framed": STANDARD.encode(&reply),
    }));
    assert_eq!(decrypted["ok"], true, "{decrypted}");
    assert_eq!(bytes(&decrypted["plaintext"]), b"from Rust");

    // Both refuse a changed signature with the same status.
    let mut bad = bundle.clone();
    bad.kyber_prekey_signature[20] ^= 0x08;
    let refused = python_peer(&json!({ "mode": "accept", "bundle": bundle_json(&bad), "plaintext": "" }));
    assert_eq!(refused["error"], "SignalRuntimeError: Signal protocol error", "{refused}");
    let mut ours = runtime.new_store("human:rust:c").unwrap();
    assert!(matches!(ours.process_prekey_bundle("agent:rust", &bad), Err(RuntimeError::Protocol)));

    // A bundle the Python binding made, processed through ours.
    let script = pacerelle_conformance::vectors_dir().join("oracle").join("runtime_signatures.py");
    let output = pacerelle_conformance::python().arg(script).args(["generate", "1"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let made_in_python: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let fields = &made_in_python[0];
    let id = |key: &str| u32::try_from(fields[key].as_u64().unwrap()).unwrap();
    let python_bundle = PrekeyBundle {
        registration_id: id("registration_id"),
        device_id: id("device_id"),
        prekey_id: id("prekey_id"),
        prekey_public: bytes(&fields["prekey_public"]),
        signed_prekey_id: id("signed_prekey_id"),
        signed_prekey_public: bytes(&fields["signed_prekey_public"]),
        signed_prekey_signature: bytes(&fields["signed_prekey_signature"]),
        kyber_prekey_id: id("kyber_prekey_id"),
        kyber_prekey_public: bytes(&fields["kyber_prekey_public"]),
        kyber_prekey_signature: bytes(&fields["kyber_prekey_signature"]),
        identity_key: bytes(&fields["identity_key"]),
    };
    assert_eq!(bundle_json(&python_bundle), *fields, "the same fields, byte for byte");
    ours.process_prekey_bundle("agent:vectors-0", &python_bundle).unwrap();
    assert_eq!(ours.encrypt("agent:vectors-0", b"probe").unwrap()[0], 0x01);
}

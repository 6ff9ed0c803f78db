//! Keys, XEdDSA and prekey bundles against the official Signal runtime: every signature the
//! runtime puts on a prekey bundle verifies with ours (and fails when changed); the runtime
//! accepts a bundle whose signatures we made (and refuses it when one bit of a signature
//! changes); and it starts a session from a publication made entirely here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_core::e2ee::bundle::{PrekeyIds, Publication, registration_id};
use pacerelle_core::e2ee::keys::{KeyPair, PublicKey};
use pacerelle_core::e2ee::xeddsa;
use rand::SeedableRng;
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::Stdio;

fn script() -> std::path::PathBuf {
    pacerelle_conformance::vectors_dir().join("oracle").join("runtime_signatures.py")
}

fn bytes(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().expect("base64 text")).expect("base64")
}

fn runtime_bundles(count: usize) -> Vec<Value> {
    let output = pacerelle_conformance::python().arg(script()).args(["generate", &count.to_string()]).output().unwrap();
    assert!(output.status.success(), "the runtime made bundles: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
}

fn runtime_accepts(bundle: &Value) -> (bool, Value) {
    let mut child = pacerelle_conformance::python()
        .arg(script())
        .arg("process")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bundle.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the judge ran: {}", String::from_utf8_lossy(&output.stderr));
    let verdict: Value = serde_json::from_slice(&output.stdout).unwrap();
    (verdict["accepted"].as_bool().unwrap(), verdict)
}

#[test]
fn the_runtimes_signatures_verify_with_ours() {
    let bundles = runtime_bundles(8);
    assert_eq!(bundles.len(), 8);
    for bundle in &bundles {
        let identity = PublicKey::deserialize(&bytes(&bundle["identity_key"])).expect("a 0x05 identity key");
        let signed_prekey = bytes(&bundle["signed_prekey_public"]);
        let kyber_prekey = bytes(&bundle["kyber_prekey_public"]);
        assert_eq!((signed_prekey.len(), signed_prekey[0]), (33, 0x05));
        assert_eq!((kyber_prekey.len(), kyber_prekey[0]), (1569, 0x08));
        for (message, signature) in [
            (&signed_prekey, bytes(&bundle["signed_prekey_signature"])),
            (&kyber_prekey, bytes(&bundle["kyber_prekey_signature"])),
        ] {
            assert_eq!(signature.len(), 64);
            assert!(xeddsa::verify(identity.u_bytes(), message, &signature), "a runtime signature verifies");
            let mut tampered = signature.clone();
            tampered[10] ^= 0x04;
            assert!(!xeddsa::verify(identity.u_bytes(), message, &tampered));
            let mut other_message = message.clone();
            other_message[5] ^= 0x01;
            assert!(!xeddsa::verify(identity.u_bytes(), &other_message, &signature));
        }
    }
}

#[test]
fn the_runtime_accepts_our_signatures() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let identity = KeyPair::generate(&mut rng);
    let signed_prekey = KeyPair::generate(&mut rng);
    let one_time = KeyPair::generate(&mut rng);
    // A Kyber-1024 key the runtime made, signed here by our identity key.
    let kyber_prekey = bytes(&runtime_bundles(1)[0]["kyber_prekey_public"]);
    let signed_public = signed_prekey.public().serialize();
    let bundle = |signed_signature: [u8; 64], kyber_signature: [u8; 64]| {
        json!({
            "registration_id": 4242, "device_id": 1,
            "identity_key": STANDARD.encode(identity.public().serialize()),
            "signed_prekey_id": 7, "signed_prekey_public": STANDARD.encode(signed_public),
            "signed_prekey_signature": STANDARD.encode(signed_signature),
            "kyber_prekey_id": 7, "kyber_prekey_public": STANDARD.encode(&kyber_prekey),
            "kyber_prekey_signature": STANDARD.encode(kyber_signature),
            "prekey_id": 9, "prekey_public": STANDARD.encode(one_time.public().serialize()),
        })
    };
    let signed_signature = identity.sign(&signed_public, &mut rng);
    let kyber_signature = identity.sign(&kyber_prekey, &mut rng);

    let (accepted, verdict) = runtime_accepts(&bundle(signed_signature, kyber_signature));
    assert!(accepted, "the runtime refused our signatures: {verdict}");
    assert_eq!(verdict["first_byte"], 1, "a session-starting PreKey message");

    for (index, flip) in [(0usize, 0x01u8), (40, 0x10), (63, 0x80)] {
        let mut bad = signed_signature;
        bad[index] ^= flip;
        assert!(!runtime_accepts(&bundle(bad, kyber_signature)).0, "a changed signed-prekey signature (byte {index})");
        let mut bad = kyber_signature;
        bad[index] ^= flip;
        assert!(!runtime_accepts(&bundle(signed_signature, bad)).0, "a changed Kyber signature (byte {index})");
    }
}

#[test]
fn the_runtime_starts_a_session_from_our_native_publication() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let identity = KeyPair::generate(&mut rng);
    let mut ids = PrekeyIds::random(&mut rng);
    let publication = Publication::generate(&identity, registration_id(&mut rng), &mut ids, &mut rng).unwrap();
    let mut bundle = serde_json::to_value(&publication.bundle).unwrap();
    // What a person's app gets: the published bundle plus one of the one-time prekeys.
    bundle.as_object_mut().unwrap().remove("protocol_features");
    let one_time = &publication.one_time_body.one_time_prekeys[17];
    bundle["prekey_id"] = json!(one_time.prekey_id);
    bundle["prekey_public"] = json!(one_time.public_key);
    let (accepted, verdict) = runtime_accepts(&bundle);
    assert!(accepted, "the runtime refused our publication: {verdict}");
    assert_eq!(verdict["first_byte"], 1, "a session-starting PreKey message");

    // Observed: the official binding cannot start a session without a one-time prekey (its C
    // interface takes one unconditionally), so an agent must never run out of them.
    bundle.as_object_mut().unwrap().remove("prekey_id");
    bundle.as_object_mut().unwrap().remove("prekey_public");
    let (accepted, verdict) = runtime_accepts(&bundle);
    assert!(!accepted);
    assert_eq!(verdict["error"], "ValueError: prekey_public is required", "{verdict}");
}

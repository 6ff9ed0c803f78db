//! Our native Signal implementation against the official runtime.
//!
//! The finding of issue 3's post-quantum experiment, asserted both ways: the runtime (libsignal
//! with spqr 1.5.1) creates every session with SPQR minimum version 1 and mixes an SPQR key into
//! message keys from the very first message. So
//! - a native responder without SPQR (version 0) receives the runtime's first PreKey message,
//!   sets the session up, and fails its MAC: the runtime's message keys carry an SPQR key;
//! - a native initiator without SPQR is refused by the runtime outright (a protocol error): the
//!   runtime does not negotiate down to version 0.
//!
//! A peer that wants to converse with the runtime in either role must speak SPQR version 1 from
//! its first message (issue 4). The same experiment, with the epoch-0 SPQR chain key mixed in by
//! hand, decrypted the runtime's first message, which showed PQXDH, the Double Ratchet, the
//! message format and the MAC here to be right (see testvectors/README.md).

use pacerelle_conformance::peers::{NativePeer, peer_bundle, runtime};
use pacerelle_core::e2ee::message::{FRAME_PREKEY, Framed};
use pacerelle_core::e2ee::pq::PqRatchet;
use pacerelle_core::e2ee::ratchet::RatchetError;
use pacerelle_core::e2ee::session::DecryptError;
use pacerelle_official_runtime::RuntimeError;
use rand::SeedableRng;

#[test]
fn the_runtime_mixes_spqr_keys_from_its_first_message() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(31);
    let mut agent = NativePeer::new(PqRatchet::version0_for, rng);
    let bundle = agent.publish_for_runtime(0, rng);
    let mut person = runtime().new_store("human:p:c").unwrap();
    person.process_prekey_bundle("agent:a", &bundle).unwrap();
    let framed = person.encrypt("agent:a", b"hello").unwrap();
    assert_eq!(framed[0], FRAME_PREKEY);
    let Framed::PreKey(message) = Framed::decode(&framed).unwrap() else { panic!("a PreKey message") };
    assert_eq!(message.message.pq_ratchet.first(), Some(&1), "an SPQR version-1 message rides along");
    assert_eq!(message.prekey_id, Some(bundle.prekey_id));

    let before = agent.store.clone();
    let error = agent.account.decrypt(&["human:p:c"], &framed, rng).unwrap_err();
    assert_eq!(error, DecryptError::Failed(vec![RatchetError::BadMac]));
    assert_eq!(agent.store, before, "a failed decrypt commits nothing");
}

#[test]
fn the_runtime_refuses_a_peer_without_spqr() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(32);
    let mut agent_store = runtime().new_store("agent:a").unwrap();
    let bundle = agent_store.generate_prekey_bundle(3, 4, 4).unwrap();
    let mut person = NativePeer::new(PqRatchet::version0_for, rng);
    let changes = person.account.start_session("agent:a", &peer_bundle(&bundle), rng).unwrap();
    person.commit(&changes);
    let (framed, _) = person.account.encrypt("agent:a", b"hello", rng).unwrap();
    let Framed::PreKey(message) = Framed::decode(&framed).unwrap() else { panic!("a PreKey message") };
    assert!(message.message.pq_ratchet.is_empty(), "version 0 sends no SPQR field");
    assert!(matches!(agent_store.decrypt("human:p:c", &framed), Err(RuntimeError::Protocol)));
}

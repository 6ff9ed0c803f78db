//! Arbitrary SPQR messages fed to a live SPQR session (`pacerelle-spqr`), as they would arrive in
//! a Signal message's `pq_ratchet` field. Two parties first run a seeded conversation so the
//! receiver is mid-epoch with keys in flight; then each fuzz chunk is delivered to it. It must
//! never panic; a refused message must leave the state byte-identical; and afterwards the two
//! parties must still agree on every key of a fresh exchange in both directions (a message that
//! was accepted may only have been a harmless one, such as an extra erasure-code chunk).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_spqr::{ChainParams, Direction, Params, State, Version};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn pair() -> (State, State, StdRng) {
    let mut rng = StdRng::seed_from_u64(7);
    let params = |direction| Params {
        direction,
        version: Version::V1,
        min_version: Version::V1,
        auth_key: &[9u8; 32],
        chain_params: ChainParams::default(),
    };
    let mut alice = State::new(params(Direction::A2B)).expect("a state");
    let mut bob = State::new(params(Direction::B2A)).expect("a state");
    // Enough lockstep traffic to be in the middle of an epoch's key exchange.
    for _ in 0..23 {
        let sent = alice.send(&mut rng).expect("alice sends");
        assert_eq!(bob.recv(&sent.message).expect("bob receives").as_deref(), sent.key.as_deref());
        let sent = bob.send(&mut rng).expect("bob sends");
        assert_eq!(alice.recv(&sent.message).expect("alice receives").as_deref(), sent.key.as_deref());
    }
    (alice, bob, rng)
}

fuzz_target!(|data: &[u8]| {
    let (mut alice, mut bob, mut rng) = pair();
    // Chunks of at most 64 bytes, each one delivered message.
    for message in data.chunks(64) {
        let before = bob.to_bytes();
        match bob.recv(message) {
            Ok(_) => {}
            Err(_) => assert!(*bob.to_bytes() == *before, "a refused message changed the state"),
        }
    }
    // The session still works both ways: a refused or harmless message broke nothing.
    for _ in 0..6 {
        let sent = alice.send(&mut rng).expect("alice still sends");
        let Ok(key) = bob.recv(&sent.message) else { return };
        assert_eq!(key.as_deref(), sent.key.as_deref(), "keys still agree");
        let sent = bob.send(&mut rng).expect("bob still sends");
        let received = alice.recv(&sent.message).expect("alice still receives");
        assert_eq!(received.as_deref(), sent.key.as_deref(), "keys still agree");
    }
});

//! A hostile or broken peer: arbitrary bytes and well-formed messages with garbage chunks.
//! Nothing may panic, every refusal must leave the state untouched, and forged KEM material
//! must be caught by the MACs or the key/header check.

use pacerelle_spqr::{ChainParams, Direction, Error, Params, State, Version};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn party(direction: Direction) -> State {
    State::new(Params {
        direction,
        version: Version::V1,
        min_version: Version::V1,
        auth_key: b"hostile tests",
        chain_params: ChainParams::default(),
    })
    .unwrap()
}

/// Snapshots of both parties along an honest lockstep conversation (covers every phase).
fn snapshots() -> Vec<State> {
    let mut rng = StdRng::seed_from_u64(11);
    let (mut a, mut b) = (party(Direction::A2B), party(Direction::B2A));
    let mut out = Vec::new();
    for step in 0..110 {
        if step % 5 == 0 {
            out.push(a.clone());
            out.push(b.clone());
        }
        let m = a.send(&mut rng).unwrap().message;
        b.recv(&m).unwrap();
        let m = b.send(&mut rng).unwrap().message;
        a.recv(&m).unwrap();
    }
    out
}

/// A well-formed v1 message: epoch, chain index, type, chunk.
fn message(epoch: u8, index: u16, kind: u8, chunk_index: u8, data: [u8; 32]) -> Vec<u8> {
    let mut m = vec![1, epoch];
    m.extend_from_slice(&[(index as u8) | 0x80, (index >> 7) as u8]);
    m.extend_from_slice(&[kind, chunk_index]);
    m.extend_from_slice(&data);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_corrupt(
        raw in prop::collection::vec(any::<u8>(), 0..80),
        v1_prefix: bool,
        which in any::<prop::sample::Index>(),
    ) {
        static SNAPSHOTS: std::sync::OnceLock<Vec<State>> = std::sync::OnceLock::new();
        let states = SNAPSHOTS.get_or_init(snapshots);
        let mut msg = raw;
        if v1_prefix && !msg.is_empty() {
            msg[0] = 1;
        }
        let mut s = states[which.index(states.len())].clone();
        let before = s.to_bytes();
        if s.recv(&msg).is_err() {
            prop_assert_eq!(s.to_bytes(), before);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Damaged state bytes either fail to load or give a state that works without panicking.
    #[test]
    fn damaged_state_bytes_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate: bool,
    ) {
        static SNAPSHOTS: std::sync::OnceLock<Vec<State>> = std::sync::OnceLock::new();
        let states = SNAPSHOTS.get_or_init(snapshots);
        let mut bytes = states[which.index(states.len())].to_bytes().to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(mut s) = State::from_bytes(&bytes) {
            let mut rng = StdRng::seed_from_u64(5);
            let _ = s.version();
            let _ = format!("{s:?}");
            if let Ok(sent) = s.clone().send(&mut rng) {
                let _ = s.recv(&sent.message);
            }
            let _ = s.recv(&[1, 1, 1, 0]);
            let _ = s.to_bytes();
        }
    }
}

#[test]
fn forged_header_fails_the_mac() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut b = party(Direction::B2A);
    // Three chunks complete the 96-byte header || MAC payload.
    for i in 0..2u8 {
        b.recv(&message(1, 10 + u16::from(i), 1, i, rng.random())).unwrap();
    }
    let before = b.to_bytes();
    assert_eq!(b.recv(&message(1, 12, 1, 2, rng.random())), Err(Error::MacVerifyFailed));
    assert_eq!(b.to_bytes(), before);
}

#[test]
fn forged_ciphertext_fails_the_mac_and_forged_key_fails_the_header_check() {
    let mut rng = StdRng::seed_from_u64(2);
    let (mut a, mut b) = (party(Direction::A2B), party(Direction::B2A));
    // Honest header exchange: A's first three messages carry the header.
    for _ in 0..3 {
        b.recv(&a.send(&mut rng).unwrap().message).unwrap();
    }
    // B encapsulates and sends its first ct1 chunk; A starts sending its key.
    a.recv(&b.send(&mut rng).unwrap().message).unwrap();

    // A receives 29 more forged ct1 chunks, then forged ct2 chunks: decapsulation of garbage
    // gives some secret, and the ciphertext MAC must refuse it on the fifth ct2 chunk.
    let mut index = 100;
    for i in 1..30u8 {
        a.recv(&message(1, index, 5, i, rng.random())).unwrap();
        index += 1;
    }
    for i in 0..4u8 {
        a.recv(&message(1, index, 6, i, rng.random())).unwrap();
        index += 1;
    }
    let before = a.to_bytes();
    assert_eq!(a.recv(&message(1, index, 6, 4, rng.random())), Err(Error::MacVerifyFailed));
    assert_eq!(a.to_bytes(), before);
    assert_eq!(a.epoch(), 1);

    // B receives a forged encapsulation key (36 chunks): it cannot match the header.
    let mut index = 100;
    for i in 0..35u8 {
        b.recv(&message(1, index, 2, i, rng.random())).unwrap();
        index += 1;
    }
    let before = b.to_bytes();
    assert_eq!(b.recv(&message(1, index, 2, 35, rng.random())), Err(Error::ErroneousDataReceived));
    assert_eq!(b.to_bytes(), before);
}

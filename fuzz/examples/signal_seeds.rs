//! Writes the seed inputs of the `signal_message` and `session_record` targets: real framed
//! ciphertexts and real session records from the deterministic conversation of
//! `pacerelle_fuzz::signal` (so regenerating gives the same bytes while the protocol and the
//! record format stay the same). Run from `fuzz/`: `cargo run --example signal_seeds`.

use pacerelle_core::e2ee::session::SessionRecord;
use pacerelle_fuzz::signal::{ALICE, BOB, Harness};
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("create the seed folder");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
    println!("seeds/{target}/{name}: {} bytes", bytes.len());
}

fn main() {
    let mut harness = Harness::established();
    // Alice's first message (PreKey, 0x01) and a later ordinary one (0x02) from each side.
    let prekey = harness.sent.iter().find(|sent| sent.framed[0] == 0x01).expect("a PreKey message").framed.clone();
    write("signal_message", "prekey.bin", &prekey);
    let from_alice = harness.send(ALICE, 100);
    let from_bob = harness.send(BOB, 0);
    write("signal_message", "whisper-alice.bin", &harness.sent[from_alice].framed);
    write("signal_message", "whisper-bob.bin", &harness.sent[from_bob].framed);

    // Alice's record still holds her pending-free session; Bob's has chains and skipped keys
    // once a message is delivered out of order.
    let later = harness.send(ALICE, 10);
    harness.deliver_real(later);
    write("session_record", "alice.bin", &harness.records()[ALICE].to_bytes());
    write("session_record", "bob-with-skipped-keys.bin", &harness.records()[BOB].to_bytes());
    write("session_record", "empty.bin", &SessionRecord::new().to_bytes());
}

//! `SessionRecord::from_bytes` (a peer's persisted sessions) on any bytes. It must never panic,
//! and a record it accepts:
//! - encodes to bytes that decode to an equal record, and those bytes are a fixed point
//!   (encoding the decoded record again gives the same bytes);
//! - can encrypt with its current session without panicking, and what it writes is a framed
//!   message our decoder reads (`from_bytes` checks the stored Kyber ciphertext of a session
//!   still sending PreKey messages, so none can be unreadable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_core::e2ee::message::Framed;
use pacerelle_core::e2ee::session::SessionRecord;
use rand::SeedableRng;
use rand::rngs::StdRng;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = SessionRecord::from_bytes(data) else { return };
    let bytes = record.to_bytes();
    let again = SessionRecord::from_bytes(&bytes).expect("an encoded record decodes");
    assert_eq!(again, record, "a record survives encoding");
    assert!(*again.to_bytes() == *bytes, "encoding is a fixed point");

    let Some(current) = record.current() else { return };
    let _ = (current.remote_identity(), current.base_key(), current.awaiting_reply(), format!("{current:?}"));
    let mut sender = record.clone();
    let rng = &mut StdRng::seed_from_u64(0);
    match sender.encrypt(b"fuzz", rng) {
        Ok(framed) => match Framed::decode(&framed) {
            Ok(Framed::PreKey(_)) => assert!(current.awaiting_reply()),
            Ok(Framed::Whisper(_)) => assert!(!current.awaiting_reply()),
            Err(error) => panic!("a record wrote a message that does not decode: {error}"),
        },
        Err(error) => {
            let _ = error.to_string();
        }
    }
});

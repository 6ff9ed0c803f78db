//! Group key distribution and group messages on any input: the checks an agent and a person run
//! on a `GET /.../group-keys` entry (`read_envelope`), on the sender-key plaintext its Signal
//! session gave back (`accept_sender_key`), and on a group message's payload (`open`), must never
//! panic.
//!
//! The input is split at its first NUL byte: before it, an envelope entry (JSON); after it, a
//! sender-key plaintext, also tried as a group message payload. Properties:
//! - an envelope that is read belongs to the asked conversation;
//! - a sender key that is accepted names exactly its envelope's conversation, id and epoch (else
//!   a relay could relabel a key), at an epoch of at least 1;
//! - an accepted key written again as a plaintext (`sender_key_plaintext`) reads back the same;
//! - a message sealed under it opens under it, to the same text, naming its key; and never
//!   under a key of another epoch (the associated data binds the epoch).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use pacerelle_core::human::group::{GroupKeyring, accept_sender_key, named_key, read_envelope, sender_key_plaintext};
use pacerelle_core::payload::group::{self, GroupKey};
use pacerelle_core::wire::http::GroupKeyEnvelope;

fuzz_target!(|data: &[u8]| {
    let (entry, plaintext) = match data.iter().position(|byte| *byte == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let envelope = match serde_json::from_slice(entry).map(|value| read_envelope(&value, "g1")) {
        Ok(Ok(envelope)) => {
            assert_eq!(envelope.conversation_id, "g1");
            envelope
        }
        // An envelope that is not read is never decrypted: the plaintext is still checked
        // against a plain one, so both halves are always exercised.
        _ => GroupKeyEnvelope {
            conversation_id: "g1".into(),
            key_id: "k1".into(),
            epoch: 1,
            sender_id: "alice".into(),
            sender_device_id: None,
            envelope_b64: String::new(),
        },
    };
    if let Ok(key) = accept_sender_key(&envelope, plaintext) {
        assert_eq!(
            (key.conversation_id.as_str(), key.key_id.as_str(), key.epoch),
            (envelope.conversation_id.as_str(), envelope.key_id.as_str(), envelope.epoch)
        );
        assert!(key.epoch >= 1);
        let written = sender_key_plaintext(&key);
        let again = accept_sender_key(&envelope, written.as_bytes()).expect("a written sender key reads back");
        assert!(again == key, "sender key round trip: {}", written.as_str());
        round_trip(&key, &String::from_utf8_lossy(plaintext));
    }
    // The plaintext as a group message payload, raw and as base64 of its text.
    let key = fixed_key(1);
    let text = String::from_utf8_lossy(plaintext);
    for payload in [text.to_string(), STANDARD.encode(text.as_bytes())] {
        let _ = group::open(&key, "g1", &payload);
        let _ = named_key("g1", &payload);
    }
});

fn fixed_key(epoch: u64) -> GroupKey {
    GroupKey { conversation_id: "g1".into(), key_id: "k1".into(), epoch, raw_key: [7u8; 32].into() }
}

fn round_trip(key: &GroupKey, text: &str) {
    let sealed = group::seal(key, &[5; 12], text);
    assert_eq!(group::open(key, &key.conversation_id, &sealed).as_deref(), Ok(text));
    let named = named_key(&key.conversation_id, &sealed).expect("a sealed message names its key");
    assert_eq!((named.0.as_str(), u64::try_from(named.1).ok()), (key.key_id.as_str(), Some(key.epoch)));
    let mut keyring = GroupKeyring::new();
    keyring.insert(key.clone());
    assert_eq!(keyring.open(&key.conversation_id, &sealed).ok().as_deref(), Some(text));
    // The same raw key under another epoch label must not open it.
    let relabelled = GroupKey { epoch: key.epoch.wrapping_add(1).max(1), ..key.clone() };
    assert!(group::open(&relabelled, &key.conversation_id, &sealed).is_err());
}

//! The native Signal message decoders on any bytes: `Framed::decode` on the input, and
//! `SignalMessage::decode` / `PreKeySignalMessage::decode` on the input and on the input
//! without its first (frame) byte. None may panic, and:
//! - `Framed::decode` is exactly the frame byte plus the matching unframed decoder (same value,
//!   same error), and refuses other frame bytes with `UnknownFrame`;
//! - a decoded message has version 4 and room for its MAC; a PreKey message's Kyber ciphertext
//!   is 1569 bytes starting with the `0x08` type byte;
//! - what decodes, encoded again from its fields, decodes to the same fields, and its fresh MAC
//!   verifies under the key and identities it was made with (and not with the two swapped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_core::e2ee::keys::PublicKey;
use pacerelle_core::e2ee::kyber;
use pacerelle_core::e2ee::message::{
    FRAME_PREKEY, FRAME_WHISPER, Framed, MAC_LEN, MAX_FRAMED_LEN, MessageError, PreKeyParts, PreKeySignalMessage,
    SignalMessage, SignalMessageParts, VERSION,
};

const MAC_KEY: [u8; 32] = [0x4d; 32];

fn identities() -> (PublicKey, PublicKey) {
    let key = |byte: u8| {
        let mut serialized = [byte; 33];
        serialized[0] = 0x05;
        PublicKey::deserialize(&serialized).expect("a 0x05 key")
    };
    (key(0xa1), key(0xb2))
}

/// Re-encodes an ordinary message from its fields and checks it reads back the same.
fn check_signal_message(message: &SignalMessage) {
    let (sender, receiver) = identities();
    // A MAC of foreign bytes under our key: never expected to verify, must not panic.
    let _ = message.verify_mac(&MAC_KEY, &sender, &receiver);
    let encoded = encode_signal_message(message);
    let again = SignalMessage::decode(&encoded).expect("an encoded message decodes");
    assert_eq!(
        (again.ratchet_key, again.counter, again.previous_counter, &again.ciphertext, &again.pq_ratchet),
        (message.ratchet_key, message.counter, message.previous_counter, &message.ciphertext, &message.pq_ratchet)
    );
    assert!(again.verify_mac(&MAC_KEY, &sender, &receiver), "a fresh MAC verifies");
    assert!(!again.verify_mac(&MAC_KEY, &receiver, &sender), "the MAC binds the direction");
}

fn encode_signal_message(message: &SignalMessage) -> Vec<u8> {
    let (sender, receiver) = identities();
    let parts = SignalMessageParts {
        ratchet_key: &message.ratchet_key,
        counter: message.counter,
        previous_counter: message.previous_counter,
        ciphertext: &message.ciphertext,
        pq_ratchet: &message.pq_ratchet,
    };
    SignalMessage::encode(&parts, &MAC_KEY, &sender, &receiver)
}

/// Checks a PreKey message's invariants and that it reads back after encoding from its fields.
fn check_prekey_message(message: &PreKeySignalMessage) {
    assert_eq!(message.kyber_ciphertext.len(), kyber::SERIALIZED_CIPHERTEXT_LEN);
    assert_eq!(message.kyber_ciphertext[0], kyber::KYBER1024_TYPE);
    check_signal_message(&message.message);
    let inner = encode_signal_message(&message.message);
    let parts = PreKeyParts {
        registration_id: message.registration_id,
        prekey_id: message.prekey_id,
        signed_prekey_id: message.signed_prekey_id,
        kyber_prekey_id: message.kyber_prekey_id,
        kyber_ciphertext: &message.kyber_ciphertext,
        base_key: &message.base_key,
        identity_key: &message.identity_key,
    };
    let encoded = PreKeySignalMessage::encode(&parts, inner.clone());
    let again = PreKeySignalMessage::decode(&encoded).expect("an encoded PreKey message decodes");
    assert_eq!(
        (again.registration_id, again.prekey_id, again.signed_prekey_id, again.kyber_prekey_id),
        (message.registration_id, message.prekey_id, message.signed_prekey_id, message.kyber_prekey_id)
    );
    assert_eq!(
        (&again.kyber_ciphertext, again.base_key, again.identity_key),
        (&message.kyber_ciphertext, message.base_key, message.identity_key)
    );
    assert_eq!(again.message, SignalMessage::decode(&inner).expect("the inner message decodes"));
}

/// Both unframed decoders on `bytes`.
fn unframed(bytes: &[u8]) {
    match SignalMessage::decode(bytes) {
        Ok(message) => {
            assert!(bytes.len() > MAC_LEN, "room for the version byte and the MAC");
            assert_eq!(bytes[0] >> 4, VERSION);
            check_signal_message(&message);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    match PreKeySignalMessage::decode(bytes) {
        Ok(message) => {
            assert_eq!(bytes.first().map(|byte| byte >> 4), Some(VERSION));
            check_prekey_message(&message);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    unframed(data);
    let framed = Framed::decode(data);
    let Some((&frame_byte, body)) = data.split_first() else {
        assert_eq!(framed, Err(MessageError::Empty));
        return;
    };
    unframed(body);
    if data.len() > MAX_FRAMED_LEN {
        assert_eq!(framed, Err(MessageError::TooLarge(data.len())));
        return;
    }
    match frame_byte {
        FRAME_PREKEY => {
            let direct = PreKeySignalMessage::decode(body);
            assert_eq!(framed, direct.map(|message| Framed::PreKey(Box::new(message))));
        }
        FRAME_WHISPER => {
            let direct = SignalMessage::decode(body);
            assert_eq!(framed, direct.map(Framed::Whisper));
        }
        other => assert_eq!(framed, Err(MessageError::UnknownFrame(other))),
    }
});

//! A live pair of native Signal sessions fed commands decoded from the input: send real
//! messages, deliver them (in any order, again, to the wrong side), deliver them mutated
//! (bit flips, byte changes, truncation, extension, splices, another frame byte), deliver
//! arbitrary bytes, and deliver forged messages that parse (ordinary or PreKey, under ratchet
//! and base keys in play, any counter, SPQR field and MAC key).
//!
//! Checked on every delivery (see `pacerelle_fuzz::signal`): nothing panics; a failed
//! decryption leaves the record byte-identical; a success is an undelivered real message to
//! that side; a real message decrypts exactly once (later deliveries are
//! `DecryptError::Duplicate`) unless its receiving chain was dropped. After all commands a
//! fresh message each way still decrypts and both records read back from their bytes.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pacerelle_core::e2ee::message::{
    FRAME_PREKEY, FRAME_WHISPER, PreKeyParts, PreKeySignalMessage, SignalMessage, SignalMessageParts, frame,
};
use pacerelle_fuzz::signal::{ALICE, BOB, Harness, ONE_TIME_PREKEY_ID, SIGNED_PREKEY_ID};

/// Commands per input: enough to turn the ratchet past `MAX_RECEIVER_CHAINS`, few enough to keep
/// every input fast.
const MAX_COMMANDS: usize = 64;

#[derive(Arbitrary, Debug)]
enum Command {
    /// Encrypt a real message (length in bytes) from one side.
    Send { from_bob: bool, length: u8 },
    /// Deliver a real message to its receiver.
    Deliver { pick: u8 },
    /// Deliver a real message back to its sender.
    Misdeliver { pick: u8 },
    /// Deliver a changed real message.
    Mutate { pick: u8, to_sender: bool, how: Mutation },
    /// Deliver arbitrary bytes.
    Bytes { to_bob: bool, bytes: Vec<u8> },
    /// Deliver a well-formed message with a MAC under the wrong key.
    Forge(Forge),
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    Flip { at: u16, bit: u8 },
    Set { at: u16, value: u8 },
    Truncate { keep: u16 },
    Extend { tail: Vec<u8> },
    Splice { at: u16, remove: u8, insert: Vec<u8> },
    FrameByte(u8),
}

#[derive(Arbitrary, Debug)]
struct Forge {
    to_bob: bool,
    ratchet_key: u8,
    counter: u16,
    previous_counter: u16,
    ciphertext: Vec<u8>,
    pq_ratchet: Vec<u8>,
    mac_key: [u8; 32],
    /// Wrap it in a PreKey message (else an ordinary one).
    prekey: Option<PreKeyForge>,
}

#[derive(Arbitrary, Debug)]
struct PreKeyForge {
    /// The base key: an index into the keys in play, which include the real base key (that
    /// session's path) and ratchet keys (a new base key: the full PQXDH path).
    base_key: u8,
    one_time: bool,
    registration_id: u32,
}

fn mutate(mut bytes: Vec<u8>, how: &Mutation) -> Vec<u8> {
    let at = |position: u16, len: usize| usize::from(position) % len.max(1);
    match how {
        Mutation::Flip { at: position, bit } => {
            let index = at(*position, bytes.len());
            bytes[index] ^= 1 << (bit % 8);
        }
        Mutation::Set { at: position, value } => {
            let index = at(*position, bytes.len());
            bytes[index] = *value;
        }
        Mutation::Truncate { keep } => bytes.truncate(usize::from(*keep) % bytes.len()),
        Mutation::Extend { tail } => bytes.extend_from_slice(tail),
        Mutation::Splice { at: position, remove, insert } => {
            let start = at(*position, bytes.len());
            let end = (start + usize::from(*remove)).min(bytes.len());
            bytes.splice(start..end, insert.iter().copied());
        }
        Mutation::FrameByte(byte) => bytes[0] = *byte,
    }
    bytes
}

fn forge(harness: &Harness, forge: &Forge) -> Vec<u8> {
    let keys = harness.keys();
    let pick = |index: u8| keys[usize::from(index) % keys.len()];
    let (sender, receiver) = if forge.to_bob { (ALICE, BOB) } else { (BOB, ALICE) };
    let identity =
        |side: usize| harness.records()[1 - side].current().map(|state| *state.remote_identity()).expect("established");
    let message = SignalMessage::encode(
        &SignalMessageParts {
            ratchet_key: &pick(forge.ratchet_key),
            counter: u32::from(forge.counter),
            previous_counter: u32::from(forge.previous_counter),
            ciphertext: &forge.ciphertext,
            pq_ratchet: &forge.pq_ratchet,
        },
        &forge.mac_key,
        &identity(sender),
        &identity(receiver),
    );
    match &forge.prekey {
        None => frame(FRAME_WHISPER, message),
        Some(prekey) => {
            let template = &harness.prekey_template;
            let base_key = pick(prekey.base_key);
            let parts = PreKeyParts {
                registration_id: prekey.registration_id,
                prekey_id: prekey.one_time.then_some(ONE_TIME_PREKEY_ID),
                signed_prekey_id: SIGNED_PREKEY_ID,
                kyber_prekey_id: SIGNED_PREKEY_ID,
                kyber_ciphertext: &template.kyber_ciphertext,
                base_key: &base_key,
                identity_key: &identity(sender),
            };
            frame(FRAME_PREKEY, PreKeySignalMessage::encode(&parts, message))
        }
    }
}

fuzz_target!(|commands: Vec<Command>| {
    let mut harness = Harness::established();
    for command in commands.iter().take(MAX_COMMANDS) {
        let real = |pick: u8, harness: &Harness| usize::from(pick) % harness.sent.len();
        match command {
            Command::Send { from_bob, length } => {
                harness.send(if *from_bob { BOB } else { ALICE }, usize::from(*length));
            }
            Command::Deliver { pick } => {
                let index = real(*pick, &harness);
                harness.deliver_real(index);
            }
            Command::Misdeliver { pick } => {
                let index = real(*pick, &harness);
                let sent = &harness.sent[index];
                let (sender, framed) = (1 - sent.to, sent.framed.clone());
                // A side never decrypts its own message (the uniform check in `deliver` would
                // also flag it, as no undelivered message to the sender has this plaintext).
                assert!(harness.deliver(sender, &framed).is_err(), "side {sender} decrypted its own message");
            }
            Command::Mutate { pick, to_sender, how } => {
                let index = real(*pick, &harness);
                let sent = &harness.sent[index];
                let to = if *to_sender { 1 - sent.to } else { sent.to };
                let mutated = mutate(sent.framed.clone(), how);
                // A change outside what the MAC covers (a PreKey message's outer fields) may
                // still open the original message; `deliver` accepts that only once.
                let _ = harness.deliver(to, &mutated);
            }
            Command::Bytes { to_bob, bytes } => {
                let _ = harness.deliver(if *to_bob { BOB } else { ALICE }, bytes);
            }
            Command::Forge(spec) => {
                let forged = forge(&harness, spec);
                let to = if spec.to_bob { BOB } else { ALICE };
                assert!(harness.deliver(to, &forged).is_err(), "a forged MAC was accepted");
            }
        }
    }
    harness.assert_still_converses();
});

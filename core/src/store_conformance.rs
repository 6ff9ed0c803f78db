//! The guarantees every [`AgentStore`] must keep, as one suite a store's own tests run: each
//! field of [`StoreChanges`] applied, loaded back, and (for a durable store) loaded again after
//! reopening, compared with what [`AgentSnapshot::apply`] makes of the same changes (the
//! reference semantics, what [`MemoryStore`](crate::store::MemoryStore) does).
//!
//! The cases cover receipts (pending, accepted, removed), the frames recorded with an
//! acceptance, the outbox, last devices, delivery failures, group keys (several epochs of one
//! conversation, as they land), and every part of the end-to-end state: identity, prekeys of
//! each kind, sessions, history keys and peer identities; values at their limits (times up to
//! `i64::MAX` milliseconds, empty and large blobs) included. A case fails to compile when
//! [`StoreChanges`] gains a field, so the suite cannot silently miss one. The same cases run
//! again through [`AgentStore::apply_batch`] (group commit): whole, in pairs and all at once,
//! each batch equal to its changes applied one by one, and a refused batch all or nothing.
//!
//! Behind the `store-conformance` feature:
//!
//! ```toml
//! [dev-dependencies]
//! pacerelle-core = { version = "0.1", features = ["store-conformance"] }
//! ```
//!
//! ```
//! use pacerelle_core::store::MemoryStore;
//! use pacerelle_core::store_conformance::run;
//!
//! // A store in memory has nothing to reopen: `reopen` hands it back.
//! run(MemoryStore::new, |store| store);
//! ```

use crate::Timestamp;
use crate::store::{
    AgentSnapshot, AgentStore, DeliveryFailure, E2eeChanges, IdentityKeyBytes, OutboxEntry, PeerId, PrekeyKind,
    Receipt, ReceiptState, SecretBytes, SentFrame, StoreChanges, StoredGroupKey, StoredHistoryKey, StoredIdentity,
    StoredPeerIdentity, StoredPrekey,
};

/// Runs every case on a fresh store from `fresh`; after each step the store must load exactly
/// what [`AgentSnapshot::apply`] gives, and again once `reopen` has closed and reopened it (for
/// a store in memory, `reopen` returns it as it is).
///
/// # Panics
/// At the first difference, naming the case and the step; or when the store fails to apply or
/// load.
pub fn run<S: AgentStore>(mut fresh: impl FnMut() -> S, mut reopen: impl FnMut(S) -> S) {
    let cases = cases();
    assert_every_field_is_exercised(&cases);
    for (name, steps) in &cases {
        let mut store = fresh();
        let mut expected = AgentSnapshot::default();
        assert_eq!(store.load().expect("a fresh store loads"), expected, "{name}: a fresh store is empty");
        for (index, changes) in steps.iter().enumerate() {
            store.apply(changes).unwrap_or_else(|error| panic!("{name}, step {index}: apply failed: {error}"));
            expected.apply(changes);
            let loaded = store.load().unwrap_or_else(|error| panic!("{name}, step {index}: load failed: {error}"));
            assert_eq!(loaded, expected, "{name}, step {index}: loaded after applying");
            store = reopen(store);
            let loaded = store.load().unwrap_or_else(|error| panic!("{name}, step {index}: reload failed: {error}"));
            assert_eq!(loaded, expected, "{name}, step {index}: loaded after reopening");
        }
    }
    run_batches(&cases, &mut fresh, &mut reopen);
}

/// Group commit ([`AgentStore::apply_batch`]): a batch leaves what applying its changes one by
/// one leaves, whether it holds a whole case, a case in pairs of steps, or every case at once
/// (so a later change meets what earlier ones wrote in the same commit); an empty batch changes
/// nothing; and a batch the store refuses leaves nothing of itself behind.
fn run_batches<S: AgentStore>(
    cases: &[(&str, Vec<StoreChanges>)],
    fresh: &mut impl FnMut() -> S,
    reopen: &mut impl FnMut(S) -> S,
) {
    let everything: Vec<StoreChanges> = cases.iter().flat_map(|(_, steps)| steps.iter().cloned()).collect();
    let whole = cases.iter().map(|(name, steps)| (format!("{name}, in one batch"), steps.clone(), steps.len().max(1)));
    let pairs = cases.iter().map(|(name, steps)| (format!("{name}, two steps a batch"), steps.clone(), 2));
    let all = std::iter::once(("every case, in one batch".to_owned(), everything.clone(), everything.len()));
    for (name, steps, size) in whole.chain(pairs).chain(all) {
        let mut store = fresh();
        let mut expected = AgentSnapshot::default();
        for (index, batch) in steps.chunks(size).enumerate() {
            store.apply_batch(batch).unwrap_or_else(|error| panic!("{name}, batch {index}: apply failed: {error}"));
            batch.iter().for_each(|changes| expected.apply(changes));
            let loaded = store.load().unwrap_or_else(|error| panic!("{name}, batch {index}: load failed: {error}"));
            assert_eq!(loaded, expected, "{name}, batch {index}: loaded after applying");
            store = reopen(store);
            let loaded = store.load().unwrap_or_else(|error| panic!("{name}, batch {index}: reload failed: {error}"));
            assert_eq!(loaded, expected, "{name}, batch {index}: loaded after reopening");
        }
        store.apply_batch(&[]).unwrap_or_else(|error| panic!("{name}: an empty batch failed: {error}"));
        assert_eq!(store.load().expect("loads"), expected, "{name}: an empty batch changes nothing");
    }

    // A batch whose last change no store that keeps 64-bit signed integers can hold (an outbox
    // seq beyond `i64::MAX`): a store that refuses it must keep nothing of the batch, its
    // valid first change included; one that holds it (in memory) must hold all of it.
    let mut store = fresh();
    let before =
        StoreChanges { put_receipts: vec![receipt("m0", None, None, pending("before"))], ..Default::default() };
    store.apply(&before).expect("a valid change applies");
    let mut expected = AgentSnapshot::default();
    expected.apply(&before);
    let batch = [
        StoreChanges {
            put_receipts: vec![receipt("m1", None, None, pending("in the refused batch"))],
            remove_receipts: vec!["m0".into()],
            put_outbox: vec![entry(1, "o1")],
            ..Default::default()
        },
        StoreChanges { put_outbox: vec![entry(u64::MAX, "o2")], ..Default::default() },
    ];
    let refused = store.apply_batch(&batch).is_err();
    if !refused {
        batch.iter().for_each(|changes| expected.apply(changes));
    }
    let what = if refused { "a refused batch leaves nothing of itself" } else { "an accepted batch is applied whole" };
    assert_eq!(store.load().expect("loads after the batch"), expected, "{what}");
    store = reopen(store);
    assert_eq!(store.load().expect("reloads after the batch"), expected, "{what}, after reopening");
}

/// Fails (to compile, when a field is added) unless every field of [`StoreChanges`] is set in
/// at least one step, so the suite cannot silently miss one.
fn assert_every_field_is_exercised(cases: &[(&str, Vec<StoreChanges>)]) {
    let mut seen = [false; 19];
    for changes in cases.iter().flat_map(|(_, steps)| steps) {
        let StoreChanges {
            put_receipts,
            remove_receipts,
            put_sent_frames,
            put_outbox,
            remove_outbox,
            put_last_devices,
            put_failures,
            remove_failures,
            put_group_keys,
            e2ee:
                E2eeChanges {
                    identity,
                    prekey_counter,
                    put_prekeys,
                    remove_prekeys,
                    put_sessions,
                    remove_sessions,
                    put_history_keys,
                    put_peer_identities,
                    remove_peer_identities,
                    one_time_published_at,
                },
        } = changes;
        let set = [
            !put_receipts.is_empty(),
            !remove_receipts.is_empty(),
            !put_sent_frames.is_empty(),
            !put_outbox.is_empty(),
            !remove_outbox.is_empty(),
            !put_last_devices.is_empty(),
            !put_failures.is_empty(),
            !remove_failures.is_empty(),
            !put_group_keys.is_empty(),
            identity.is_some(),
            prekey_counter.is_some(),
            !put_prekeys.is_empty(),
            !remove_prekeys.is_empty(),
            !put_sessions.is_empty(),
            !remove_sessions.is_empty(),
            !put_history_keys.is_empty(),
            !put_peer_identities.is_empty(),
            !remove_peer_identities.is_empty(),
            one_time_published_at.is_some(),
        ];
        for (seen, set) in seen.iter_mut().zip(set) {
            *seen |= set;
        }
    }
    assert_eq!(seen, [true; 19], "every field of StoreChanges is exercised");
}

fn key(byte: u8) -> IdentityKeyBytes {
    let mut key = [byte; 33];
    key[0] = 0x05;
    key
}

fn receipt(id: &str, device: Option<&str>, identity: Option<u8>, state: ReceiptState) -> Receipt {
    Receipt {
        message_id: id.into(),
        digest: format!("digest-{id}"),
        from: "u1".into(),
        conversation_id: "c1".into(),
        from_device_id: device.map(Into::into),
        sender_identity: identity.map(key),
        state,
    }
}

fn pending(text: &str) -> ReceiptState {
    ReceiptState::Pending { text: text.into() }
}

fn accepted(millis: u64) -> ReceiptState {
    ReceiptState::Accepted { at: Timestamp::from_millis(millis) }
}

fn frame(id: &str, text: &str) -> SentFrame {
    SentFrame { id: id.into(), frame: format!(r#"{{"type":"MSG","id":"{id}","payload_b64":"{text}"}}"#) }
}

fn entry(seq: u64, id: &str) -> OutboxEntry {
    OutboxEntry { seq, sent: frame(id, "b3V0Ym94") }
}

fn failure(id: &str, attempts: u32, given_up_at: Option<u64>) -> DeliveryFailure {
    DeliveryFailure {
        message_id: id.into(),
        digest: format!("digest-{id}-{attempts}"),
        from: "u1".into(),
        conversation_id: "c1".into(),
        attempts,
        reason: format!("no session for {id} after {attempts} deliveries"),
        first_at: Timestamp::from_millis(1_700_000_000_000),
        given_up_at: given_up_at.map(Timestamp::from_millis),
    }
}

fn prekey(kind: PrekeyKind, id: u32, byte: u8, len: usize) -> StoredPrekey {
    StoredPrekey { kind, id, private_key: SecretBytes::new(vec![byte; len]) }
}

fn peer(user: &str, device: Option<&str>) -> PeerId {
    PeerId::new(user, device)
}

fn seen(trusted: u8, pending: Option<u8>, last_seen: u64) -> StoredPeerIdentity {
    StoredPeerIdentity {
        trusted: key(trusted),
        pending: pending.map(key),
        last_seen: Timestamp::from_millis(last_seen),
    }
}

fn group_key(conversation: &str, key_id: &str, epoch: u64, byte: u8) -> StoredGroupKey {
    StoredGroupKey {
        conversation_id: conversation.into(),
        key_id: key_id.into(),
        epoch,
        raw_key: SecretBytes::new(vec![byte; 32]),
    }
}

fn e2ee(changes: E2eeChanges) -> StoreChanges {
    StoreChanges { e2ee: changes, ..Default::default() }
}

/// The latest time a store must hold (the largest a signed 64-bit integer holds, as SQLite's do).
const LATEST: u64 = i64::MAX as u64;

fn cases() -> Vec<(&'static str, Vec<StoreChanges>)> {
    vec![
        ("nothing", vec![StoreChanges::default()]),
        (
            "receipts",
            vec![
                StoreChanges {
                    put_receipts: vec![
                        receipt("m1", Some("phone"), Some(1), pending("héllo 👋")),
                        receipt("m2", None, None, pending("")),
                        receipt("m3", Some(""), Some(3), pending("third")),
                    ],
                    ..Default::default()
                },
                StoreChanges {
                    put_receipts: vec![
                        receipt("m1", Some("phone"), Some(1), accepted(1_700_000_000_123)),
                        receipt("m2", None, None, accepted(0)),
                    ],
                    ..Default::default()
                },
                StoreChanges {
                    put_receipts: vec![receipt("m4", Some("laptop"), Some(4), accepted(LATEST))],
                    remove_receipts: vec!["m3".into(), "never-there".into()],
                    ..Default::default()
                },
                // Back from accepted to pending: not what the core does, but what apply allows.
                StoreChanges {
                    put_receipts: vec![receipt("m2", None, Some(2), pending("again"))],
                    ..Default::default()
                },
                // Within one batch, removals come after puts.
                StoreChanges {
                    put_receipts: vec![receipt("m5", None, None, pending("gone at once"))],
                    remove_receipts: vec!["m5".into(), "m1".into()],
                    ..Default::default()
                },
            ],
        ),
        (
            "sent frames",
            vec![
                StoreChanges {
                    put_receipts: vec![
                        receipt("m1", None, None, accepted(1)),
                        receipt("m2", None, None, accepted(2)),
                        receipt("m3", None, None, accepted(3)),
                    ],
                    put_sent_frames: vec![
                        ("m1".into(), vec![frame("r1", "b25l"), frame("r2", "dHdv 👋"), frame("r3", "")]),
                        ("m2".into(), vec![frame("r4", "Zm91cg==")]),
                        ("m3".into(), Vec::new()),
                    ],
                    ..Default::default()
                },
                // Replaced as a whole, and gone with the receipt.
                StoreChanges {
                    put_sent_frames: vec![("m1".into(), vec![frame("r5", "Zml2ZQ==")])],
                    remove_receipts: vec!["m2".into()],
                    ..Default::default()
                },
                StoreChanges { put_sent_frames: vec![("m1".into(), Vec::new())], ..Default::default() },
            ],
        ),
        (
            "outbox",
            vec![
                StoreChanges {
                    put_outbox: vec![entry(0, "o1"), entry(1, "o2"), entry(LATEST, "o3")],
                    ..Default::default()
                },
                StoreChanges { put_outbox: vec![entry(2, "o4")], remove_outbox: vec![0, 1, 99], ..Default::default() },
                // Within one batch, removals come after puts.
                StoreChanges { put_outbox: vec![entry(3, "o5")], remove_outbox: vec![3], ..Default::default() },
            ],
        ),
        (
            "last devices",
            vec![
                StoreChanges {
                    put_last_devices: vec![
                        (("u1".into(), "c1".into()), "phone".into()),
                        (("u1".into(), "c2".into()), String::new()),
                        (("u2".into(), "c1".into()), "tablet".into()),
                    ],
                    ..Default::default()
                },
                StoreChanges {
                    put_last_devices: vec![
                        (("u1".into(), "c1".into()), "laptop".into()),
                        (("u1".into(), "c1".into()), "watch".into()),
                    ],
                    ..Default::default()
                },
            ],
        ),
        (
            "delivery failures",
            vec![
                StoreChanges {
                    put_failures: vec![failure("f1", 1, None), failure("f2", 0, None), failure("f3", u32::MAX, None)],
                    ..Default::default()
                },
                StoreChanges {
                    put_failures: vec![failure("f1", 3, Some(1_700_000_060_000)), failure("f3", 2, Some(LATEST))],
                    remove_failures: vec!["f2".into(), "never-there".into()],
                    ..Default::default()
                },
                StoreChanges {
                    put_failures: vec![failure("f4", 1, None)],
                    remove_failures: vec!["f4".into(), "f1".into()],
                    ..Default::default()
                },
            ],
        ),
        (
            "identity and prekey state",
            vec![
                // The core writes the counter with the identity, but the snapshot holds them apart.
                e2ee(E2eeChanges { prekey_counter: Some(7), ..Default::default() }),
                e2ee(E2eeChanges {
                    one_time_published_at: Some(Timestamp::from_millis(1_700_000_000_000)),
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    identity: Some(StoredIdentity {
                        private_key: SecretBytes::new(vec![1; 32]),
                        registration_id: 4242,
                    }),
                    prekey_counter: Some(100),
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    identity: Some(StoredIdentity {
                        private_key: SecretBytes::new(vec![2; 32]),
                        registration_id: u32::MAX,
                    }),
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    prekey_counter: Some(u32::MAX),
                    one_time_published_at: Some(Timestamp::from_millis(LATEST)),
                    ..Default::default()
                }),
                e2ee(E2eeChanges { one_time_published_at: Some(Timestamp::from_millis(0)), ..Default::default() }),
            ],
        ),
        (
            "prekeys",
            vec![
                e2ee(E2eeChanges {
                    put_prekeys: vec![
                        prekey(PrekeyKind::Signed, 101, 2, 32),
                        prekey(PrekeyKind::Kyber, 101, 3, 3168),
                        prekey(PrekeyKind::OneTime, 102, 4, 32),
                        prekey(PrekeyKind::OneTime, 103, 5, 32),
                        prekey(PrekeyKind::OneTime, u32::MAX, 6, 32),
                        prekey(PrekeyKind::OneTime, 0, 7, 0),
                    ],
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    put_prekeys: vec![prekey(PrekeyKind::Signed, 101, 8, 32)],
                    remove_prekeys: vec![
                        (PrekeyKind::OneTime, 102),
                        (PrekeyKind::OneTime, 999),
                        (PrekeyKind::Kyber, 103),
                    ],
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    put_prekeys: vec![prekey(PrekeyKind::Kyber, 104, 9, 3168)],
                    remove_prekeys: vec![(PrekeyKind::Kyber, 104), (PrekeyKind::Kyber, 101)],
                    ..Default::default()
                }),
            ],
        ),
        (
            "sessions",
            vec![
                e2ee(E2eeChanges {
                    put_sessions: vec![
                        ("human:u1:c1".into(), SecretBytes::new(vec![9; 2200])),
                        ("human:u2:c1:device:phone".into(), SecretBytes::new(vec![10; 20_000])),
                        ("empty".into(), SecretBytes::new(Vec::new())),
                    ],
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    put_sessions: vec![
                        ("human:u1:c1".into(), SecretBytes::new(vec![11; 2300])),
                        ("human:u2:c1:device:phone".into(), SecretBytes::new(vec![12; 100])),
                    ],
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    remove_sessions: vec!["human:u2:c1:device:phone".into(), "never-stored".into()],
                    ..Default::default()
                }),
            ],
        ),
        (
            "history keys",
            vec![
                e2ee(E2eeChanges {
                    put_history_keys: vec![
                        (
                            "c1".into(),
                            StoredHistoryKey { key_id: "k1".into(), epoch: 1, raw_key: SecretBytes::new(vec![7; 32]) },
                        ),
                        (
                            "c2".into(),
                            StoredHistoryKey {
                                key_id: String::new(),
                                epoch: 0,
                                raw_key: SecretBytes::new(vec![8; 32]),
                            },
                        ),
                    ],
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    put_history_keys: vec![(
                        "c1".into(),
                        StoredHistoryKey { key_id: "k2".into(), epoch: LATEST, raw_key: SecretBytes::new(vec![9; 32]) },
                    )],
                    ..Default::default()
                }),
            ],
        ),
        (
            "group keys",
            vec![
                // Several keys per conversation, by (conversation, key id, epoch): older epochs
                // stay, the same id at another epoch or in another conversation is another key.
                StoreChanges {
                    put_group_keys: vec![
                        group_key("g1", "k1", 1, 1),
                        group_key("g1", "k2", 2, 2),
                        group_key("g2", "k1", 1, 3),
                    ],
                    ..Default::default()
                },
                StoreChanges {
                    put_group_keys: vec![group_key("g1", "k1", 2, 4), group_key("g1", "k3", LATEST, 5)],
                    ..Default::default()
                },
                // Rewriting a held key (the core never does) replaces its row.
                StoreChanges { put_group_keys: vec![group_key("g2", "k1", 1, 6)], ..Default::default() },
            ],
        ),
        (
            "peer identities",
            vec![
                e2ee(E2eeChanges {
                    put_peer_identities: vec![
                        (peer("alice", None), seen(1, None, 10)),
                        (peer("alice", Some("")), seen(2, Some(3), 20)),
                        (peer("alice", Some("phone")), seen(4, None, 0)),
                        (peer("bob", Some("phone")), seen(5, Some(6), LATEST)),
                    ],
                    ..Default::default()
                }),
                // An empty device id and no device are different peers: removing one keeps the other.
                e2ee(E2eeChanges {
                    put_peer_identities: vec![(peer("alice", None), seen(1, Some(7), 30))],
                    remove_peer_identities: vec![peer("alice", Some("")), peer("carol", None)],
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    put_peer_identities: vec![(peer("alice", Some("")), seen(8, None, 40))],
                    remove_peer_identities: vec![peer("alice", None)],
                    ..Default::default()
                }),
                e2ee(E2eeChanges {
                    put_peer_identities: vec![(peer("dave", Some("pc")), seen(9, None, 50))],
                    remove_peer_identities: vec![peer("dave", Some("pc")), peer("bob", Some("phone"))],
                    ..Default::default()
                }),
            ],
        ),
        (
            "everything at once",
            vec![
                StoreChanges {
                    put_receipts: vec![receipt("m1", Some("phone"), Some(1), pending("one"))],
                    put_outbox: vec![entry(6, "o6")],
                    put_last_devices: vec![(("u1".into(), "c1".into()), "phone".into())],
                    put_failures: vec![failure("f1", 1, None)],
                    put_group_keys: vec![group_key("g1", "k", 1, 7)],
                    e2ee: E2eeChanges {
                        identity: Some(StoredIdentity {
                            private_key: SecretBytes::new(vec![1; 32]),
                            registration_id: 1,
                        }),
                        prekey_counter: Some(50),
                        put_prekeys: vec![prekey(PrekeyKind::OneTime, 1, 2, 32), prekey(PrekeyKind::OneTime, 2, 3, 32)],
                        put_sessions: vec![("human:u1:c1".into(), SecretBytes::new(vec![4; 2000]))],
                        put_history_keys: vec![(
                            "c1".into(),
                            StoredHistoryKey { key_id: "k".into(), epoch: 3, raw_key: SecretBytes::new(vec![5; 32]) },
                        )],
                        put_peer_identities: vec![(peer("u1", Some("phone")), seen(6, None, 1))],
                        one_time_published_at: Some(Timestamp::from_millis(1)),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                StoreChanges {
                    put_receipts: vec![
                        receipt("m1", Some("phone"), Some(1), accepted(2)),
                        receipt("m2", Some("phone"), Some(1), pending("two")),
                    ],
                    remove_receipts: vec!["m0".into()],
                    put_sent_frames: vec![("m1".into(), vec![frame("r1", "cmVwbHk=")])],
                    put_outbox: vec![entry(7, "o7")],
                    remove_outbox: vec![6],
                    put_last_devices: vec![(("u1".into(), "c1".into()), "laptop".into())],
                    put_failures: vec![failure("f2", 1, None)],
                    remove_failures: vec!["f1".into()],
                    put_group_keys: vec![group_key("g1", "k", 2, 8)],
                    e2ee: E2eeChanges {
                        prekey_counter: Some(51),
                        put_prekeys: vec![prekey(PrekeyKind::Signed, 3, 7, 32)],
                        remove_prekeys: vec![(PrekeyKind::OneTime, 1)],
                        put_sessions: vec![("human:u1:c1".into(), SecretBytes::new(vec![8; 2100]))],
                        put_peer_identities: vec![(peer("u1", Some("laptop")), seen(9, None, 2))],
                        remove_peer_identities: vec![peer("u1", Some("phone"))],
                        one_time_published_at: Some(Timestamp::from_millis(2)),
                        ..Default::default()
                    },
                },
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_store_passes_the_suite() {
        super::run(crate::store::MemoryStore::new, |store| store);
    }
}

//! The SQLite store: what is applied is what loads, across reopening; older files migrate with
//! their data; one process at a time; files private to their owner; a corrupt row names itself.

use pacerelle_core::Timestamp;
use pacerelle_core::store::{AgentSnapshot, AgentStore, Receipt, ReceiptState, StoreChanges};
use pacerelle_store_sqlite::{RowProblem, SqliteStore, StoreError};
use std::path::PathBuf;

fn temp_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("pacerelle-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

fn receipt(id: &str, state: ReceiptState) -> Receipt {
    Receipt {
        message_id: id.into(),
        digest: format!("digest-{id}"),
        from: "u1".into(),
        conversation_id: "c1".into(),
        from_device_id: Some("phone".into()),
        sender_identity: None,
        state,
    }
}

#[test]
fn applied_changes_load_back_and_survive_reopening() {
    let root = temp_root("roundtrip");
    let mut expected = AgentSnapshot::default();
    {
        let mut store = SqliteStore::open_in(&root, "agent-1").unwrap();
        let steps = [
            StoreChanges {
                put_receipts: vec![
                    receipt("m1", ReceiptState::Pending { text: "héllo 👋".into() }),
                    receipt("m2", ReceiptState::Pending { text: String::new() }),
                ],
                put_last_devices: vec![(("u1".into(), "c1".into()), "phone".into())],
                ..Default::default()
            },
            StoreChanges {
                put_receipts: vec![receipt(
                    "m1",
                    ReceiptState::Accepted { at: Timestamp::from_millis(1_700_000_000_123) },
                )],
                put_last_devices: vec![(("u1".into(), "c1".into()), "laptop".into())],
                ..Default::default()
            },
            StoreChanges { remove_receipts: vec!["m2".into(), "never-there".into()], ..Default::default() },
        ];
        for changes in &steps {
            store.apply(changes).unwrap();
            expected.apply(changes);
            assert_eq!(store.load().unwrap(), expected);
        }
        assert_eq!(store.receipt_count().unwrap(), 1);
    }
    let mut reopened = SqliteStore::open_in(&root, "agent-1").unwrap();
    assert_eq!(reopened.load().unwrap(), expected);
    assert_eq!(expected.last_devices[&("u1".to_owned(), "c1".to_owned())], "laptop");
    drop(reopened);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn keys_and_sessions_load_back_and_survive_reopening() {
    use pacerelle_core::store::{E2eeChanges, PrekeyKind, SecretBytes, StoredIdentity, StoredPrekey};
    let root = temp_root("e2ee");
    let prekey = |kind, id, byte: u8| StoredPrekey { kind, id, private_key: SecretBytes::new(vec![byte; 32]) };
    let steps = [
        E2eeChanges {
            identity: Some(StoredIdentity { private_key: SecretBytes::new(vec![1; 32]), registration_id: 4242 }),
            prekey_counter: Some(100),
            ..Default::default()
        },
        E2eeChanges {
            prekey_counter: Some(152),
            put_prekeys: vec![
                prekey(PrekeyKind::Signed, 101, 2),
                StoredPrekey { kind: PrekeyKind::Kyber, id: 101, private_key: SecretBytes::new(vec![3; 3168]) },
                prekey(PrekeyKind::OneTime, 102, 4),
                prekey(PrekeyKind::OneTime, 103, 5),
            ],
            ..Default::default()
        },
        E2eeChanges {
            remove_prekeys: vec![(PrekeyKind::OneTime, 102), (PrekeyKind::OneTime, 999)],
            put_sessions: vec![("human:u1:c1".into(), SecretBytes::new(vec![9; 700]))],
            ..Default::default()
        },
        E2eeChanges {
            put_sessions: vec![("human:u1:c1".into(), SecretBytes::new(vec![8; 710]))],
            put_history_keys: vec![(
                "c1".into(),
                pacerelle_core::store::StoredHistoryKey {
                    key_id: "k1".into(),
                    epoch: 1,
                    raw_key: SecretBytes::new(vec![7; 32]),
                },
            )],
            ..Default::default()
        },
    ];
    let mut expected = AgentSnapshot::default();
    {
        let mut store = SqliteStore::open_in(&root, "agent-1").unwrap();
        for e2ee in steps {
            let changes = StoreChanges { e2ee, ..Default::default() };
            store.apply(&changes).unwrap();
            expected.apply(&changes);
            assert_eq!(store.load().unwrap(), expected);
        }
    }
    let mut reopened = SqliteStore::open_in(&root, "agent-1").unwrap();
    let loaded = reopened.load().unwrap();
    assert_eq!(loaded, expected);
    assert_eq!(loaded.e2ee.prekey_counter, Some(152));
    assert_eq!(loaded.e2ee.identity.as_ref().map(|identity| identity.registration_id), Some(4242));
    assert_eq!(loaded.e2ee.prekeys.len(), 3);
    assert_eq!(loaded.e2ee.sessions["human:u1:c1"].expose(), &[8; 710][..]);
    assert_eq!(loaded.e2ee.history_keys["c1"].key_id, "k1");
    assert!(!format!("{loaded:?}").contains("[8, 8"), "secrets stay out of Debug output");
    drop(reopened);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_version_1_file_is_migrated() {
    let root = temp_root("migrate");
    std::fs::create_dir_all(root.join("agent-1")).unwrap();
    let path = root.join("agent-1").join(pacerelle_store_sqlite::FILE_NAME);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "CREATE TABLE receipts (message_id TEXT PRIMARY KEY, digest TEXT NOT NULL, sender TEXT NOT NULL,
                 conversation_id TEXT NOT NULL, from_device_id TEXT, pending_text TEXT, accepted_at INTEGER,
                 CHECK ((pending_text IS NULL) <> (accepted_at IS NULL)));
             CREATE TABLE last_devices (person TEXT NOT NULL, conversation_id TEXT NOT NULL, device_id TEXT NOT NULL,
                 PRIMARY KEY (person, conversation_id));
             INSERT INTO receipts VALUES ('m1', 'd', 'u1', 'c1', NULL, 'kept', NULL);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    drop(connection);
    let mut store = SqliteStore::open(&path).unwrap();
    let loaded = store.load().unwrap();
    assert!(loaded.receipts["m1"].state == ReceiptState::Pending { text: "kept".into() });
    assert!(loaded.e2ee.identity.is_none());
    drop(store);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_second_opener_is_refused_while_the_first_holds_it() {
    let root = temp_root("exclusive");
    let first = SqliteStore::open_in(&root, "agent-1").unwrap();
    let second = SqliteStore::open_in(&root, "agent-1");
    assert!(matches!(second, Err(StoreError::InUse(_))), "{second:?}");
    drop(first);
    SqliteStore::open_in(&root, "agent-1").expect("free again once closed");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_agent_ids_and_newer_schemas_are_refused() {
    let root = temp_root("refusals");
    for id in ["", ".", "..", "a/b", "a\\b"] {
        assert!(matches!(SqliteStore::open_in(&root, id), Err(StoreError::BadAgentId(bad)) if bad == id), "{id:?}");
    }
    let store = SqliteStore::open_in(&root, "agent-1").unwrap();
    let path = store.path().to_owned();
    drop(store);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    drop(connection);
    assert!(matches!(SqliteStore::open(&path), Err(StoreError::NewerSchema { found: 99, .. })));
    std::fs::remove_dir_all(&root).unwrap();
}

#[cfg(unix)]
#[test]
fn files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = temp_root("private");
    let store = SqliteStore::open_in(&root, "agent-1").unwrap();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(store.path().parent().unwrap()), 0o700);
    drop(store);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_version_2_file_with_data_is_migrated_and_keeps_it() {
    use pacerelle_core::store::{DeliveryFailure, PeerId, PrekeyKind, StoredPeerIdentity};
    let root = temp_root("migrate-v2");
    std::fs::create_dir_all(root.join("agent-1")).unwrap();
    let path = root.join("agent-1").join(pacerelle_store_sqlite::FILE_NAME);
    // The version 2 schema as the previous release wrote it, in WAL mode like a file it used.
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.pragma_update(None, "journal_mode", "WAL").unwrap();
    connection
        .execute_batch(
            "CREATE TABLE receipts (message_id TEXT PRIMARY KEY, digest TEXT NOT NULL, sender TEXT NOT NULL,
                 conversation_id TEXT NOT NULL, from_device_id TEXT, pending_text TEXT, accepted_at INTEGER,
                 CHECK ((pending_text IS NULL) <> (accepted_at IS NULL)));
             CREATE TABLE last_devices (person TEXT NOT NULL, conversation_id TEXT NOT NULL, device_id TEXT NOT NULL,
                 PRIMARY KEY (person, conversation_id));
             CREATE TABLE identity (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), private_key BLOB NOT NULL,
                 registration_id INTEGER NOT NULL, prekey_counter INTEGER);
             CREATE TABLE prekeys (kind TEXT NOT NULL, id INTEGER NOT NULL, private_key BLOB NOT NULL,
                 PRIMARY KEY (kind, id));
             CREATE TABLE sessions (peer TEXT PRIMARY KEY, record BLOB NOT NULL);
             CREATE TABLE history_keys (conversation_id TEXT PRIMARY KEY, key_id TEXT NOT NULL,
                 epoch INTEGER NOT NULL, raw_key BLOB NOT NULL);
             INSERT INTO receipts VALUES ('m1', 'd1', 'u1', 'c1', 'phone', 'kept', NULL);
             INSERT INTO receipts VALUES ('m2', 'd2', 'u1', 'c1', NULL, NULL, 1700000000123);
             INSERT INTO last_devices VALUES ('u1', 'c1', 'phone');
             INSERT INTO identity VALUES (1, zeroblob(32), 4242, 152);
             INSERT INTO prekeys VALUES ('one-time', 102, zeroblob(32));
             INSERT INTO prekeys VALUES ('kyber', 101, zeroblob(3168));
             INSERT INTO sessions VALUES ('human:u1:c1', zeroblob(2200));
             INSERT INTO history_keys VALUES ('c1', 'k1', 3, zeroblob(32));
             PRAGMA user_version = 2;",
        )
        .unwrap();
    drop(connection);

    let mut store = SqliteStore::open(&path).unwrap();
    let loaded = store.load().unwrap();
    let m1 = &loaded.receipts["m1"];
    assert_eq!((m1.digest.as_str(), m1.from_device_id.as_deref(), m1.sender_identity), ("d1", Some("phone"), None));
    assert!(m1.state == ReceiptState::Pending { text: "kept".into() });
    assert!(loaded.receipts["m2"].state == ReceiptState::Accepted { at: Timestamp::from_millis(1_700_000_000_123) });
    assert_eq!(loaded.last_devices[&("u1".to_owned(), "c1".to_owned())], "phone");
    let identity = loaded.e2ee.identity.as_ref().expect("the identity is kept");
    assert_eq!((identity.registration_id, identity.private_key.expose()), (4242, &[0; 32][..]));
    assert_eq!(loaded.e2ee.prekey_counter, Some(152), "the counter moves to its own row");
    assert_eq!(loaded.e2ee.one_time_published_at, None);
    assert_eq!(
        loaded.e2ee.prekeys.keys().copied().collect::<Vec<_>>(),
        [(PrekeyKind::OneTime, 102), (PrekeyKind::Kyber, 101)]
    );
    assert_eq!(loaded.e2ee.prekeys[&(PrekeyKind::Kyber, 101)].expose().len(), 3168);
    assert_eq!(loaded.e2ee.sessions["human:u1:c1"].expose().len(), 2200);
    assert_eq!((loaded.e2ee.history_keys["c1"].key_id.as_str(), loaded.e2ee.history_keys["c1"].epoch), ("k1", 3));
    assert!(loaded.failures.is_empty() && loaded.e2ee.peer_identities.is_empty());

    // The new tables take what version 3 adds.
    let mut expected = loaded;
    let changes = StoreChanges {
        put_receipts: vec![Receipt {
            sender_identity: Some([5; 33]),
            ..receipt("m3", ReceiptState::Pending { text: "new".into() })
        }],
        put_failures: vec![DeliveryFailure {
            message_id: "m4".into(),
            digest: "d".into(),
            from: "u1".into(),
            conversation_id: "c1".into(),
            attempts: 2,
            reason: "no session".into(),
            first_at: Timestamp::from_millis(5),
            given_up_at: None,
        }],
        e2ee: pacerelle_core::store::E2eeChanges {
            put_peer_identities: vec![(
                PeerId::new("u1", Some("phone")),
                StoredPeerIdentity { trusted: [5; 33], pending: None, last_seen: Timestamp::from_millis(6) },
            )],
            one_time_published_at: Some(Timestamp::from_millis(7)),
            prekey_counter: Some(153),
            ..Default::default()
        },
        ..Default::default()
    };
    store.apply(&changes).unwrap();
    expected.apply(&changes);
    drop(store);
    assert_eq!(SqliteStore::open(&path).unwrap().load().unwrap(), expected);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, 5);
    drop(connection);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_version_3_file_with_data_is_migrated_in_place_and_keeps_it() {
    use pacerelle_core::store::{OutboxEntry, SentFrame};
    let root = temp_root("migrate-v3");
    // A version 3 file: what the migrations up to 3 make (the only way a release wrote one),
    // holding a receipt of each kind.
    let mut store = SqliteStore::open_in(&root, "agent-1").unwrap();
    let path = store.path().to_owned();
    let v3_changes = StoreChanges {
        put_receipts: vec![
            receipt("m1", ReceiptState::Pending { text: "kept".into() }),
            receipt("m2", ReceiptState::Accepted { at: Timestamp::from_millis(1_700_000_000_123) }),
        ],
        ..Default::default()
    };
    store.apply(&v3_changes).unwrap();
    drop(store);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch("DROP TABLE sent_frames; DROP TABLE outbox; DROP TABLE group_keys; PRAGMA user_version = 3;")
        .unwrap();
    drop(connection);

    let mut store = SqliteStore::open(&path).unwrap();
    let mut expected = AgentSnapshot::default();
    expected.apply(&v3_changes);
    assert_eq!(store.load().unwrap(), expected, "version 3's data is kept");
    // The new tables take what version 4 adds.
    let sent = |id: &str| SentFrame { id: id.into(), frame: format!("{{\"id\":\"{id}\"}}") };
    let changes = StoreChanges {
        put_sent_frames: vec![("m2".into(), vec![sent("r1"), sent("r2")])],
        put_outbox: vec![OutboxEntry { seq: 0, sent: sent("o1") }],
        ..Default::default()
    };
    store.apply(&changes).unwrap();
    expected.apply(&changes);
    drop(store);
    assert_eq!(SqliteStore::open(&path).unwrap().load().unwrap(), expected);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, 5);
    drop(connection);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_version_4_file_with_data_is_migrated_in_place_and_keeps_it() {
    use pacerelle_core::store::{OutboxEntry, SecretBytes, SentFrame, StoredGroupKey};
    let root = temp_root("migrate-v4");
    // A version 4 file: what the migrations up to 4 make, holding receipts, a handler's frames
    // and an outbox entry.
    let mut store = SqliteStore::open_in(&root, "agent-1").unwrap();
    let path = store.path().to_owned();
    let sent = |id: &str| SentFrame { id: id.into(), frame: format!("{{\"id\":\"{id}\"}}") };
    let v4_changes = StoreChanges {
        put_receipts: vec![
            receipt("m1", ReceiptState::Pending { text: "kept".into() }),
            receipt("m2", ReceiptState::Accepted { at: Timestamp::from_millis(1_700_000_000_123) }),
        ],
        put_sent_frames: vec![("m2".into(), vec![sent("r1")])],
        put_outbox: vec![OutboxEntry { seq: 3, sent: sent("o1") }],
        ..Default::default()
    };
    store.apply(&v4_changes).unwrap();
    drop(store);
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute_batch("DROP TABLE group_keys; PRAGMA user_version = 4;").unwrap();
    drop(connection);

    let mut store = SqliteStore::open(&path).unwrap();
    let mut expected = AgentSnapshot::default();
    expected.apply(&v4_changes);
    assert_eq!(store.load().unwrap(), expected, "version 4's data is kept");
    // The new table takes what version 5 adds: several keys of one group, by epoch.
    let key = |key_id: &str, epoch: u64, byte: u8| StoredGroupKey {
        conversation_id: "g1".into(),
        key_id: key_id.into(),
        epoch,
        raw_key: SecretBytes::new(vec![byte; 32]),
    };
    let changes = StoreChanges { put_group_keys: vec![key("k1", 1, 1), key("k2", 2, 2)], ..Default::default() };
    store.apply(&changes).unwrap();
    expected.apply(&changes);
    drop(store);
    let reloaded = SqliteStore::open(&path).unwrap().load().unwrap();
    assert_eq!(reloaded.group_keys.len(), 2);
    assert_eq!(reloaded, expected);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, 5);
    drop(connection);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_value_sqlite_cannot_hold_refuses_the_whole_change() {
    use pacerelle_core::store::DeliveryFailure;
    let root = temp_root("too-large");
    let mut store = SqliteStore::open_in(&root, "agent-1").unwrap();
    let changes = StoreChanges {
        put_receipts: vec![receipt("m1", ReceiptState::Pending { text: "would be lost".into() })],
        put_failures: vec![DeliveryFailure {
            message_id: "m2".into(),
            digest: "d".into(),
            from: "u1".into(),
            conversation_id: "c1".into(),
            attempts: 1,
            reason: "unreadable".into(),
            first_at: Timestamp::from_millis(u64::MAX),
            given_up_at: None,
        }],
        ..Default::default()
    };
    let error = store.apply(&changes).unwrap_err();
    assert!(
        matches!(&error, StoreError::TooLarge { table: "delivery_failures", key, column: "first_at", value: u64::MAX } if key == "m2"),
        "{error:?}"
    );
    assert_eq!(store.load().unwrap(), AgentSnapshot::default(), "nothing of the change was applied");
    drop(store);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_batch_with_a_value_sqlite_cannot_hold_is_refused_whole() {
    let root = temp_root("too-large-batch");
    let mut store = SqliteStore::open_in(&root, "agent-1").unwrap();
    let kept = StoreChanges {
        put_receipts: vec![receipt("m0", ReceiptState::Pending { text: "stored before".into() })],
        ..Default::default()
    };
    store.apply(&kept).unwrap();
    let batch = [
        StoreChanges {
            put_receipts: vec![receipt("m0", ReceiptState::Accepted { at: Timestamp::from_millis(5) })],
            ..Default::default()
        },
        StoreChanges {
            put_receipts: vec![receipt("m1", ReceiptState::Pending { text: "would be lost".into() })],
            ..Default::default()
        },
        StoreChanges {
            put_receipts: vec![receipt("m2", ReceiptState::Accepted { at: Timestamp::from_millis(u64::MAX) })],
            ..Default::default()
        },
    ];
    let error = store.apply_batch(&batch).unwrap_err();
    assert!(
        matches!(&error, StoreError::TooLarge { table: "receipts", key, column: "accepted_at", value: u64::MAX } if key == "m2"),
        "{error:?}"
    );
    let mut expected = AgentSnapshot::default();
    expected.apply(&kept);
    assert_eq!(store.load().unwrap(), expected, "nothing of the batch was applied, its first changes included");
    drop(store);
    assert_eq!(SqliteStore::open_in(&root, "agent-1").unwrap().load().unwrap(), expected, "nor after reopening");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A store holding one good row in each table, for corrupting one of them.
fn store_with_one_of_everything(root: &std::path::Path) -> PathBuf {
    use pacerelle_core::store::{
        DeliveryFailure, E2eeChanges, PeerId, PrekeyKind, SecretBytes, StoredHistoryKey, StoredIdentity,
        StoredPeerIdentity, StoredPrekey,
    };
    let mut store = SqliteStore::open_in(root, "agent-1").unwrap();
    store
        .apply(&StoreChanges {
            put_receipts: vec![receipt("m1", ReceiptState::Accepted { at: Timestamp::from_millis(1) })],
            put_last_devices: vec![(("u1".into(), "c1".into()), "phone".into())],
            put_failures: vec![DeliveryFailure {
                message_id: "f1".into(),
                digest: "d".into(),
                from: "u1".into(),
                conversation_id: "c1".into(),
                attempts: 1,
                reason: "unreadable".into(),
                first_at: Timestamp::from_millis(1),
                given_up_at: None,
            }],
            e2ee: E2eeChanges {
                identity: Some(StoredIdentity { private_key: SecretBytes::new(vec![1; 32]), registration_id: 7 }),
                prekey_counter: Some(9),
                put_prekeys: vec![StoredPrekey {
                    kind: PrekeyKind::OneTime,
                    id: 9,
                    private_key: SecretBytes::new(vec![2; 32]),
                }],
                put_sessions: vec![("human:u1:c1".into(), SecretBytes::new(vec![3; 100]))],
                put_history_keys: vec![(
                    "c1".into(),
                    StoredHistoryKey { key_id: "k1".into(), epoch: 1, raw_key: SecretBytes::new(vec![4; 32]) },
                )],
                put_peer_identities: vec![
                    (
                        PeerId::new("alice", Some("phone")),
                        StoredPeerIdentity { trusted: [5; 33], pending: None, last_seen: Timestamp::from_millis(1) },
                    ),
                    (
                        PeerId::new("bob", None::<String>),
                        StoredPeerIdentity { trusted: [6; 33], pending: None, last_seen: Timestamp::from_millis(1) },
                    ),
                ],
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
    let path = store.path().to_owned();
    store.load().expect("every row is good before it is corrupted");
    path
}

#[test]
fn a_corrupt_row_names_its_table_and_key() {
    let wrong_type = |column, expected, found| RowProblem::WrongType { column, expected, found };
    let cases: Vec<(&str, &str, &str, RowProblem)> = vec![
        (
            "UPDATE receipts SET sender_identity = x'0501' WHERE message_id = 'm1'",
            "receipts",
            "m1",
            RowProblem::WrongLength { column: "sender_identity", expected: 33, found: 2 },
        ),
        (
            "UPDATE receipts SET accepted_at = -5 WHERE message_id = 'm1'",
            "receipts",
            "m1",
            RowProblem::OutOfRange { column: "accepted_at", value: -5 },
        ),
        (
            "UPDATE receipts SET digest = x'00' WHERE message_id = 'm1'",
            "receipts",
            "m1",
            wrong_type("digest", "text", "blob"),
        ),
        (
            "UPDATE last_devices SET device_id = x'00'",
            "last_devices",
            "u1 in c1",
            wrong_type("device_id", "text", "blob"),
        ),
        (
            "UPDATE delivery_failures SET attempts = -1",
            "delivery_failures",
            "f1",
            RowProblem::OutOfRange { column: "attempts", value: -1 },
        ),
        (
            "UPDATE identity SET registration_id = 4294967296",
            "identity",
            "1",
            RowProblem::OutOfRange { column: "registration_id", value: 1 << 32 },
        ),
        (
            "UPDATE prekey_state SET one_time_published_at = 'yesterday'",
            "prekey_state",
            "1",
            wrong_type("one_time_published_at", "integer", "text"),
        ),
        ("UPDATE prekeys SET kind = 'two-time'", "prekeys", "two-time 9", RowProblem::UnknownPrekeyKind),
        ("UPDATE prekeys SET id = -9", "prekeys", "one-time -9", RowProblem::OutOfRange { column: "id", value: -9 }),
        ("UPDATE sessions SET record = 'text'", "sessions", "human:u1:c1", wrong_type("record", "blob", "text")),
        (
            "UPDATE history_keys SET raw_key = zeroblob(31)",
            "history_keys",
            "c1",
            RowProblem::WrongLength { column: "raw_key", expected: 32, found: 31 },
        ),
        (
            "UPDATE peer_identities SET trusted = zeroblob(32) WHERE user_id = 'alice'",
            "peer_identities",
            "alice (device phone)",
            RowProblem::WrongLength { column: "trusted", expected: 33, found: 32 },
        ),
        (
            "UPDATE peer_identities SET device_id = 'ghost' WHERE user_id = 'bob'",
            "peer_identities",
            "bob",
            RowProblem::PeerDevice,
        ),
    ];
    for (index, (corruption, table, key, problem)) in cases.into_iter().enumerate() {
        let root = temp_root(&format!("corrupt-{index}"));
        let path = store_with_one_of_everything(&root);
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection.execute(corruption, []).unwrap();
        drop(connection);
        let error = SqliteStore::open(&path).unwrap().load().unwrap_err();
        let message = error.to_string();
        match error {
            StoreError::Corrupt { table: found_table, key: found_key, problem: found_problem } => {
                assert_eq!((found_table, found_key.as_str(), found_problem), (table, key, problem), "{corruption}");
            }
            other => panic!("{corruption}: {other:?}"),
        }
        assert!(message.contains(table) && message.contains(key), "{message}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn existing_files_are_narrowed_to_their_owner_on_open() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = temp_root("narrowed");
    let path = SqliteStore::open_in(&root, "agent-1").unwrap().path().to_owned();
    let folder = path.parent().unwrap().to_owned();
    let companion = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    // As a copy, a restore from backup or an older version may have left them.
    std::fs::write(companion("-wal"), b"").unwrap();
    std::fs::write(companion("-shm"), b"").unwrap();
    let widen =
        |path: &std::path::Path, mode| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    widen(&folder, 0o755);
    widen(&path, 0o644);
    widen(&companion("-wal"), 0o666);
    widen(&companion("-shm"), 0o644);

    let store = SqliteStore::open_in(&root, "agent-1").unwrap();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&path), 0o600);
    for suffix in ["-wal", "-shm"] {
        if let Ok(metadata) = std::fs::metadata(companion(suffix)) {
            assert_eq!(metadata.permissions().mode() & 0o777, 0o600, "{suffix}");
        }
    }
    assert!(companion("-wal").exists(), "the WAL is open");
    drop(store);

    // A file opened by path: the file is narrowed, its folder (not the store's) left alone.
    widen(&folder, 0o755);
    widen(&path, 0o640);
    drop(SqliteStore::open(&path).unwrap());
    assert_eq!((mode(&folder), mode(&path)), (0o755, 0o600));
    std::fs::remove_dir_all(&root).unwrap();
}

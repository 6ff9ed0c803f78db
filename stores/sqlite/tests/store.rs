//! The SQLite store: what is applied is what loads, across reopening; one process at a time;
//! files private to their owner.

use pacerelle_core::Timestamp;
use pacerelle_core::store::{AgentSnapshot, AgentStore, Receipt, ReceiptState, StoreChanges};
use pacerelle_store_sqlite::{SqliteStore, StoreError};
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
    for id in ["", "..", "a/b"] {
        assert!(SqliteStore::open_in(&root, id).is_err(), "{id:?}");
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

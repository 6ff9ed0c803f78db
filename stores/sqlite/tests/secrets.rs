//! Deleted secrets leave no trace in the store's files: a used one-time prekey, replaced session
//! records, a pending text replaced by its acceptance and a removed pending receipt are found
//! neither in the database file nor in its WAL, while the store runs (what a crash or a copy of
//! the disk would leave) and after it closes.

use pacerelle_core::Timestamp;
use pacerelle_core::store::{
    AgentStore, E2eeChanges, PrekeyKind, Receipt, ReceiptState, SecretBytes, StoreChanges, StoredPrekey,
};
use pacerelle_store_sqlite::SqliteStore;
use std::path::Path;

/// `marker` repeated to `len` bytes: any fragment of the secret that survives contains the
/// marker whole, even where SQLite split the value across pages.
fn secret(marker: &str, len: usize) -> Vec<u8> {
    marker.bytes().cycle().take(len).collect()
}

fn receipt(id: &str, state: ReceiptState) -> Receipt {
    Receipt {
        message_id: id.into(),
        digest: format!("digest-{id}"),
        from: "u1".into(),
        conversation_id: "c1".into(),
        from_device_id: None,
        sender_identity: None,
        state,
    }
}

/// The markers of `markers` found in the database file and its companions, with the file.
fn found_in_files(database: &Path, markers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let Ok(bytes) = std::fs::read(&name) else { continue };
        for marker in markers {
            if bytes.windows(marker.len()).any(|window| window == marker.as_bytes()) {
                found.push(format!("{marker} in agent.db{suffix}"));
            }
        }
    }
    found
}

const USED_PREKEY: &str = "USED-ONE-TIME-PREKEY";
const OLD_SESSION: &str = "OLD-SESSION-CHAIN-KEY";
const OLD_LARGE_SESSION: &str = "OLD-LARGE-SESSION-RECORD";
const ACCEPTED_TEXT: &str = "PENDING-TEXT-NOW-ACCEPTED";
const REMOVED_TEXT: &str = "PENDING-TEXT-NOW-REMOVED";
const DELETED: [&str; 5] = [USED_PREKEY, OLD_SESSION, OLD_LARGE_SESSION, ACCEPTED_TEXT, REMOVED_TEXT];

const KEPT_PREKEY: &str = "KEPT-ONE-TIME-PREKEY";
const NEW_SESSION: &str = "NEW-SESSION-CHAIN-KEY";
const NEW_LARGE_SESSION: &str = "NEW-LARGE-SESSION-RECORD";
const KEPT: [&str; 3] = [KEPT_PREKEY, NEW_SESSION, NEW_LARGE_SESSION];

#[test]
fn deleted_and_replaced_secrets_are_gone_from_the_files() {
    erase_secrets("one", |store, steps| steps.iter().try_for_each(|changes| store.apply(changes)));
}

/// Group commit keeps the guarantee: the same changes in one batch (one transaction, one
/// checkpoint after it) leave no deleted secret either.
#[test]
fn deleted_and_replaced_secrets_are_gone_after_a_batch() {
    erase_secrets("batch", |store, steps| store.apply_batch(steps));
}

/// Stores secrets, then deletes and replaces some with `apply` (each change, or all of them in
/// a batch), and scans the files.
fn erase_secrets(
    name: &str,
    apply: impl Fn(&mut SqliteStore, &[StoreChanges]) -> Result<(), pacerelle_store_sqlite::StoreError>,
) {
    let root = std::env::temp_dir().join(format!("pacerelle-store-secrets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut store = SqliteStore::open_in(&root, "agent-1").unwrap();
    let path = store.path().to_owned();
    let prekey =
        |id, marker| StoredPrekey { kind: PrekeyKind::OneTime, id, private_key: SecretBytes::new(secret(marker, 32)) };
    store
        .apply(&StoreChanges {
            put_receipts: vec![
                receipt("m1", ReceiptState::Pending { text: ACCEPTED_TEXT.repeat(3) }),
                receipt("m2", ReceiptState::Pending { text: REMOVED_TEXT.repeat(3) }),
            ],
            e2ee: E2eeChanges {
                put_prekeys: vec![prekey(7, USED_PREKEY), prekey(8, KEPT_PREKEY)],
                put_sessions: vec![
                    // A record as large as today's (about 2 kB) fits in its page; a larger one
                    // spills into overflow pages, which are freed and reused differently.
                    ("human:u1:c1".into(), SecretBytes::new(secret(OLD_SESSION, 2200))),
                    ("human:u2:c1".into(), SecretBytes::new(secret(OLD_LARGE_SESSION, 20_000))),
                ],
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
    assert_eq!(found_in_files(&path, &DELETED).len(), DELETED.len(), "the scan finds secrets while they are stored");
    // Reopening checkpoints: the secrets now sit in the database file's pages, not only in the
    // WAL, as they do in a store that has run for a while.
    drop(store);
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(found_in_files(&path, &DELETED).len(), DELETED.len(), "the scan finds secrets in the database file");

    // The message on one session moves it on and uses the prekey; the other session moves on in
    // a change of its own; then the first message is accepted and the second dropped.
    let steps = [
        StoreChanges {
            e2ee: E2eeChanges {
                remove_prekeys: vec![(PrekeyKind::OneTime, 7)],
                put_sessions: vec![("human:u1:c1".into(), SecretBytes::new(secret(NEW_SESSION, 2300)))],
                ..Default::default()
            },
            ..Default::default()
        },
        StoreChanges {
            e2ee: E2eeChanges {
                put_sessions: vec![("human:u2:c1".into(), SecretBytes::new(secret(NEW_LARGE_SESSION, 20_000)))],
                ..Default::default()
            },
            ..Default::default()
        },
        StoreChanges {
            put_receipts: vec![receipt("m1", ReceiptState::Accepted { at: Timestamp::from_millis(1) })],
            remove_receipts: vec!["m2".into()],
            ..Default::default()
        },
    ];
    apply(&mut store, &steps).unwrap();
    // While the store runs: what a crash, or a copy of the disk taken now, would leave.
    assert_eq!(found_in_files(&path, &DELETED), Vec::<String>::new(), "no deleted secret while open");
    assert_eq!(found_in_files(&path, &KEPT).len(), KEPT.len(), "what is kept is still found");

    drop(store);
    assert_eq!(found_in_files(&path, &DELETED), Vec::<String>::new(), "no deleted secret once closed");
    assert_eq!(found_in_files(&path, &KEPT).len(), KEPT.len(), "what is kept is still found once closed");
    let loaded = SqliteStore::open(&path).unwrap().load().unwrap();
    assert_eq!(loaded.e2ee.sessions["human:u1:c1"].expose(), &secret(NEW_SESSION, 2300)[..]);
    assert_eq!(loaded.e2ee.prekeys.len(), 1);
    assert_eq!(loaded.receipts.len(), 1);
    std::fs::remove_dir_all(&root).unwrap();
}

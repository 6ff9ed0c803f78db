//! Flat costs: the rows one message writes do not depend on how many receipts and sessions the
//! store already holds (no table or blob that grows with history is rewritten per message).

use super::*;
use pacerelle_core::store::{Receipt, SecretBytes, SentFrame};

fn receipt(id: &str, state: ReceiptState) -> Receipt {
    Receipt {
        message_id: id.to_owned(),
        digest: "ab".repeat(32),
        from: "person-1".into(),
        conversation_id: "c-1".into(),
        from_device_id: None,
        sender_identity: None,
        state,
    }
}

fn accepted(id: &str, at: u64) -> Receipt {
    receipt(id, ReceiptState::Accepted { at: Timestamp::from_millis(at) })
}

fn session(name: &str) -> (String, SecretBytes) {
    (name.to_owned(), SecretBytes::new(vec![7; 1_500]))
}

/// A store holding `receipts` accepted receipts and `sessions` session records.
fn filled(dir: &Path, receipts: usize, sessions: usize) -> SqliteStore {
    let mut store = SqliteStore::open_in(dir, "agent-1").expect("opens");
    let changes = StoreChanges {
        put_receipts: (0..receipts).map(|index| accepted(&format!("old-{index:07}"), index as u64)).collect(),
        e2ee: pacerelle_core::store::E2eeChanges {
            put_sessions: (0..sessions).map(|index| session(&format!("human:p{index}:c{index}"))).collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    store.apply(&changes).expect("fills");
    store
}

/// What one encrypted message and its acceptance commit, as the agent makes them: the pending
/// receipt with the session's new record, then the accepted receipt with the reply it sent and
/// the oldest receipt aged out.
fn one_message(id: &str) -> [StoreChanges; 2] {
    let mut arrival = StoreChanges::default();
    arrival.put_receipts.push(receipt(id, ReceiptState::Pending { text: "hello".into() }));
    arrival.e2ee.put_sessions.push(session("human:p0:c0"));
    let mut acceptance = StoreChanges::default();
    acceptance.put_receipts.push(accepted(id, 10_000_000));
    acceptance.remove_receipts.push("old-0000000".into());
    acceptance.put_sent_frames.push((id.to_owned(), vec![SentFrame { id: "r1".into(), frame: "{}".into() }]));
    [arrival, acceptance]
}

/// Rows inserted, updated or deleted by applying `changes` (SQLite's own count).
fn rows_written(store: &mut SqliteStore, changes: &[StoreChanges]) -> i64 {
    let before = store.connection.total_changes();
    for change in changes {
        store.apply(change).expect("applies");
    }
    i64::try_from(store.connection.total_changes() - before).expect("a count")
}

#[test]
fn one_message_writes_the_same_rows_with_ten_or_thousands_of_records_stored() {
    let root = std::env::temp_dir().join(format!("flat-costs-sqlite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut small = filled(&root.join("small"), 10, 2);
    let mut large = filled(&root.join("large"), 20_000, 1_000);
    let small_rows = rows_written(&mut small, &one_message("m-1"));
    let large_rows = rows_written(&mut large, &one_message("m-1"));
    assert_eq!(small_rows, large_rows, "rows per message grow with what is stored");
    // A pending receipt (its stale row deleted first), a session record, the accepted receipt,
    // the reply's frame, the aged-out receipt: a handful of rows, nothing proportional.
    assert!(small_rows <= 10, "{small_rows} rows for one message");
    // And the records stay where they were: nothing was rewritten away.
    assert_eq!(large.receipt_count().expect("counts"), 20_000);
    drop((small, large));
    let _ = std::fs::remove_dir_all(&root);
}

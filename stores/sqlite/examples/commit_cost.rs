//! What a typical encrypted message costs the SQLite store: its arrival (pending receipt, the
//! peer's replaced session record, last device) and its acceptance (the receipt replaced by its
//! accepted form), each one `apply`, timed over many messages. Measured, never asserted.
//!
//! `cargo run --release -p pacerelle-store-sqlite --example commit_cost -- [messages] [folder]`
//! (defaults: 300 messages, a fresh folder under the system's temporary folder, which should be
//! on the disk being measured).

use pacerelle_core::Timestamp;
use pacerelle_core::store::{AgentStore, E2eeChanges, Receipt, ReceiptState, SecretBytes, StoreChanges};
use pacerelle_store_sqlite::SqliteStore;
use std::time::{Duration, Instant};

/// About the size of a responder's session record with its SPQR state (see BENCHMARKS.md).
const RECORD_BYTES: usize = 2200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|count| count.parse()).transpose()?.unwrap_or(300);
    let root = args.next().map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let root = root.join(format!("pacerelle-commit-cost-{}", std::process::id()));
    let mut store = SqliteStore::open_in(&root, "agent-1")?;
    let receipt = |index: usize, state| Receipt {
        message_id: format!("message-{index}"),
        digest: format!("{index:064x}"),
        from: "alice".into(),
        conversation_id: "conversation-1".into(),
        from_device_id: Some("phone".into()),
        sender_identity: Some([5; 33]),
        state,
    };
    let mut arrivals = Vec::with_capacity(messages);
    let mut acceptances = Vec::with_capacity(messages);
    for index in 0..messages {
        let arrival = StoreChanges {
            put_receipts: vec![receipt(index, ReceiptState::Pending { text: "x".repeat(100) })],
            put_last_devices: vec![(("alice".into(), "conversation-1".into()), "phone".into())],
            e2ee: E2eeChanges {
                put_sessions: vec![(
                    "human:alice:conversation-1:device:phone".into(),
                    SecretBytes::new(vec![u8::try_from(index % 251).unwrap_or(0); RECORD_BYTES]),
                )],
                ..Default::default()
            },
            ..Default::default()
        };
        let acceptance = StoreChanges {
            put_receipts: vec![receipt(
                index,
                ReceiptState::Accepted { at: Timestamp::from_millis(1_700_000_000_000 + index as u64) },
            )],
            ..Default::default()
        };
        let started = Instant::now();
        store.apply(&arrival)?;
        arrivals.push(started.elapsed());
        let started = Instant::now();
        store.apply(&acceptance)?;
        acceptances.push(started.elapsed());
    }
    drop(store);
    std::fs::remove_dir_all(&root)?;
    println!("{messages} messages, {RECORD_BYTES}-byte session record, under {}", root.display());
    report("arrival (pending receipt + session record)", &mut arrivals);
    report("acceptance (accepted receipt)", &mut acceptances);
    let mut totals: Vec<Duration> = arrivals.iter().zip(&acceptances).map(|(a, b)| *a + *b).collect();
    report("whole message", &mut totals);
    Ok(())
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort();
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction) as usize];
    let mean = times.iter().sum::<Duration>() / u32::try_from(times.len()).unwrap_or(u32::MAX).max(1);
    println!("{what:45} median {:>9.3?}  mean {:>9.3?}  p90 {:>9.3?}  max {:>9.3?}", at(0.5), mean, at(0.9), at(1.0));
}

//! Group commit without I/O: an agent ([`AgentState`], the code every runtime runs) fed a burst
//! of frames together commits it in one batch, and hands out nothing that depends on the batch
//! before its commit: no message reaches the app before its receipt is stored, no
//! acknowledgement goes out before its acceptance is stored. A batch the store refuses stops the
//! agent with nothing of the burst carried out.
//!
//! The store and the adapter write to one journal, so the order of commits and effects is what
//! the test reads.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_core::agent::{AgentConfig, Event, Input};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::store::{AgentSnapshot, AgentStore, MemoryStore, ReceiptState, StoreChanges};
use pacerelle_runtime_support::now;
use pacerelle_runtime_support::state::{AgentState, Effect};
use rand::SeedableRng as _;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, MutexGuard};

const AGENT: &str = "agent-1";
const BURST: usize = 12;

/// What happened, in order: a commit (its changes) or an effect handed to the adapter.
#[derive(Debug)]
enum Entry {
    Commit(Vec<StoreChanges>),
    /// A single change through `apply` (the runtime must not use it any more).
    Apply,
    /// A message handed to the app.
    Message(String),
    /// An acknowledgement of a message.
    Ack(String),
    /// Any other effect.
    Other,
}

#[derive(Debug, Default)]
struct Shared {
    journal: Vec<Entry>,
    store: MemoryStore,
    /// Refuse every batch from now on.
    failing: bool,
}

#[derive(Debug, Clone, Default)]
struct Journal(Arc<Mutex<Shared>>);

impl Journal {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, effect: Effect) {
        let entry = match effect {
            Effect::Event(Event::Message(message)) => Entry::Message(message.id),
            Effect::Frame(text) => {
                let frame: Value = serde_json::from_str(&text).expect("the agent writes JSON");
                match frame["type"].as_str() {
                    Some("ACK_READ") => Entry::Ack(frame["message_id"].as_str().unwrap_or_default().to_owned()),
                    _ => Entry::Other,
                }
            }
            _ => Entry::Other,
        };
        self.lock().journal.push(entry);
    }

    fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut self.lock().journal)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("disk full")]
struct DiskFull;

/// The agent's store: a memory store that writes each commit into the journal.
struct JournalStore(Journal);

impl AgentStore for JournalStore {
    type Error = DiskFull;

    fn load(&mut self) -> Result<AgentSnapshot, DiskFull> {
        Ok(self.0.lock().store.snapshot().clone())
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), DiskFull> {
        let mut shared = self.0.lock();
        shared.journal.push(Entry::Apply);
        if shared.failing {
            return Err(DiskFull);
        }
        let _ = AgentStore::apply(&mut shared.store, changes);
        Ok(())
    }

    fn apply_batch(&mut self, batch: &[StoreChanges]) -> Result<(), DiskFull> {
        let mut shared = self.0.lock();
        shared.journal.push(Entry::Commit(batch.to_vec()));
        if shared.failing {
            return Err(DiskFull);
        }
        let _ = AgentStore::apply_batch(&mut shared.store, batch);
        Ok(())
    }
}

/// A plaintext agent on a [`JournalStore`], started and connected.
fn connected_agent(journal: &Journal) -> AgentState {
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(11));
    let config = ClientConfig::new(AGENT, "token");
    let mut state = AgentState::open(&config, AgentConfig::new(AGENT), Box::new(JournalStore(journal.clone())), rng)
        .expect("the agent opens");
    state.run(|agent| agent.start(now()), |effect| journal.record(effect)).expect("the agent starts");
    state.feed(Input::Connected, |effect| journal.record(effect));
    journal.take();
    state
}

fn frame(id: &str) -> Input {
    let frame = json!({
        "type": "MSG", "id": id, "conversation_id": "c1", "from": "u1", "to": AGENT,
        "payload_b64": STANDARD.encode(format!("message {id}")), "encrypted": false,
    });
    Input::Frame(frame.to_string())
}

fn ids() -> Vec<String> {
    (0..BURST).map(|index| format!("m{index}")).collect()
}

/// The receipts the commits before `position` in `journal` stored, with their last state.
fn stored_before(journal: &[Entry], position: usize) -> AgentSnapshot {
    let mut snapshot = AgentSnapshot::default();
    for entry in &journal[..position] {
        if let Entry::Commit(batch) = entry {
            batch.iter().for_each(|changes| snapshot.apply(changes));
        }
    }
    snapshot
}

fn commits(journal: &[Entry]) -> Vec<&Vec<StoreChanges>> {
    journal.iter().filter_map(|entry| if let Entry::Commit(batch) = entry { Some(batch) } else { None }).collect()
}

#[test]
fn a_burst_of_frames_is_one_commit_and_no_message_is_handed_out_before_it() {
    let journal = Journal::default();
    let mut state = connected_agent(&journal);

    state.feed_all(ids().iter().map(|id| frame(id)), |effect| journal.record(effect));
    let entries = journal.take();

    let commits = commits(&entries);
    assert_eq!(commits.len(), 1, "the burst is one commit: {entries:?}");
    assert!(commits[0].len() >= BURST, "the commit holds every frame's change: {} changes", commits[0].len());
    assert!(!entries.iter().any(|entry| matches!(entry, Entry::Apply)), "no change is committed on its own");
    let handed: Vec<(usize, &String)> = entries
        .iter()
        .enumerate()
        .filter_map(|(position, entry)| if let Entry::Message(id) = entry { Some((position, id)) } else { None })
        .collect();
    assert_eq!(handed.iter().map(|(_, id)| (*id).clone()).collect::<Vec<_>>(), ids(), "every message, in order");
    for (position, id) in handed {
        let stored = stored_before(&entries, position);
        assert!(
            matches!(stored.receipts.get(id).map(|receipt| &receipt.state), Some(ReceiptState::Pending { .. })),
            "{id} reached the app before its receipt was stored: {entries:?}"
        );
    }
    assert_eq!(journal.lock().store.snapshot().receipts.len(), BURST, "the store holds every receipt");
}

#[test]
fn no_acknowledgement_goes_out_before_its_acceptance_is_stored() {
    let journal = Journal::default();
    let mut state = connected_agent(&journal);
    state.feed_all(ids().iter().map(|id| frame(id)), |effect| journal.record(effect));
    journal.take();

    for id in ids() {
        state.settle(&id, Ok(()), |effect| journal.record(effect));
    }
    let entries = journal.take();
    let acks: Vec<(usize, &String)> = entries
        .iter()
        .enumerate()
        .filter_map(|(position, entry)| if let Entry::Ack(id) = entry { Some((position, id)) } else { None })
        .collect();
    assert_eq!(acks.iter().map(|(_, id)| (*id).clone()).collect::<Vec<_>>(), ids(), "every message acknowledged");
    for (position, id) in acks {
        let stored = stored_before(&entries, position);
        assert!(
            matches!(stored.receipts.get(id).map(|receipt| &receipt.state), Some(ReceiptState::Accepted { .. })),
            "{id} was acknowledged before its acceptance was stored: {entries:?}"
        );
    }
}

#[test]
fn a_refused_batch_stops_the_agent_with_nothing_of_the_burst_carried_out() {
    let journal = Journal::default();
    let mut state = connected_agent(&journal);
    journal.lock().failing = true;

    state.feed_all(ids().iter().map(|id| frame(id)), |effect| journal.record(effect));
    let entries = journal.take();

    assert_eq!(commits(&entries).len(), 1, "one batch tried: {entries:?}");
    assert!(
        !entries.iter().any(|entry| matches!(entry, Entry::Message(_) | Entry::Ack(_))),
        "nothing of the burst reached the app or the relay: {entries:?}"
    );
    assert!(state.is_stopped(), "the agent stopped");
    assert!(journal.lock().store.snapshot().receipts.is_empty(), "the store holds nothing of the batch");

    state.feed_all([frame("later")], |effect| journal.record(effect));
    assert!(journal.take().is_empty(), "what comes after is ignored");
}

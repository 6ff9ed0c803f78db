//! Group commit on every runtime: messages the relay holds for an agent that is away reach it
//! together when it connects; the runtime feeds the frames it has buffered to the core at once
//! and commits their receipts in one batch, and every message is still handled, answered and
//! acknowledged once.

use super::*;
use pacerelle_core::store::{AgentSnapshot, AgentStore, MemoryStore, ReceiptState, StoreChanges};
use std::sync::Mutex;

/// Messages waiting at the relay when the agent connects.
const BURST: usize = 16;

/// What the agent's store saw: for each commit, how many pending receipts it stored.
#[derive(Debug, Clone, Default)]
struct Commits(Arc<Mutex<CommitLog>>);

#[derive(Debug, Default)]
struct CommitLog {
    store: MemoryStore,
    pending_per_batch: Vec<usize>,
    single_applies: usize,
}

impl Commits {
    fn log(&self) -> std::sync::MutexGuard<'_, CommitLog> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct CountingStore(Commits);

impl AgentStore for CountingStore {
    type Error = std::convert::Infallible;

    fn load(&mut self) -> Result<AgentSnapshot, Self::Error> {
        Ok(self.0.log().store.snapshot().clone())
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), Self::Error> {
        let mut log = self.0.log();
        log.single_applies += 1;
        AgentStore::apply(&mut log.store, changes)
    }

    fn apply_batch(&mut self, batch: &[StoreChanges]) -> Result<(), Self::Error> {
        let mut log = self.0.log();
        let pending = batch
            .iter()
            .flat_map(|changes| &changes.put_receipts)
            .filter(|receipt| matches!(receipt.state, ReceiptState::Pending { .. }))
            .count();
        log.pending_per_batch.push(pending);
        AgentStore::apply_batch(&mut log.store, batch)
    }
}

/// Messages sent while the agent is away arrive together when it connects: their receipts are
/// stored in fewer commits than there are messages, the runtime never commits a change alone,
/// and each message is answered and acknowledged.
pub fn a_burst_is_committed_together<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let sent: Vec<String> = (0..BURST).map(|index| world.send(&format!("burst {index}"))).collect();
        wait_until("the relay holds the burst", || world.relay.pending_for_agent(AGENT) == BURST).await;

        let commits = Commits::default();
        let config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(world.relay.base_url()).expect("a base URL");
        let behaviour = Behaviour::new();
        let agent =
            H::start_with_store(config, fast_backoff(), behaviour.clone(), Box::new(CountingStore(commits.clone())));
        let mut replies = BTreeSet::new();
        for _ in 0..BURST {
            replies.insert(world.inbox.message().await.text);
        }
        let expected: BTreeSet<String> = (0..BURST).map(|index| format!("Received: burst {index}")).collect();
        assert_eq!(replies, expected, "{}: every message answered", H::NAME);
        for id in &sent {
            world.inbox.read(id).await;
            assert_eq!(behaviour.calls_for(id), 1, "{}: {id} handled once", H::NAME);
        }

        let (pending_per_batch, single_applies) = {
            let log = commits.log();
            (log.pending_per_batch.clone(), log.single_applies)
        };
        let receipts: usize = pending_per_batch.iter().sum();
        let batches = pending_per_batch.iter().filter(|&&pending| pending > 0).count();
        assert_eq!(receipts, BURST, "{}: one pending receipt per message", H::NAME);
        assert!(
            batches < BURST,
            "{}: {BURST} receipts in {batches} commits ({pending_per_batch:?}): the burst was not committed together",
            H::NAME,
        );
        assert_eq!(single_applies, 0, "{}: a change committed on its own", H::NAME);
        world.finish::<H>(agent).await;
    });
}

//! Stores for tests: one whose next write fails on demand ([`FailingStore`], around any store),
//! and one whose clones share their contents ([`SharedStore`]), so that an agent restarted on it
//! continues from what its predecessor committed.
//!
//! An agent whose store write fails stops right there, on every runtime: nothing it would have
//! done after the write is carried out and `connect` returns `ClientError::Store`
//! ([`crate::TestAgent::expect_stopped`] returns it). Restarted on the same contents, it
//! handles what the relay replays.

use pacerelle_core::store::{AgentSnapshot, AgentStore, MemoryStore, StoreChanges};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Which writes a [`FailSwitch`] makes fail.
type Selector = Box<dyn Fn(&StoreChanges) -> bool + Send>;

/// The error of a [`FailingStore`].
#[derive(Debug, thiserror::Error)]
pub enum FailingStoreError<E: std::error::Error + 'static> {
    /// The test asked for this write to fail ([`FailSwitch::fail_next_write`]).
    #[error("store write failed on purpose (pacerelle-test FailSwitch)")]
    Injected,
    /// The wrapped store failed on its own.
    #[error(transparent)]
    Store(E),
}

/// The test's side of a [`FailingStore`]: arms failures, counts writes. Cheap to clone.
#[derive(Clone, Default)]
pub struct FailSwitch {
    armed: Arc<Mutex<Option<Selector>>>,
    writes: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
}

impl std::fmt::Debug for FailSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailSwitch")
            .field("armed", &self.is_armed())
            .field("writes", &self.writes())
            .field("failures", &self.failures())
            .finish()
    }
}

impl FailSwitch {
    /// The agent's next write fails (once: later writes go through again, for a restart).
    pub fn fail_next_write(&self) {
        self.fail_next_write_where(|_| true);
    }

    /// The agent's next write for which `which` holds fails (once), for instance the write
    /// that accepts a message: `|changes| !changes.put_receipts.is_empty()`.
    pub fn fail_next_write_where(&self, which: impl Fn(&StoreChanges) -> bool + Send + 'static) {
        *self.lock() = Some(Box::new(which));
    }

    /// Disarms a failure that has not happened yet.
    pub fn disarm(&self) {
        *self.lock() = None;
    }

    /// Whether a failure is armed and has not happened yet.
    pub fn is_armed(&self) -> bool {
        self.lock().is_some()
    }

    /// Writes that went through so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Writes made to fail so far.
    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::SeqCst)
    }

    /// Whether this write fails: consumes the armed failure if it selects it.
    fn trips(&self, changes: &StoreChanges) -> bool {
        let mut armed = self.lock();
        if armed.as_ref().is_some_and(|which| which(changes)) {
            *armed = None;
            self.failures.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        false
    }

    fn lock(&self) -> MutexGuard<'_, Option<Selector>> {
        self.armed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Any store, whose writes fail when its [`FailSwitch`] says so. Give it to any runtime's
/// `Client::with_store`.
///
/// ```
/// use pacerelle_test::{FailingStore, SharedStore};
///
/// let disk = SharedStore::new();
/// let (store, switch) = FailingStore::new(disk.clone());
/// switch.fail_next_write();
/// # drop(store);
/// ```
#[derive(Debug)]
pub struct FailingStore<S> {
    inner: S,
    switch: FailSwitch,
}

impl<S: AgentStore> FailingStore<S> {
    /// `inner`, and the switch that makes its writes fail.
    pub fn new(inner: S) -> (Self, FailSwitch) {
        let switch = FailSwitch::default();
        (FailingStore { inner, switch: switch.clone() }, switch)
    }
}

impl<S: AgentStore> AgentStore for FailingStore<S> {
    type Error = FailingStoreError<S::Error>;

    fn load(&mut self) -> Result<AgentSnapshot, Self::Error> {
        self.inner.load().map_err(FailingStoreError::Store)
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), Self::Error> {
        if self.switch.trips(changes) {
            return Err(FailingStoreError::Injected);
        }
        self.inner.apply(changes).map_err(FailingStoreError::Store)?;
        self.switch.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A store in memory whose clones share their contents: an agent restarted on a clone
/// continues from what the last one committed (its identity, sessions, receipts), as it would
/// from its SQLite file.
#[derive(Debug, Clone, Default)]
pub struct SharedStore(Arc<Mutex<MemoryStore>>);

impl SharedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// What it holds now (what the agent committed).
    pub fn snapshot(&self) -> AgentSnapshot {
        self.lock().snapshot().clone()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryStore> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AgentStore for SharedStore {
    type Error = std::convert::Infallible;

    fn load(&mut self) -> Result<AgentSnapshot, Self::Error> {
        self.lock().load()
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), Self::Error> {
        self.lock().apply(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_armed_write_fails_once_and_the_rest_go_through() {
        let disk = SharedStore::new();
        let (mut store, switch) = FailingStore::new(disk.clone());
        let changes = StoreChanges::default();
        store.apply(&changes).expect("not armed");
        switch.fail_next_write();
        assert!(matches!(store.apply(&changes), Err(FailingStoreError::Injected)));
        store.apply(&changes).expect("failed once, then works");
        assert_eq!((switch.writes(), switch.failures(), switch.is_armed()), (2, 1, false));
    }

    #[test]
    fn a_selective_failure_waits_for_its_write() {
        let (mut store, switch) = FailingStore::new(SharedStore::new());
        switch.fail_next_write_where(|changes| !changes.put_receipts.is_empty());
        store.apply(&StoreChanges::default()).expect("not the selected write");
        assert!(switch.is_armed());
    }
}

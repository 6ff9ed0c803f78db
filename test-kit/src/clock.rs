//! The manual clock: time that only moves when the test says so, so that backoffs, handler
//! retries, keepalives and expiries are tested without sleeping.
//!
//! Give it to the agent with its runtime's `Client::set_clock(clock.shared())`: from then on
//! the agent's `now`, every deadline it waits for (reconnect backoff, keepalive, handler
//! retries) and `AgentHandle::now` (what a handler compares expiries with) read this clock.
//! [`ManualClock::advance`] wakes every deadline it passes at once (the blocking runtime
//! notices within its 20 ms tick).

use pacerelle_core::Timestamp;
use pacerelle_runtime_support::clock::{Clock, SharedClock, Wake};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A clock that stands still until [`ManualClock::advance`]. Clones share the same time.
///
/// ```
/// use pacerelle_test::ManualClock;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(600));
/// assert_eq!(clock.now().saturating_since(start), Duration::from_secs(600));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    now: Timestamp,
    /// Deadlines waiting for the clock to move, by id: woken (and forgotten) at every advance,
    /// forgotten when dropped (a timer the agent replaced).
    waiting: Vec<(u64, Timestamp, Waker)>,
    /// The next deadline's id.
    next_id: u64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the current system time (so that timestamps look like today's).
    pub fn new() -> Self {
        Self::starting_at(pacerelle_runtime_support::now())
    }

    /// A clock standing at `at`.
    pub fn starting_at(at: Timestamp) -> Self {
        ManualClock { state: Arc::new(Mutex::new(State { now: at, waiting: Vec::new(), next_id: 0 })) }
    }

    /// The time it shows.
    pub fn now(&self) -> Timestamp {
        self.lock().now
    }

    /// Moves the clock forward by `by` and wakes every deadline it passed.
    pub fn advance(&self, by: Duration) {
        let waiting = {
            let mut state = self.lock();
            state.now = state.now.saturating_add(by);
            std::mem::take(&mut state.waiting)
        };
        // Woken outside the lock: a woken deadline polls the clock at once.
        for (_, _, waker) in waiting {
            waker.wake();
        }
    }

    /// The earliest deadline an agent on this clock is waiting for (its next reconnection,
    /// ping, handler retry), if any. Async runtimes only: the blocking runtime looks at the
    /// clock every tick instead of waiting on it.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.lock().waiting.iter().map(|(_, at, _)| *at).min()
    }

    /// Waits (in real time, briefly) until an agent on this clock waits for a deadline at most
    /// `limit` from now, and returns how far it is: then [`ManualClock::advance`] by that much
    /// runs it, without racing the agent scheduling it. Async runtimes only (see
    /// [`ManualClock::next_deadline`]).
    ///
    /// # Panics
    /// When no such deadline is waited for within the kit's deadline.
    pub fn expect_deadline_within(&self, limit: Duration) -> Duration {
        let mut found = Duration::ZERO;
        crate::wait_until(&format!("the agent to wait for a deadline within {limit:?} on the manual clock"), || {
            let now = self.now();
            match self.next_deadline() {
                Some(at) if at.saturating_since(now) <= limit => {
                    found = at.saturating_since(now);
                    true
                }
                _ => false,
            }
        });
        found
    }

    /// This clock as the agent takes it (`Client::set_clock(clock.shared())`); it shares the
    /// same time.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds a valid time.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        ManualClock::now(self)
    }

    fn wake_at(&self, at: Timestamp) -> Option<Wake> {
        let id = {
            let mut state = self.lock();
            state.next_id += 1;
            state.next_id
        };
        Some(Box::pin(Deadline { clock: self.clone(), at, id }))
    }
}

/// Resolves once its clock reads `at` or later.
struct Deadline {
    clock: ManualClock,
    at: Timestamp,
    id: u64,
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.clock.lock().waiting.retain(|(id, ..)| *id != self.id);
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.lock();
        state.waiting.retain(|(id, ..)| *id != self.id);
        if state.now >= self.at {
            return Poll::Ready(());
        }
        state.waiting.push((self.id, self.at, cx.waker().clone()));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flag(AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_deadline_resolves_only_once_the_clock_passes_it() {
        let clock = ManualClock::starting_at(Timestamp::from_millis(1_000));
        let mut deadline = clock.wake_at(Timestamp::from_millis(61_000)).expect("a manual deadline");
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(deadline.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.next_deadline(), Some(Timestamp::from_millis(61_000)));
        clock.advance(Duration::from_secs(59));
        assert!(flag.0.load(Ordering::SeqCst), "an advance wakes the waiting deadline");
        assert!(deadline.as_mut().poll(&mut cx).is_pending(), "59 s is not 60 s");
        clock.advance(Duration::from_secs(1));
        assert!(deadline.as_mut().poll(&mut cx).is_ready());
        assert_eq!(Clock::until(&clock, Timestamp::from_millis(61_000)), Duration::ZERO);
        drop(deadline);
        assert_eq!(clock.next_deadline(), None, "a dropped deadline is forgotten");
    }
}

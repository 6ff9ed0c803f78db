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
    /// Deadlines waiting for the clock to move; woken (and forgotten) at every advance.
    waiting: Vec<Waker>,
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
        ManualClock { state: Arc::new(Mutex::new(State { now: at, waiting: Vec::new() })) }
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
        for waker in waiting {
            waker.wake();
        }
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
        Some(Box::pin(Deadline { clock: self.clone(), at }))
    }
}

/// Resolves once its clock reads `at` or later.
struct Deadline {
    clock: ManualClock,
    at: Timestamp,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.clock.lock();
        if state.now >= self.at {
            return Poll::Ready(());
        }
        state.waiting.push(cx.waker().clone());
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
        clock.advance(Duration::from_secs(59));
        assert!(flag.0.load(Ordering::SeqCst), "an advance wakes the waiting deadline");
        assert!(deadline.as_mut().poll(&mut cx).is_pending(), "59 s is not 60 s");
        clock.advance(Duration::from_secs(1));
        assert!(deadline.as_mut().poll(&mut cx).is_ready());
        assert_eq!(Clock::until(&clock, Timestamp::from_millis(61_000)), Duration::ZERO);
    }
}

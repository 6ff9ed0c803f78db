//! Where the agent reads the time: the [`Clock`] every runtime's driver consults for the core's
//! `now` and for its deadlines (reconnect backoff, keepalive, handler retries), the system
//! clock by default.
//!
//! Why a trait: tests of time-dependent behaviour (a retry after a backoff, a widget or a
//! permission that expires after ten minutes) should not sleep. A clock that only moves when a
//! test says so (`pacerelle_test::ManualClock`) makes them instant and exact; it only has to
//! say what time it is and wake a deadline once it has passed it.

use pacerelle_core::Timestamp;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A future that resolves once a clock has passed a deadline.
pub type Wake = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of time for an agent. Inject one with the runtime's `Client::set_clock`; handlers
/// read it with `AgentHandle::now`.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time as the core counts it.
    fn now(&self) -> Timestamp;

    /// A future that resolves once this clock reads `at` or later, for a clock that does not
    /// follow real time. `None` (the default) means it does: the driver waits for `at` on its
    /// executor's timer, for [`Clock::until`] `at`.
    fn wake_at(&self, at: Timestamp) -> Option<Wake> {
        let _ = at;
        None
    }

    /// How long from now until `at` on this clock (zero if past).
    fn until(&self, at: Timestamp) -> Duration {
        at.saturating_since(self.now())
    }
}

/// A clock shared by an agent's driver, its handles and the test that moves it.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock: what agents use unless told otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        crate::now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

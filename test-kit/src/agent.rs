//! The agent under test, served on a thread of its own with its runtime's executor: the same
//! test drives an agent on tokio, smol, async-std or the blocking runtime.
//!
//! Why a thread of its own: the test, the relay and the people block or run on the kit's tokio
//! runtime; an agent on its own executor shares nothing with them, as in production, and a
//! blocking agent's loop needs a thread anyway.

use crate::{DEADLINE, wait_until};
use pacerelle_core::Timestamp;
use pacerelle_runtime_support::{ClientError, SharedClock};
use std::sync::mpsc;
use std::time::Duration;

/// A client of one of the four runtimes, ready to serve: implemented for
/// `pacerelle_tokio::Client` (always), `pacerelle_smol::Client`, `pacerelle_async_std::Client`
/// and `pacerelle_blocking::Client` (features `smol`, `async-std`, `blocking`).
pub trait ServeAgent: Send + 'static {
    /// The runtime's name, for failure messages.
    const RUNTIME: &'static str;

    /// Reads time from `clock` (the runtime's `Client::set_clock`).
    fn set_clock(&mut self, clock: SharedClock);

    /// What the kit needs of the running agent: close it, see whether it is connected.
    fn control(&self) -> Box<dyn AgentControl>;

    /// Runs `connect` to its end on an executor of the runtime, on the calling thread.
    fn serve(self) -> Result<(), ClientError>;
}

/// What the kit does with a running agent, on any runtime (its handle).
pub trait AgentControl: Send + Sync {
    /// Asks it to stop.
    fn close(&self);
    /// Whether its socket is open.
    fn is_connected(&self) -> bool;
    /// The time on its clock.
    fn now(&self) -> Timestamp;
}

impl AgentControl for pacerelle_runtime_support::driver::AgentHandle {
    fn close(&self) {
        pacerelle_runtime_support::driver::AgentHandle::close(self);
    }
    fn is_connected(&self) -> bool {
        pacerelle_runtime_support::driver::AgentHandle::is_connected(self)
    }
    fn now(&self) -> Timestamp {
        pacerelle_runtime_support::driver::AgentHandle::now(self)
    }
}

impl ServeAgent for pacerelle_tokio::Client {
    const RUNTIME: &'static str = "tokio";

    fn set_clock(&mut self, clock: SharedClock) {
        pacerelle_tokio::Client::set_clock(self, clock);
    }
    fn control(&self) -> Box<dyn AgentControl> {
        Box::new(self.handle())
    }
    fn serve(self) -> Result<(), ClientError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pacerelle-test-agent")
            .enable_all()
            .build()
            .map_err(|_| ClientError::Closed)?;
        runtime.block_on(self.connect())
    }
}

#[cfg(feature = "smol")]
impl ServeAgent for pacerelle_smol::Client {
    const RUNTIME: &'static str = "smol";

    fn set_clock(&mut self, clock: SharedClock) {
        pacerelle_smol::Client::set_clock(self, clock);
    }
    fn control(&self) -> Box<dyn AgentControl> {
        Box::new(self.handle())
    }
    fn serve(self) -> Result<(), ClientError> {
        smol::block_on(self.connect())
    }
}

#[cfg(feature = "async-std")]
impl ServeAgent for pacerelle_async_std::Client {
    const RUNTIME: &'static str = "async-std";

    fn set_clock(&mut self, clock: SharedClock) {
        pacerelle_async_std::Client::set_clock(self, clock);
    }
    fn control(&self) -> Box<dyn AgentControl> {
        Box::new(self.handle())
    }
    fn serve(self) -> Result<(), ClientError> {
        async_std::task::block_on(self.connect())
    }
}

#[cfg(feature = "blocking")]
impl AgentControl for pacerelle_blocking::AgentHandle {
    fn close(&self) {
        pacerelle_blocking::AgentHandle::close(self);
    }
    fn is_connected(&self) -> bool {
        pacerelle_blocking::AgentHandle::is_connected(self)
    }
    fn now(&self) -> Timestamp {
        pacerelle_blocking::AgentHandle::now(self)
    }
}

#[cfg(feature = "blocking")]
impl ServeAgent for pacerelle_blocking::Client {
    const RUNTIME: &'static str = "blocking";

    fn set_clock(&mut self, clock: SharedClock) {
        pacerelle_blocking::Client::set_clock(self, clock);
    }
    fn control(&self) -> Box<dyn AgentControl> {
        Box::new(self.handle())
    }
    fn serve(self) -> Result<(), ClientError> {
        self.connect()
    }
}

/// An agent serving on a thread of its own. Stop it with [`TestAgent::stop`] (which checks
/// that `connect` returned `Ok`) or, after a fault that must stop it,
/// [`TestAgent::expect_stopped`]. Dropped without either, it is closed and left to finish.
pub struct TestAgent {
    control: Box<dyn AgentControl>,
    finished: mpsc::Receiver<Result<(), ClientError>>,
    runtime: &'static str,
}

impl std::fmt::Debug for TestAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAgent")
            .field("runtime", &self.runtime)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.control.close();
    }
}

impl TestAgent {
    /// Serves `client` and waits until it is connected (with end-to-end encryption, its
    /// prekeys are published by then, so encrypted people can start sessions).
    ///
    /// # Panics
    /// When `connect` ends first (its error is in the message) or the agent is not connected
    /// within the kit's deadline.
    pub fn start<C: ServeAgent>(client: C) -> TestAgent {
        let agent = Self::spawn(client);
        agent.wait_connected();
        agent
    }

    /// Serves `client` without waiting for it to connect (for an agent expected to fail).
    pub fn spawn<C: ServeAgent>(client: C) -> TestAgent {
        let control = client.control();
        let (done, finished) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("pacerelle-test-{}", C::RUNTIME))
            .spawn(move || {
                let _ = done.send(client.serve());
            })
            .expect("pacerelle-test: a thread for the agent");
        TestAgent { control, finished, runtime: C::RUNTIME }
    }

    /// Whether its socket is open.
    pub fn is_connected(&self) -> bool {
        self.control.is_connected()
    }

    /// Waits until its socket is open.
    ///
    /// # Panics
    /// When `connect` ended (its outcome is in the message) or the deadline passed.
    pub fn wait_connected(&self) {
        let runtime = self.runtime;
        wait_until(&format!("the {runtime} agent to connect"), || {
            if let Ok(outcome) = self.finished.try_recv() {
                panic!("pacerelle-test: the {runtime} agent stopped before it connected: {outcome:?}");
            }
            self.is_connected()
        });
    }

    /// The time on the agent's clock (a [`crate::ManualClock`]'s, if it was given one).
    pub fn now(&self) -> Timestamp {
        self.control.now()
    }

    /// Closes the agent; `connect` must return `Ok` within the deadline.
    ///
    /// # Panics
    /// When it returned an error, or did not return.
    pub fn stop(self) {
        self.stop_within(DEADLINE);
    }

    /// [`TestAgent::stop`], with `connect` returning `Ok` within `limit` of the close (to check
    /// that the agent closes promptly).
    ///
    /// # Panics
    /// When it returned an error, or did not return within `limit`.
    pub fn stop_within(self, limit: Duration) {
        self.control.close();
        match self.finished.recv_timeout(limit) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("pacerelle-test: the {} agent's connect returned {error}", self.runtime),
            Err(_) => {
                panic!("pacerelle-test: the {} agent's connect had not returned {limit:?} after close", self.runtime)
            }
        }
    }

    /// The agent stops on its own (a store failure, a refused token): returns the error
    /// `connect` returned, within the deadline.
    ///
    /// # Panics
    /// When `connect` returned `Ok` or had not returned by then.
    pub fn expect_stopped(self) -> ClientError {
        match self.finished.recv_timeout(DEADLINE) {
            Ok(Err(error)) => error,
            Ok(Ok(())) => {
                panic!("pacerelle-test: the {} agent was expected to fail, connect returned Ok", self.runtime)
            }
            Err(_) => panic!(
                "pacerelle-test: the {} agent was expected to stop, still serving after {DEADLINE:?}",
                self.runtime
            ),
        }
    }
}

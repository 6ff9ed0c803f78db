//! The in-process relay a test talks through: it registers agents and people, and injects the
//! faults an agent must survive.
//!
//! The relay (`pacerelle-relay`, the development relay) runs on a tokio runtime of the kit's
//! own, so the test itself is a plain `#[test]` whatever runtime the agent uses, and nothing of
//! the relay shares the agent's executor. Each agent reaches it through a proxy of its own
//! (see `proxy.rs`), which is where the network faults happen.

use crate::person::PersonBuilder;
use crate::proxy::FaultProxy;
use crate::{DEADLINE, wait_until};
use pacerelle_core::config::ClientConfig;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// An in-process development relay on a loopback port, with faults on demand.
///
/// Agents get their configuration from [`TestRelay::agent`] (registered, with a token),
/// people from [`TestRelay::person`]. Dropping it stops the relay.
///
/// Faults, each aimed at one agent by id (the relay restart at all of them):
///
/// | call | what the agent sees |
/// | --- | --- |
/// | [`drop_agent_socket`](TestRelay::drop_agent_socket) | the relay closes its socket; it reconnects after its backoff |
/// | [`half_open`](TestRelay::half_open) | its socket goes silent without closing (nothing either way); its keepalive must notice |
/// | [`restart`](TestRelay::restart), [`go_down`](TestRelay::go_down) / [`come_back`](TestRelay::come_back) | every socket cut, connections refused while down; the relay keeps what it held, as one restarting from its database |
/// | [`delay_to_agent`](TestRelay::delay_to_agent) | every frame from the relay arrives late, in order |
/// | [`reorder_to_agent`](TestRelay::reorder_to_agent) | the next frames arrive in reverse order |
///
/// A failing store is [`crate::FailingStore`]; time is [`crate::ManualClock`].
pub struct TestRelay {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    relay: Option<RelayHandle>,
    proxies: Mutex<BTreeMap<String, Arc<FaultProxy>>>,
}

impl std::fmt::Debug for TestRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRelay")
            .field("base_url", &self.base_url())
            .field("agents", &self.proxies().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.proxies().clear();
        if let (Some(relay), Some(runtime)) = (self.relay.take(), self.runtime.take()) {
            runtime.block_on(relay.shutdown());
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl TestRelay {
    /// Starts a relay on a loopback port. Call it from a plain `#[test]` (not inside an async
    /// runtime): the kit blocks the calling thread while it waits.
    ///
    /// # Panics
    /// When no loopback port or thread can be had: the test cannot run.
    pub fn start() -> TestRelay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pacerelle-test-relay")
            .enable_all()
            .build()
            .expect("pacerelle-test: a tokio runtime for the relay");
        let relay = runtime
            .block_on(Relay::spawn(RelayConfig::loopback_ephemeral()))
            .expect("pacerelle-test: the relay starts on a loopback port");
        TestRelay { runtime: Some(runtime), relay: Some(relay), proxies: Mutex::default() }
    }

    /// The relay's own URL (`http://127.0.0.1:port`), without any fault in between.
    pub fn base_url(&self) -> String {
        self.handle().base_url()
    }

    /// The configuration of agent `id`, registered at the relay with the token `"{id}-token"`;
    /// it reaches the relay through the fault proxy of that agent. Calling it again for the same
    /// id (to restart the agent) gives the same configuration.
    ///
    /// # Panics
    /// When the proxy cannot listen on loopback.
    pub fn agent(&self, id: &str) -> ClientConfig {
        let token = format!("{id}-token");
        self.handle().add_agent(id, &token);
        let proxy = self.proxy_or_start(id);
        ClientConfig::new(id, token)
            .with_base_url(proxy.base_url())
            .expect("pacerelle-test: the proxy's URL is a valid base URL")
    }

    /// [`TestRelay::agent`] with end-to-end encryption on.
    pub fn encrypted_agent(&self, id: &str) -> ClientConfig {
        ClientConfig { e2ee: true, ..self.agent(id) }
    }

    /// Person `id` (registered with the token `"{id}-token"`), on device `phone`, without
    /// end-to-end encryption until [`PersonBuilder::encrypted`]; [`PersonBuilder::talks_to`]
    /// connects them and opens their conversation with an agent.
    pub fn person(&self, id: &str) -> PersonBuilder<'_> {
        PersonBuilder::new(self, id)
    }

    /// The people of `people` and agent `agent_id` in one group conversation, made by the first
    /// person; returns them in order, each saying things to the whole group. With encrypted
    /// people the group is end-to-end encrypted: its first key is distributed to every member,
    /// so start the (encrypted) agent first, as its prekeys are needed.
    ///
    /// # Panics
    /// With no people, or when the relay refuses the group.
    pub fn group<'r>(
        &'r self,
        agent_id: &str,
        people: impl IntoIterator<Item = PersonBuilder<'r>>,
    ) -> Vec<crate::Person> {
        crate::person::group(agent_id, people.into_iter().collect())
    }

    /// The relay closes agent `id`'s socket (a clean close, as a relay that drops a connection
    /// does); the agent reconnects after its backoff, and the relay replays what it had not
    /// acknowledged.
    pub fn drop_agent_socket(&self, id: &str) {
        self.block_on(self.handle().disconnect_agent(id));
    }

    /// Agent `id`'s open socket goes silent without closing: nothing reaches either side and
    /// no close comes, as with a NAT or proxy that forgot the connection. The agent's keepalive
    /// must notice (after its ping interval and timeout, `AgentConfig::keepalive`) and
    /// reconnect; new connections work. [`TestRelay::thaw`] lets the frozen one go on.
    pub fn half_open(&self, id: &str) {
        self.proxy(id).set_frozen(true);
    }

    /// Lets agent `id`'s frozen sockets (see [`TestRelay::half_open`]) forward again, with what
    /// they held.
    pub fn thaw(&self, id: &str) {
        self.proxy(id).set_frozen(false);
    }

    /// Restarts the relay: [`TestRelay::go_down`], then [`TestRelay::come_back`]. Every agent's
    /// socket is cut and the agents reconnect after their backoff.
    pub fn restart(&self) {
        self.go_down();
        self.come_back();
    }

    /// The relay goes down for the agents: every socket and call in flight is cut, and
    /// connections are closed as soon as they are made, until [`TestRelay::come_back`]. What the
    /// relay held (messages not acknowledged, prekeys) is kept, as a relay restarting from its
    /// database keeps it. People stay connected: what is under test is the agent.
    pub fn go_down(&self) {
        for proxy in self.proxies().values() {
            proxy.set_down(true);
        }
    }

    /// The relay takes connections again after [`TestRelay::go_down`].
    pub fn come_back(&self) {
        for proxy in self.proxies().values() {
            proxy.set_down(false);
        }
    }

    /// Every frame the relay sends agent `id` from now on arrives `delay` late, in order (a slow
    /// link); `Duration::ZERO` ends it.
    pub fn delay_to_agent(&self, id: &str, delay: Duration) {
        self.proxy(id).set_delay(delay);
    }

    /// The next `frames` frames the relay sends agent `id` (messages, acknowledgement answers;
    /// not pings) are held until the last of them arrives, then delivered in reverse order.
    pub fn reorder_to_agent(&self, id: &str, frames: usize) {
        self.proxy(id).reorder_next(frames);
    }

    /// How many messages wait for agent `id` to acknowledge them.
    pub fn pending_for_agent(&self, id: &str) -> usize {
        self.handle().pending_for_agent(id)
    }

    /// How many sockets agent `id` has opened (its first connection and every reconnection).
    pub fn agent_connections(&self, id: &str) -> usize {
        self.proxies().get(id).map_or(0, |proxy| proxy.sockets())
    }

    /// Waits until agent `id` has acknowledged everything the relay holds for it.
    ///
    /// # Panics
    /// When messages are still pending after the kit's deadline.
    pub fn expect_all_acknowledged(&self, id: &str) {
        wait_until(&format!("agent {id} to acknowledge every message"), || self.pending_for_agent(id) == 0);
    }

    /// Waits until agent `id` has opened more than `sockets` sockets (see
    /// [`TestRelay::agent_connections`]): it reconnected.
    ///
    /// # Panics
    /// When it did not within the kit's deadline.
    pub fn expect_reconnection(&self, id: &str, sockets: usize) {
        wait_until(&format!("agent {id} to open socket number {}", sockets + 1), || {
            self.agent_connections(id) > sockets
        });
    }

    /// The relay itself, for what the kit does not wrap (frames it saw, forged frames, Agent
    /// Connect): see `pacerelle_relay::RelayHandle`. Its async methods run with
    /// [`TestRelay::block_on`].
    pub fn handle(&self) -> &RelayHandle {
        self.relay.as_ref().expect("pacerelle-test: the relay runs until dropped")
    }

    /// Runs `future` on the relay's runtime and waits for it, at most the kit's deadline.
    ///
    /// # Panics
    /// When it takes longer, or when called inside an async runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let runtime = self.runtime.as_ref().expect("pacerelle-test: the relay runs until dropped");
        runtime
            .block_on(async { tokio::time::timeout(DEADLINE, future).await })
            .unwrap_or_else(|_| panic!("pacerelle-test: gave up after {DEADLINE:?} waiting on the relay's runtime"))
    }

    pub(crate) fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("pacerelle-test: the relay runs until dropped").handle().clone()
    }

    fn proxy_or_start(&self, id: &str) -> Arc<FaultProxy> {
        if let Some(proxy) = self.proxies().get(id) {
            return proxy.clone();
        }
        let upstream = self.handle().addr();
        let proxy = self.block_on(FaultProxy::start(upstream)).expect("pacerelle-test: a loopback port for the proxy");
        let proxy = Arc::new(proxy);
        self.proxies().insert(id.to_owned(), proxy.clone());
        proxy
    }

    fn proxy(&self, id: &str) -> Arc<FaultProxy> {
        self.proxies().get(id).cloned().unwrap_or_else(|| {
            panic!("pacerelle-test: no agent {id:?}: make its configuration with relay.agent({id:?})")
        })
    }

    fn proxies(&self) -> MutexGuard<'_, BTreeMap<String, Arc<FaultProxy>>> {
        self.proxies.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

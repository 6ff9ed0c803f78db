//! How to start the agent under test on each runtime. A harness builds the runtime's client
//! with the suite's [`Behaviour`] as its handler and serves it on a thread of its own, with its
//! own executor, so that nothing of the test's tokio runtime (relay, person) leaks into it.

use crate::behaviour::{Behaviour, Report, act, act_blocking};
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::agent::SafetyNumber;
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connect::{CodeExchange, ConnectApp, ConnectStart, InstallationToken, RuntimeToken};
use pacerelle_core::store::{DynAgentStore, MemoryStore, PeerId};
use pacerelle_runtime_support::connect::AgentConnectError;
use pacerelle_runtime_support::driver::{self, AgentHandle};
use pacerelle_runtime_support::{ClientError, os_rng};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::oneshot;

/// Starts an agent on one runtime.
pub trait Harness {
    /// The runtime's name, for messages.
    const NAME: &'static str;

    /// Serves `behaviour` as the agent of `config` (with the core's `core` settings: the cases
    /// shorten the backoff) until closed, with an in-memory store.
    fn start(config: ClientConfig, core: AgentConfig, behaviour: Behaviour) -> Running {
        Self::start_with_store(config, core, behaviour, Box::new(MemoryStore::new()))
    }

    /// Like [`Harness::start`], continuing from `store` (a case that makes it fail, or restarts
    /// from what an earlier agent stored).
    fn start_with_store(
        config: ClientConfig,
        core: AgentConfig,
        behaviour: Behaviour,
        store: Box<dyn DynAgentStore>,
    ) -> Running;

    /// Serves `behaviour` with the runtime's `Client::new`: on the durable store `config`
    /// names (`store_root`) and the default core settings. The constructor's error when that
    /// store cannot be opened.
    fn start_new(config: ClientConfig, behaviour: Behaviour) -> Result<Running, ClientError>;

    /// Agent Connect's calls against `base_url` on the runtime (its `AgentConnect`), each
    /// blocking until answered. Call them outside any async context.
    fn agent_connect(base_url: &str) -> Box<dyn ConnectCalls>;
}

/// Agent Connect's three calls, whatever the runtime, blocking until answered.
pub trait ConnectCalls: Send {
    /// `begin` of the runtime's `AgentConnect`.
    fn begin(&self, connect_key: &str, app: &ConnectApp) -> Result<ConnectStart, AgentConnectError>;
    /// `exchange_code`.
    fn exchange_code(&self, exchange: &CodeExchange) -> Result<InstallationToken, AgentConnectError>;
    /// `request_runtime_token`.
    fn request_runtime_token(&self, installation_token: &str) -> Result<RuntimeToken, AgentConnectError>;
}

/// How a test thread waits for a future on one executor.
trait Executor: Send + Sync + 'static {
    fn block_on<F: Future>(future: F) -> F::Output;
}

/// A tokio runtime of its own for each call.
struct TokioExecutor;
impl Executor for TokioExecutor {
    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(future)
    }
}

struct SmolExecutor;
impl Executor for SmolExecutor {
    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }
}

struct AsyncStdExecutor;
impl Executor for AsyncStdExecutor {
    fn block_on<F: Future>(future: F) -> F::Output {
        async_std::task::block_on(future)
    }
}

/// An async runtime's `AgentConnect`, its futures driven by executor `E`.
struct AsyncConnect<R, E> {
    calls: driver::AgentConnect<R>,
    executor: std::marker::PhantomData<fn() -> E>,
}

impl<R: driver::Runtime, E: Executor> ConnectCalls for AsyncConnect<R, E> {
    fn begin(&self, connect_key: &str, app: &ConnectApp) -> Result<ConnectStart, AgentConnectError> {
        E::block_on(self.calls.begin(connect_key, app))
    }
    fn exchange_code(&self, exchange: &CodeExchange) -> Result<InstallationToken, AgentConnectError> {
        E::block_on(self.calls.exchange_code(exchange))
    }
    fn request_runtime_token(&self, installation_token: &str) -> Result<RuntimeToken, AgentConnectError> {
        E::block_on(self.calls.request_runtime_token(installation_token))
    }
}

fn async_connect<R: driver::Runtime, E: Executor>(base_url: &str) -> Box<dyn ConnectCalls> {
    Box::new(AsyncConnect::<R, E> { calls: driver::AgentConnect::new(base_url), executor: std::marker::PhantomData })
}

impl ConnectCalls for pacerelle_blocking::AgentConnect {
    fn begin(&self, connect_key: &str, app: &ConnectApp) -> Result<ConnectStart, AgentConnectError> {
        pacerelle_blocking::AgentConnect::begin(self, connect_key, app)
    }
    fn exchange_code(&self, exchange: &CodeExchange) -> Result<InstallationToken, AgentConnectError> {
        pacerelle_blocking::AgentConnect::exchange_code(self, exchange)
    }
    fn request_runtime_token(&self, installation_token: &str) -> Result<RuntimeToken, AgentConnectError> {
        pacerelle_blocking::AgentConnect::request_runtime_token(self, installation_token)
    }
}

/// What a case controls the running agent with: its handle's runtime-neutral part.
trait Control: Send + Sync {
    fn close(&self);
    fn is_connected(&self) -> bool;
    fn verification_code(&self) -> Option<String>;
    fn trust_identity(&self, peer: &PeerId) -> Result<SafetyNumber, ClientError>;
    fn set_token(&self, token: &str);
    fn send_text(&self, conversation_id: &str, to: &str, text: &str) -> Result<String, ClientError>;
    fn publish_prekey_bundle(&self) -> Result<(), ClientError>;
    fn identity_key(&self) -> Option<[u8; 33]>;
}

impl Control for AgentHandle {
    fn close(&self) {
        AgentHandle::close(self);
    }
    fn is_connected(&self) -> bool {
        AgentHandle::is_connected(self)
    }
    fn verification_code(&self) -> Option<String> {
        AgentHandle::verification_code(self)
    }
    fn trust_identity(&self, peer: &PeerId) -> Result<SafetyNumber, ClientError> {
        AgentHandle::trust_identity(self, peer)
    }
    fn set_token(&self, token: &str) {
        AgentHandle::set_token(self, token);
    }
    fn send_text(&self, conversation_id: &str, to: &str, text: &str) -> Result<String, ClientError> {
        // The future awaits nothing (the send is queued under the core's lock): it is ready at
        // once, whatever executor polls it.
        smol::block_on(AgentHandle::send_text(self, conversation_id, to, text))
    }
    fn publish_prekey_bundle(&self) -> Result<(), ClientError> {
        // Waits for the relay's answers, which the agent's own executor (another thread) feeds.
        smol::block_on(AgentHandle::publish_prekey_bundle(self))
    }
    fn identity_key(&self) -> Option<[u8; 33]> {
        AgentHandle::identity_key(self)
    }
}

impl Control for pacerelle_blocking::AgentHandle {
    fn close(&self) {
        pacerelle_blocking::AgentHandle::close(self);
    }
    fn is_connected(&self) -> bool {
        pacerelle_blocking::AgentHandle::is_connected(self)
    }
    fn verification_code(&self) -> Option<String> {
        pacerelle_blocking::AgentHandle::verification_code(self)
    }
    fn trust_identity(&self, peer: &PeerId) -> Result<SafetyNumber, ClientError> {
        pacerelle_blocking::AgentHandle::trust_identity(self, peer)
    }
    fn set_token(&self, token: &str) {
        pacerelle_blocking::AgentHandle::set_token(self, token);
    }
    fn send_text(&self, conversation_id: &str, to: &str, text: &str) -> Result<String, ClientError> {
        pacerelle_blocking::AgentHandle::send_text(self, conversation_id, to, text)
    }
    fn publish_prekey_bundle(&self) -> Result<(), ClientError> {
        pacerelle_blocking::AgentHandle::publish_prekey_bundle(self)
    }
    fn identity_key(&self) -> Option<[u8; 33]> {
        pacerelle_blocking::AgentHandle::identity_key(self)
    }
}

/// An agent serving on its own thread.
pub struct Running {
    control: Box<dyn Control>,
    finished: oneshot::Receiver<Result<(), ClientError>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("connected", &self.is_connected()).finish_non_exhaustive()
    }
}

impl Running {
    /// Serves `serve` (the client's `connect`) on a new thread.
    fn spawn(control: Box<dyn Control>, serve: impl FnOnce() -> Result<(), ClientError> + Send + 'static) -> Self {
        let (done, finished) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = done.send(serve());
        });
        Running { control, finished }
    }

    /// Asks the agent to stop.
    pub fn close(&self) {
        self.control.close();
    }

    /// Whether its socket is open.
    pub fn is_connected(&self) -> bool {
        self.control.is_connected()
    }

    /// The verification code people compare with their app's; `None` without end-to-end
    /// encryption.
    pub fn verification_code(&self) -> Option<String> {
        self.control.verification_code()
    }

    /// Trusts the identity refused for `peer` (under a pinned trust policy).
    pub fn trust_identity(&self, peer: &PeerId) -> Result<SafetyNumber, ClientError> {
        self.control.trust_identity(peer)
    }

    /// Authenticates with `token` from the agent's next connection on.
    pub fn set_token(&self, token: &str) {
        self.control.set_token(token);
    }

    /// Sends `text` from outside any handler (as a timer or another task would); returns the
    /// message's id.
    pub fn send_text(&self, conversation_id: &str, to: &str, text: &str) -> Result<String, ClientError> {
        self.control.send_text(conversation_id, to, text)
    }

    /// Publishes a new prekey bundle through the handle; blocks until the relay took it.
    pub fn publish_prekey_bundle(&self) -> Result<(), ClientError> {
        self.control.publish_prekey_bundle()
    }

    /// The agent's identity key, with end-to-end encryption.
    pub fn identity_key(&self) -> Option<[u8; 33]> {
        self.control.identity_key()
    }

    /// What `connect` returned, waiting at most `limit`; `None` if it did not return in time.
    pub async fn finished(self, limit: Duration) -> Option<Result<(), ClientError>> {
        match tokio::time::timeout(limit, self.finished).await {
            Ok(Ok(outcome)) => Some(outcome),
            Ok(Err(_)) => Some(Err(ClientError::Closed)), // the serving thread panicked
            Err(_) => None,
        }
    }
}

type Serving = Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>;

/// An agent on async runtime `R` continuing from `store`, its `connect` driven by `block_on`.
fn start_async<R: driver::Runtime>(
    config: ClientConfig,
    core: AgentConfig,
    behaviour: Behaviour,
    store: Box<dyn DynAgentStore>,
    block_on: fn(Serving) -> Result<(), ClientError>,
) -> Running {
    let client = driver::Client::<R>::with_parts(config, core, store, os_rng()).expect("the agent starts");
    serve_async(client, behaviour, block_on)
}

/// Serves `behaviour` with `client`, its `connect` driven by `block_on`.
fn serve_async<R: driver::Runtime>(
    mut client: driver::Client<R>,
    behaviour: Behaviour,
    block_on: fn(Serving) -> Result<(), ClientError>,
) -> Running {
    let reports = behaviour.clone();
    client.on_identity_changed(move |change, _| {
        reports.report(Report::IdentityChanged(change));
        async { Ok(()) }
    });
    let reports = behaviour.clone();
    client.on_undeliverable(move |undeliverable, _| {
        reports.report(Report::Undeliverable(undeliverable));
        async { Ok(()) }
    });
    let reports = behaviour.clone();
    client.on_handler_gave_up(move |gave_up, _| {
        reports.report(Report::HandlerGaveUp(gave_up));
        async { Ok(()) }
    });
    if behaviour.handles_messages() {
        client.on_message(move |message, agent| {
            let behaviour = behaviour.clone();
            async move {
                let actions = behaviour.respond(&message)?;
                act(actions, &message, &agent).await
            }
        });
    }
    Running::spawn(Box::new(client.handle()), move || block_on(Box::pin(client.connect())))
}

/// tokio (a multi-threaded runtime of its own).
#[derive(Debug)]
pub struct Tokio;

impl Harness for Tokio {
    const NAME: &'static str = "tokio";

    fn start_with_store(
        config: ClientConfig,
        core: AgentConfig,
        behaviour: Behaviour,
        store: Box<dyn DynAgentStore>,
    ) -> Running {
        start_async::<pacerelle_tokio::Tokio>(config, core, behaviour, store, block_on_tokio)
    }

    fn start_new(config: ClientConfig, behaviour: Behaviour) -> Result<Running, ClientError> {
        Ok(serve_async(pacerelle_tokio::Client::new(config)?, behaviour, block_on_tokio))
    }

    fn agent_connect(base_url: &str) -> Box<dyn ConnectCalls> {
        async_connect::<pacerelle_tokio::Tokio, TokioExecutor>(base_url)
    }
}

/// Drives `serving` on a multi-threaded tokio runtime of its own.
fn block_on_tokio(serving: Serving) -> Result<(), ClientError> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(serving)
}

/// smol (its global executor).
#[derive(Debug)]
pub struct Smol;

impl Harness for Smol {
    const NAME: &'static str = "smol";

    fn start_with_store(
        config: ClientConfig,
        core: AgentConfig,
        behaviour: Behaviour,
        store: Box<dyn DynAgentStore>,
    ) -> Running {
        start_async::<pacerelle_smol::Smol>(config, core, behaviour, store, smol::block_on)
    }

    fn start_new(config: ClientConfig, behaviour: Behaviour) -> Result<Running, ClientError> {
        Ok(serve_async(pacerelle_smol::Client::new(config)?, behaviour, smol::block_on))
    }

    fn agent_connect(base_url: &str) -> Box<dyn ConnectCalls> {
        async_connect::<pacerelle_smol::Smol, SmolExecutor>(base_url)
    }
}

/// async-std (its global executor).
#[derive(Debug)]
pub struct AsyncStd;

impl Harness for AsyncStd {
    const NAME: &'static str = "async-std";

    fn start_with_store(
        config: ClientConfig,
        core: AgentConfig,
        behaviour: Behaviour,
        store: Box<dyn DynAgentStore>,
    ) -> Running {
        start_async::<pacerelle_async_std::AsyncStd>(config, core, behaviour, store, async_std::task::block_on)
    }

    fn start_new(config: ClientConfig, behaviour: Behaviour) -> Result<Running, ClientError> {
        Ok(serve_async(pacerelle_async_std::Client::new(config)?, behaviour, async_std::task::block_on))
    }

    fn agent_connect(base_url: &str) -> Box<dyn ConnectCalls> {
        async_connect::<pacerelle_async_std::AsyncStd, AsyncStdExecutor>(base_url)
    }
}

/// The blocking runtime (the serving thread is the agent's loop).
#[derive(Debug)]
pub struct Blocking;

impl Harness for Blocking {
    const NAME: &'static str = "blocking";

    fn start_with_store(
        config: ClientConfig,
        core: AgentConfig,
        behaviour: Behaviour,
        store: Box<dyn DynAgentStore>,
    ) -> Running {
        let client = pacerelle_blocking::Client::with_parts(config, core, store, os_rng()).expect("the agent starts");
        serve_blocking(client, behaviour)
    }

    fn start_new(config: ClientConfig, behaviour: Behaviour) -> Result<Running, ClientError> {
        Ok(serve_blocking(pacerelle_blocking::Client::new(config)?, behaviour))
    }

    fn agent_connect(base_url: &str) -> Box<dyn ConnectCalls> {
        Box::new(pacerelle_blocking::AgentConnect::new(base_url))
    }
}

/// Serves `behaviour` with the blocking `client` on a thread of its own.
fn serve_blocking(mut client: pacerelle_blocking::Client, behaviour: Behaviour) -> Running {
    let reports = behaviour.clone();
    client.on_identity_changed(move |change, _| {
        reports.report(Report::IdentityChanged(change));
        Ok(())
    });
    let reports = behaviour.clone();
    client.on_undeliverable(move |undeliverable, _| {
        reports.report(Report::Undeliverable(undeliverable));
        Ok(())
    });
    let reports = behaviour.clone();
    client.on_handler_gave_up(move |gave_up, _| {
        reports.report(Report::HandlerGaveUp(gave_up));
        Ok(())
    });
    if behaviour.handles_messages() {
        client.on_message(move |message, agent| {
            let actions = behaviour.respond(&message)?;
            act_blocking(actions, &message, agent)
        });
    }
    Running::spawn(Box::new(client.handle()), move || client.connect())
}

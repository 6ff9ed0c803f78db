//! Starting, observing and stopping a relay: in a tokio program ([`Relay::spawn`]) or, for
//! programs without one, on a runtime of its own ([`BackgroundRelay`]).

use crate::config::RelayConfig;
use crate::connect::{ConnectClient, RecordedRequest};
use crate::error::{ApiError, RelayError};
use crate::state::{Party, State};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// Body and frame limits, shared by the handlers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_json_bytes: usize,
    pub(crate) max_blob_bytes: usize,
    pub(crate) max_frame_bytes: usize,
    pub(crate) max_one_time_prekeys: usize,
}

/// What every handler holds: the state, the limits, and the base URL it serves at.
#[derive(Clone)]
pub(crate) struct App {
    state: Arc<Mutex<State>>,
    pub(crate) limits: Limits,
    /// `http://{addr}`, for the authorization URLs of Agent Connect.
    pub(crate) base_url: Arc<str>,
}

impl App {
    /// The state. Never held across an `.await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts relays.
#[derive(Debug)]
pub struct Relay;

impl Relay {
    /// Binds `config.listen` and serves on the current tokio runtime until
    /// [`RelayHandle::shutdown`].
    pub async fn spawn(config: RelayConfig) -> Result<RelayHandle, RelayError> {
        let mut state = State::default();
        for (id, token) in &config.agents {
            state.add_agent(id, token);
        }
        for (id, token) in &config.persons {
            state.add_person(id, token);
        }
        state.connect.clients = config.connect_clients.clone().into_iter().collect();
        state.connect.ttls = config.connect_ttls;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| RelayError::Bind { address: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| RelayError::Bind { address: config.listen, source })?;
        let app = App {
            state: Arc::new(Mutex::new(state)),
            limits: Limits {
                max_json_bytes: config.max_json_bytes,
                max_blob_bytes: config.max_blob_bytes,
                max_frame_bytes: config.max_frame_bytes,
                max_one_time_prekeys: config.max_one_time_prekeys,
            },
            base_url: format!("http://{addr}").into(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let router = crate::http::router(app.clone());
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::error!(%error, "relay stopped with an error");
            }
        });
        tracing::info!(%addr, "relay listening");
        Ok(RelayHandle { addr, app, stop: Some(stop), server })
    }
}

/// A running relay.
pub struct RelayHandle {
    addr: SocketAddr,
    app: App,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl RelayHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`, the base URL clients use.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets another agent in.
    pub fn add_agent(&self, id: &str, token: &str) {
        self.app.lock().add_agent(id, token);
    }

    /// Lets another person in.
    pub fn add_person(&self, id: &str, token: &str) {
        self.app.lock().add_person(id, token);
    }

    /// Drops every connection of agent `id`, as a network failure would (for reconnect tests).
    pub async fn disconnect_agent(&self, id: &str) {
        self.app.lock().disconnect(&Party::Agent(id.to_owned()));
    }

    /// Drops every connection of person `id`.
    pub async fn disconnect_person(&self, id: &str) {
        self.app.lock().disconnect(&Party::Person(id.to_owned()));
    }

    /// Hands agent `id` a frame the relay made up, as a hostile relay could: forged, replayed or
    /// tampered. It is queued under its `id` field like any message (so it comes back on every
    /// reconnect until acknowledged) and sent at once if the agent is connected.
    pub fn inject_to_agent(&self, id: &str, frame: impl Into<String>) {
        self.app.lock().inject(&Party::Agent(id.to_owned()), frame.into());
    }

    /// How many sockets agent `id` has opened since the relay started (its first connection
    /// and every reconnection).
    pub fn agent_connections(&self, id: &str) -> usize {
        self.app.lock().connections_of(&Party::Agent(id.to_owned()))
    }

    /// Loses the next `frames` text frames agent `id` sends (read and never routed, as if the
    /// relay had died with them), then cuts that socket without a close handshake and without
    /// reading anything after them, so no ping behind them is answered. For tests of what an
    /// agent sends again.
    pub fn lose_agent_frames(&self, id: &str, frames: usize) {
        self.app.lock().lose_agent_frames(id, frames);
    }

    /// How many messages wait for agent `id` to acknowledge them.
    pub fn pending_for_agent(&self, id: &str) -> usize {
        self.app.lock().pending_for(&Party::Agent(id.to_owned()))
    }

    /// The ids of the one-time prekeys agent `id` posted that the relay still holds, in the
    /// order it will hand them out (the oldest first).
    pub fn one_time_prekey_ids(&self, id: &str) -> Vec<u32> {
        self.app.lock().one_time_prekey_ids(id)
    }

    /// Every socket frame and blob body the relay received, in order: what crossed it.
    pub fn observed(&self) -> Vec<Vec<u8>> {
        self.app.lock().observed.clone()
    }

    /// Lets another app connect agents (Agent Connect).
    pub fn add_connect_client(&self, client: ConnectClient) {
        self.app.lock().connect.clients.insert(client.client_id.clone(), client);
    }

    /// The Agent Connect requests waiting for their owner's answer (with
    /// [`crate::Approval::Manual`]), by id: the last path segment of their authorization URL.
    pub fn pending_agent_connects(&self) -> Vec<String> {
        self.app.lock().connect.pending()
    }

    /// The owner approves Agent Connect request `request_id`: returns where the app's user is
    /// sent back, its redirect URI with `code` and `state`. A request unknown or expired is
    /// [`ApiError::NotFound`]; one already answered, [`ApiError::Conflict`].
    pub fn approve_agent_connect(&self, request_id: &str) -> Result<String, ApiError> {
        self.app.lock().connect.approve(request_id)
    }

    /// The owner denies Agent Connect request `request_id`: returns the redirect URI with
    /// `error=access_denied` and `state`.
    pub fn deny_agent_connect(&self, request_id: &str) -> Result<String, ApiError> {
        self.app.lock().connect.deny(request_id)
    }

    /// Every request made to an `/agent-connect/` route so far, as it arrived (headers and
    /// body included: they hold secrets, for tests only).
    pub fn connect_requests(&self) -> Vec<RecordedRequest> {
        self.app.lock().connect.recorded.clone()
    }

    /// Stops accepting, closes every socket, and waits (briefly) for the server to finish.
    pub async fn shutdown(mut self) {
        self.app.lock().disconnect_all();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.server).await.is_err() {
            self.server.abort();
        }
        tracing::info!(addr = %self.addr, "relay stopped");
    }
}

/// A relay on a runtime of its own, for programs and tests without tokio.
pub struct BackgroundRelay {
    handle: Option<RelayHandle>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for BackgroundRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundRelay").field("handle", &self.handle).finish()
    }
}

impl BackgroundRelay {
    /// Starts a relay on a new two-thread runtime. Call it outside any async context.
    pub fn start(config: RelayConfig) -> Result<Self, RelayError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pacerelle-relay")
            .enable_all()
            .build()
            .map_err(RelayError::Runtime)?;
        let handle = runtime.block_on(Relay::spawn(config))?;
        Ok(BackgroundRelay { handle: Some(handle), runtime: Some(runtime) })
    }

    /// The running relay.
    pub fn handle(&self) -> &RelayHandle {
        self.handle.as_ref().expect("present until shutdown")
    }

    /// `http://{addr}`.
    pub fn base_url(&self) -> String {
        self.handle().base_url()
    }

    /// Drops every connection of agent `id`.
    pub fn disconnect_agent(&self, id: &str) {
        self.handle().app.lock().disconnect(&Party::Agent(id.to_owned()));
    }

    /// Stops the relay and its runtime.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let (Some(handle), Some(runtime)) = (self.handle.take(), self.runtime.take()) {
            runtime.block_on(handle.shutdown());
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for BackgroundRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

//! Pacerelle agents on tokio.
//!
//! A thin adapter: the protocol lives in [`pacerelle_core`], the driver that carries out its
//! outputs in [`pacerelle_runtime_support::driver`]; this crate tells the driver how tokio opens
//! a WebSocket (tokio-tungstenite, rustls), spawns tasks, sleeps, and runs blocking HTTP calls
//! (`spawn_blocking`).
//!
//! `Client::new` keeps the agent's state in SQLite at `~/.myagents/<agent_id>/agent.db` (or under
//! `ClientConfig::store_root`, `PACERELLE_STORE_ROOT`), so an encrypted agent keeps its identity
//! across restarts; it needs the `sqlite` feature, on by default. `Client::in_memory` is the
//! named exception, for tests.
//!
//! ```no_run
//! use pacerelle_tokio::{Client, ClientConfig};
//!
//! # async fn run() -> Result<(), pacerelle_tokio::ClientError> {
//! let mut client = Client::new(ClientConfig::from_env()?)?;
//! client.on_message(|message, agent| async move {
//!     agent.reply(&message, format!("Received: {}", message.text)).await?;
//!     Ok(())
//! });
//! client.connect().await // serves until closed
//! # }
//! ```
//!
//! `connect` reconnects with backoff after any transient failure, pings the socket and
//! replaces it when it goes silent (`AgentConfig::keepalive`: every 20 s, dead 20 s after an
//! unanswered ping, as in the official SDK), and ends at once with
//! [`ClientError::Unauthorized`] when the relay refuses the token (401 or 403); a running agent
//! takes a new token with [`AgentHandle::set_token`].

#![forbid(unsafe_code)]

use pacerelle_runtime_support::driver::{self, WsError};
use std::future::Future;
use std::time::Duration;

pub use pacerelle_core::agent::OutgoingMessage;
pub use pacerelle_core::config::ClientConfig;
pub use pacerelle_core::connect::{CodeExchange, ConnectApp, ConnectStart, InstallationToken, RuntimeToken};
pub use pacerelle_core::{AgentMessage, Attachment, widget};
pub use pacerelle_runtime_support::connect::AgentConnectError;
pub use pacerelle_runtime_support::driver::{AgentHandle, PersonClientConfig};
pub use pacerelle_runtime_support::{ClientError, HandlerError, HandlerResult};

/// An agent client on tokio. Register handlers, then [`connect`](driver::Client::connect)
/// (from within a tokio runtime).
pub type Client = driver::Client<Tokio>;

/// A person connected to the development relay, on tokio.
pub type PersonClient = driver::PersonClient<Tokio>;

/// Agent Connect's calls (the official `begin_agent_connect`, `exchange_agent_connect_code`,
/// `request_agent_runtime_token`), run on tokio's blocking pool. A runtime token it gets is handed
/// to a running agent with [`AgentHandle::set_token`].
pub type AgentConnect = driver::AgentConnect<Tokio>;

/// tokio, as the driver needs it. Used through [`Client`] and [`PersonClient`].
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

impl driver::Runtime for Tokio {
    type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    async fn connect(url: &str) -> Result<Self::Socket, WsError> {
        // Without Nagle's algorithm (`true`): a reply is not held back waiting for an
        // acknowledgement.
        let (socket, _response) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        Ok(socket)
    }

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep(duration)
    }

    async fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        match tokio::task::spawn_blocking(work).await {
            Ok(value) => value,
            // The work panicked: panic here too, as a direct call would have.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => panic!("blocking work cancelled: the tokio runtime is shutting down"),
        }
    }
}

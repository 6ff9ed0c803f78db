//! Pacerelle agents on smol.
//!
//! A thin adapter: the protocol lives in [`pacerelle_core`], the driver that carries out its
//! outputs in [`pacerelle_runtime_support::driver`]; this crate tells the driver how smol opens
//! a WebSocket (async-tungstenite over `async-net`, TLS with futures-rustls on ring), spawns
//! tasks (smol's global executor), sleeps (`async-io` timers) and runs the blocking HTTP calls
//! (`smol::unblock`, the `blocking` thread pool).
//!
//! `Client::new` keeps the agent's state in SQLite at `~/.myagents/<agent_id>/agent.db` (or under
//! `ClientConfig::store_root`, `PACERELLE_STORE_ROOT`), so an encrypted agent keeps its identity
//! across restarts; it needs the `sqlite` feature, on by default. `Client::in_memory` is the
//! named exception, for tests.
//!
//! ```no_run
//! use pacerelle_smol::{Client, ClientConfig};
//!
//! fn main() -> Result<(), pacerelle_smol::ClientError> {
//!     smol::block_on(async {
//!         let mut client = Client::new(ClientConfig::from_env()?)?;
//!         client.on_message(|message, agent| async move {
//!             agent.reply(&message, format!("Received: {}", message.text)).await?;
//!             Ok(())
//!         });
//!         client.connect().await // serves until closed
//!     })
//! }
//! ```
//!
//! `connect` reconnects with backoff after any transient failure, pings the socket and
//! replaces it when it goes silent (`AgentConfig::keepalive`: every 20 s, dead 20 s after an
//! unanswered ping, as in the official SDK), and ends at once with
//! [`ClientError::Unauthorized`] when the relay refuses the token (401 or 403); a running agent
//! takes a new token with [`AgentHandle::set_token`].

#![forbid(unsafe_code)]

use async_tungstenite::smol::ConnectStream;
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

/// An agent client on smol. Register handlers, then [`connect`](driver::Client::connect).
pub type Client = driver::Client<Smol>;

/// A person connected to the development relay, on smol.
pub type PersonClient = driver::PersonClient<Smol>;

/// Agent Connect's calls (the official `begin_agent_connect`, `exchange_agent_connect_code`,
/// `request_agent_runtime_token`), run on smol's blocking pool. A runtime token it gets is handed
/// to a running agent with [`AgentHandle::set_token`].
pub type AgentConnect = driver::AgentConnect<Smol>;

/// smol, as the driver needs it. Used through [`Client`] and [`PersonClient`].
#[derive(Debug, Clone, Copy)]
pub struct Smol;

impl driver::Runtime for Smol {
    type Socket = async_tungstenite::WebSocketStream<ConnectStream>;

    async fn connect(url: &str) -> Result<Self::Socket, WsError> {
        let (request, host, port) = driver::socket_address(url)?;
        let tcp = smol::net::TcpStream::connect((host.as_str(), port)).await?;
        // Without Nagle's algorithm: a reply is not held back waiting for an acknowledgement.
        let _ = tcp.set_nodelay(true);
        let (socket, _response) = async_tungstenite::smol::client_async_tls(request, tcp).await?;
        Ok(socket)
    }

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        // smol's global executor runs on its own threads; a detached task runs to completion.
        smol::spawn(task).detach();
    }

    async fn sleep(duration: Duration) {
        smol::Timer::after(duration).await;
    }

    fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> + Send {
        smol::unblock(work)
    }
}

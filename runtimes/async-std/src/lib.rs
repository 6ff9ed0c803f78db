//! Pacerelle agents on async-std.
//!
//! **async-std is discontinued upstream in favour of smol.** This adapter exists for programs
//! already built on it and is kept as small as possible: new programs should use
//! `pacerelle-smol` (`pacerelle` feature `smol`), which shares its reactor (async-io) and its
//! WebSocket client. Only what async-std itself must provide is taken from it: TCP
//! (`async_std::net`), spawning, sleeping and `spawn_blocking` for the HTTP calls; the
//! WebSocket handshake and TLS (futures-rustls on ring) are async-tungstenite's generic
//! futures-io client, the same one the smol adapter uses.
//!
//! `Client::new` keeps the agent's state in SQLite at `~/.myagents/<agent_id>/agent.db` (or under
//! `ClientConfig::store_root`, `PACERELLE_STORE_ROOT`), so an encrypted agent keeps its identity
//! across restarts; it needs the `sqlite` feature, on by default. `Client::in_memory` is the
//! named exception, for tests.
//!
//! ```no_run
//! use pacerelle_async_std::{Client, ClientConfig};
//!
//! fn main() -> Result<(), pacerelle_async_std::ClientError> {
//!     async_std::task::block_on(async {
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

use async_std::net::TcpStream;
use async_tungstenite::smol::ClientStream;
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

/// An agent client on async-std. Register handlers, then [`connect`](driver::Client::connect).
pub type Client = driver::Client<AsyncStd>;

/// A person connected to the development relay, on async-std.
pub type PersonClient = driver::PersonClient<AsyncStd>;

/// Agent Connect's calls (the official `begin_agent_connect`, `exchange_agent_connect_code`,
/// `request_agent_runtime_token`), run on async-std's blocking pool. A runtime token it gets is handed
/// to a running agent with [`AgentHandle::set_token`].
pub type AgentConnect = driver::AgentConnect<AsyncStd>;

/// async-std, as the driver needs it. Used through [`Client`] and [`PersonClient`].
#[derive(Debug, Clone, Copy)]
pub struct AsyncStd;

impl driver::Runtime for AsyncStd {
    type Socket = async_tungstenite::WebSocketStream<ClientStream<TcpStream>>;

    async fn connect(url: &str) -> Result<Self::Socket, WsError> {
        let (request, host, port) = driver::socket_address(url)?;
        // async-tungstenite's own async-std client offers TLS only through native-tls or
        // async-tls; its futures-io client (named for smol, generic over the stream) adds
        // rustls to async-std's TCP stream instead.
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        let (socket, _response) = async_tungstenite::smol::client_async_tls(request, tcp).await?;
        Ok(socket)
    }

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        // Dropping async-std's join handle detaches the task.
        async_std::task::spawn(task);
    }

    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static {
        async_std::task::sleep(duration)
    }

    fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> + Send {
        async_std::task::spawn_blocking(work)
    }
}

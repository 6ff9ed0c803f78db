//! Pacerelle agents for scripts and programs without an async runtime.
//!
//! One thread runs everything: it reads the socket (with a short timeout, so that it also
//! notices deadlines, closes and messages queued by other threads), calls the handler in line,
//! and carries out the core's outputs in order.
//!
//! `Client::new` keeps the agent's state in SQLite at `~/.myagents/<agent_id>/agent.db` (or under
//! `ClientConfig::store_root`, `PACERELLE_STORE_ROOT`), so an encrypted agent keeps its identity
//! across restarts; it needs the `sqlite` feature, on by default. `Client::in_memory` is the
//! named exception, for tests.
//!
//! ```no_run
//! use pacerelle_blocking::{Client, ClientConfig};
//!
//! # fn run() -> Result<(), pacerelle_blocking::ClientError> {
//! let mut client = Client::new(ClientConfig::from_env()?)?;
//! client.on_message(|message, agent| {
//!     agent.reply(&message, format!("Received: {}", message.text))?;
//!     Ok(())
//! });
//! client.connect() // serves until closed
//! # }
//! ```
//!
//! `connect` reconnects with backoff after any transient failure, pings the socket and
//! replaces it when it goes silent (`AgentConfig::keepalive`: every 20 s, dead 20 s after an
//! unanswered ping, as in the official SDK), and ends at once with
//! [`ClientError::Unauthorized`] when the relay refuses the token (401 or 403); a running agent
//! takes a new token with [`AgentHandle::set_token`].

#![forbid(unsafe_code)]

mod agent;

pub use agent::{AgentHandle, Client};
pub use pacerelle_core::agent::OutgoingMessage;
pub use pacerelle_core::config::ClientConfig;
pub use pacerelle_core::connect::{CodeExchange, ConnectApp, ConnectStart, InstallationToken, RuntimeToken};
pub use pacerelle_core::{AgentMessage, Attachment, widget};
/// Agent Connect's calls (the official `begin_agent_connect`, `exchange_agent_connect_code`,
/// `request_agent_runtime_token`), blocking. A runtime token it gets is handed to a running agent
/// with [`AgentHandle::set_token`].
pub use pacerelle_runtime_support::connect::{AgentConnect, AgentConnectError};
pub use pacerelle_runtime_support::{ClientError, HandlerError, HandlerResult};

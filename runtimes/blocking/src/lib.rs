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

#![forbid(unsafe_code)]

mod agent;

pub use agent::{AgentHandle, Client};
pub use pacerelle_core::agent::OutgoingMessage;
pub use pacerelle_core::config::ClientConfig;
pub use pacerelle_core::{AgentMessage, Attachment, widget};
pub use pacerelle_runtime_support::{ClientError, HandlerError, HandlerResult};

//! Pacerelle agents for scripts and programs without an async runtime.
//!
//! One thread runs everything: it reads the socket (with a short timeout, so that it also
//! notices deadlines, closes and messages queued by other threads), calls the handler in line,
//! and carries out the core's outputs in order.
//!
//! ```no_run
//! use pacerelle_blocking::{Client, ClientConfig, FromEnv};
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

/// Reads the client configuration from the environment (`PACERELLE_AGENT_ID`,
/// `PACERELLE_AGENT_TOKEN`, optional `PACERELLE_BASE_URL`).
pub trait FromEnv: Sized {
    /// See the trait docs.
    fn from_env() -> Result<Self, ClientError>;
}

impl FromEnv for ClientConfig {
    fn from_env() -> Result<Self, ClientError> {
        Ok(ClientConfig::from_lookup(|name| std::env::var(name).ok())?)
    }
}

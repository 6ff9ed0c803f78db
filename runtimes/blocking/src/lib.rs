//! Pacerelle agents for scripts and programs without an async runtime.
//!
//! One thread runs everything: it reads the socket (with a short timeout, so that it also
//! notices deadlines, closes and messages queued by other threads), calls the handler in line,
//! and carries out the core's outputs in order.
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

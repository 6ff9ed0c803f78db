//! Pacerelle agents on tokio.
//!
//! A thin adapter: the protocol lives in [`pacerelle_core`]; this crate owns the socket, the
//! timers and the handler tasks, and carries out the core's outputs in order.
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

#![forbid(unsafe_code)]

mod agent;
mod person;
mod socket;

pub use agent::{AgentHandle, Client};
pub use pacerelle_core::agent::OutgoingMessage;
pub use pacerelle_core::config::ClientConfig;
pub use pacerelle_core::{AgentMessage, Attachment, widget};
pub use pacerelle_runtime_support::{ClientError, HandlerError, HandlerResult};
pub use person::{PersonClient, PersonClientConfig};

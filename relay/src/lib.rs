//! A local Pacerelle relay, for development and tests: everything runs on one machine.
//!
//! It speaks the agent-facing API of PROTOCOL.md exactly (prekey bundles, one-time prekeys,
//! blobs, group keys, the agent socket) and a person-side API of its own, defined in
//! [`pacerelle_core::wire::person`] and documented in this crate's README: conversations, a
//! person socket, bundle fetching, blobs, group-key distribution, read receipts. It also
//! serves Agent Connect (`/agent-connect/requests`, `/token`, `/runtime-token`) for the apps
//! registered with [`RelayConfig::connect_client`], the owner's approval scripted
//! ([`Approval`]). Delivery is at
//! least once: messages wait, per recipient, until acknowledged, and are replayed on reconnect.
//!
//! ```no_run
//! # async fn run() -> Result<(), pacerelle_relay::RelayError> {
//! use pacerelle_relay::{Relay, RelayConfig};
//! let relay = Relay::spawn(RelayConfig::loopback_ephemeral().agent("echo", "agent-token").person("alice", "alice-token")).await?;
//! println!("PACERELLE_BASE_URL={}", relay.base_url());
//! relay.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! It keeps everything in memory, is meant for loopback, and is not a production relay.
//!
//! # Dependencies
//! axum (on hyper and tokio) serves HTTP and WebSocket; subtle compares tokens in constant time;
//! sha2 hashes blobs; uuid names conversations and blobs; rand makes tokens for the command line
//! ([`random_hex`]) and Agent Connect.

#![forbid(unsafe_code)]

mod config;
mod connect;
mod error;
mod http;
mod server;
mod socket;
mod state;

pub use config::{
    DEFAULT_MAX_BLOB_BYTES, DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_ONE_TIME_PREKEYS, RelayConfig,
    parse_identity, random_hex,
};
pub use connect::{
    Approval, ConnectClient, ConnectTtls, DEFAULT_CODE_TTL, DEFAULT_REQUEST_TTL, DEFAULT_RUNTIME_TOKEN_TTL,
    RecordedRequest,
};
pub use error::{ApiError, RelayError};
pub use server::{BackgroundRelay, Relay, RelayHandle};

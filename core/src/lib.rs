//! The Pacerelle agent protocol as a state machine with no I/O.
//!
//! Everything the official SDK does on the wire lives here, and nothing else: no sockets, no
//! HTTP client, no clock and no operating-system randomness. The caller (one of the runtime
//! crates, a test, a fuzzer) feeds inputs in and drains outputs:
//!
//! ```
//! use pacerelle_core::{Agent, AgentConfig, Input, Output, Timestamp};
//! use rand::SeedableRng;
//!
//! let rng = rand::rngs::StdRng::seed_from_u64(7);
//! let mut agent = Agent::new(AgentConfig::new("agent-1"), Box::new(rng), Default::default())?;
//! agent.start(Timestamp::from_millis(0));
//! assert!(matches!(agent.poll_output(), Some(Output::Connect)));
//! agent.handle_input(Timestamp::from_millis(5), Input::Connected)?;
//! let frame = r#"{"type":"MSG","id":"m1","conversation_id":"c1","from":"u1","to":"agent-1",
//!                 "payload_b64":"aGk=","encrypted":false}"#;
//! agent.handle_input(Timestamp::from_millis(10), Input::Frame(frame.into()))?;
//! let mut message = None;
//! while let Some(output) = agent.poll_output() {
//!     if let Output::Event(pacerelle_core::Event::Message(m)) = output {
//!         message = Some(m);
//!     }
//! }
//! let message = message.expect("one message");
//! assert_eq!(message.text, "hi");
//! agent.accept(&message.id, Timestamp::from_millis(20))?; // emits the ACK_READ frame
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - [`wire`]: the relay's frames and HTTP bodies, strictly parsed.
//! - [`payload`]: what travels inside `payload_b64`: chat messages, widgets, deliveries.
//! - [`message`]: the values the app sees ([`AgentMessage`], [`Attachment`], ...).
//! - [`attachment`]: file encryption for uploads and decryption of downloads.
//! - [`e2ee`]: the Signal protocol (PQXDH, Double Ratchet, the post-quantum slot), natively.
//! - [`agent`]: the agent state machine; [`human`]: the person-side one.
//! - [`store`]: what must be persisted, as granular changes.
//! - [`connect`]: Agent Connect (OAuth with PKCE S256): its requests built, its answers read.
//! - [`connection`]: when to (re)connect, with backoff and jitter, shared by both machines.
//! - [`pyjson`]: JSON written exactly as the official SDK's Python writes it.
//!
//! # Dependencies
//! serde and serde_json (with `preserve_order`, because payloads must keep the official key
//! order), thiserror for error enums, tracing for logs, base64 and sha2 for the wire encodings and
//! the message digest, aes-gcm for attachments, archive records and group messages (AES-256-GCM
//! as PROTOCOL.md fixes it), curve25519-dalek and x25519-dalek for the Signal protocol's
//! Curve25519 keys and XEdDSA signatures, zeroize so keys are wiped when dropped, rand_core so randomness comes from the caller, uuid for message ids built
//! from that randomness.

#![forbid(unsafe_code)]

pub mod aead;
pub mod agent;
pub mod attachment;
pub mod config;
pub mod connect;
pub mod connection;
pub mod e2ee;
pub mod human;
pub mod import;
pub mod message;
pub mod payload;
pub mod permissions;
pub mod pyjson;
pub mod store;
#[cfg(any(test, feature = "store-conformance"))]
pub mod store_conformance;
pub mod time;
pub mod wire;

mod ids;

pub use agent::{Agent, AgentConfig, AgentError, Event, Input, Output};
pub use message::{AgentMessage, Attachment, WidgetResponse, WidgetUpdate};
pub use payload::widget;
pub use time::Timestamp;

/// The randomness the state machines draw from: any cryptographically secure generator.
///
/// Runtimes pass the operating system's generator; tests pass a seeded one, which makes every
/// id and every jitter reproducible.
pub type Rng = dyn rand_core::CryptoRng + Send;

/// This crate's version, as it appears in the `User-Agent` runtimes send.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

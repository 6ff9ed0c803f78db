//! The Pacerelle agent SDK for Rust.
//!
//! Pacerelle relays conversations between people (in its app) and agents (programs people run
//! on their own machines). An agent connects with its id and token, receives messages, replies,
//! and drives widgets. The protocol lives in a state machine with no I/O ([`core`]); each
//! runtime module is a thin adapter to one executor, chosen by feature:
//!
//! | feature | module | for |
//! | --- | --- | --- |
//! | `tokio` (default) | [`tokio`] | async programs on tokio |
//! | `blocking` | [`blocking`] | scripts and programs without an async runtime |
//! | `smol` | [`smol`] | async programs on smol |
//! | `async-std` | [`async_std`] | async programs on async-std (discontinued upstream: prefer `smol`) |
//! | `sqlite` (default) | [`store`]`::SqliteStore` | state that survives restarts, opened by `Client::new` |
//!
//! # Durable by default
//! `Client::new` (every runtime) keeps the agent's state in SQLite at
//! `~/.myagents/<agent_id>/agent.db`, the official SDK's folder, or under
//! [`ClientConfig::store_root`] (`PACERELLE_STORE_ROOT`): an encrypted agent keeps its identity
//! (the same verification code), prekeys and sessions across restarts, and every agent its
//! receipts, so nothing is handled twice. A store that cannot be opened (another process runs
//! the agent, an unwritable folder) is an error from `Client::new`
//! ([`ClientError::StoreInUse`], [`ClientError::StoreOpen`]), never a fallback to memory;
//! memory is asked for by name (`Client::in_memory`, or `Client::with_store` with a
//! [`store::MemoryStore`]). One process per store at a time.
//!
//! # Configuration from the environment
//! [`ClientConfig::from_env`] reads `PACERELLE_AGENT_ID`, `PACERELLE_AGENT_TOKEN` and, when
//! set, `PACERELLE_BASE_URL`, `PACERELLE_E2EE` (`1`/`true`/`0`/`false`, any case) and
//! `PACERELLE_STORE_ROOT`; a malformed value is a
//! [`ConfigError`](core::config::ConfigError) naming the variable (never its value).
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run() -> Result<(), pacerelle::ClientError> {
//! use pacerelle::tokio::Client;
//! use pacerelle::{ClientConfig, widget::Confirm};
//!
//! let mut client = Client::new(ClientConfig::from_env()?)?;
//! client.on_message(|message, agent| async move {
//!     if message.text == "deploy" {
//!         agent.send_widget(&message.conversation_id, &message.from, Confirm::new("Deploy now?")).await?;
//!     } else {
//!         agent.reply(&message, format!("Received: {}", message.text)).await?;
//!     }
//!     Ok(())
//! });
//! client.connect().await
//! # }
//! ```
//!
//! # Permissions
//! [`permissions::PermissionPolicy`] is the official SDK's `PermissionPolicy`: ask a person for
//! a bounded, revocable permission with a permission widget, judge their answer (encrypted, from
//! the person asked, in time, for a scope offered), and run a guarded operation only under a live
//! grant that covers it; a `once` grant is consumed before the operation starts. The policy does
//! no I/O: the widget and its status updates are message texts the handle sends.
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn run() -> Result<(), pacerelle::ClientError> {
//! use pacerelle::permissions::{
//!     Decision, PermissionAction, PermissionContext, PermissionPolicy, PermissionRequest, PermissionSession,
//! };
//! use pacerelle::{ClientConfig, now, os_rng, tokio::Client, widget::PermissionScope};
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! let eight_hours = now().saturating_add(Duration::from_secs(8 * 3600));
//! let session = PermissionSession::new("work-1", "Today's work", eight_hours);
//! let policy = Arc::new(Mutex::new(PermissionPolicy::new(session, now()).expect("it ends later")));
//! let remove = PermissionAction::new("delete", "/srv/reports/old.txt");
//!
//! let mut client = Client::new(ClientConfig::from_env()?)?;
//! client.on_message(move |message, agent| {
//!     let (policy, remove) = (policy.clone(), remove.clone());
//!     async move {
//!         let (conversation, person) = (&message.conversation_id, &message.from);
//!         // The lock is never held across an `.await`.
//!         let lock = || policy.lock().map_err(|_| "the permission policy lock is poisoned");
//!         if message.text == "clean up" {
//!             let in_five_minutes = now().saturating_add(Duration::from_secs(300));
//!             let request = PermissionRequest::new(conversation, person, remove, "Delete old.txt?", in_five_minutes)
//!                 .scopes([PermissionScope::Once]);
//!             let widget = lock()?.create_request(now(), request, &mut *os_rng())?;
//!             agent.send_text(conversation, person, widget.text()).await?;
//!             return Ok(());
//!         }
//!         let decision = lock()?.receive_response(now(), &message);
//!         if let Ok(Decision::Granted(grant)) = decision {
//!             let context = PermissionContext::new(person, conversation, "work-1", remove);
//!             let deleted = lock()?.run_authorized(now(), &grant.id, &context, |granted| {
//!                 std::fs::remove_file(&granted.resource)
//!             });
//!             // Shows the person where the grant stands: consumed, whether or not the deletion worked.
//!             let update = lock()?.create_widget_update(now(), &grant.id, &mut *os_rng())?;
//!             agent.send_text(conversation, person, update.text()).await?;
//!             deleted??;
//!         }
//!         Ok(())
//!     }
//! });
//! client.connect().await
//! # }
//! ```

#![forbid(unsafe_code)]

pub use pacerelle_core as core;
pub use pacerelle_core::agent::{
    AgentConfig, ChangeSource, FileUpload, GaveUp, HandlerRetry, IdentityChange, OutgoingFile, OutgoingMessage,
    PublishError, SafetyNumber, SendError, SentFile, TrustPolicy, Undeliverable, UndeliverableReason,
};
pub use pacerelle_core::attachment::FileMetadata;
pub use pacerelle_core::config::ClientConfig;
pub use pacerelle_core::e2ee::pq::PqPolicy;
pub use pacerelle_core::store::PeerId;
pub use pacerelle_core::{AgentMessage, Attachment, WidgetResponse, WidgetUpdate, permissions, widget};
/// The metrics every runtime reports (names, types, labels), through the `metrics` facade.
pub use pacerelle_runtime_support::metrics;
pub use pacerelle_runtime_support::{
    ClientError, Clock, HandlerError, HandlerResult, SharedClock, SystemClock, now, os_rng,
};

/// Agent Connect (the official `begin_agent_connect`, `exchange_agent_connect_code`,
/// `request_agent_runtime_token`): a third-party app installs an agent for a user, who approves
/// it, then gets the agent's runtime tokens. The requests and answers are [`core::connect`]'s;
/// each runtime module's `AgentConnect` sends them (`pacerelle::tokio::AgentConnect`, ...,
/// `pacerelle::blocking::AgentConnect`), and a running agent takes a new runtime token with its
/// handle's `set_token`.
pub mod connect {
    pub use pacerelle_core::connect::{
        CHALLENGE_METHOD, CodeExchange, ConnectApp, ConnectError, ConnectStart, ConnectStep, InstallationToken, Pkce,
        RuntimeToken, SCOPE, challenge_of,
    };
    pub use pacerelle_runtime_support::connect::AgentConnectError;
}

/// Where an agent's state lives between runs: in SQLite (the `sqlite` feature, on by default:
/// what `Client::new` opens, or `Client::with_store(config, SqliteStore::open_in(root,
/// agent_id)?)` for a store of your choosing), or in memory when asked for by name.
pub mod store {
    pub use pacerelle_core::import::{ImportReport, SessionNotImported};
    pub use pacerelle_core::store::{AgentSnapshot, AgentStore, MemoryStore, StoreChanges};
    #[cfg(feature = "sqlite")]
    pub use pacerelle_runtime_support::durable::{
        default_store_root, open_store as open_default, store_root as configured_store_root,
    };
    /// Coming over from the official Python SDK: [`import_python`] reads an official agent's
    /// `signal.db` into a store of ours (identity, prekeys, sessions, keys and receipts).
    #[cfg(feature = "sqlite")]
    pub use pacerelle_store_sqlite::{ImportPythonError, import_python};
    #[cfg(feature = "sqlite")]
    pub use pacerelle_store_sqlite::{RowProblem, SqliteStore, StoreError};
}

/// Agents on tokio.
#[cfg(feature = "tokio")]
pub mod tokio {
    pub use pacerelle_tokio::{AgentConnect, AgentHandle, Client, PersonClient, PersonClientConfig, Tokio};
}

/// Agents on smol. The same API as the `tokio` module (async handlers taking the message and
/// an [`AgentHandle`](smol::AgentHandle)), driven by smol's executor, timers and blocking pool.
#[cfg(feature = "smol")]
pub mod smol {
    pub use pacerelle_smol::{AgentConnect, AgentHandle, Client, PersonClient, PersonClientConfig, Smol};
}

/// Agents on async-std. async-std is discontinued upstream in favour of smol: prefer the `smol`
/// feature for new programs; this module is for programs already on async-std.
#[cfg(feature = "async-std")]
pub mod async_std {
    pub use pacerelle_async_std::{AgentConnect, AgentHandle, AsyncStd, Client, PersonClient, PersonClientConfig};
}

/// The official Signal runtime as the encryption backend: load it, make a
/// [`RuntimeBackend`](official_runtime::RuntimeBackend) from your store, and pass it to
/// `Client::with_backend`.
#[cfg(feature = "official-runtime")]
pub mod official_runtime {
    pub use pacerelle_official_runtime::backend::RuntimeBackend;
    pub use pacerelle_official_runtime::{OfficialRuntime, RuntimeError, default_library_path};
}

/// Agents without an async runtime.
#[cfg(feature = "blocking")]
pub mod blocking {
    pub use pacerelle_blocking::{AgentConnect, AgentHandle, Client};
}

/// The test kit (feature `test-kit`, for dev-dependencies): an in-process relay, people who say
/// things and answer widgets, expectations on what the agent sent, faults on demand and a
/// manual clock, on any runtime. See the README's "Testing your agent" and
/// [`pacerelle_test`]'s docs.
#[cfg(feature = "test-kit")]
pub use pacerelle_test as test;

/// The README's code blocks, compiled as doctests so the front page never drifts from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

//! The agent state machine: what an agent built on any runtime does, minus the I/O.
//!
//! Feed it [`Input`]s (socket events and frames, timeouts) and app commands
//! ([`Agent::accept`], [`Agent::send_message`], [`Agent::send_widget`], ...), then drain
//! [`Output`]s with [`Agent::poll_output`] and carry them out in order. The guarantees of the
//! official SDK follow from that order:
//! - a message's receipt is persisted ([`Output::Persist`]) before the app sees it
//!   ([`Event::Message`]), so a replay after a crash reuses the stored text and never decodes
//!   twice;
//! - the `ACK_READ` frame follows the acceptance commit, so an acknowledged message is never
//!   lost;
//! - an accepted id seen again is acknowledged again without a second event, and the same id with
//!   another digest is refused as a conflict.
//!
//! # No reply lost to a crash
//!
//! The relay confirms nothing an agent sends, so the agent keeps what might not have arrived:
//! - **Handler sends** (made inside [`Agent::while_handling`], as runtimes do for the handle they
//!   give a handler) are recorded against the message, and its acceptance commits them with the
//!   accepted receipt ([`StoreChanges::put_sent_frames`]), in the same transaction. They travel on
//!   the socket ahead of the `ACK_READ`, so a replay of an accepted message proves they may be
//!   lost (the process died, or the socket dropped, before they reached the relay): the agent
//!   sends them again, the same bytes under their original ids, then acknowledges again. They
//!   go with the receipt (retention and count cap), at most [`MAX_RECORDED_FRAMES`] per message;
//!   sends beyond that, sends of a handler that gave up ([`Event::HandlerGaveUp`]) and sends
//!   for a message no longer with the handler take the outbox.
//! - **Other sends** (a timer, another task, a file's message after its upload) go through a
//!   durable outbox: the frame is committed ([`StoreChanges::put_outbox`], with the session's new
//!   state) before it leaves, an [`Output::Ping`] follows it, and the pong to that ping proves
//!   the relay read it (one socket carries frames and pings in order, and a peer answers a ping
//!   only after reading what came before it); proven entries are removed in one commit per
//!   pong. At every connection, every unproven entry is sent again, and proven the same way. At
//!   most [`MAX_OUTBOX`] entries wait; a send beyond that is [`SendError::OutboxFull`].
//!
//! A frame sent again may have reached the relay the first time. The development relay drops a
//! message frame whose (sender, id) it has already taken, and the person client drops a message
//! whose id it has already read, without decrypting it again. A relay that does not deduplicate
//! by id delivers the same message (same id, same bytes) twice: an app that deduplicates by id
//! shows it once; a Signal decryptor that does not reports the second copy as a duplicate
//! message (its message key is already used) and shows nothing more.

pub(crate) mod digest;
pub mod e2ee;
mod files;
pub mod groups;
mod handling;
mod outbox;
mod outgoing;
mod publish;
mod retention;
pub mod trust;

pub use digest::message_digest;
pub use files::{DEFAULT_FILE_MIME, DEFAULT_FILE_NAME, DownloadError, FileUpload, OutgoingFile, SentFile, UploadError};
pub use handling::{GaveUp, HandlerRetry, MAX_RECORDED_FRAMES};
pub use outbox::MAX_OUTBOX;
pub use outgoing::OutgoingMessage;
pub use publish::Step as PublicationStep;
pub use trust::{ChangeSource, IdentityChange, SafetyNumber, TrustError, Undeliverable, UndeliverableReason};

use crate::connection::{Backoff, Connection, Directive, Keepalive, Liveness, LivenessCheck};
use crate::e2ee::account::Account;
use crate::e2ee::backend::SignalBackend;
use crate::message::{AgentMessage, Attachment};
use crate::payload::{chat, parse_payload, widget};
use crate::store::{
    AgentSnapshot, DeliveryFailure, E2eeChanges, OutboxEntry, PeerId, PrekeyKind, Receipt, ReceiptState, SentFrame,
    StoreChanges, StoredPeerIdentity,
};
use crate::wire::agent::is_group_target;
use crate::wire::http::{HttpRequest, HttpResponse, RequestId};
use crate::wire::{AckRead, FrameError, InboundFrame, InboundMsg, OutboundMsg};
use crate::{Rng, Timestamp, ids};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::collections::VecDeque;
use std::time::Duration;
use zeroize::Zeroizing;

/// One-time prekeys of the newest batch used (of the 50 each batch brings) after which the
/// agent makes and publishes a new batch, well before the relay could run out (see
/// [`crate::e2ee::account`]).
pub const REPLENISH_AFTER: usize = crate::e2ee::bundle::ONE_TIME_PREKEYS / 2;

/// Age of the last batch of one-time prekeys the relay took after which the agent makes a new
/// one, at a start or while running: bundles fetched and never used drain a relay unseen, and
/// this bounds how long that can last.
pub const REFILL_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deliveries of an unreadable message before the agent gives up on it, by default.
pub const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 5;

/// What a new identity key under a known peer does to that peer's messages.
///
/// Either way the change is first reported ([`Event::IdentityChanged`], with both safety
/// numbers) and the new identity only ever speaks through its own session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TrustPolicy {
    /// The message is delivered after the event, and the new identity becomes the trusted one,
    /// as Signal's apps do: a person who reinstalled the app keeps talking to the agent.
    #[default]
    TrustOnFirstUse,
    /// The message is refused (acknowledged, reported as [`Event::Undeliverable`], never handed
    /// to the app) and the old identity stays trusted until the app calls
    /// [`Agent::trust_identity`], after checking the new safety number with the person.
    Pinned,
}

/// How an agent behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent's id.
    pub agent_id: String,
    /// End-to-end encryption (the Signal protocol): payloads are decrypted and encrypted with
    /// the agent's sessions, which people start from its published prekeys.
    pub e2ee: bool,
    /// Whether new end-to-end sessions accept people whose apps lack the post-quantum ratchet
    /// (SPQR). By default they must speak it; a session never downgrades once negotiated.
    pub pq_policy: crate::e2ee::pq::PqPolicy,
    /// What a new identity key under a peer the agent already knows does to that peer's
    /// messages.
    pub trust_policy: TrustPolicy,
    /// Whether an end-to-end encrypted agent hands plaintext (`encrypted: false`) messages to
    /// the app. Off by default: anyone who can write frames (the relay) could write them.
    pub accept_plaintext: bool,
    /// Deliveries of a message that cannot be read before it is acknowledged and reported
    /// undeliverable ([`Event::Undeliverable`]).
    pub max_delivery_attempts: u32,
    /// Reconnect policy.
    pub backoff: Backoff,
    /// How a message whose handler failed ([`Agent::handler_failed`]) is tried again on the
    /// same connection, and when it is given up on ([`Event::HandlerGaveUp`]).
    pub handler_retry: HandlerRetry,
    /// How the open socket is pinged and found dead (a half-open connection): by default a
    /// ping every 20 s, and dead 20 s after an unanswered one, as in the official SDK.
    pub keepalive: Keepalive,
    /// How long accepted receipts are kept to recognise replays.
    pub receipt_retention: Duration,
    /// The most accepted receipts kept; the oldest go first.
    pub max_accepted_receipts: usize,
}

impl AgentConfig {
    /// Defaults for `agent_id`: plaintext, receipts kept 7 days, at most 10,000.
    pub fn new(agent_id: impl Into<String>) -> Self {
        AgentConfig {
            agent_id: agent_id.into(),
            e2ee: false,
            pq_policy: Default::default(),
            trust_policy: TrustPolicy::default(),
            accept_plaintext: false,
            max_delivery_attempts: DEFAULT_MAX_DELIVERY_ATTEMPTS,
            backoff: Backoff::default(),
            handler_retry: HandlerRetry::default(),
            keepalive: Keepalive::default(),
            receipt_retention: Duration::from_secs(7 * 24 * 3600),
            max_accepted_receipts: 10_000,
        }
    }
}

/// Something that happened outside the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The socket opened.
    Connected,
    /// The socket could not be opened, or closed.
    Disconnected,
    /// A text frame arrived (it also proves the socket alive).
    Frame(String),
    /// A pong arrived: the socket is alive, and the relay read every frame sent before the ping
    /// it answers (pongs answer the agent's pings in order; see [`Output::Ping`]).
    Pong,
    /// The relay pinged the agent, or sent any other control frame than a pong: the socket is
    /// alive, and nothing more (it proves nothing about what the agent sent).
    Ping,
    /// The socket's handshake was answered with an HTTP error status instead of an upgrade
    /// (its body, when the relay gave one, carries the reason). 401 and 403 end the agent with
    /// [`Event::Unauthorized`]; any other status is retried like [`Input::Disconnected`].
    HandshakeRefused(HttpResponse),
    /// A deadline from [`Output::WakeAt`] passed.
    Timeout,
    /// An HTTP call from [`Output::Http`] finished (or did not reach the relay: `Err` with the
    /// reason).
    Http(RequestId, Result<HttpResponse, String>),
}

/// Something for the runtime to do, in order.
// Moved once through a queue, never stored in bulk: boxing the large variant would only add
// an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open the socket (`{ws_base}/ws/agent?token=...`), then report [`Input::Connected`] or
    /// [`Input::Disconnected`].
    Connect,
    /// Close the socket; the agent is done.
    Close,
    /// Send a WebSocket ping frame, on the same socket and after every frame before it, and
    /// report its pong as [`Input::Pong`] (and the relay's own pings as [`Input::Ping`], never as
    /// pongs: a pong proves the frames before the ping were read).
    Ping,
    /// The open socket is dead (a ping went unanswered): drop it without waiting for a close
    /// handshake, and report nothing more about it. The agent has scheduled its reconnection
    /// ([`Output::WakeAt`] follows, then [`Output::Connect`]).
    Abandon,
    /// Call [`Agent::handle_input`] with [`Input::Timeout`] at this time.
    WakeAt(Timestamp),
    /// Send this text frame.
    Frame(String),
    /// Make this HTTP call with the agent's token and report it with [`Input::Http`].
    Http(HttpRequest),
    /// Persist these changes, atomically, before carrying out any later output.
    Persist(StoreChanges),
    /// Tell the app.
    Event(Event),
}

/// What the app hears about.
// Moved once through a queue, never stored in bulk: boxing the large variant would only add
// an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message to handle; accept it when the handler has returned.
    Message(AgentMessage),
    /// A peer's identity key changed: a message came from a session with another identity key
    /// than the trusted one (before that message's own event, if it is delivered), or the relay
    /// says so. Nothing was destroyed; [`AgentConfig::trust_policy`] decided what happened to the
    /// message.
    IdentityChanged(IdentityChange),
    /// A message was acknowledged without reaching the app: refused (plaintext to an encrypted
    /// agent, an untrusted identity) or unreadable after bounded deliveries.
    Undeliverable(Undeliverable),
    /// A message's handler failed on every attempt ([`AgentConfig::handler_retry`]): it stays
    /// unacknowledged, so the relay still holds it and delivers it again after a reconnection.
    HandlerGaveUp(GaveUp),
    /// A file was uploaded ([`Agent::upload_file`]), or could not be.
    Uploaded {
        /// The call [`Agent::upload_file`] returned.
        request: RequestId,
        /// The attachment, with its blob and key, for any number of messages
        /// ([`OutgoingMessage::attachments`]); or why the relay did not store it.
        result: Result<Attachment, UploadError>,
    },
    /// A file was uploaded and the message carrying it sent.
    FileSent {
        /// The call [`Agent::send_file`] returned.
        request: RequestId,
        /// The message's id.
        message_id: String,
        /// The attachment the message carries, which later messages may carry again.
        attachment: Attachment,
    },
    /// A file could not be sent.
    FileFailed {
        /// The call [`Agent::send_file`] returned.
        request: RequestId,
        /// Why.
        error: FileError,
    },
    /// An attachment was downloaded and decrypted (or failed to be).
    Downloaded {
        /// The call [`Agent::download_attachment`] returned.
        request: RequestId,
        /// The plaintext (never printed), or why there is none.
        result: Result<crate::store::SecretBytes, DownloadError>,
    },
    /// The relay refused the agent's token (HTTP 401 or 403) at the socket handshake or at
    /// prekey publication; the agent stops ([`Output::Close`] follows) rather than retry what
    /// cannot succeed until the token changes.
    Unauthorized {
        /// Where it was refused.
        step: AuthStep,
        /// The HTTP status: 401 or 403.
        status: u16,
        /// The relay's reason, when it gave one (never the token).
        reason: Option<String>,
    },
    /// The prekey publication the app asked for ([`Agent::publish_prekey_bundle`]) was taken
    /// by the relay.
    PrekeysPublished {
        /// The call [`Agent::publish_prekey_bundle`] returned.
        request: RequestId,
    },
    /// The relay refused the agent's prekeys in a way retrying cannot fix (a malformed body;
    /// a refused token is [`Event::Unauthorized`]); the agent stops ([`Output::Close`] follows).
    PublicationFailed {
        /// The call refused.
        step: PublicationStep,
        /// Its HTTP status.
        status: u16,
        /// The relay's reason.
        error: String,
    },
}

impl Event {
    /// The request an event answers (file sends and downloads), for runtimes that wait on it.
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Event::Uploaded { request, .. }
            | Event::FileSent { request, .. }
            | Event::FileFailed { request, .. }
            | Event::Downloaded { request, .. }
            | Event::PrekeysPublished { request } => Some(*request),
            _ => None,
        }
    }
}

/// Where the relay refused the agent's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStep {
    /// The WebSocket handshake (`/ws/agent`).
    Socket,
    /// A prekey publication call.
    Publication(PublicationStep),
}

impl std::fmt::Display for AuthStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthStep::Socket => f.write_str("the socket handshake"),
            AuthStep::Publication(step) => write!(f, "prekey publication ({step:?})"),
        }
    }
}

/// Whether an HTTP status says the token is refused (missing, wrong, revoked or without the
/// right): retrying with the same token cannot help.
pub fn is_unauthorized(status: u16) -> bool {
    matches!(status, 401 | 403)
}

/// Why an agent could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The agent id is empty.
    #[error("agent id is empty")]
    EmptyAgentId,
    /// The stored keys or sessions do not load.
    #[error("stored end-to-end encryption state: {0}")]
    E2eeState(#[from] crate::e2ee::account::AccountError),
}

/// Why an input was refused. The state is unchanged by a refused input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The frame could not be read (see [`FrameError::is_ignorable`]).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A message id already seen arrived with different contents.
    #[error("message {message_id} conflicts with an earlier message of the same id")]
    Conflict {
        /// The id.
        message_id: String,
    },
    /// The payload is not base64 of UTF-8 text.
    #[error("message {message_id} has an undecodable payload: {reason}")]
    Undecodable {
        /// The id.
        message_id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An encrypted message arrived at an agent without end-to-end encryption.
    #[error("message {message_id} is end-to-end encrypted but this agent runs without e2ee")]
    EncryptedWithoutE2ee {
        /// The id.
        message_id: String,
    },
    /// A plaintext message reached an agent with end-to-end encryption that does not accept
    /// plaintext ([`AgentConfig::accept_plaintext`]).
    #[error("message {message_id} is plaintext; this agent only takes end-to-end encrypted messages")]
    Plaintext {
        /// The id.
        message_id: String,
    },
    /// The message came from an identity key the app has not trusted ([`TrustPolicy::Pinned`]).
    #[error("message {message_id} comes from an untrusted identity of {peer}")]
    UntrustedIdentity {
        /// The id.
        message_id: String,
        /// Who it claims to be.
        peer: PeerId,
    },
    /// An encrypted message could not be read.
    #[error("message {message_id}: {error}")]
    Crypto {
        /// The id.
        message_id: String,
        /// Why.
        error: e2ee::InboundCryptoError,
    },
}

/// Why [`Agent::publish_prekey_bundle`] did not start a publication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The agent runs without end-to-end encryption: it has no prekeys.
    #[error("the agent runs without end-to-end encryption: it has no prekeys to publish")]
    NotEncrypted,
    /// The agent was not started: starting publishes its prekeys before the socket opens.
    #[error("the agent has not started: starting it publishes its prekeys")]
    NotStarted,
    /// A publication is under way (at start, a refill, or an earlier request).
    #[error("a prekey publication is already under way")]
    InProgress,
    /// No new prekeys can be made (their id space is used up).
    #[error("no new prekeys can be made: {0}")]
    Exhausted(String),
}

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The socket is not open.
    #[error("agent is not connected")]
    NotConnected,
    /// A required field is empty.
    #[error("`{0}` must not be empty")]
    EmptyField(&'static str),
    /// The reply names a message from another conversation or another person.
    #[error("reply target {message_id} does not match the source message")]
    ReplyMismatch {
        /// The message replied to.
        message_id: String,
    },
    /// The message could not be encrypted.
    #[error(transparent)]
    Crypto(#[from] e2ee::OutboundCryptoError),
    /// A file on an agent without end-to-end encryption, which did not accept that the relay
    /// can read it: its key would travel in a plaintext payload. The official SDK refuses such
    /// files outright; [`FileUpload::allow_relay_to_read`] accepts it.
    #[error(
        "end-to-end encryption is off, so the relay could read this file; not uploaded (FileUpload::allow_relay_to_read accepts that)"
    )]
    FileReadableByRelay,
    /// A send outside a handler found the durable outbox full: the relay has not been proven to
    /// read the last [`MAX_OUTBOX`] such frames (it stopped answering pings).
    #[error("outbox full: {limit} frames sent outside handlers wait for the relay to confirm them")]
    OutboxFull {
        /// The bound.
        limit: usize,
    },
}

/// Why a file could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The relay did not take the encrypted blob.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The blob was stored but the message carrying it could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why a message could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// No message with this id is pending.
    #[error("no message {message_id} is pending")]
    UnknownMessage {
        /// The id.
        message_id: String,
    },
}

/// Any error of the agent state machine, for callers that handle them alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// See [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// See [`InputError`].
    #[error(transparent)]
    Input(#[from] InputError),
    /// See [`SendError`].
    #[error(transparent)]
    Send(#[from] SendError),
    /// See [`AcceptError`].
    #[error(transparent)]
    Accept(#[from] AcceptError),
}

/// The fields that name a message, enough to acknowledge and report it, and its digest.
struct MessageIds {
    message_id: String,
    from: String,
    conversation_id: String,
    digest: String,
}

impl MessageIds {
    fn of(msg: &InboundMsg) -> Self {
        MessageIds {
            message_id: msg.id.clone(),
            from: msg.from.clone(),
            conversation_id: msg.conversation_id.clone(),
            digest: msg.digest.clone(),
        }
    }
}

/// A decoded message: its text, the changes to commit with its receipt, and the identity that
/// spoke (none for group messages, which no Signal session opened).
type Decoded = (String, E2eeChanges, Option<crate::store::IdentityKeyBytes>);

/// The agent state machine. See the [module docs](self).
pub struct Agent {
    config: AgentConfig,
    rng: Box<Rng>,
    state: AgentSnapshot,
    connection: Connection,
    /// The keepalive clock of the open socket; `None` while there is none.
    liveness: Option<Liveness>,
    /// The runtime's one deadline (the last [`Output::WakeAt`]) while it has not passed.
    wake: Option<Timestamp>,
    outputs: VecDeque<Output>,
    e2ee: Option<e2ee::AgentE2ee>,
    publisher: Option<publish::Publisher>,
    /// One-time prekeys people used since the last batch was made (for Signal implementations
    /// that cannot tell what they hold).
    consumed_one_time_prekeys: usize,
    next_request: u64,
    transfers: files::Transfers,
    /// Messages with the app's handler or waiting to be tried again.
    handling: handling::Handling,
    /// The message whose handler the current sends belong to (see [`Agent::while_handling`]).
    sending_for: Option<String>,
    /// Outbox entries sent on the open socket, waiting for a pong.
    proofs: outbox::Proofs,
    /// The next outbox entry's seq.
    next_outbox_seq: u64,
    /// Connections opened so far: the number of the open one, which recorded frames name.
    connections: u64,
    /// Group key fetches in flight, and the group messages and sends waiting for them.
    group_fetches: groups::Fetches,
    /// Messages their handler accepted whose group sends wait for a key sync: accepted after.
    accept_after_sends: std::collections::BTreeSet<String>,
    /// The request [`Agent::publish_prekey_bundle`] returned, while its publication runs.
    requested_publication: Option<RequestId>,
    /// The accepted receipts oldest first, following `state.receipts` (see [`retention`]).
    retention: retention::Retention,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("agent_id", &self.config.agent_id)
            .field("connection", &self.connection.state())
            .field("receipts", &self.state.receipts.len())
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// An agent continuing from `snapshot` (empty for a fresh agent), drawing ids and jitter from
    /// `rng`.
    pub fn new(config: AgentConfig, rng: Box<Rng>, snapshot: AgentSnapshot) -> Result<Self, ConfigError> {
        if config.agent_id.is_empty() {
            return Err(ConfigError::EmptyAgentId);
        }
        let mut rng = rng;
        let mut outputs = VecDeque::new();
        let mut state = snapshot;
        let e2ee = if config.e2ee {
            let (account, changes) = Account::load_or_create(&state.e2ee, config.pq_policy.factory(), &mut *rng)?;
            Self::commit_new_identity(&mut state, &mut outputs, changes);
            Some(e2ee::AgentE2ee::new(Box::new(account), &state.e2ee))
        } else {
            None
        };
        let connection = Connection::new(config.backoff);
        let next_outbox_seq = state.outbox.keys().next_back().map_or(0, |seq| seq.saturating_add(1));
        let retention = retention::Retention::of(&state.receipts);
        Ok(Agent {
            config,
            rng,
            state,
            connection,
            liveness: None,
            wake: None,
            outputs,
            e2ee,
            publisher: None,
            consumed_one_time_prekeys: 0,
            next_request: 0,
            transfers: Default::default(),
            handling: Default::default(),
            sending_for: None,
            proofs: Default::default(),
            next_outbox_seq,
            connections: 0,
            group_fetches: Default::default(),
            accept_after_sends: Default::default(),
            requested_publication: None,
            retention,
        })
    }

    /// An agent with end-to-end encryption by another Signal implementation than the native
    /// one (the official runtime, for instance); `config.e2ee` is implied.
    pub fn with_backend(
        config: AgentConfig,
        rng: Box<Rng>,
        snapshot: AgentSnapshot,
        backend: Box<dyn SignalBackend>,
        created: crate::store::E2eeChanges,
    ) -> Result<Self, ConfigError> {
        let mut agent = Agent::new(AgentConfig { e2ee: false, ..config }, rng, snapshot)?;
        agent.config.e2ee = true;
        Self::commit_new_identity(&mut agent.state, &mut agent.outputs, created);
        agent.e2ee = Some(e2ee::AgentE2ee::new(backend, &agent.state.e2ee));
        Ok(agent)
    }

    /// Queues the changes that store a new identity (before anything could be encrypted to it).
    fn commit_new_identity(
        state: &mut AgentSnapshot,
        outputs: &mut VecDeque<Output>,
        changes: crate::store::E2eeChanges,
    ) {
        if !changes.is_empty() {
            let changes = StoreChanges { e2ee: changes, ..Default::default() };
            state.apply(&changes);
            outputs.push_back(Output::Persist(changes));
        }
    }

    /// The agent's identity key (33 bytes, `0x05`), when it runs with end-to-end encryption.
    pub fn identity_key(&self) -> Option<[u8; 33]> {
        self.e2ee.as_ref().map(e2ee::AgentE2ee::identity_key)
    }

    /// The verification code people compare with what their app shows, when the agent runs
    /// with end-to-end encryption.
    pub fn verification_code(&self) -> Option<String> {
        self.identity_key().map(|key| crate::e2ee::bundle::verification_code(&key))
    }

    /// The agent's id.
    pub fn agent_id(&self) -> &str {
        &self.config.agent_id
    }

    /// Whether the socket is open (sends succeed).
    pub fn is_connected(&self) -> bool {
        self.connection.is_connected()
    }

    /// What the agent holds for persistence, as a store would after applying every change.
    pub fn snapshot(&self) -> &AgentSnapshot {
        &self.state
    }

    /// Starts the agent: asks the runtime to connect.
    ///
    /// With end-to-end encryption, the agent first puts its prekey bundle, and a new batch of
    /// one-time prekeys when it needs one (private halves committed first; see
    /// [`crate::e2ee::account`] for when), and opens the socket once the relay has taken them.
    pub fn start(&mut self, now: Timestamp) {
        let reason = self.mint_reason(Some(now));
        if !self.publish_prekeys(reason) {
            self.open_socket();
        }
    }

    /// Publishes a new prekey bundle now, as the official SDK's `publish_prekey_bundle` does: a
    /// new signed prekey, Kyber prekey and batch of one-time prekeys, their private halves
    /// committed before the `PUT /agent/prekey-bundle` and `POST /agent/one-time-prekeys` that
    /// follow, retried with backoff like every publication. [`Event::PrekeysPublished`] with the
    /// returned request follows once the relay took both; a refusal retrying cannot fix ends
    /// the agent as at start ([`Event::Unauthorized`], [`Event::PublicationFailed`]).
    pub fn publish_prekey_bundle(&mut self) -> Result<RequestId, PublishError> {
        if self.e2ee.is_none() {
            return Err(PublishError::NotEncrypted);
        }
        // Before start, the publication's end would open the socket ahead of the runtime.
        if matches!(self.connection.state(), crate::connection::ConnectionState::Idle) {
            return Err(PublishError::NotStarted);
        }
        if self.publisher.as_ref().is_some_and(|publisher| !publisher.is_finished()) {
            return Err(PublishError::InProgress);
        }
        if !self.publish_prekeys(Some(publish::MintReason::Requested)) {
            return Err(PublishError::Exhausted("the prekey id space is used up".into()));
        }
        let request = self.request_id();
        self.requested_publication = Some(request);
        Ok(request)
    }

    /// Whether to make one-time prekeys now (see [`publish::mint_reason`]).
    fn mint_reason(&mut self, now: Option<Timestamp>) -> Option<publish::MintReason> {
        let consumed = self.consumed_one_time_prekeys;
        let e2ee = self.e2ee.as_mut()?;
        let used = match e2ee.account_mut().one_time_stock() {
            Some(stock) => crate::e2ee::bundle::ONE_TIME_PREKEYS.saturating_sub(stock.newest_batch_left),
            None => consumed,
        };
        publish::mint_reason(used, self.state.e2ee.one_time_published_at, now)
    }

    /// Starts a prekey publication: the bundle, with a new batch of one-time prekeys when
    /// `mint` says why one is needed. Returns whether one started; when it ends,
    /// [`Self::open_socket`] runs (a no-op once connected).
    fn publish_prekeys(&mut self, mint: Option<publish::MintReason>) -> bool {
        let Some(e2ee) = self.e2ee.as_mut() else { return false };
        if self.publisher.as_ref().is_some_and(|publisher| !publisher.is_finished()) {
            return false;
        }
        let published = match mint {
            Some(_) => e2ee.account_mut().publish(&mut *self.rng),
            None => e2ee.account_mut().publish_bundle(&mut *self.rng),
        };
        match published {
            Err(error) => {
                // The prekey id space is used up: the old keys still serve sessions already
                // started, so the agent carries on rather than going dark.
                tracing::error!(%error, "no new prekeys can be published");
                false
            }
            Ok((mut changes, bundle, one_time)) => {
                let minted = !one_time.one_time_prekeys.is_empty();
                if minted {
                    tracing::info!(
                        agent = %self.config.agent_id,
                        reason = mint.map_or("every publication makes some", publish::MintReason::as_str),
                        "new one-time prekeys"
                    );
                    self.consumed_one_time_prekeys = 0;
                    changes.one_time_published_at = Some(publish::UNCONFIRMED);
                }
                if !changes.is_empty() {
                    self.commit(StoreChanges { e2ee: changes, ..Default::default() });
                }
                let body = |value: serde_json::Result<Vec<u8>>| value.unwrap_or_default();
                let mut publisher = publish::Publisher::new(
                    body(serde_json::to_vec(&bundle)),
                    minted.then(|| body(serde_json::to_vec(&one_time))),
                    self.config.backoff,
                );
                let id = self.request_id();
                let next = publisher.begin(id);
                self.publisher = Some(publisher);
                self.follow_publication(next);
                true
            }
        }
    }

    /// While connected: makes one-time prekeys if a refill is due, else asks to be woken when
    /// it will be. The runtime keeps a single deadline (the last [`Output::WakeAt`]), and the
    /// agent's others (reconnecting, retrying a publication) exist only while disconnected or
    /// publishing, each of which ends by calling this again. While publishing it asks again for
    /// the publication's retry instead, which a reconnection's deadline may have replaced.
    fn refill_or_schedule(&mut self, now: Timestamp) {
        if self.e2ee.is_none() || !self.connection.is_connected() {
            return;
        }
        if let Some(publisher) = self.publisher.as_ref().filter(|publisher| !publisher.is_finished()) {
            if let Some(at) = publisher.retry_at() {
                self.wake_at(at);
            }
            return;
        }
        match self.mint_reason(Some(now)) {
            Some(reason) => {
                self.publish_prekeys(Some(reason));
            }
            None => {
                let due = publish::refill_due(self.state.e2ee.one_time_published_at);
                self.wake_at(due);
            }
        }
    }

    fn open_socket(&mut self) {
        if let Some(directive) = self.connection.start() {
            self.push_directive(directive);
        }
    }

    fn request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn follow_publication(&mut self, next: publish::Next) {
        match next {
            publish::Next::Send(request) => self.outputs.push_back(Output::Http(request)),
            publish::Next::RetryAt(at) => self.wake_at(at),
            publish::Next::Done => {
                tracing::info!(agent = %self.config.agent_id, "prekeys published");
                self.open_socket();
            }
            publish::Next::Failed { step, status, error } if is_unauthorized(status) => {
                tracing::error!(agent = %self.config.agent_id, ?step, status, %error, "the relay refused the agent's token");
                let reason = (!error.is_empty()).then_some(error);
                let step = AuthStep::Publication(step);
                self.outputs.push_back(Output::Event(Event::Unauthorized { step, status, reason }));
                self.outputs.push_back(Output::Close);
            }
            publish::Next::Failed { step, status, error } => {
                tracing::error!(agent = %self.config.agent_id, ?step, status, %error, "prekey publication refused");
                self.outputs.push_back(Output::Event(Event::PublicationFailed { step, status, error }));
                self.outputs.push_back(Output::Close);
            }
            publish::Next::Nothing => {}
        }
    }

    /// Stops the agent: asks the runtime to close the socket.
    pub fn close(&mut self) {
        if let Some(directive) = self.connection.close() {
            self.push_directive(directive);
        }
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Feeds one input. On error nothing changed and nothing was emitted, with one exception:
    /// an encrypted message that a session opened but whose contents are unusable (not UTF-8,
    /// a bad delivery) still commits the session's new state, which cannot open it again.
    pub fn handle_input(&mut self, now: Timestamp, input: Input) -> Result<(), InputError> {
        match input {
            Input::Connected => {
                self.connection.connected();
                if self.connection.is_connected() {
                    self.liveness = Some(Liveness::new(self.config.keepalive, now));
                    self.connections += 1;
                    self.proofs.reset();
                    self.resend_outbox();
                }
                tracing::debug!(agent = %self.config.agent_id, "connected");
                self.refill_or_schedule(now);
                self.schedule_keepalive();
                Ok(())
            }
            Input::Disconnected => {
                self.disconnected(now);
                Ok(())
            }
            Input::HandshakeRefused(response) if is_unauthorized(response.status) => {
                let reason = response.error_message();
                tracing::error!(agent = %self.config.agent_id, status = response.status, reason = ?reason, "the relay refused the agent's token");
                if self.connection.state() != crate::connection::ConnectionState::Closed {
                    let step = AuthStep::Socket;
                    self.outputs.push_back(Output::Event(Event::Unauthorized {
                        step,
                        status: response.status,
                        reason,
                    }));
                    self.close();
                }
                Ok(())
            }
            Input::HandshakeRefused(response) => {
                // A relay restarting or overloaded (5xx), or a proxy's error page: transient.
                tracing::warn!(agent = %self.config.agent_id, status = response.status, "socket handshake refused; retrying");
                self.disconnected(now);
                Ok(())
            }
            Input::Pong => {
                if let Some(liveness) = self.liveness.as_mut() {
                    liveness.heard();
                }
                let proven: Vec<u64> =
                    self.proofs.pong().into_iter().filter(|seq| self.state.outbox.contains_key(seq)).collect();
                if !proven.is_empty() {
                    tracing::debug!(frames = proven.len(), "outbox frames proven read by the relay");
                    self.commit(StoreChanges { remove_outbox: proven, ..Default::default() });
                }
                Ok(())
            }
            Input::Ping => {
                if let Some(liveness) = self.liveness.as_mut() {
                    liveness.heard();
                }
                Ok(())
            }
            Input::Timeout => {
                // The runtime's deadline fired: it has none until one is asked for again.
                self.wake = None;
                self.check_liveness(now);
                // Ids only need to be unique, so one is drawn whether or not a call follows.
                let id = self.request_id();
                if let Some(next) = self.publisher.as_mut().map(|publisher| publisher.timeout(now, id)) {
                    self.follow_publication(next);
                }
                if let Some(directive) = self.connection.timeout(now) {
                    self.push_directive(directive);
                }
                for message in self.handling.due(now) {
                    tracing::debug!(message_id = %message.id, "handler retry due");
                    self.outputs.push_back(Output::Event(Event::Message(message)));
                }
                self.refill_or_schedule(now);
                self.schedule_keepalive();
                Ok(())
            }
            Input::Http(request, result) => {
                if let Some(fetch) = self.group_fetches.answer(request) {
                    self.complete_group_fetch(fetch, result, now);
                    return Ok(());
                }
                let result = match self.transfers.answer(request, result) {
                    Ok(completed) => {
                        self.complete_transfer(request, completed);
                        return Ok(());
                    }
                    Err(result) => result,
                };
                let id = self.request_id();
                match self.publisher.as_mut() {
                    Some(publisher) => {
                        let next = publisher.answer(request, &result, id, now, &mut *self.rng);
                        let done = next == publish::Next::Done;
                        let confirmed = done && publisher.posts_one_time_prekeys();
                        self.follow_publication(next);
                        if confirmed {
                            let e2ee = crate::store::E2eeChanges {
                                one_time_published_at: Some(publish::confirmed_at(now)),
                                ..Default::default()
                            };
                            self.commit(StoreChanges { e2ee, ..Default::default() });
                        }
                        if done {
                            if let Some(request) = self.requested_publication.take() {
                                self.outputs.push_back(Output::Event(Event::PrekeysPublished { request }));
                            }
                            self.refill_or_schedule(now);
                        }
                    }
                    None => tracing::debug!(?request, "answer to an unknown request ignored"),
                }
                Ok(())
            }
            Input::Frame(text) => {
                // Anything heard proves the socket alive, a frame refused below included.
                if let Some(liveness) = self.liveness.as_mut() {
                    liveness.heard();
                }
                self.handle_frame(&text, now)
            }
        }
    }

    /// The socket failed to open, or dropped: retry later.
    fn disconnected(&mut self, now: Timestamp) {
        self.liveness = None;
        // What the lost socket did not prove read is sent again on the next one.
        self.proofs.reset();
        if let Some(directive) = self.connection.lost(now, &mut *self.rng) {
            tracing::debug!(agent = %self.config.agent_id, ?directive, "disconnected");
            self.push_directive(directive);
        }
    }

    /// Pings the open socket when a ping is due, and gives it up when one went unanswered too
    /// long: the runtime drops it ([`Output::Abandon`]) and reconnects after the usual backoff.
    /// Nothing is replayed twice: what the relay sent into the dead socket was not
    /// acknowledged, so it comes again on the next connection, and an accepted message that
    /// comes again is only acknowledged again.
    fn check_liveness(&mut self, now: Timestamp) {
        let Some(liveness) = self.liveness.as_mut() else { return };
        match liveness.check(now) {
            LivenessCheck::Alive => {}
            LivenessCheck::Ping => self.push_ping(),
            LivenessCheck::Dead => {
                tracing::warn!(agent = %self.config.agent_id, timeout = ?self.config.keepalive.timeout, "no answer to a ping: connection dead, reconnecting");
                self.outputs.push_back(Output::Abandon);
                self.disconnected(now);
            }
        }
    }

    /// Asks for the earliest of the keepalive's deadline and the next handler retry, unless the
    /// runtime's one deadline already comes first.
    fn schedule_keepalive(&mut self) {
        let keepalive = self.liveness.as_ref().map(Liveness::deadline);
        let Some(deadline) = earliest(keepalive, self.handling.next_retry()) else { return };
        if self.wake.is_none_or(|wake| wake > deadline) {
            self.wake = Some(deadline);
            self.outputs.push_back(Output::WakeAt(deadline));
        }
    }

    /// Asks to be woken at `at`, or at the keepalive's deadline if that comes first: the
    /// runtime keeps only the last deadline asked for, so each one asked for must be the
    /// earliest the agent has.
    fn wake_at(&mut self, at: Timestamp) {
        let at = self.liveness.as_ref().map_or(at, |liveness| at.min(liveness.deadline()));
        let at = self.handling.next_retry().map_or(at, |retry| at.min(retry));
        self.wake = Some(at);
        self.outputs.push_back(Output::WakeAt(at));
    }

    fn handle_frame(&mut self, text: &str, now: Timestamp) -> Result<(), InputError> {
        match InboundFrame::parse(text) {
            Ok(InboundFrame::Msg(msg)) => {
                // Ids only: never the text, ciphertext or attachments' keys.
                let span = tracing::info_span!(
                    "message",
                    id = %msg.id,
                    conversation = %msg.conversation_id,
                    from = %msg.from,
                    encrypted = msg.encrypted
                );
                let _entered = span.enter();
                self.handle_msg(msg, now)
            }
            Ok(InboundFrame::IdentityChanged { peer_id }) => {
                tracing::info!(peer = %peer_id, "the relay reports an identity change");
                self.outputs.push_back(Output::Event(Event::IdentityChanged(IdentityChange::from_relay(peer_id))));
                Ok(())
            }
            Err(error) => match crate::wire::agent::refused_msg_ids(text) {
                // A message the SDK cannot read but can name: counted like any unreadable
                // message, so it does not come back forever.
                Some(refused) if !error.is_ignorable() => {
                    let ids = MessageIds {
                        message_id: refused.id,
                        from: refused.from,
                        conversation_id: refused.conversation_id,
                        digest: refused.digest,
                    };
                    self.unreadable(&ids, InputError::Frame(error), E2eeChanges::default(), now)
                }
                _ => Err(error.into()),
            },
        }
    }

    fn handle_msg(&mut self, msg: InboundMsg, now: Timestamp) -> Result<(), InputError> {
        let ids = MessageIds::of(&msg);
        let digest = ids.digest.clone();
        let (text, sender_identity) = match self.state.receipts.get(&msg.id) {
            Some(receipt) if receipt.digest != digest => {
                let error = InputError::Conflict { message_id: msg.id.clone() };
                if matches!(receipt.state, ReceiptState::Pending { .. }) {
                    // The message of that id waits for its handler: acknowledging the impostor
                    // would acknowledge it too.
                    return Err(error);
                }
                if self.given_up(&ids) {
                    self.push_ack(&msg.from, &msg.id, &msg.conversation_id);
                    return Err(error);
                }
                return self.unreadable(&ids, error, E2eeChanges::default(), now);
            }
            Some(Receipt { state: ReceiptState::Accepted { .. }, .. }) => {
                // The replay proves the acknowledgement was lost, and with it possibly what the
                // handler sent ahead of it: that goes again first, byte for byte.
                let sent = self.state.sent_frames.get(&msg.id).cloned().unwrap_or_default();
                tracing::debug!(message_id = %msg.id, frames = sent.len(), "replay of an accepted message: its replies sent again, acknowledged again");
                if self.connection.is_connected() {
                    self.outputs.extend(sent.into_iter().map(|sent| Output::Frame(sent.frame)));
                }
                self.push_ack(&msg.from, &msg.id, &msg.conversation_id);
                return Ok(());
            }
            // Decoded before, not yet accepted: hand the stored text out again.
            Some(Receipt { state: ReceiptState::Pending { text }, sender_identity, .. }) => {
                (text.clone(), *sender_identity)
            }
            None if self.given_up(&ids) => {
                tracing::debug!(message_id = %msg.id, "replay of a message given up on: acknowledged again");
                self.push_ack(&msg.from, &msg.id, &msg.conversation_id);
                return Ok(());
            }
            None if self.group_fetches.is_parked(&msg.id) => {
                tracing::debug!(message_id = %msg.id, "replay of a message waiting for its group key: it waits once");
                return Ok(());
            }
            None => {
                let decoded = if msg.encrypted && self.e2ee.is_some() && groups::is_group_msg(&msg) {
                    match self.open_group(&msg, &ids, now)? {
                        Some(decoded) => decoded,
                        None => return Ok(()),
                    }
                } else {
                    self.decode(&msg, &ids, now)?
                };
                self.commit_receipt(&msg, decoded, StoreChanges::default())
            }
        };
        self.hand_out(msg, text, sender_identity);
        Ok(())
    }

    /// Commits a new message's receipt as pending, with `e2ee` (what decoding it changed) and
    /// `base` (what must go in the same transaction: group keys it needed, for one). Returns its
    /// text and the identity that spoke.
    fn commit_receipt(
        &mut self,
        msg: &InboundMsg,
        (text, e2ee_changes, sender_identity): Decoded,
        base: StoreChanges,
    ) -> (String, Option<crate::store::IdentityKeyBytes>) {
        let mut changes = base;
        changes.put_receipts.push(Receipt {
            message_id: msg.id.clone(),
            digest: msg.digest.clone(),
            from: msg.from.clone(),
            conversation_id: msg.conversation_id.clone(),
            from_device_id: msg.from_device_id.clone(),
            sender_identity,
            state: ReceiptState::Pending { text: text.clone() },
        });
        changes.e2ee.merge(e2ee_changes);
        if self.state.failures.contains_key(&msg.id) {
            changes.remove_failures.push(msg.id.clone());
        }
        if let Some(device) = &msg.from_device_id {
            changes.put_last_devices.push(((msg.from.clone(), msg.conversation_id.clone()), device.clone()));
        }
        let consumed = changes.e2ee.remove_prekeys.iter().filter(|(kind, _)| *kind == PrekeyKind::OneTime).count();
        self.commit(changes);
        self.consumed_one_time_prekeys += consumed;
        if consumed > 0
            && let Some(reason) = self.mint_reason(None)
        {
            self.publish_prekeys(Some(reason));
        }
        (text, sender_identity)
    }

    /// Hands a message whose receipt is committed to the app (unless its handler has it).
    fn hand_out(&mut self, msg: InboundMsg, text: String, sender_identity: Option<crate::store::IdentityKeyBytes>) {
        let parsed = parse_payload(&text);
        let message = AgentMessage {
            attachments: chat::merge_attachments(msg.raw_attachments(), &parsed.secrets),
            id: msg.id,
            conversation_id: msg.conversation_id,
            from: msg.from,
            from_device_id: msg.from_device_id,
            to: msg.to,
            text: parsed.text,
            encrypted: msg.encrypted,
            sender_identity: sender_identity.as_ref().map(SafetyNumber::of),
            reply_to_message_id: msg.reply_to_message_id,
            widget_response: parsed.widget_response,
            widget_update: parsed.widget_update,
            raw: msg.raw,
        };
        if self.handling.hand_out(&message) {
            self.outputs.push_back(Output::Event(Event::Message(message)));
        } else {
            tracing::debug!(message_id = %message.id, "replay of a message with the handler: not handed out twice");
        }
    }

    /// An encrypted group message: opened when its key is held (`Some`), else parked behind a
    /// fetch of the group's keys (`None`; [`Self::complete_group_fetch`] goes on with it). A
    /// message that is no group message of its conversation is counted as unreadable.
    fn open_group(
        &mut self,
        msg: &InboundMsg,
        ids: &MessageIds,
        now: Timestamp,
    ) -> Result<Option<Decoded>, InputError> {
        let crypto = |error| InputError::Crypto { message_id: msg.id.clone(), error };
        let named = match groups::named_key(&msg.conversation_id, &msg.payload_b64) {
            Ok(named) => named,
            Err(error) => return self.unreadable(ids, crypto(error.into()), E2eeChanges::default(), now),
        };
        let Some(key) = groups::find(&[&self.state.group_keys], &named).cloned() else {
            tracing::debug!(message_id = %msg.id, key_id = %named.key_id, epoch = named.epoch, "group key not held: fetching the group's keys");
            let id = self.request_id();
            if let Some(call) = self.group_fetches.park(Some(msg.clone()), &msg.conversation_id, id) {
                self.outputs.push_back(Output::Http(call));
            }
            return Ok(None);
        };
        match self.read_group(msg, &key, &named) {
            Ok((text, changes)) => Ok(Some((text, changes, None))),
            Err(failure) => {
                let (error, changes) = *failure;
                self.unreadable(ids, crypto(error), changes, now)
            }
        }
    }

    /// Opens a group message with its key and reads its text as any decrypted payload (a
    /// `pacerelle.delivery` unwrapped, as the official SDK does for group messages too).
    fn read_group(
        &mut self,
        msg: &InboundMsg,
        key: &crate::store::StoredGroupKey,
        named: &crate::payload::group::GroupCiphertext,
    ) -> Result<(String, E2eeChanges), Box<(e2ee::InboundCryptoError, E2eeChanges)>> {
        let plaintext = groups::open(key, named).map_err(|error| Box::new((error.into(), E2eeChanges::default())))?;
        let Some(e2ee) = self.e2ee.as_mut() else {
            return Err(Box::new((
                e2ee::InboundCryptoError::MissingGroupKey { key_id: named.key_id.clone(), epoch: named.epoch },
                E2eeChanges::default(),
            )));
        };
        let decrypted = e2ee::Decrypted { plaintext, changes: E2eeChanges::default(), identity: None };
        match e2ee.finish(msg, decrypted) {
            Ok(opened) => Ok((opened.text, opened.changes)),
            Err(failure) => {
                let e2ee::OpenFailure { error, changes } = *failure;
                Err(Box::new((error, changes)))
            }
        }
    }

    /// A group's keys arrived (or did not): they are committed with the first parked message's
    /// receipt (or its failure record), with the Signal session changes that opening their
    /// envelopes made; then every parked message opens, or is counted as unreadable.
    fn complete_group_fetch(&mut self, fetch: groups::Fetch, result: Result<HttpResponse, String>, now: Timestamp) {
        let Some(e2ee) = self.e2ee.as_mut() else { return };
        let groups::Fetch { conversation_id, parked, sends } = fetch;
        let synced = groups::sync(e2ee, &self.state.group_keys, &conversation_id, result, &mut *self.rng);
        if let Some(error) = &synced.error {
            tracing::warn!(conversation = %conversation_id, %error, "group keys not (all) taken");
        }
        let fetched: std::collections::BTreeMap<_, _> = synced.keys.iter().map(|key| (key.id(), key.clone())).collect();
        let mut pending =
            Some(StoreChanges { put_group_keys: synced.keys, e2ee: synced.changes, ..Default::default() });
        for msg in parked {
            let ids = MessageIds::of(&msg);
            if self.state.receipts.contains_key(&msg.id) || self.given_up(&ids) {
                continue;
            }
            let mut base = pending.take().unwrap_or_default();
            let crypto = |error| InputError::Crypto { message_id: msg.id.clone(), error };
            let named = match groups::named_key(&msg.conversation_id, &msg.payload_b64) {
                Ok(named) => named,
                Err(error) => {
                    let _: Result<(), _> = self.unreadable_with(&ids, crypto(error.into()), base, now);
                    continue;
                }
            };
            let key = groups::find(&[&self.state.group_keys, &fetched], &named).cloned();
            let span =
                tracing::info_span!("message", id = %msg.id, conversation = %msg.conversation_id, from = %msg.from);
            let _entered = span.enter();
            let Some(key) = key else {
                let error = match &synced.error {
                    Some(error) => e2ee::InboundCryptoError::GroupKeys(error.clone()),
                    None => e2ee::InboundCryptoError::MissingGroupKey { key_id: named.key_id, epoch: named.epoch },
                };
                let _: Result<(), _> = self.unreadable_with(&ids, crypto(error), base, now);
                continue;
            };
            match self.read_group(&msg, &key, &named) {
                Ok((text, changes)) => {
                    let (text, identity) = self.commit_receipt(&msg, (text, changes, None), base);
                    self.hand_out(msg, text, identity);
                }
                Err(failure) => {
                    let (error, changes) = *failure;
                    base.e2ee.merge(changes);
                    let _: Result<(), _> = self.unreadable_with(&ids, crypto(error), base, now);
                }
            }
        }
        if let Some(rest) = pending
            && !rest.is_empty()
        {
            self.commit(rest);
        }
        self.send_parked(sends, now);
    }

    /// Asks for `conversation_id`'s group keys unless a fetch is in flight (a send found none).
    fn fetch_group_keys(&mut self, conversation_id: &str) {
        let id = self.request_id();
        if let Some(call) = self.group_fetches.park(None, conversation_id, id) {
            self.outputs.push_back(Output::Http(call));
        }
    }

    /// The payload's text, the changes to commit with its receipt, and the identity that spoke.
    /// A message that cannot be delivered is settled here (counted, or refused and reported).
    fn decode(&mut self, msg: &InboundMsg, ids: &MessageIds, now: Timestamp) -> Result<Decoded, InputError> {
        if !msg.encrypted {
            if self.e2ee.is_some() && !self.config.accept_plaintext {
                let error = InputError::Plaintext { message_id: msg.id.clone() };
                return Err(self.refuse(ids, error, UndeliverableReason::Plaintext, StoreChanges::default(), now));
            }
            let undecodable = |reason| InputError::Undecodable { message_id: msg.id.clone(), reason };
            // As leniently as the official SDK's `base64.b64decode` (no `validate`).
            let text = match crate::wire::python::b64decode(&msg.payload_b64) {
                Err(_) => Err(undecodable("payload_b64 is not base64")),
                Ok(bytes) => String::from_utf8(bytes).map_err(|_| undecodable("payload is not UTF-8")),
            };
            return match text {
                Ok(text) => Ok((text, E2eeChanges::default(), None)),
                Err(error) => self.unreadable(ids, error, E2eeChanges::default(), now),
            };
        }
        let Some(e2ee) = self.e2ee.as_mut() else {
            let error = InputError::EncryptedWithoutE2ee { message_id: msg.id.clone() };
            let reason = UndeliverableReason::EncryptedWithoutE2ee;
            return Err(self.refuse(ids, error, reason, StoreChanges::default(), now));
        };
        let crypto = |error| InputError::Crypto { message_id: msg.id.clone(), error };
        let decrypted = match e2ee.decrypt(msg, &mut *self.rng) {
            Ok(decrypted) => decrypted,
            Err(error) => {
                return self.unreadable(ids, crypto(error), E2eeChanges::default(), now);
            }
        };
        let spoke = decrypted.identity;
        let mut trust_changes = E2eeChanges::default();
        if let Some(spoke) = spoke {
            let peer = PeerId { user_id: msg.from.clone(), device_id: msg.from_device_id.clone() };
            let pinned = self.config.trust_policy == TrustPolicy::Pinned;
            let known = self.state.e2ee.peer_identities.get(&peer);
            let (verdict, change) = trust::check(known, &peer, spoke, pinned, now);
            if let Some(change) = change {
                tracing::warn!(%peer, trusted = change.trusted, "a peer's identity key changed");
                self.outputs.push_back(Output::Event(Event::IdentityChanged(change)));
            }
            match verdict {
                trust::Verdict::Refuse(stored) => {
                    // The session the newcomer started (or moved) is forgotten, so replies keep
                    // going to the trusted identity; its next message tries again.
                    if let Err(error) = e2ee.discard(&decrypted.changes, &self.state.e2ee) {
                        // Replies could go to the newcomer's session: stop rather than risk it.
                        tracing::error!(%error, "a refused session could not be forgotten; stopping");
                        self.close();
                    }
                    let safety_number = SafetyNumber::of(&spoke);
                    let error = InputError::UntrustedIdentity { message_id: msg.id.clone(), peer: peer.clone() };
                    let reason = UndeliverableReason::UntrustedIdentity { peer: peer.clone(), safety_number };
                    let mut changes = StoreChanges::default();
                    changes.e2ee.put_peer_identities.push((peer, stored));
                    return Err(self.refuse(ids, error, reason, changes, now));
                }
                trust::Verdict::Deliver(stored) => {
                    let is_new = !self.state.e2ee.peer_identities.contains_key(&peer);
                    if is_new {
                        let evicted = trust::devices_beyond_cap(&self.state.e2ee.peer_identities, &peer.user_id, &peer);
                        trust_changes.remove_peer_identities.extend(evicted);
                    }
                    if self.state.e2ee.peer_identities.get(&peer) != Some(&stored) {
                        trust_changes.put_peer_identities.push((peer, stored));
                    }
                }
            }
        }
        match e2ee.finish(msg, decrypted) {
            Ok(opened) => {
                let mut changes = opened.changes;
                changes.merge(trust_changes);
                Ok((opened.text, changes, spoke))
            }
            Err(failure) => {
                let e2ee::OpenFailure { error, mut changes } = *failure;
                // The session opened the message and moved on: keep that, or the next message
                // from this peer would not open either.
                changes.merge(trust_changes);
                self.unreadable(ids, crypto(error), changes, now)
            }
        }
    }

    /// Whether this very frame (same id, same digest) was given up on before.
    fn given_up(&self, ids: &MessageIds) -> bool {
        self.state
            .failures
            .get(&ids.message_id)
            .is_some_and(|failure| failure.given_up_at.is_some() && failure.digest == ids.digest)
    }

    /// Counts a failed delivery of a message that cannot be read (committing `e2ee` with it);
    /// at [`AgentConfig::max_delivery_attempts`], acknowledges it and reports it undeliverable.
    /// Returns `error` (as `Err`) either way, for the caller to pass on.
    fn unreadable<T>(
        &mut self,
        ids: &MessageIds,
        error: InputError,
        e2ee: E2eeChanges,
        now: Timestamp,
    ) -> Result<T, InputError> {
        self.unreadable_with(ids, error, StoreChanges { e2ee, ..Default::default() }, now)
    }

    /// [`Self::unreadable`], committing `base` (any changes, group keys for one) with the count.
    fn unreadable_with<T>(
        &mut self,
        ids: &MessageIds,
        error: InputError,
        base: StoreChanges,
        now: Timestamp,
    ) -> Result<T, InputError> {
        let mut failure = self.failure_record(ids, &error, now);
        let attempts = failure.attempts;
        let give_up = attempts >= self.config.max_delivery_attempts.max(1);
        failure.given_up_at = give_up.then_some(now);
        tracing::warn!(message_id = %ids.message_id, attempts, %error, give_up, "message could not be read");
        let mut changes = base;
        changes.put_failures.push(failure);
        changes.remove_failures.extend(self.expired_failures(now, &ids.message_id));
        self.commit(changes);
        if give_up {
            let reason = UndeliverableReason::Unreadable { attempts, error: error.to_string() };
            self.report_undeliverable(ids, reason);
        }
        Err(error)
    }

    /// Refuses a message at once: records it as given up (with `changes`), acknowledges it and
    /// reports it. Returns `error`, for the caller to pass on.
    fn refuse(
        &mut self,
        ids: &MessageIds,
        error: InputError,
        reason: UndeliverableReason,
        mut changes: StoreChanges,
        now: Timestamp,
    ) -> InputError {
        tracing::warn!(message_id = %ids.message_id, %error, "message refused");
        changes.put_failures.push(DeliveryFailure { given_up_at: Some(now), ..self.failure_record(ids, &error, now) });
        changes.remove_failures = self.expired_failures(now, &ids.message_id);
        self.commit(changes);
        self.report_undeliverable(ids, reason);
        error
    }

    /// The failure record of one more failed delivery of `ids` (not given up).
    fn failure_record(&self, ids: &MessageIds, error: &InputError, now: Timestamp) -> DeliveryFailure {
        let previous = self.state.failures.get(&ids.message_id);
        DeliveryFailure {
            message_id: ids.message_id.clone(),
            digest: ids.digest.clone(),
            from: ids.from.clone(),
            conversation_id: ids.conversation_id.clone(),
            attempts: previous.map_or(0, |failure| failure.attempts).saturating_add(1),
            reason: error.to_string(),
            first_at: previous.map_or(now, |failure| failure.first_at),
            given_up_at: None,
        }
    }

    fn report_undeliverable(&mut self, ids: &MessageIds, reason: UndeliverableReason) {
        self.push_ack(&ids.from, &ids.message_id, &ids.conversation_id);
        self.outputs.push_back(Output::Event(Event::Undeliverable(Undeliverable {
            message_id: ids.message_id.clone(),
            from: ids.from.clone(),
            conversation_id: ids.conversation_id.clone(),
            reason,
        })));
    }

    /// Failure records past the receipt retention window, or beyond the receipt count limit
    /// (oldest first), other than `keep`'s.
    fn expired_failures(&self, now: Timestamp, keep: &str) -> Vec<String> {
        let records = self
            .state
            .failures
            .values()
            .filter(|failure| failure.message_id != keep)
            .map(|failure| (failure.first_at, &failure.message_id));
        self.expired(records, now)
    }

    /// Trusts the identity key that spoke for `peer` and was refused under
    /// [`TrustPolicy::Pinned`] (check its safety number with the person first, as the
    /// [`Event::IdentityChanged`] showed it). Its next message starts a session and is delivered.
    pub fn trust_identity(&mut self, peer: &PeerId) -> Result<SafetyNumber, TrustError> {
        let stored = self.state.e2ee.peer_identities.get(peer);
        let Some((stored, pending)) = stored.and_then(|stored| Some((stored, stored.pending?))) else {
            return Err(TrustError::NothingPending(peer.clone()));
        };
        let record = StoredPeerIdentity { trusted: pending, pending: None, last_seen: stored.last_seen };
        let mut changes = StoreChanges::default();
        changes.e2ee.put_peer_identities.push((peer.clone(), record));
        self.commit(changes);
        tracing::info!(%peer, "identity trusted by the app");
        Ok(SafetyNumber::of(&pending))
    }

    /// The safety number trusted for `peer`, once one of its sessions spoke.
    pub fn trusted_identity(&self, peer: &PeerId) -> Option<SafetyNumber> {
        self.state.e2ee.peer_identities.get(peer).map(|stored| SafetyNumber::of(&stored.trusted))
    }

    /// Marks a message accepted (its handler returned): persists that, then acknowledges it.
    ///
    /// Accepting an already accepted message does nothing.
    pub fn accept(&mut self, message_id: &str, now: Timestamp) -> Result<(), AcceptError> {
        let receipt = match self.state.receipts.get(message_id) {
            Some(receipt @ Receipt { state: ReceiptState::Pending { .. }, .. }) => receipt.clone(),
            Some(_) => return Ok(()),
            None => return Err(AcceptError::UnknownMessage { message_id: message_id.to_owned() }),
        };
        if self.group_fetches.has_sends_for(message_id) {
            // Its reply waits for the group's keys: accepting now would acknowledge a message
            // whose reply is not yet durable anywhere.
            tracing::debug!(message_id = %message_id, "acceptance waits for the handler's group sends");
            self.accept_after_sends.insert(message_id.to_owned());
            return Ok(());
        }
        let recorded = self.handling.accepted(message_id);
        let accepted = Receipt { state: ReceiptState::Accepted { at: now }, ..receipt };
        let mut changes = StoreChanges { remove_receipts: self.expired_receipts(now), ..Default::default() };
        changes.put_receipts.push(accepted.clone());
        if !recorded.is_empty() {
            let frames = recorded.iter().map(|recorded| recorded.sent.clone()).collect();
            changes.put_sent_frames.push((message_id.to_owned(), frames));
        }
        self.commit(changes);
        if self.connection.is_connected() {
            // Frames that left on an earlier socket may have died with it; the acknowledgement
            // on this one would make them unrecoverable, so they go again ahead of it.
            let current = self.connections;
            let stale = recorded.into_iter().filter(|recorded| recorded.connection != current);
            self.outputs.extend(stale.map(|recorded| Output::Frame(recorded.sent.frame)));
        }
        self.push_ack(&accepted.from, &accepted.message_id, &accepted.conversation_id);
        Ok(())
    }

    /// Reports that a message's handler failed with `error` (the app's words, for the report):
    /// the message stays unacknowledged and is handed out again ([`Event::Message`]) after
    /// [`AgentConfig::handler_retry`]'s backoff, or, after its last attempt, reported with
    /// [`Event::HandlerGaveUp`] and left to the relay, which delivers it again after a
    /// reconnection.
    ///
    /// A message accepted meanwhile, or already waiting for its retry, is left alone.
    pub fn handler_failed(&mut self, message_id: &str, error: &str, now: Timestamp) -> Result<(), AcceptError> {
        match self.state.receipts.get(message_id) {
            Some(Receipt { state: ReceiptState::Pending { .. }, .. }) => {}
            Some(_) => return Ok(()),
            None => return Err(AcceptError::UnknownMessage { message_id: message_id.to_owned() }),
        }
        match self.handling.failed(message_id, &self.config.handler_retry, now) {
            handling::Failure::RetryAt(at) => {
                tracing::debug!(message_id = %message_id, "handler failed; retrying");
                if self.wake.is_none_or(|wake| wake > at) {
                    self.wake_at(at);
                }
            }
            handling::Failure::GaveUp(attempts, sent) => {
                tracing::debug!(message_id = %message_id, attempts, "handler failed on every attempt; left unacknowledged");
                // No acceptance will record what its calls sent: the outbox keeps it instead.
                self.keep_in_outbox(sent);
                let message_id = message_id.to_owned();
                let error = error.to_owned();
                self.outputs.push_back(Output::Event(Event::HandlerGaveUp(GaveUp { message_id, attempts, error })));
            }
            handling::Failure::NotHandled => {}
        }
        Ok(())
    }

    /// Accepted receipts past the retention window or beyond the count limit (counting the one
    /// about to be added), oldest first: read off the ordered index, so the cost is the
    /// receipts forgotten, not those kept.
    fn expired_receipts(&self, now: Timestamp) -> Vec<String> {
        self.retention.expired(now, self.config.max_accepted_receipts, self.config.receipt_retention)
    }

    /// Of `records` (when, id), those past the receipt retention window or beyond the receipt
    /// count limit once one more is added, oldest first.
    fn expired<'a>(&self, records: impl Iterator<Item = (Timestamp, &'a String)>, now: Timestamp) -> Vec<String> {
        let mut records: Vec<(Timestamp, &String)> = records.collect();
        records.sort();
        let over_limit = (records.len() + 1).saturating_sub(self.config.max_accepted_receipts);
        records
            .iter()
            .enumerate()
            .filter(|(index, (at, _))| *index < over_limit || now.saturating_since(*at) > self.config.receipt_retention)
            .map(|(_, (_, id))| (*id).clone())
            .collect()
    }

    /// Runs `f` with the sends it makes ([`Agent::send_message`], [`Agent::reply`],
    /// [`Agent::send_widget`], [`Agent::send_widget_update`]) belonging to the handler call of
    /// `message_id`: while that message is with the handler, they are recorded with it and
    /// committed with its acceptance (see the [module docs](self)). For a message no longer with
    /// the handler (accepted, given up, unknown), they go through the durable outbox, as any
    /// send outside a handler does.
    pub fn while_handling<R>(&mut self, message_id: &str, f: impl FnOnce(&mut Agent) -> R) -> R {
        let outer = self.sending_for.replace(message_id.to_owned());
        let result = f(self);
        self.sending_for = outer;
        result
    }

    /// Sends a message; returns its id.
    pub fn send_message(&mut self, message: OutgoingMessage) -> Result<String, SendError> {
        let id = ids::uuid_v4(&mut *self.rng);
        self.send_with_id(id, message)
    }

    /// Uploads a file without sending a message (the official SDK's `upload_file`): encrypts
    /// it and asks for its upload ([`Output::Http`]); the attachment arrives as
    /// [`Event::Uploaded`] with the returned request id, ready for any number of messages
    /// ([`OutgoingMessage::attachments`]). Needs no connection.
    ///
    /// Without end-to-end encryption it is refused ([`SendError::FileReadableByRelay`]) unless
    /// the file allows the relay to read it ([`FileUpload::allow_relay_to_read`]).
    pub fn upload_file(&mut self, file: FileUpload) -> Result<RequestId, SendError> {
        self.check_file_exposure(&file)?;
        let request = self.request_id();
        let call = self.transfers.upload(request, file, None, &mut *self.rng);
        self.outputs.push_back(Output::Http(call));
        Ok(request)
    }

    /// Sends a file in a message of its own (the official SDK's `send_file` and `send_media`):
    /// encrypts it and asks for its upload ([`Output::Http`]); the message that carries it
    /// follows the upload, announced by [`Event::FileSent`] with the attachment (or
    /// [`Event::FileFailed`]) and the returned request id. Returns that id and the message's id.
    ///
    /// What a message needs (a connection, a session with the person) is checked first, so a
    /// file that could not be sent is not uploaded; so is the refusal of
    /// [`Agent::upload_file`] without end-to-end encryption.
    pub fn send_file(&mut self, file: OutgoingFile) -> Result<(RequestId, String), SendError> {
        self.check_file_exposure(&file.file)?;
        let (group, device) = self.route(&file.message)?;
        if group {
            self.check_group_key(&file.message.conversation_id)?;
        } else if let Some(e2ee) = self.e2ee.as_ref() {
            e2ee.check_session(&file.message.to, &file.message.conversation_id, device.as_deref())?;
        }
        let message_id = ids::uuid_v4(&mut *self.rng);
        let request = self.request_id();
        let OutgoingFile { message, file } = file;
        let call = self.transfers.upload(request, file, Some((message_id.clone(), message)), &mut *self.rng);
        self.outputs.push_back(Output::Http(call));
        Ok((request, message_id))
    }

    /// Refuses a file the relay could read (no end-to-end encryption) unless it says it may.
    fn check_file_exposure(&self, file: &FileUpload) -> Result<(), SendError> {
        if self.e2ee.is_none() && !file.allow_relay_to_read {
            return Err(SendError::FileReadableByRelay);
        }
        Ok(())
    }

    /// Downloads and decrypts `attachment`; the plaintext arrives as [`Event::Downloaded`] with
    /// the returned request id. An attachment without key and IV is refused at once.
    pub fn download_attachment(&mut self, attachment: &Attachment) -> Result<RequestId, DownloadError> {
        let request = self.request_id();
        let call = self.transfers.download(request, attachment)?;
        self.outputs.push_back(Output::Http(call));
        Ok(request)
    }

    fn complete_transfer(&mut self, request: RequestId, completed: files::Completed) {
        let event = match completed {
            files::Completed::Upload { then_send: None, result } => Event::Uploaded { request, result },
            files::Completed::Upload { then_send: Some((message_id, mut message)), result: Ok(attachment) } => {
                message.attachments.push(attachment.clone());
                match self.send_with_id(message_id.clone(), message) {
                    Ok(_) => Event::FileSent { request, message_id, attachment },
                    Err(error) => Event::FileFailed { request, error: error.into() },
                }
            }
            files::Completed::Upload { then_send: Some(_), result: Err(error) } => {
                Event::FileFailed { request, error: error.into() }
            }
            files::Completed::Download { result } => Event::Downloaded {
                request,
                result: result.map(|plaintext| crate::store::SecretBytes::new(plaintext.to_vec())),
            },
        };
        self.outputs.push_back(Output::Event(event));
    }

    /// Checks a message's fields and reply link; returns whether it goes to a group and the
    /// device it goes to.
    fn route(&self, message: &OutgoingMessage) -> Result<(bool, Option<String>), SendError> {
        if !self.connection.is_connected() {
            return Err(SendError::NotConnected);
        }
        if message.conversation_id.is_empty() {
            return Err(SendError::EmptyField("conversation_id"));
        }
        if message.to.is_empty() {
            return Err(SendError::EmptyField("to"));
        }
        let group = is_group_target(&message.to, &message.conversation_id);
        let source = message.reply_to_message_id.as_ref().and_then(|id| self.state.receipts.get(id));
        if let Some(source) = source
            && (source.conversation_id != message.conversation_id || (!group && source.from != message.to))
        {
            return Err(SendError::ReplyMismatch { message_id: source.message_id.clone() });
        }
        let to_device_id = if group {
            None
        } else {
            message.to_device_id.clone().or_else(|| source.and_then(|source| source.from_device_id.clone())).or_else(
                || self.state.last_devices.get(&(message.to.clone(), message.conversation_id.clone())).cloned(),
            )
        };
        Ok((group, to_device_id))
    }

    /// With end-to-end encryption, checks that a key of the group `conversation_id` is held; if
    /// none is, asks for the group's keys (for a later send) and refuses this one.
    fn check_group_key(&mut self, conversation_id: &str) -> Result<(), SendError> {
        if self.e2ee.is_none() || groups::latest(&self.state.group_keys, conversation_id).is_some() {
            return Ok(());
        }
        tracing::warn!(conversation = %conversation_id, "no group key held: not sent; fetching the group's keys");
        self.fetch_group_keys(conversation_id);
        Err(e2ee::OutboundCryptoError::NoGroupKey { conversation_id: conversation_id.to_owned() }.into())
    }

    fn send_with_id(&mut self, id: String, message: OutgoingMessage) -> Result<String, SendError> {
        let (group, to_device_id) = self.route(&message)?;
        if group {
            self.check_group_key(&message.conversation_id)?;
        }
        // Decided before sealing, so that a refused send leaves the session as it was.
        let handled = self.sending_for.clone().filter(|handled| self.handling.can_record(handled));
        let unrecorded = self.state.outbox.len() + self.group_fetches.unrecorded_sends();
        if handled.is_none() && unrecorded >= MAX_OUTBOX {
            return Err(SendError::OutboxFull { limit: MAX_OUTBOX });
        }
        let plaintext = chat::encode_chat_payload(&message.text, &message.attachments);
        let attachments = (!message.attachments.is_empty())
            .then(|| message.attachments.iter().map(chat::PublicAttachment::redacted).collect());
        let mut frame = OutboundMsg {
            id,
            conversation_id: message.conversation_id,
            to: message.to,
            payload_b64: String::new(),
            encrypted: self.e2ee.is_some(),
            to_device_id,
            history_record: None,
            reply_to_message_id: message.reply_to_message_id,
            attachments,
        };
        let mut changes = StoreChanges::default();
        match self.e2ee.as_mut() {
            Some(e2ee) if group => {
                let no_key =
                    || e2ee::OutboundCryptoError::NoGroupKey { conversation_id: frame.conversation_id.clone() };
                let fallback = groups::latest(&self.state.group_keys, &frame.conversation_id).ok_or_else(no_key)?;
                frame.history_record = e2ee.history_record(
                    &self.config.agent_id,
                    &frame.conversation_id,
                    &frame.id,
                    &plaintext,
                    &mut *self.rng,
                )?;
                // Sealed once the group's keys are synced (see the groups module).
                let id = frame.id.clone();
                let send = groups::ParkedSend { frame, plaintext: Zeroizing::new(plaintext), fallback, handled };
                let request = self.request_id();
                if let Some(call) = self.group_fetches.park_send(send, request) {
                    self.outputs.push_back(Output::Http(call));
                }
                return Ok(id);
            }
            Some(e2ee) => {
                let outbound = e2ee::Outbound {
                    message_id: &frame.id,
                    conversation_id: &frame.conversation_id,
                    to: &frame.to,
                    device_id: frame.to_device_id.as_deref(),
                    plaintext: &plaintext,
                };
                let sealed = e2ee.seal(&self.config.agent_id, &outbound, &mut *self.rng)?;
                // The session's new state persists before its ciphertext leaves.
                changes.e2ee = sealed.changes;
                frame.payload_b64 = sealed.payload_b64;
                frame.history_record = sealed.history_record;
            }
            None => frame.payload_b64 = STANDARD.encode(plaintext.as_bytes()),
        }
        let id = frame.id.clone();
        self.dispatch(&frame, changes, handled);
        Ok(id)
    }

    /// Sends a sealed frame, durably: recorded with the message whose handler made it (committed
    /// with its acceptance), or else stored in the outbox before it leaves. `changes` (the
    /// session's new state) is committed first either way. Without a socket the frame waits:
    /// the outbox sends it at the next connection, a replay of the handled message sends it
    /// again before its acknowledgement.
    fn dispatch(&mut self, frame: &OutboundMsg, mut changes: StoreChanges, handled: Option<String>) {
        let sent = SentFrame { id: frame.id.clone(), frame: frame.to_frame() };
        let connected = self.connection.is_connected();
        match handled.filter(|handled| self.handling.can_record(handled)) {
            Some(handled) => {
                if !changes.is_empty() {
                    self.commit(changes);
                }
                self.handling.record(&handled, handling::Recorded { sent: sent.clone(), connection: self.connections });
                if connected {
                    self.outputs.push_back(Output::Frame(sent.frame));
                }
            }
            None => {
                // One commit for the session's new state and the outbox entry: the frame is
                // durable before it leaves.
                let seq = self.next_outbox_seq;
                self.next_outbox_seq += 1;
                changes.put_outbox.push(OutboxEntry { seq, sent: sent.clone() });
                self.commit(changes);
                if connected {
                    self.outputs.push_back(Output::Frame(sent.frame));
                    self.proofs.sent(seq);
                    self.push_ping();
                }
            }
        }
    }

    /// Seals the group sends that waited for their group's keys, under the newest key now held,
    /// and sends them; then accepts the messages whose acceptance waited for them.
    fn send_parked(&mut self, sends: Vec<groups::ParkedSend>, now: Timestamp) {
        for send in sends {
            let groups::ParkedSend { mut frame, plaintext, fallback, handled } = send;
            // Held keys are never dropped, so the newest held is at least the fallback.
            let key = groups::latest(&self.state.group_keys, &frame.conversation_id).unwrap_or(fallback);
            tracing::debug!(message_id = %frame.id, epoch = key.epoch, "group send sealed after the key sync");
            frame.payload_b64 = groups::seal(&key, &mut *self.rng, &plaintext);
            self.dispatch(&frame, StoreChanges::default(), handled);
        }
        let ready: Vec<String> = self
            .accept_after_sends
            .iter()
            .filter(|message_id| !self.group_fetches.has_sends_for(message_id))
            .cloned()
            .collect();
        for message_id in ready {
            self.accept_after_sends.remove(&message_id);
            if let Err(error) = self.accept(&message_id, now) {
                tracing::debug!(%error, "a message accepted after its group sends is gone");
            }
        }
    }

    /// Puts frames a handler sent into the outbox (its message will not be accepted now), and
    /// has them proven: those that left on an earlier socket go again.
    fn keep_in_outbox(&mut self, recorded: Vec<handling::Recorded>) {
        if recorded.is_empty() {
            return;
        }
        let mut changes = StoreChanges::default();
        let mut resend = Vec::new();
        for recorded in recorded {
            let seq = self.next_outbox_seq;
            self.next_outbox_seq += 1;
            if recorded.connection != self.connections {
                resend.push(recorded.sent.frame.clone());
            }
            changes.put_outbox.push(OutboxEntry { seq, sent: recorded.sent });
        }
        let seqs: Vec<u64> = changes.put_outbox.iter().map(|entry| entry.seq).collect();
        self.commit(changes);
        if self.connection.is_connected() {
            self.outputs.extend(resend.into_iter().map(Output::Frame));
            for seq in seqs {
                self.proofs.sent(seq);
            }
            self.push_ping();
        }
    }

    /// Sends every outbox entry again (a socket just opened), and a ping to prove them.
    fn resend_outbox(&mut self) {
        if self.state.outbox.is_empty() {
            return;
        }
        tracing::debug!(frames = self.state.outbox.len(), "outbox frames sent again");
        let entries: Vec<OutboxEntry> = self.state.outbox.values().cloned().collect();
        for entry in entries {
            self.outputs.push_back(Output::Frame(entry.sent.frame));
            self.proofs.sent(entry.seq);
        }
        self.push_ping();
    }

    /// Pings the socket (for the keepalive, or to prove outbox frames read).
    fn push_ping(&mut self) {
        self.proofs.pinged();
        self.outputs.push_back(Output::Ping);
    }

    /// Replies to `message` in its conversation (or group), linked to it; returns the reply's id.
    pub fn reply(&mut self, message: &AgentMessage, text: impl Into<String>) -> Result<String, SendError> {
        self.send_message(OutgoingMessage::reply(message, text))
    }

    /// Sends a standard widget to `to` in `conversation_id`; returns the widget's id.
    pub fn send_widget(
        &mut self,
        conversation_id: &str,
        to: &str,
        widget: impl Into<widget::Widget>,
    ) -> Result<String, SendError> {
        let (id, payload) = widget.into().encode(|| ids::uuid_v4(&mut *self.rng));
        self.send_message(OutgoingMessage::new(conversation_id, to, payload))?;
        Ok(id)
    }

    /// Sends a change to a widget already sent; returns the update's id.
    pub fn send_widget_update(
        &mut self,
        conversation_id: &str,
        to: &str,
        patch: widget::WidgetPatch,
    ) -> Result<String, SendError> {
        let (id, payload) = patch.encode(|| ids::uuid_v4(&mut *self.rng));
        self.send_message(OutgoingMessage::new(conversation_id, to, payload))?;
        Ok(id)
    }

    fn commit(&mut self, changes: StoreChanges) {
        self.retention.track(&self.state.receipts, &changes);
        self.state.apply(&changes);
        self.outputs.push_back(Output::Persist(changes));
    }

    fn push_ack(&mut self, from: &str, message_id: &str, conversation_id: &str) {
        if !self.connection.is_connected() {
            // The relay replays unacknowledged messages on reconnect; the replay is acknowledged
            // then, from the accepted receipt.
            return;
        }
        let ack = AckRead {
            to: from.to_owned(),
            message_id: message_id.to_owned(),
            conversation_id: conversation_id.to_owned(),
        };
        self.outputs.push_back(Output::Frame(ack.to_frame()));
    }

    fn push_directive(&mut self, directive: Directive) {
        match directive {
            Directive::Connect => self.outputs.push_back(Output::Connect),
            Directive::WakeAt(at) => self.wake_at(at),
            Directive::Close => {
                self.liveness = None;
                self.outputs.push_back(Output::Close);
            }
        }
    }
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_groups;
#[cfg(test)]
mod tests_outbox;
#[cfg(test)]
mod tests_prekeys;
#[cfg(test)]
mod tests_retries;

//! The person-side state machine: what a person's app does against the development relay.
//!
//! It drives the relay's person API ([`crate::wire::person`]): opening conversations, sending
//! text and widget answers to agents, receiving agents' messages (widgets and updates read
//! out), read receipts and relay errors, and encrypted groups ([`group`]: keys made,
//! distributed through Signal and rotated by [`Person::distribute_group_key`], group messages
//! sealed once and opened with the keys held). The relay's tests, the examples, the conformance suite
//! and load tools are built on it. Same shape as [`crate::Agent`]: inputs in, outputs out.

use crate::connection::{Backoff, Connection, Directive};
use crate::e2ee::account::Account;
use crate::e2ee::backend::{BackendError, SignalBackend};
use crate::e2ee::pqxdh::PeerBundle;
use crate::message::{Attachment, WidgetUpdate};
use crate::payload::{chat, parse_payload, widget};
use crate::wire::agent::is_group_target;
use crate::wire::http::{BlobUploaded, HttpMethod, HttpRequest, HttpResponse, RequestId, percent_encode};
use crate::wire::person::{
    ConversationCreated, CreateConversation, FetchedBundle, PersonInboundFrame, PersonInboundMsg, PersonOutboundMsg,
    ReadReceipt, RelayErrorFrame,
};
use crate::wire::{AckRead, FrameError};
use crate::{Rng, Timestamp, ids};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet, VecDeque};

pub mod group;
mod group_flow;

pub use group::{GroupKeyring, GroupMember, MemberKind};

/// How a person's client behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonConfig {
    /// The person's id.
    pub person_id: String,
    /// This client's device id, sent with every message (replies come back to it).
    pub device_id: Option<String>,
    /// Reconnect policy.
    pub backoff: Backoff,
    /// End-to-end encryption: messages to agents are encrypted with a session per agent and
    /// conversation, started from the agent's bundle (fetched before the first message).
    pub e2ee: bool,
}

impl PersonConfig {
    /// Defaults for `person_id`, without a device id.
    pub fn new(person_id: impl Into<String>) -> Self {
        PersonConfig { person_id: person_id.into(), device_id: None, backoff: Backoff::default(), e2ee: false }
    }
}

/// Something that happened outside the person's state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonInput {
    /// The socket opened.
    Connected,
    /// The socket could not be opened, or closed.
    Disconnected,
    /// A text frame arrived.
    Frame(String),
    /// A deadline from [`PersonOutput::WakeAt`] passed.
    Timeout,
    /// An HTTP call finished (or failed to reach the relay: `Err` with the reason).
    Http(RequestId, Result<HttpResponse, String>),
}

/// Something for the runtime to do, in order.
// Moved once through a queue, never stored in bulk: boxing the large variant would only add
// an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PersonOutput {
    /// Open the socket (`{ws_base}/ws/person?token=...[&device_id=...]`).
    Connect,
    /// Close the socket.
    Close,
    /// Call back with [`PersonInput::Timeout`] at this time.
    WakeAt(Timestamp),
    /// Send this text frame.
    Frame(String),
    /// Make this HTTP call with the person's token and report it with [`PersonInput::Http`].
    Http(HttpRequest),
    /// Tell the app.
    Event(PersonEvent),
}

/// A message an agent (or another person) sent to this person.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonMessage {
    /// The message id.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The sender.
    pub from: String,
    /// The text, as an agent's handler would read it.
    pub text: String,
    /// Whether it arrived encrypted.
    pub encrypted: bool,
    /// A widget to show, when the payload is one.
    pub widget: Option<widget::ReceivedWidget>,
    /// A widget update, when the payload is one.
    pub widget_update: Option<WidgetUpdate>,
    /// The message it answers.
    pub reply_to_message_id: Option<String>,
    /// The device the sender addressed.
    pub to_device_id: Option<String>,
    /// Attachments (real metadata when the payload carried it).
    pub attachments: Vec<Attachment>,
    /// The frame as received.
    pub frame: PersonInboundMsg,
}

impl PersonMessage {
    /// Whether it was sent to the whole group (`to` = `group:{conversation_id}`).
    pub fn is_group(&self) -> bool {
        is_group_target(&self.frame.to, &self.conversation_id)
    }

    /// For an encrypted group message, the key it was sealed under: its id and epoch.
    pub fn group_key(&self) -> Option<(String, i64)> {
        (self.encrypted && self.is_group())
            .then(|| group::named_key(&self.conversation_id, &self.frame.payload_b64).ok())
            .flatten()
    }
}

/// What the person's app hears about.
// Moved once through a queue, never stored in bulk: boxing the large variant would only add
// an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PersonEvent {
    /// A message arrived (already acknowledged to the relay).
    Message(PersonMessage),
    /// An agent read (accepted) one of this person's messages.
    Read(ReadReceipt),
    /// An agent's identity key changed.
    IdentityChanged {
        /// The agent.
        agent_id: String,
    },
    /// The relay refused one of this person's frames.
    Refused(RelayErrorFrame),
    /// A conversation was opened.
    ConversationCreated {
        /// The request.
        request: RequestId,
        /// The conversation's id.
        conversation_id: String,
    },
    /// An agent's prekey bundle was fetched.
    BundleFetched {
        /// The request.
        request: RequestId,
        /// The bundle.
        bundle: Box<FetchedBundle>,
    },
    /// A blob was uploaded.
    BlobUploaded {
        /// The request.
        request: RequestId,
        /// Its id and hash.
        blob: BlobUploaded,
    },
    /// A blob was downloaded.
    BlobDownloaded {
        /// The request.
        request: RequestId,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// An HTTP call failed.
    RequestFailed {
        /// The request.
        request: RequestId,
        /// The status (0 when the relay was not reached).
        status: u16,
        /// The relay's `error`, or the transport's reason.
        error: String,
    },
    /// A group key reached the relay for every member ([`Person::distribute_group_key`],
    /// [`Person::rotate_group_key`]); this person now seals group messages under it.
    GroupKeyDistributed {
        /// The id the call returned.
        request: RequestId,
        /// The group conversation.
        conversation_id: String,
        /// The new key's id.
        key_id: String,
        /// Its epoch.
        epoch: u64,
        /// How many members it was sent to.
        recipients: usize,
    },
    /// This person's prekeys reached the relay ([`Person::publish_prekeys`]).
    PrekeysPublished {
        /// The id the call returned.
        request: RequestId,
    },
    /// A group message could not be read even after the group's keys were fetched (its key
    /// never came, or it does not open). It is left unacknowledged.
    Unreadable {
        /// The message.
        message_id: String,
        /// Its conversation.
        conversation_id: String,
        /// Why.
        error: String,
    },
    /// A message accepted by `send_text` (or another send) could not be sent after all: its
    /// session could not be started (the agent's bundle could not be fetched or used, for
    /// instance because the agent has not published its prekeys yet). Nothing was sent.
    NotSent {
        /// The message's id.
        message_id: String,
        /// Why.
        error: String,
    },
}

/// Why a person's command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonError {
    /// The socket is not open.
    #[error("person client is not connected")]
    NotConnected,
    /// A required field is empty.
    #[error("`{0}` must not be empty")]
    EmptyField(&'static str),
    /// A frame could not be read.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The payload is not base64 of UTF-8 text.
    #[error("message {message_id} has an undecodable payload")]
    Undecodable {
        /// The id.
        message_id: String,
    },
    /// An encrypted message did not decrypt (the sessions are unchanged).
    #[error("message {message_id} did not decrypt: {error}")]
    Decrypt {
        /// The id.
        message_id: String,
        /// Why.
        error: BackendError,
    },
    /// An encrypted message was sent to this client without encryption turned on.
    #[error("message {message_id} is encrypted but this client runs without e2ee")]
    EncryptedWithoutE2ee {
        /// The id.
        message_id: String,
    },
    /// Encrypted direct messages to other persons, and to another conversation's group, are not
    /// supported by this client.
    #[error("encrypted messages go to agents and to the conversation's own group only")]
    EncryptedTargetUnsupported,
    /// The session failed to encrypt.
    #[error(transparent)]
    Encrypt(#[from] BackendError),
    /// Group keys need end-to-end encryption.
    #[error("group keys need end-to-end encryption")]
    E2eeRequired,
    /// No key was ever distributed in this conversation by this client.
    #[error("no group members known for conversation {conversation_id}")]
    UnknownGroup {
        /// The conversation.
        conversation_id: String,
    },
    /// No group key is held for this conversation: nothing can be sealed.
    #[error("no group key held for conversation {conversation_id}")]
    NoGroupKey {
        /// The conversation.
        conversation_id: String,
    },
    /// An encrypted group message did not open.
    #[error("group message {message_id} unreadable: {error}")]
    Group {
        /// The id.
        message_id: String,
        /// Why.
        error: group::GroupReadError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Conversation,
    Bundle,
    /// A bundle fetched to start the session with this agent in this conversation.
    SessionBundle {
        agent_id: String,
        conversation_id: String,
    },
    BlobUpload,
    BlobDownload,
    /// A group call ([`group_flow`]).
    Group(group_flow::GroupPending),
}

/// A message waiting for its session (the agent's bundle is being fetched).
struct Queued {
    id: String,
    text: String,
    reply_to: Option<String>,
    attachments: Option<Value>,
}

/// The person-side state machine. See the [module docs](self).
pub struct Person {
    config: PersonConfig,
    rng: Box<Rng>,
    connection: Connection,
    outputs: VecDeque<PersonOutput>,
    next_request: u64,
    pending: BTreeMap<RequestId, Pending>,
    seen: HashSet<String>,
    account: Option<Box<dyn SignalBackend>>,
    /// Messages waiting for a session, by (agent, conversation).
    waiting: BTreeMap<(String, String), Vec<Queued>>,
    /// Group keys held.
    keyring: GroupKeyring,
    /// The members of the last key this client distributed, by group.
    group_members: BTreeMap<String, Vec<GroupMember>>,
    /// Group keys on their way to members, by the id their call returned.
    distributions: BTreeMap<RequestId, group_flow::Distribution>,
    /// What waits for a group's keys, by group.
    syncing: BTreeMap<String, group_flow::Sync>,
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person")
            .field("person_id", &self.config.person_id)
            .field("connection", &self.connection.state())
            .finish_non_exhaustive()
    }
}

impl Person {
    /// A person's client encrypting with `backend` (another Signal implementation than the
    /// native one); `config.e2ee` is implied.
    pub fn with_backend(config: PersonConfig, rng: Box<Rng>, backend: Box<dyn SignalBackend>) -> Self {
        let mut person = Person::new(PersonConfig { e2ee: false, ..config }, rng);
        person.config.e2ee = true;
        person.account = Some(backend);
        person
    }

    /// A person's client drawing ids and jitter from `rng`.
    pub fn new(config: PersonConfig, rng: Box<Rng>) -> Self {
        let connection = Connection::new(config.backoff);
        let mut rng = rng;
        // A person's client keeps its keys in memory: it lives as long as its test or tool.
        let account = config.e2ee.then(|| -> Box<dyn SignalBackend> {
            Box::new(Account::new(crate::e2ee::pq::PqPolicy::default().factory(), &mut *rng).0)
        });
        Person {
            account,
            waiting: BTreeMap::new(),
            config,
            rng,
            connection,
            outputs: VecDeque::new(),
            next_request: 1,
            pending: BTreeMap::new(),
            seen: HashSet::new(),
            keyring: GroupKeyring::new(),
            group_members: BTreeMap::new(),
            distributions: BTreeMap::new(),
            syncing: BTreeMap::new(),
        }
    }

    /// The person's id.
    pub fn person_id(&self) -> &str {
        &self.config.person_id
    }

    /// This client's device id.
    pub fn device_id(&self) -> Option<&str> {
        self.config.device_id.as_deref()
    }

    /// Whether the socket is open.
    pub fn is_connected(&self) -> bool {
        self.connection.is_connected()
    }

    /// Asks the runtime to connect.
    pub fn start(&mut self) {
        if let Some(directive) = self.connection.start() {
            self.push_directive(directive);
        }
    }

    /// Asks the runtime to close.
    pub fn close(&mut self) {
        if let Some(directive) = self.connection.close() {
            self.push_directive(directive);
        }
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<PersonOutput> {
        self.outputs.pop_front()
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Timestamp, input: PersonInput) -> Result<(), PersonError> {
        match input {
            PersonInput::Connected => self.connection.connected(),
            PersonInput::Disconnected => {
                if let Some(directive) = self.connection.lost(now, &mut *self.rng) {
                    self.push_directive(directive);
                }
            }
            PersonInput::Timeout => {
                if let Some(directive) = self.connection.timeout(now) {
                    self.push_directive(directive);
                }
            }
            PersonInput::Frame(text) => self.handle_frame(&text)?,
            PersonInput::Http(request, result) => self.handle_http(request, result),
        }
        Ok(())
    }

    fn handle_frame(&mut self, text: &str) -> Result<(), PersonError> {
        let event = match PersonInboundFrame::parse(text)? {
            PersonInboundFrame::Msg(frame) => {
                let ack = AckRead {
                    to: frame.from.clone(),
                    message_id: frame.id.clone(),
                    conversation_id: frame.conversation_id.clone(),
                };
                if self.seen.contains(&frame.id) {
                    // A message already read, sent again (a replay, or an agent resending what
                    // it could not know arrived): acknowledged again, never shown twice, and
                    // not decrypted again, which would fail on its already used message key.
                    self.outputs.push_back(PersonOutput::Frame(ack.to_frame()));
                    return Ok(());
                }
                let Some(frame) = self.park_until_keyed(frame) else { return Ok(()) };
                let message = self.read_message(frame)?;
                self.outputs.push_back(PersonOutput::Frame(ack.to_frame()));
                self.seen.insert(message.id.clone());
                PersonEvent::Message(message)
            }
            PersonInboundFrame::Read(receipt) => PersonEvent::Read(receipt),
            PersonInboundFrame::IdentityChanged { agent_id } => PersonEvent::IdentityChanged { agent_id },
            PersonInboundFrame::Error(error) => PersonEvent::Refused(error),
        };
        self.outputs.push_back(PersonOutput::Event(event));
        Ok(())
    }

    fn read_message(&mut self, frame: PersonInboundMsg) -> Result<PersonMessage, PersonError> {
        let undecodable = || PersonError::Undecodable { message_id: frame.id.clone() };
        let mut bytes = STANDARD.decode(&frame.payload_b64).map_err(|_| undecodable())?;
        if frame.encrypted && is_group_target(&frame.to, &frame.conversation_id) && self.account.is_some() {
            let text = self
                .keyring
                .open(&frame.conversation_id, &frame.payload_b64)
                .map_err(|error| PersonError::Group { message_id: frame.id.clone(), error })?;
            bytes = text.into_bytes();
        } else if frame.encrypted {
            let Some(account) = self.account.as_mut() else {
                return Err(PersonError::EncryptedWithoutE2ee { message_id: frame.id.clone() });
            };
            let name = agent_session_name(&frame.from, &frame.conversation_id);
            let (plaintext, _, _) = account
                .decrypt(&[name.as_str()], &bytes, &mut *self.rng)
                .map_err(|error| PersonError::Decrypt { message_id: frame.id.clone(), error })?;
            bytes = plaintext.to_vec();
        }
        let text = String::from_utf8(bytes).map_err(|_| undecodable())?;
        let widget = widget::parse_standard(&text);
        let parsed = parse_payload(&text);
        Ok(PersonMessage {
            id: frame.id.clone(),
            conversation_id: frame.conversation_id.clone(),
            from: frame.from.clone(),
            text: if widget.is_some() { "Widget".to_owned() } else { parsed.text },
            encrypted: frame.encrypted,
            widget,
            widget_update: parsed.widget_update,
            reply_to_message_id: frame.reply_to_message_id.clone(),
            to_device_id: frame.to_device_id.clone(),
            attachments: chat::merge_attachments(frame.attachments.as_ref(), &parsed.secrets),
            frame,
        })
    }

    fn handle_http(&mut self, request: RequestId, result: Result<HttpResponse, String>) {
        let Some(kind) = self.pending.remove(&request) else {
            tracing::debug!(?request, "answer to an unknown request ignored");
            return;
        };
        let kind = match kind {
            Pending::Group(group) => return self.group_http(group, result),
            kind => kind,
        };
        let failure = match &result {
            Err(error) => Some((0, error.clone())),
            Ok(response) if !response.is_success() => {
                Some((response.status, response.error_message().unwrap_or_else(|| format!("HTTP {}", response.status))))
            }
            Ok(_) => None,
        };
        if let (Some((_, error)), Pending::SessionBundle { agent_id, conversation_id }) = (&failure, &kind) {
            self.drop_waiting(agent_id, conversation_id, error);
        }
        let event = match result {
            Err(error) => PersonEvent::RequestFailed { request, status: 0, error },
            Ok(response) if !response.is_success() => {
                let (status, error) = failure.unwrap_or_default();
                PersonEvent::RequestFailed { request, status, error }
            }
            Ok(response) => {
                let failed = |error: serde_json::Error| PersonEvent::RequestFailed {
                    request,
                    status: response.status,
                    error: format!("unexpected answer: {error}"),
                };
                match kind {
                    Pending::Conversation => match serde_json::from_slice::<ConversationCreated>(&response.body) {
                        Ok(created) => {
                            PersonEvent::ConversationCreated { request, conversation_id: created.conversation_id }
                        }
                        Err(error) => failed(error),
                    },
                    Pending::Bundle => match serde_json::from_slice::<FetchedBundle>(&response.body) {
                        Ok(bundle) => PersonEvent::BundleFetched { request, bundle: Box::new(bundle) },
                        Err(error) => failed(error),
                    },
                    Pending::SessionBundle { agent_id, conversation_id } => {
                        match self.start_session(&agent_id, &conversation_id, &response.body) {
                            Ok(()) => return,
                            Err(error) => {
                                self.drop_waiting(&agent_id, &conversation_id, &error);
                                PersonEvent::RequestFailed { request, status: response.status, error }
                            }
                        }
                    }
                    Pending::BlobUpload => match serde_json::from_slice::<BlobUploaded>(&response.body) {
                        Ok(blob) => PersonEvent::BlobUploaded { request, blob },
                        Err(error) => failed(error),
                    },
                    Pending::BlobDownload => PersonEvent::BlobDownloaded { request, bytes: response.body },
                    // Answered above.
                    Pending::Group(_) => return,
                }
            }
        };
        self.outputs.push_back(PersonOutput::Event(event));
    }

    /// Starts the session with `agent_id` in `conversation_id` from a fetched bundle, then sends
    /// what waited for it.
    fn start_session(&mut self, agent_id: &str, conversation_id: &str, body: &[u8]) -> Result<(), String> {
        let fetched: FetchedBundle =
            serde_json::from_slice(body).map_err(|error| format!("unexpected answer: {error}"))?;
        let bundle = PeerBundle::from_fetched(&fetched).map_err(|error| error.to_string())?;
        let account = self.account.as_mut().ok_or("end-to-end encryption is off")?;
        let name = agent_session_name(agent_id, conversation_id);
        account.start_session(&name, &bundle, &mut *self.rng).map_err(|error| error.to_string())?;
        let queued = self.waiting.remove(&(agent_id.to_owned(), conversation_id.to_owned())).unwrap_or_default();
        for message in queued {
            let message_id = message.id.clone();
            if let Err(error) = self.send_encrypted(conversation_id, agent_id, message) {
                tracing::warn!(%error, "a message waiting for its session could not be sent");
                let event = PersonEvent::NotSent { message_id, error: error.to_string() };
                self.outputs.push_back(PersonOutput::Event(event));
            }
        }
        Ok(())
    }

    /// Gives up the messages waiting for a session that could not be started: each is reported
    /// as [`PersonEvent::NotSent`], so no message disappears without a word.
    fn drop_waiting(&mut self, agent_id: &str, conversation_id: &str, error: &str) {
        if let Some(queued) = self.waiting.remove(&(agent_id.to_owned(), conversation_id.to_owned())) {
            tracing::warn!(agent_id, count = queued.len(), error, "no session: messages waiting for it are not sent");
            for message in queued {
                let event = PersonEvent::NotSent { message_id: message.id, error: error.to_owned() };
                self.outputs.push_back(PersonOutput::Event(event));
            }
        }
    }

    fn send_encrypted(&mut self, conversation_id: &str, to: &str, message: Queued) -> Result<(), PersonError> {
        let account = self.account.as_mut().ok_or(PersonError::EncryptedTargetUnsupported)?;
        let name = agent_session_name(to, conversation_id);
        let (framed, _) = account.encrypt(&name, message.text.as_bytes(), &mut *self.rng)?;
        let frame = PersonOutboundMsg {
            id: message.id,
            conversation_id: conversation_id.to_owned(),
            to: to.to_owned(),
            payload_b64: STANDARD.encode(framed),
            encrypted: true,
            from_device_id: self.config.device_id.clone(),
            reply_to_message_id: message.reply_to,
            attachments: message.attachments,
        };
        self.outputs.push_back(PersonOutput::Frame(frame.to_frame()));
        Ok(())
    }

    /// The client's randomness (for encrypting files before their upload).
    pub fn rng(&mut self) -> &mut Rng {
        &mut *self.rng
    }

    /// The post-quantum ratchet of the session with `agent_id` in `conversation_id`, when known.
    pub fn pq_status(&self, agent_id: &str, conversation_id: &str) -> Option<crate::e2ee::backend::PqStatus> {
        self.account.as_ref()?.pq_status(&agent_session_name(agent_id, conversation_id))
    }

    /// This client's identity key (33 bytes), when it runs with end-to-end encryption.
    pub fn identity_key(&self) -> Option<[u8; 33]> {
        self.account.as_ref().map(|account| account.identity_key())
    }

    fn request(
        &mut self,
        kind: Pending,
        method: HttpMethod,
        path: String,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    ) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.pending.insert(id, kind);
        self.outputs.push_back(PersonOutput::Http(HttpRequest { id, method, path, content_type, body }));
        id
    }

    /// Opens a conversation with `members` (agents or persons); answered by
    /// [`PersonEvent::ConversationCreated`].
    pub fn create_conversation(&mut self, request: CreateConversation) -> RequestId {
        let body = serde_json::to_vec(&request).unwrap_or_default();
        self.request(
            Pending::Conversation,
            HttpMethod::Post,
            "/person/conversations".into(),
            Some("application/json"),
            body,
        )
    }

    /// Fetches `agent_id`'s prekey bundle (consuming one one-time prekey); answered by
    /// [`PersonEvent::BundleFetched`].
    pub fn fetch_bundle(&mut self, agent_id: &str) -> RequestId {
        let path = format!("/person/agents/{}/prekey-bundle", percent_encode(agent_id));
        self.request(Pending::Bundle, HttpMethod::Get, path, None, Vec::new())
    }

    /// Uploads a blob; answered by [`PersonEvent::BlobUploaded`].
    pub fn upload_blob(&mut self, bytes: Vec<u8>) -> RequestId {
        self.request(
            Pending::BlobUpload,
            HttpMethod::Post,
            "/person/blobs".into(),
            Some("application/octet-stream"),
            bytes,
        )
    }

    /// Downloads a blob; answered by [`PersonEvent::BlobDownloaded`].
    pub fn download_blob(&mut self, blob_id: &str) -> RequestId {
        let path = format!("/person/blobs/{}", percent_encode(blob_id));
        self.request(Pending::BlobDownload, HttpMethod::Get, path, None, Vec::new())
    }

    /// Sends `text` to `to` (an agent, a person, or `group:{conversation_id}`); returns the
    /// message id.
    pub fn send_text(&mut self, conversation_id: &str, to: &str, text: &str) -> Result<String, PersonError> {
        self.send_payload(conversation_id, to, text, None)
    }

    /// Sends `text` as a reply to `message_id`.
    pub fn reply_text(
        &mut self,
        conversation_id: &str,
        to: &str,
        message_id: &str,
        text: &str,
    ) -> Result<String, PersonError> {
        self.send_payload(conversation_id, to, text, Some(message_id.to_owned()))
    }

    /// Answers widget `widget_ref` with `value`; returns the message id.
    pub fn answer_widget(
        &mut self,
        conversation_id: &str,
        to: &str,
        widget_ref: &str,
        value: Value,
    ) -> Result<String, PersonError> {
        let response_id = ids::uuid_v4(&mut *self.rng);
        let payload = widget::response_payload(&response_id, widget_ref, Some(value), false);
        self.send_payload(conversation_id, to, &payload, None)
    }

    /// Dismisses widget `widget_ref` without answering; returns the message id.
    pub fn cancel_widget(&mut self, conversation_id: &str, to: &str, widget_ref: &str) -> Result<String, PersonError> {
        let response_id = ids::uuid_v4(&mut *self.rng);
        let payload = widget::response_payload(&response_id, widget_ref, None, true);
        self.send_payload(conversation_id, to, &payload, None)
    }

    /// Sends `text` with `attachments` (already uploaded with [`Self::upload_blob`], their keys
    /// from [`crate::attachment::encrypt`]): the real metadata and keys go inside the payload,
    /// the envelope carries redacted entries. Returns the message id.
    pub fn send_attachments(
        &mut self,
        conversation_id: &str,
        to: &str,
        text: &str,
        attachments: &[Attachment],
    ) -> Result<String, PersonError> {
        let payload = chat::encode_chat_payload(text, attachments);
        let public: Vec<chat::PublicAttachment> = attachments.iter().map(chat::PublicAttachment::redacted).collect();
        self.send_with(conversation_id, to, &payload, None, serde_json::to_value(public).ok())
    }

    fn send_payload(
        &mut self,
        conversation_id: &str,
        to: &str,
        text: &str,
        reply_to: Option<String>,
    ) -> Result<String, PersonError> {
        self.send_with(conversation_id, to, text, reply_to, None)
    }

    fn send_with(
        &mut self,
        conversation_id: &str,
        to: &str,
        text: &str,
        reply_to: Option<String>,
        attachments: Option<Value>,
    ) -> Result<String, PersonError> {
        if !self.connection.is_connected() {
            return Err(PersonError::NotConnected);
        }
        if conversation_id.is_empty() {
            return Err(PersonError::EmptyField("conversation_id"));
        }
        if to.is_empty() {
            return Err(PersonError::EmptyField("to"));
        }
        if self.account.is_some() {
            if is_group_target(to, conversation_id) {
                let id = self.fresh_id();
                self.queue_group_send(
                    conversation_id,
                    Queued { id: id.clone(), text: text.to_owned(), reply_to, attachments },
                );
                return Ok(id);
            }
            if to.starts_with("group:") {
                return Err(PersonError::EncryptedTargetUnsupported);
            }
            let id = ids::uuid_v4(&mut *self.rng);
            let message = Queued { id: id.clone(), text: text.to_owned(), reply_to, attachments };
            let name = agent_session_name(to, conversation_id);
            if self.account.as_ref().is_some_and(|account| account.has_session(&name)) {
                self.send_encrypted(conversation_id, to, message)?;
            } else {
                let key = (to.to_owned(), conversation_id.to_owned());
                let first = !self.waiting.contains_key(&key);
                self.waiting.entry(key).or_default().push(message);
                if first {
                    let path = format!("/person/agents/{}/prekey-bundle", percent_encode(to));
                    let kind =
                        Pending::SessionBundle { agent_id: to.to_owned(), conversation_id: conversation_id.to_owned() };
                    self.request(kind, HttpMethod::Get, path, None, Vec::new());
                }
            }
            return Ok(id);
        }
        let frame = PersonOutboundMsg {
            id: ids::uuid_v4(&mut *self.rng),
            conversation_id: conversation_id.to_owned(),
            to: to.to_owned(),
            payload_b64: STANDARD.encode(text.as_bytes()),
            encrypted: false,
            from_device_id: self.config.device_id.clone(),
            reply_to_message_id: reply_to,
            attachments,
        };
        self.outputs.push_back(PersonOutput::Frame(frame.to_frame()));
        Ok(frame.id)
    }

    fn push_directive(&mut self, directive: Directive) {
        self.outputs.push_back(match directive {
            Directive::Connect => PersonOutput::Connect,
            Directive::WakeAt(at) => PersonOutput::WakeAt(at),
            Directive::Close => PersonOutput::Close,
        });
    }
}

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;

/// The person-side name of the session with `agent_id` in `conversation_id`: one session per
/// agent and conversation, as the agent keeps one per person and conversation.
pub fn agent_session_name(agent_id: &str, conversation_id: &str) -> String {
    format!("agent:{agent_id}:{conversation_id}")
}

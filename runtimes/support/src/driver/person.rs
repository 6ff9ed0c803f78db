//! The person-side client on any executor: a scripted person for examples, tests, the
//! conformance suite and load tools, driving [`pacerelle_core::human::Person`]. Its HTTP calls
//! (conversations, bundles, blobs) run on the executor's blocking pool.

use super::{Control, Runtime, SocketEvent, socket_loop, within, write};
use crate::{ClientError, HttpExecutor, now, os_rng};
use futures_channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_util::StreamExt as _;
use pacerelle_core::attachment::{self, FileMetadata};
use pacerelle_core::e2ee::backend::SignalBackend;
use pacerelle_core::human::{
    GroupMember, Person, PersonConfig, PersonError, PersonEvent, PersonInput, PersonMessage, PersonOutput,
};
use pacerelle_core::wire::http::{BlobUploaded, RequestId, percent_encode};
use pacerelle_core::wire::person::{CreateConversation, FetchedBundle};
use pacerelle_core::{Attachment, Rng};
use serde_json::Value;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tungstenite::Message;

/// How a person's client reaches the development relay.
#[derive(Clone)]
pub struct PersonClientConfig {
    /// The person's id.
    pub person_id: String,
    /// The person's token (secret).
    pub token: String,
    /// The relay, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// This client's device id.
    pub device_id: Option<String>,
    /// End-to-end encryption: messages to agents are encrypted with a session per agent and
    /// conversation, started from the agent's bundle before the first message.
    pub e2ee: bool,
}

impl std::fmt::Debug for PersonClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonClientConfig")
            .field("person_id", &self.person_id)
            .field("token", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("device_id", &self.device_id)
            .field("e2ee", &self.e2ee)
            .finish()
    }
}

impl PersonClientConfig {
    /// A configuration for `person_id` with `token` against `base_url`.
    pub fn new(person_id: impl Into<String>, token: impl Into<String>, base_url: impl Into<String>) -> Self {
        PersonClientConfig {
            person_id: person_id.into(),
            token: token.into(),
            base_url: base_url.into(),
            device_id: None,
            e2ee: false,
        }
    }

    /// The same with end-to-end encryption on.
    pub fn encrypted(mut self) -> Self {
        self.e2ee = true;
        self
    }

    /// The same with a device id.
    pub fn device(mut self, device_id: impl Into<String>) -> Self {
        self.device_id = Some(device_id.into());
        self
    }

    fn socket_url(&self) -> String {
        let base = self.base_url.trim_end_matches('/').replacen("http", "ws", 1);
        let mut url = format!("{base}/ws/person?token={}", percent_encode(&self.token));
        if let Some(device) = &self.device_id {
            url.push_str(&format!("&device_id={}", percent_encode(device)));
        }
        url
    }
}

/// How many refused inputs a client keeps for [`PersonClient::take_refused`]; older ones go
/// first, so a long-lived client nobody asks does not grow without bound.
const MAX_REFUSED: usize = 64;

struct Inner {
    person: Person,
    writer: Option<UnboundedSender<Message>>,
    /// Commands waiting for their HTTP answer.
    waiting: HashMap<RequestId, oneshot::Sender<PersonEvent>>,
    /// Whether the socket is open, and who waits for it to be.
    connected: bool,
    connect_waiters: Vec<oneshot::Sender<()>>,
    /// Inputs the person's state machine refused (a reply that did not decrypt, a frame it
    /// could not read), kept so a test can fail on them rather than only see a log line.
    refused: Vec<PersonError>,
}

struct Shared<R> {
    inner: Mutex<Inner>,
    control: UnboundedSender<Control>,
    events: UnboundedSender<PersonEvent>,
    http: HttpExecutor,
    runtime: PhantomData<fn() -> R>,
}

impl<R: Runtime> Shared<R> {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_person<T>(self: &Arc<Self>, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.lock();
        let result = f(&mut inner);
        self.dispatch(&mut inner);
        result
    }

    fn dispatch(self: &Arc<Self>, inner: &mut Inner) {
        while let Some(output) = inner.person.poll_output() {
            match output {
                PersonOutput::Frame(text) => {
                    if !write(inner.writer.as_ref(), text) {
                        tracing::warn!("frame dropped: socket closed");
                    }
                }
                PersonOutput::Http(request) => {
                    let shared = self.clone();
                    R::spawn(async move {
                        let http = shared.http.clone();
                        let id = request.id;
                        let result = R::unblock(move || http.execute(&request)).await;
                        shared.feed(PersonInput::Http(id, result));
                    });
                }
                PersonOutput::Event(event) => {
                    let request = match &event {
                        PersonEvent::ConversationCreated { request, .. }
                        | PersonEvent::BundleFetched { request, .. }
                        | PersonEvent::BlobUploaded { request, .. }
                        | PersonEvent::BlobDownloaded { request, .. }
                        | PersonEvent::RequestFailed { request, .. } => Some(*request),
                        PersonEvent::GroupKeyDistributed { request, .. }
                        | PersonEvent::PrekeysPublished { request } => Some(*request),
                        _ => None,
                    };
                    match request.and_then(|request| inner.waiting.remove(&request)) {
                        Some(waiter) => {
                            let _ = waiter.send(event);
                        }
                        None => {
                            let _ = self.events.unbounded_send(event);
                        }
                    }
                }
                PersonOutput::Connect => {
                    let _ = self.control.unbounded_send(Control::Connect);
                }
                PersonOutput::WakeAt(at) => {
                    let _ = self.control.unbounded_send(Control::WakeAt(at));
                }
                PersonOutput::Close => {
                    let _ = self.control.unbounded_send(Control::Close);
                }
            }
        }
    }

    fn feed(self: &Arc<Self>, input: PersonInput) {
        self.with_person(|inner| {
            if let Err(error) = inner.person.handle_input(now(), input) {
                tracing::warn!(%error, "person input refused");
                if inner.refused.len() == MAX_REFUSED {
                    inner.refused.remove(0);
                }
                inner.refused.push(error);
            }
        });
    }

    fn set_connected(&self, connected: bool) {
        let mut inner = self.lock();
        inner.connected = connected;
        if connected {
            for waiter in inner.connect_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// A person connected to the development relay, on executor `R` (`pacerelle_tokio::PersonClient`
/// is `PersonClient<Tokio>`).
pub struct PersonClient<R> {
    shared: Arc<Shared<R>>,
    events: futures_util::lock::Mutex<UnboundedReceiver<PersonEvent>>,
    stopped: oneshot::Receiver<()>,
}

impl<R: Runtime> std::fmt::Debug for PersonClient<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonClient").field("person", &self.shared.lock().person).finish()
    }
}

/// How long commands wait for the relay by default.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

impl<R: Runtime> PersonClient<R> {
    /// Connects (and keeps reconnecting) with OS randomness; returns once the socket is open.
    pub async fn connect(config: PersonClientConfig) -> Result<Self, ClientError> {
        Self::connect_with_rng(config, os_rng()).await
    }

    /// Like [`PersonClient::connect`] with the given randomness.
    pub async fn connect_with_rng(config: PersonClientConfig, rng: Box<Rng>) -> Result<Self, ClientError> {
        let person_config = PersonConfig {
            device_id: config.device_id.clone(),
            e2ee: config.e2ee,
            ..PersonConfig::new(config.person_id.clone())
        };
        Self::start(&config, Person::new(person_config, rng)).await
    }

    /// Like [`PersonClient::connect_with_rng`], encrypting with `backend` (for instance the
    /// official Signal runtime) instead of a fresh native account; end-to-end encryption is on
    /// whatever `config.e2ee` says.
    pub async fn connect_with_backend(
        config: PersonClientConfig,
        rng: Box<Rng>,
        backend: Box<dyn SignalBackend>,
    ) -> Result<Self, ClientError> {
        let person_config =
            PersonConfig { device_id: config.device_id.clone(), ..PersonConfig::new(config.person_id.clone()) };
        Self::start(&config, Person::with_backend(person_config, rng, backend)).await
    }

    /// Runs `person`'s socket as `config` says; returns once it is open.
    async fn start(config: &PersonClientConfig, person: Person) -> Result<Self, ClientError> {
        let (control_tx, mut control) = mpsc::unbounded();
        let (events_tx, events) = mpsc::unbounded();
        let shared = Arc::new(Shared::<R> {
            inner: Mutex::new(Inner {
                person,
                writer: None,
                waiting: HashMap::new(),
                connected: false,
                connect_waiters: Vec::new(),
                refused: Vec::new(),
            }),
            control: control_tx,
            events: events_tx,
            http: HttpExecutor::new(&config.base_url, &config.token),
            runtime: PhantomData,
        });
        let url = config.socket_url();
        let driver_shared = shared.clone();
        let (stopped_tx, stopped) = oneshot::channel::<()>();
        R::spawn(async move {
            let shared = driver_shared;
            let _ = socket_loop::<R>(
                &crate::SystemClock,
                || url.clone(),
                &mut control,
                |event| match event {
                    SocketEvent::Opened(writer) => {
                        shared.lock().writer = Some(writer);
                        shared.feed(PersonInput::Connected);
                        shared.set_connected(true);
                    }
                    // A person's refused token is retried like any failure, as before.
                    SocketEvent::Failed | SocketEvent::Refused(_) => shared.feed(PersonInput::Disconnected),
                    // Nothing pings a person's socket (only the agent keeps its alive).
                    SocketEvent::Pong | SocketEvent::Ping => {}
                    SocketEvent::Abandoned => {
                        shared.lock().writer = None;
                        shared.set_connected(false);
                    }
                    SocketEvent::Frames(frames) => {
                        for text in frames {
                            shared.feed(PersonInput::Frame(text));
                        }
                    }
                    SocketEvent::Lost => {
                        shared.lock().writer = None;
                        shared.set_connected(false);
                        shared.feed(PersonInput::Disconnected);
                    }
                    SocketEvent::Timeout => shared.feed(PersonInput::Timeout),
                },
            )
            .await;
            let mut inner = shared.lock();
            inner.writer = None;
            inner.connected = false;
            // Waiters see the client closed.
            inner.connect_waiters.clear();
            drop(inner);
            drop(stopped_tx);
        });
        shared.with_person(|inner| inner.person.start());
        let client = PersonClient { shared, events: futures_util::lock::Mutex::new(events), stopped };
        client.wait_connected(ANSWER_TIMEOUT).await?;
        Ok(client)
    }

    /// The person's id.
    pub fn person_id(&self) -> String {
        self.shared.lock().person.person_id().to_owned()
    }

    /// The inputs refused since the last call (a message that did not decrypt or could not be
    /// read, which the person never sees as an event), oldest first.
    pub fn take_refused(&self) -> Vec<PersonError> {
        std::mem::take(&mut self.shared.lock().refused)
    }

    /// The person's identity key (33 bytes), with end-to-end encryption.
    pub fn identity_key(&self) -> Option<[u8; 33]> {
        self.shared.lock().person.identity_key()
    }

    /// Waits until the socket is open again (after a drop).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let (waiter, opened) = oneshot::channel();
        {
            let mut inner = self.shared.lock();
            if inner.connected {
                return Ok(());
            }
            inner.connect_waiters.push(waiter);
        }
        within::<R, _>(timeout, "the person socket to open", opened).await?.map_err(|_| ClientError::Closed)
    }

    async fn request(&self, start: impl FnOnce(&mut Person) -> RequestId) -> Result<PersonEvent, ClientError> {
        let (waiter, answer) = oneshot::channel();
        self.shared.with_person(|inner| {
            let id = start(&mut inner.person);
            inner.waiting.insert(id, waiter);
        });
        let event = within::<R, _>(ANSWER_TIMEOUT, "the relay's HTTP answer", answer)
            .await?
            .map_err(|_| ClientError::Closed)?;
        match event {
            PersonEvent::RequestFailed { status, error, .. } => Err(ClientError::Http { status, message: error }),
            event => Ok(event),
        }
    }

    /// Like `request` for calls the core may refuse at once (end-to-end encryption off, say).
    async fn try_request(
        &self,
        start: impl FnOnce(&mut Person) -> Result<RequestId, PersonError>,
    ) -> Result<PersonEvent, ClientError> {
        let (waiter, answer) = oneshot::channel();
        self.shared.with_person(|inner| {
            let id = start(&mut inner.person)?;
            inner.waiting.insert(id, waiter);
            Ok::<_, PersonError>(())
        })?;
        let event = within::<R, _>(ANSWER_TIMEOUT, "the relay's HTTP answer", answer)
            .await?
            .map_err(|_| ClientError::Closed)?;
        match event {
            PersonEvent::RequestFailed { status, error, .. } => Err(ClientError::Http { status, message: error }),
            event => Ok(event),
        }
    }

    /// Publishes this person's Signal prekeys to the relay, so that other persons can send it
    /// group keys (call it once connected, before another person distributes a key to it).
    pub async fn publish_prekeys(&self) -> Result<(), ClientError> {
        match self.try_request(|person| person.publish_prekeys()).await? {
            PersonEvent::PrekeysPublished { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Opens a group conversation with `members` (agents and persons); with end-to-end
    /// encryption, also makes its first key (epoch 1) and distributes it to every member through
    /// their Signal sessions. Returns the conversation's id.
    pub async fn create_group(&self, members: &[GroupMember]) -> Result<String, ClientError> {
        let ids: Vec<&str> = members.iter().map(|member| member.id.as_str()).collect();
        let conversation_id = self.create_conversation(&ids, true).await?;
        if self.identity_key().is_some() {
            self.distribute_group_key(&conversation_id, members).await?;
        }
        Ok(conversation_id)
    }

    /// Makes a key for group `conversation_id` at the next epoch and distributes it to
    /// `members` (see [`Person::distribute_group_key`]); returns its epoch once the relay holds
    /// every envelope, from when this person seals group messages under it.
    pub async fn distribute_group_key(
        &self,
        conversation_id: &str,
        members: &[GroupMember],
    ) -> Result<u64, ClientError> {
        match self.try_request(|person| person.distribute_group_key(conversation_id, members)).await? {
            PersonEvent::GroupKeyDistributed { epoch, .. } => Ok(epoch),
            other => Err(unexpected(other)),
        }
    }

    /// Rotates group `conversation_id`'s key to the next epoch, for the members of its last
    /// distribution; returns the new epoch.
    pub async fn rotate_group_key(&self, conversation_id: &str) -> Result<u64, ClientError> {
        match self.try_request(|person| person.rotate_group_key(conversation_id)).await? {
            PersonEvent::GroupKeyDistributed { epoch, .. } => Ok(epoch),
            other => Err(unexpected(other)),
        }
    }

    /// The newest group key epoch this person holds for `conversation_id` (0 with none).
    pub fn group_epoch(&self, conversation_id: &str) -> u64 {
        self.shared.lock().person.group_epoch(conversation_id)
    }

    /// Sends `text` to the whole group `conversation_id` (`to` = `group:{conversation_id}`):
    /// with end-to-end encryption, sealed once under the newest key after syncing the group's
    /// keys. Returns the message id; a message that finds no key is reported as
    /// [`PersonEvent::NotSent`]. Files go to a group with [`Self::send_file`] and that `to`.
    pub fn send_group_text(&self, conversation_id: &str, text: &str) -> Result<String, ClientError> {
        self.send_text(conversation_id, &format!("group:{conversation_id}"), text)
    }

    /// Opens a conversation with `members`; returns its id.
    pub async fn create_conversation(&self, members: &[&str], group: bool) -> Result<String, ClientError> {
        let request = CreateConversation {
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            group,
            conversation_id: None,
        };
        match self.request(|person| person.create_conversation(request)).await? {
            PersonEvent::ConversationCreated { conversation_id, .. } => Ok(conversation_id),
            other => Err(unexpected(other)),
        }
    }

    /// Fetches an agent's prekey bundle (consuming one one-time prekey).
    pub async fn fetch_bundle(&self, agent_id: &str) -> Result<FetchedBundle, ClientError> {
        match self.request(|person| person.fetch_bundle(agent_id)).await? {
            PersonEvent::BundleFetched { bundle, .. } => Ok(*bundle),
            other => Err(unexpected(other)),
        }
    }

    /// Uploads a blob.
    pub async fn upload_blob(&self, bytes: Vec<u8>) -> Result<BlobUploaded, ClientError> {
        match self.request(|person| person.upload_blob(bytes)).await? {
            PersonEvent::BlobUploaded { blob, .. } => Ok(blob),
            other => Err(unexpected(other)),
        }
    }

    /// Downloads a blob.
    pub async fn download_blob(&self, blob_id: &str) -> Result<Vec<u8>, ClientError> {
        match self.request(|person| person.download_blob(blob_id)).await? {
            PersonEvent::BlobDownloaded { bytes, .. } => Ok(bytes),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a file to `to` in `conversation_id` with caption `text`: encrypts it with a fresh
    /// key, uploads only the ciphertext, then sends the message carrying the key and the real
    /// metadata (encrypted when e2ee is on). Returns the message id.
    pub async fn send_file(
        &self,
        conversation_id: &str,
        to: &str,
        text: &str,
        bytes: &[u8],
        metadata: FileMetadata,
    ) -> Result<String, ClientError> {
        let (ciphertext, mut attachment) =
            self.shared.with_person(|inner| attachment::encrypt(bytes, metadata, inner.person.rng()));
        attachment.blob_id = self.upload_blob(ciphertext).await?.id;
        Ok(self.shared.with_person(|inner| {
            inner.person.send_attachments(conversation_id, to, text, std::slice::from_ref(&attachment))
        })?)
    }

    /// Downloads an attachment and decrypts it with the key its message carried.
    pub async fn download_attachment(&self, attachment: &Attachment) -> Result<Vec<u8>, ClientError> {
        attachment::key_of(attachment)?;
        let blob = self.download_blob(&attachment.blob_id).await?;
        Ok(attachment::decrypt(attachment, &blob)?.to_vec())
    }

    /// The post-quantum ratchet of the session with `agent_id` in `conversation_id` (its SPQR
    /// epoch and whether version 1 was negotiated), once there is one.
    pub fn pq_status(&self, agent_id: &str, conversation_id: &str) -> Option<pacerelle_core::e2ee::backend::PqStatus> {
        self.shared.lock().person.pq_status(agent_id, conversation_id)
    }

    /// Sends `text` to `to` in `conversation_id`; returns the message id.
    pub fn send_text(&self, conversation_id: &str, to: &str, text: &str) -> Result<String, ClientError> {
        Ok(self.shared.with_person(|inner| inner.person.send_text(conversation_id, to, text))?)
    }

    /// Sends `text` as a reply to `message_id`.
    pub fn reply_text(
        &self,
        conversation_id: &str,
        to: &str,
        message_id: &str,
        text: &str,
    ) -> Result<String, ClientError> {
        Ok(self.shared.with_person(|inner| inner.person.reply_text(conversation_id, to, message_id, text))?)
    }

    /// Answers widget `widget_ref` with `value`.
    pub fn answer_widget(
        &self,
        conversation_id: &str,
        to: &str,
        widget_ref: &str,
        value: Value,
    ) -> Result<String, ClientError> {
        Ok(self.shared.with_person(|inner| inner.person.answer_widget(conversation_id, to, widget_ref, value))?)
    }

    /// Dismisses widget `widget_ref`.
    pub fn cancel_widget(&self, conversation_id: &str, to: &str, widget_ref: &str) -> Result<String, ClientError> {
        Ok(self.shared.with_person(|inner| inner.person.cancel_widget(conversation_id, to, widget_ref))?)
    }

    /// The next event (messages, read receipts, identity changes, refusals), waiting at most
    /// `timeout`.
    pub async fn next_event(&self, timeout: Duration) -> Result<PersonEvent, ClientError> {
        let mut events = self.events.lock().await;
        within::<R, _>(timeout, "an event", events.next()).await?.ok_or(ClientError::Closed)
    }

    /// The next message, waiting at most `timeout`; other events before it are dropped.
    pub async fn next_message(&self, timeout: Duration) -> Result<PersonMessage, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let PersonEvent::Message(message) = self.next_event(left).await? {
                return Ok(message);
            }
        }
    }

    /// Closes the socket and stops reconnecting.
    pub async fn close(self) {
        self.shared.with_person(|inner| inner.person.close());
        let _ = self.stopped.await;
    }
}

fn unexpected(event: PersonEvent) -> ClientError {
    ClientError::Http { status: 0, message: format!("unexpected answer: {event:?}") }
}

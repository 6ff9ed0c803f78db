//! The blocking agent client: one loop owns the socket; everything else goes through queues it
//! drains between reads.

use pacerelle_core::agent::{
    Agent, AgentConfig, Event, FileUpload, GaveUp, IdentityChange, Input, OutgoingFile, OutgoingMessage, SafetyNumber,
    SentFile, Undeliverable,
};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::e2ee::backend::SignalBackend;
use pacerelle_core::store::{DynAgentStore, MemoryStore, PeerId};
use pacerelle_core::widget::{Widget, WidgetPatch};
use pacerelle_core::wire::http::{HttpRequest, HttpResponse, RequestId};
use pacerelle_core::{AgentMessage, Attachment, Rng, Timestamp};
use pacerelle_runtime_support::state::{
    AgentState, Effect, Waiter, downloaded, file_sent, log_identity_outcome, panicked, prekeys_published, uploaded,
};
use pacerelle_runtime_support::{self as support, ClientError, HandlerResult, HttpExecutor};
use std::collections::VecDeque;
use std::net::TcpStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tungstenite::HandshakeError;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// How long one read waits before the loop looks at its queues and deadlines again: the upper
/// bound on the delay of a message sent from another thread.
const TICK: Duration = Duration::from_millis(20);

type MessageHandler = Box<dyn FnMut(AgentMessage, &AgentHandle) -> HandlerResult + Send>;
type IdentityHandler = Box<dyn FnMut(IdentityChange, &AgentHandle) -> HandlerResult + Send>;
type UndeliverableHandler = Box<dyn FnMut(Undeliverable, &AgentHandle) -> HandlerResult + Send>;
type GaveUpHandler = Box<dyn FnMut(GaveUp, &AgentHandle) -> HandlerResult + Send>;
type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

enum Control {
    Connect,
    WakeAt(Timestamp),
    Abandon,
    Close,
}

struct Inner {
    state: AgentState,
    queues: Queues,
}

/// The core's outputs waiting for the loop, in order.
#[derive(Default)]
struct Queues {
    /// Text frames and pings, in the core's order: a pong proves the frames before its ping
    /// were read only if they went out first.
    writes: VecDeque<Message>,
    controls: VecDeque<Control>,
    events: VecDeque<Event>,
    /// HTTP calls to start; [`AgentHandle::start_http`] hands each to a thread of its own.
    http: VecDeque<HttpRequest>,
}

impl Queues {
    fn push(&mut self, effect: Effect) {
        match effect {
            Effect::Frame(text) => self.writes.push_back(Message::text(text)),
            Effect::Event(event) => self.events.push_back(event),
            Effect::Connect => self.controls.push_back(Control::Connect),
            Effect::WakeAt(at) => self.controls.push_back(Control::WakeAt(at)),
            Effect::Close => self.controls.push_back(Control::Close),
            Effect::Ping => self.writes.push_back(Message::Ping(Default::default())),
            Effect::Abandon => self.controls.push_back(Control::Abandon),
            Effect::Http(request) => self.http.push_back(request),
        }
    }
}

impl Inner {
    /// Runs `command` on the core: store writes now, the rest queued for the loop.
    fn run<T>(&mut self, command: impl FnOnce(&mut Agent) -> T) -> Result<T, ClientError> {
        self.state.run(command, |effect| self.queues.push(effect))
    }

    fn feed(&mut self, input: Input) {
        self.state.feed(input, |effect| self.queues.push(effect));
    }

    /// Accepts the message if its handler succeeded (see [`AgentState::settle`]).
    fn settle(&mut self, message_id: &str, outcome: HandlerResult) {
        self.state.settle(message_id, outcome, |effect| self.queues.push(effect));
    }
}

/// A handle to a running agent: send, reply, show widgets, close. Cheap to clone, usable from
/// any thread; handlers receive one.
///
/// Once the agent's store has failed, every method that sends (or downloads) returns
/// [`ClientError::Store`] and does nothing; one already waiting for an upload or a download
/// returns [`ClientError::Closed`].
///
/// The handle a message handler receives sends within that message's handler call: what it
/// sends is committed with the message's acceptance and sent again if the message comes back
/// (see [`Agent::while_handling`]). Used after the handler returned, or any other handle, it
/// sends through the agent's durable outbox.
#[derive(Clone)]
pub struct AgentHandle {
    /// The message whose handler call this handle was given to.
    handling: Option<Arc<str>>,
    inner: Arc<Mutex<Inner>>,
    http: HttpExecutor,
    /// Where and as whom the agent connects; its token changes with [`AgentHandle::set_token`].
    config: Arc<Mutex<ClientConfig>>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle").field("agent_id", &self.agent_id()).finish()
    }
}

impl AgentHandle {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn with_agent<T>(&self, command: impl FnOnce(&mut Agent) -> T) -> Result<T, ClientError> {
        let result = self.lock().run(command);
        self.start_http();
        result
    }

    /// This handle, sending within `message_id`'s handler call.
    fn for_message(&self, message_id: &str) -> AgentHandle {
        AgentHandle { handling: Some(message_id.into()), ..self.clone() }
    }

    /// Runs a send on the core, within this handle's handler call if it has one.
    fn send<T>(&self, command: impl FnOnce(&mut Agent) -> T) -> Result<T, ClientError> {
        self.with_agent(|agent| match self.handling.as_deref() {
            Some(message_id) => agent.while_handling(message_id, command),
            None => command(agent),
        })
    }

    fn feed(&self, input: Input) {
        self.lock().feed(input);
        self.start_http();
    }

    /// Feeds inputs that arrived together, with one store commit for all of them.
    fn feed_all(&self, inputs: impl IntoIterator<Item = Input>) {
        {
            let mut inner = self.lock();
            let Inner { state, queues } = &mut *inner;
            state.feed_all(inputs, |effect| queues.push(effect));
        }
        self.start_http();
    }

    /// Starts the HTTP calls the core asked for, each on a thread of its own, so that neither
    /// the socket loop nor a handler waiting for a file's upload holds them up. None once the
    /// store failed: the agent has stopped, and whoever waited for them was told.
    fn start_http(&self) {
        let calls: Vec<HttpRequest> = {
            let mut inner = self.lock();
            let stopped = inner.state.is_stopped();
            let calls = inner.queues.http.drain(..);
            if stopped { Vec::new() } else { calls.collect() }
        };
        for request in calls {
            let handle = self.clone();
            std::thread::spawn(move || {
                let result = handle.http.execute(&request);
                handle.feed(Input::Http(request.id, result));
            });
        }
    }

    /// Runs a command that starts a request and blocks until the event that answers it.
    fn request<T>(
        &self,
        command: impl FnOnce(&mut Agent) -> Result<(RequestId, T), ClientError>,
    ) -> Result<(T, Event), ClientError> {
        let (answer, answered) = std::sync::mpsc::channel();
        let waiter: Waiter = Box::new(move |event| {
            let _ = answer.send(event);
        });
        let value = {
            let mut inner = self.lock();
            let Inner { state, queues } = &mut *inner;
            state.run_waiting(command, waiter, |effect| queues.push(effect))?
        };
        self.start_http();
        let event = answered.recv().map_err(|_| ClientError::Closed)?;
        Ok((value, event))
    }

    /// The agent's id.
    pub fn agent_id(&self) -> String {
        self.lock().state.agent().agent_id().to_owned()
    }

    /// The time on the agent's clock: the system's, or the one given to [`Client::set_clock`].
    /// Handlers that compare times (a permission's or a widget's expiry) read it here, so a test
    /// with a manual clock controls them too.
    pub fn now(&self) -> Timestamp {
        self.lock().state.now()
    }

    /// Whether the socket is open.
    pub fn is_connected(&self) -> bool {
        self.lock().state.agent().is_connected()
    }

    /// Sends a message; returns its id.
    pub fn send_message(&self, message: OutgoingMessage) -> Result<String, ClientError> {
        Ok(self.send(|agent| agent.send_message(message))??)
    }

    /// Sends `text` to `to` in `conversation_id`; returns the message id.
    pub fn send_text(&self, conversation_id: &str, to: &str, text: impl Into<String>) -> Result<String, ClientError> {
        self.send_message(OutgoingMessage::new(conversation_id, to, text))
    }

    /// Replies to `message` in its conversation or group, to its device; returns the reply's id.
    pub fn reply(&self, message: &AgentMessage, text: impl Into<String>) -> Result<String, ClientError> {
        self.send_message(OutgoingMessage::reply(message, text))
    }

    /// Shows a widget; returns its id.
    pub fn send_widget(
        &self,
        conversation_id: &str,
        to: &str,
        widget: impl Into<Widget>,
    ) -> Result<String, ClientError> {
        let widget = widget.into();
        Ok(self.send(|agent| agent.send_widget(conversation_id, to, widget))??)
    }

    /// Changes a widget already shown; returns the update's id.
    pub fn send_widget_update(
        &self,
        conversation_id: &str,
        to: &str,
        patch: WidgetPatch,
    ) -> Result<String, ClientError> {
        Ok(self.send(|agent| agent.send_widget_update(conversation_id, to, patch))??)
    }

    /// Uploads a file without sending a message (the official SDK's `upload_file`): encrypts
    /// it, uploads only the ciphertext and blocks until the relay stored it; returns the
    /// attachment, with its key, for any number of messages
    /// ([`OutgoingMessage::attachments`]). Needs no connection. Without end-to-end encryption
    /// it is refused ([`pacerelle_core::agent::SendError::FileReadableByRelay`]) unless the
    /// file says the relay may read it ([`FileUpload::allow_relay_to_read`]).
    pub fn upload_file(&self, file: FileUpload) -> Result<Attachment, ClientError> {
        uploaded(self.request(|agent| Ok((agent.upload_file(file)?, ())))?.1)
    }

    /// Sends a file in a message of its own (the official SDK's `send_file`, and `send_media`
    /// with dimensions, duration or a thumbnail): encrypts it, uploads only the ciphertext,
    /// then sends the message that carries its key; blocks until the message is sent and
    /// returns its id and the attachment. Refused like [`AgentHandle::upload_file`] without
    /// end-to-end encryption.
    pub fn send_file(&self, file: OutgoingFile) -> Result<SentFile, ClientError> {
        file_sent(self.request(|agent| Ok(agent.send_file(file)?))?.1)
    }

    /// Downloads an attachment and decrypts it locally.
    pub fn download_attachment(&self, attachment: &Attachment) -> Result<Vec<u8>, ClientError> {
        downloaded(self.request(|agent| Ok((agent.download_attachment(attachment)?, ())))?.1)
    }

    /// Publishes a new prekey bundle (the official SDK's `publish_prekey_bundle`): a new signed
    /// prekey, Kyber prekey and batch of 50 one-time prekeys, private halves stored first, then
    /// put at the relay; blocks until the relay took them (transient failures are retried with
    /// backoff, as at start). Call it from another thread than the one in `connect` (a handler
    /// runs on that one, and would wait on itself). Refused without end-to-end encryption,
    /// before `connect`, or while a publication is under way
    /// ([`pacerelle_core::agent::PublishError`]). A refusal by the relay ends the agent as at
    /// start (`connect` returns it); this then returns [`ClientError::Closed`].
    pub fn publish_prekey_bundle(&self) -> Result<(), ClientError> {
        prekeys_published(self.request(|agent| Ok((agent.publish_prekey_bundle()?, ())))?.1)
    }

    /// The agent's identity key (33 bytes), when it runs with end-to-end encryption.
    pub fn identity_key(&self) -> Option<[u8; 33]> {
        self.lock().state.agent().identity_key()
    }

    /// The verification code people compare with their app's, with end-to-end encryption.
    pub fn verification_code(&self) -> Option<String> {
        self.lock().state.agent().verification_code()
    }

    /// Trusts the identity key that spoke for `peer` and was refused under
    /// [`pacerelle_core::agent::TrustPolicy::Pinned`] (check its safety number with the person
    /// first); its next message is delivered. Returns the safety number now trusted.
    pub fn trust_identity(&self, peer: &PeerId) -> Result<SafetyNumber, ClientError> {
        Ok(self.with_agent(|agent| agent.trust_identity(peer))??)
    }

    /// The safety number trusted for `peer`, once one of its sessions spoke.
    pub fn trusted_identity(&self, peer: &PeerId) -> Option<SafetyNumber> {
        self.lock().state.agent().trusted_identity(peer)
    }

    /// Authenticates with `token` from now on: the next connection of the socket and every
    /// HTTP call started after this (for short-lived tokens, such as Agent Connect's runtime
    /// tokens). The open socket stays as it is; the relay checked its token when it opened.
    pub fn set_token(&self, token: impl Into<String>) {
        let token = token.into();
        self.http.set_token(&token);
        self.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).token = token;
    }

    /// Stops the agent: [`Client::connect`] returns within a tick.
    pub fn close(&self) {
        // Refused only when the store failed, and then the agent is already closing.
        let _ = self.with_agent(Agent::close);
    }
}

/// A blocking agent client. Register handlers, then [`Client::connect`].
pub struct Client {
    config: ClientConfig,
    handle: AgentHandle,
    message_handler: Option<MessageHandler>,
    identity_handler: Option<IdentityHandler>,
    undeliverable_handler: Option<UndeliverableHandler>,
    gave_up_handler: Option<GaveUpHandler>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Client {
    /// A client on its durable store: SQLite at `<store_root>/<agent_id>/agent.db`, the root
    /// being `ClientConfig::store_root` (`PACERELLE_STORE_ROOT`) or `~/.myagents` (see
    /// [`pacerelle_runtime_support::durable`]). With end-to-end encryption its identity,
    /// prekeys and sessions survive restarts; with or without, so do its receipts.
    ///
    /// A store that cannot be opened is an error ([`ClientError::StoreInUse`] when another
    /// process runs the agent, [`ClientError::StoreOpen`], [`ClientError::NoStoreRoot`]),
    /// never a fallback to memory. Needs the `sqlite` feature (on by default); without it,
    /// choose a store with [`Client::with_store`] or [`Client::in_memory`].
    #[cfg(feature = "sqlite")]
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let store = support::durable::open_store(&config)?;
        Self::with_store(config, store)
    }

    /// A client whose state lives in memory only: every restart is a new identity and forgets
    /// which messages were handled. For tests and throwaway agents.
    pub fn in_memory(config: ClientConfig) -> Result<Self, ClientError> {
        Self::with_store(config, MemoryStore::new())
    }

    /// A client continuing from `store`.
    pub fn with_store(config: ClientConfig, store: impl DynAgentStore + 'static) -> Result<Self, ClientError> {
        let agent_config = AgentConfig::new(config.agent_id.clone());
        Self::with_parts(config, agent_config, Box::new(store), support::os_rng())
    }

    /// A client with full control over the core's configuration and randomness. Message ids come
    /// from `rng`: a seeded generator must never be reused across runs of one agent, or its new
    /// messages repeat old ids.
    pub fn with_parts(
        config: ClientConfig,
        agent_config: AgentConfig,
        store: Box<dyn DynAgentStore>,
        rng: Box<Rng>,
    ) -> Result<Self, ClientError> {
        let state = AgentState::open(&config, agent_config, store, rng)?;
        Ok(Self::from_state(config, state))
    }

    /// A client whose end-to-end encryption is done by `backend` (another Signal
    /// implementation, such as the official runtime); `created` stores its new identity.
    pub fn with_backend(
        config: ClientConfig,
        agent_config: AgentConfig,
        store: Box<dyn DynAgentStore>,
        rng: Box<Rng>,
        backend: Box<dyn SignalBackend>,
        created: pacerelle_core::store::E2eeChanges,
    ) -> Result<Self, ClientError> {
        let state = AgentState::open_with_backend(&config, agent_config, store, rng, backend, created)?;
        Ok(Self::from_state(config, state))
    }

    fn from_state(config: ClientConfig, state: AgentState) -> Self {
        let inner = Inner { state, queues: Queues::default() };
        let http = HttpExecutor::new(&config.base_url, &config.token);
        let shared_config = Arc::new(Mutex::new(config.clone()));
        Client {
            config,
            handle: AgentHandle { handling: None, inner: Arc::new(Mutex::new(inner)), http, config: shared_config },
            message_handler: None,
            identity_handler: None,
            undeliverable_handler: None,
            gave_up_handler: None,
        }
    }

    /// A handle for sending and closing from other threads.
    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// Reads the time from `clock` instead of the system's: the core's `now`, every deadline
    /// the agent waits for (reconnect backoff, keepalive, handler retries) and
    /// [`AgentHandle::now`]. For tests that move time themselves (`pacerelle_test::ManualClock`,
    /// noticed within a tick of 20 ms); set it before [`Client::connect`].
    pub fn set_clock(&mut self, clock: support::SharedClock) {
        self.handle.lock().state.set_clock(clock);
    }

    /// Sets the message handler. `Ok` accepts the message (it is acknowledged); an error (or a
    /// panic) leaves it unacknowledged and calls the handler again after a backoff, on the same
    /// connection ([`AgentConfig::handler_retry`]), then gives up: the message stays pending at
    /// the relay, which delivers it again after a reconnection, and
    /// [`Client::on_handler_gave_up`] hears of it. Without a message handler, messages stay
    /// pending at the relay.
    pub fn on_message(&mut self, handler: impl FnMut(AgentMessage, &AgentHandle) -> HandlerResult + Send + 'static) {
        self.message_handler = Some(Box::new(handler));
    }

    /// Sets the handler for identity changes: a message came from a session whose identity key
    /// is not the one trusted for its sender (with both safety numbers; it runs before that
    /// message's own handler), or the relay says a peer's key changed (no numbers).
    pub fn on_identity_changed(
        &mut self,
        handler: impl FnMut(IdentityChange, &AgentHandle) -> HandlerResult + Send + 'static,
    ) {
        self.identity_handler = Some(Box::new(handler));
    }

    /// Sets the handler for messages acknowledged without being handed over: refused
    /// (plaintext to an encrypted agent, an untrusted identity) or unreadable after bounded
    /// deliveries. Without one they are logged as warnings.
    pub fn on_undeliverable(
        &mut self,
        handler: impl FnMut(Undeliverable, &AgentHandle) -> HandlerResult + Send + 'static,
    ) {
        self.undeliverable_handler = Some(Box::new(handler));
    }

    /// Sets the handler for messages whose handler failed on every attempt
    /// ([`AgentConfig::handler_retry`]): they stay unacknowledged at the relay. Without one they
    /// are logged as warnings.
    pub fn on_handler_gave_up(&mut self, handler: impl FnMut(GaveUp, &AgentHandle) -> HandlerResult + Send + 'static) {
        self.gave_up_handler = Some(Box::new(handler));
    }

    /// Connects and serves on this thread until [`AgentHandle::close`]; reconnects with backoff
    /// when the connection drops, or goes silent (pinged every [`AgentConfig::keepalive`]
    /// interval, given up when a ping goes unanswered for its timeout). Returns an error only
    /// when the store failed, the relay refused the agent's token
    /// ([`ClientError::Unauthorized`], at once: a 401 or 403 on the socket's handshake or on
    /// prekey publication) or refused the prekeys.
    ///
    /// A failed store write is fail-stop: nothing the core asked for after it is carried out
    /// (no frame, acknowledgement, HTTP call or handler call), the socket closes, and this
    /// returns [`ClientError::Store`] with the store's error within a tick. Start again from the
    /// same store once it works: the relay replays what was not acknowledged.
    pub fn connect(mut self) -> Result<(), ClientError> {
        let handle = self.handle.clone();
        // Built at each connection: the token may have changed since the last one.
        let url = || handle.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).agent_socket_url();
        // A failure of the first write stops the agent at once: the loop below ends on it.
        let clock = handle.lock().state.clock().clone();
        let _ = handle.with_agent(|agent| agent.start(clock.now()));
        let mut socket: Option<Socket> = None;
        let mut wake: Option<Timestamp> = None;
        'serve: loop {
            // A failed store write stopped the agent. What is still queued was asked for before
            // it: its frames (replies whose session step is stored, acknowledgements of stored
            // acceptances) go out as on the async runtimes, where they are already written;
            // nothing else runs.
            if handle.lock().state.is_stopped() {
                let writes: Vec<Message> = handle.lock().queues.writes.drain(..).collect();
                if let Some(open) = socket.as_mut() {
                    for write in writes {
                        if let Err(error) = open.send(write) {
                            tracing::info!(%error, "connection lost while writing");
                            break;
                        }
                    }
                }
                break 'serve;
            }
            // Queued work first: controls, outgoing frames, due deadlines, handler calls.
            loop {
                let control = handle.lock().queues.controls.pop_front();
                match control {
                    Some(Control::Connect) => {
                        let closing = || handle.lock().queues.controls.iter().any(|c| matches!(c, Control::Close));
                        let input = match open_socket(&url(), closing) {
                            Ok(open) => {
                                socket = Some(open);
                                Input::Connected
                            }
                            Err(Some(refusal)) => Input::HandshakeRefused(refusal),
                            Err(None) => Input::Disconnected,
                        };
                        handle.feed(input);
                    }
                    Some(Control::WakeAt(at)) => wake = Some(at),
                    // Dropped without a close handshake: the peer no longer answers.
                    Some(Control::Abandon) => socket = None,
                    Some(Control::Close) => break 'serve,
                    None => break,
                }
            }
            let writes: Vec<Message> = handle.lock().queues.writes.drain(..).collect();
            for write in writes {
                match socket.as_mut() {
                    Some(open) => {
                        if let Err(error) = open.send(write) {
                            tracing::info!(%error, "connection lost while writing");
                            socket = None;
                            handle.feed(Input::Disconnected);
                        }
                    }
                    None => tracing::warn!("frame dropped: socket closed"),
                }
            }
            if wake.is_some_and(|at| clock.now() >= at) {
                wake = None;
                handle.feed(Input::Timeout);
            }
            let event = handle.lock().queues.events.pop_front();
            if let Some(event) = event {
                self.handle_event(event);
                continue;
            }
            // Then wait for the socket (or a tick).
            let Some(open) = socket.as_mut() else {
                // A tick at most: a manual clock moved meanwhile is noticed at the next one.
                std::thread::sleep(wake.map_or(TICK, |at| clock.until(at).min(TICK)));
                continue;
            };
            let mut read = open.read();
            // What came after a burst of text frames is handled right after them, in its place.
            loop {
                match read {
                    Ok(Message::Text(text)) => {
                        // The frames already buffered behind it are fed with it: one commit.
                        let (frames, next) = read_burst(open, text.as_str().to_owned());
                        handle.feed_all(frames.into_iter().map(Input::Frame));
                        match next {
                            Some(next) => read = next,
                            None => break,
                        }
                    }
                    Ok(Message::Pong(_)) => break handle.feed(Input::Pong),
                    Ok(Message::Ping(_) | Message::Frame(_)) => break handle.feed(Input::Ping),
                    Ok(Message::Close(_)) => {
                        socket = None;
                        handle.feed(Input::Disconnected);
                        break;
                    }
                    Ok(_) => break,
                    Err(tungstenite::Error::Io(error))
                        if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                    {
                        break;
                    }
                    Err(error) => {
                        tracing::info!(%error, "connection lost");
                        socket = None;
                        handle.feed(Input::Disconnected);
                        break;
                    }
                }
            }
        }
        if let Some(mut open) = socket {
            let _ = open.close(None);
            let _ = open.flush();
        }
        match handle.lock().state.take_fatal() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn handle_event(&mut self, event: Event) {
        let handle = self.handle.clone();
        match event {
            Event::Message(message) => {
                let id = message.id.clone();
                let Some(handler) = self.message_handler.as_mut() else {
                    handle.lock().state.leave_unhandled(&id);
                    return;
                };
                let _entered = support::state::handler_span(&message).entered();
                let handle = handle.for_message(&id);
                let outcome = catch_unwind(AssertUnwindSafe(|| handler(message, &handle)))
                    .unwrap_or_else(|_| panicked("message"));
                handle.lock().settle(&id, outcome);
            }
            Event::HandlerGaveUp(report) => {
                support::state::log_handler_gave_up(&report);
                if let Some(handler) = self.gave_up_handler.as_mut() {
                    let outcome = catch_unwind(AssertUnwindSafe(|| handler(report, &handle)))
                        .unwrap_or_else(|_| panicked("gave-up"));
                    log_identity_outcome(outcome);
                }
            }
            Event::IdentityChanged(change) => {
                tracing::info!(peer = %change.peer, source = ?change.source, "peer identity changed");
                if let Some(handler) = self.identity_handler.as_mut() {
                    let outcome = catch_unwind(AssertUnwindSafe(|| handler(change, &handle)))
                        .unwrap_or_else(|_| panicked("identity"));
                    log_identity_outcome(outcome);
                }
            }
            Event::Undeliverable(report) => match self.undeliverable_handler.as_mut() {
                Some(handler) => {
                    let outcome = catch_unwind(AssertUnwindSafe(|| handler(report, &handle)))
                        .unwrap_or_else(|_| panicked("undeliverable"));
                    log_identity_outcome(outcome);
                }
                None => support::state::log_undeliverable(&report),
            },
            other => tracing::debug!(?other, "event without a waiter"),
        }
    }
}

/// Reads the text frames already buffered behind `first`, without waiting for more (at most
/// [`support::state::MAX_BURST`] in all), so that a burst of messages is fed together and
/// committed once. Returns them with what was read after them that is not a text frame (a
/// pong, a close, an error), to be handled next.
fn read_burst(open: &mut Socket, first: String) -> (Vec<String>, Option<tungstenite::Result<Message>>) {
    let mut frames = vec![first];
    // Non-blocking for the burst only: tungstenite keeps a frame read in part for the next read.
    match tcp_stream(open).map(|tcp| tcp.set_nonblocking(true)) {
        Some(Ok(())) => {}
        Some(Err(error)) => {
            tracing::debug!(%error, "cannot read without waiting; one frame at a time");
            return (frames, None);
        }
        None => return (frames, None),
    }
    let mut next = None;
    while frames.len() < support::state::MAX_BURST {
        match open.read() {
            Ok(Message::Text(text)) => frames.push(text.as_str().to_owned()),
            Err(tungstenite::Error::Io(error)) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            other => {
                next = Some(other);
                break;
            }
        }
    }
    if let Some(Err(error)) = tcp_stream(open).map(|tcp| tcp.set_nonblocking(false)) {
        // Left non-blocking, the loop would spin on its reads: drop the socket as a lost one.
        next = Some(Err(tungstenite::Error::Io(error)));
    }
    (frames, next)
}

/// The TCP stream under the socket (under TLS for `wss://`).
fn tcp_stream(socket: &Socket) -> Option<&TcpStream> {
    match socket.get_ref() {
        MaybeTlsStream::Plain(stream) => Some(stream),
        MaybeTlsStream::Rustls(stream) => Some(stream.get_ref()),
        _ => None,
    }
}

/// Opens the socket with a connect deadline and a read timeout of one tick. Fails (after
/// logging why) with the relay's answer when it refused the handshake with an HTTP status, or
/// `None` on any other failure, or when `closing()` turns true while the handshake waits.
fn open_socket(url: &str, closing: impl Fn() -> bool) -> Result<Socket, Option<HttpResponse>> {
    // tungstenite's own `connect` waits as long as the OS lets a TCP connect hang; connect the
    // stream ourselves with a deadline, then run TLS and the WebSocket handshake over it.
    let stream = match connect_tcp(url) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, "connect failed");
            return Err(None);
        }
    };
    // Reads time out every tick, during the handshake too: a relay that accepted the connection
    // and never answers holds it up to CONNECT_TIMEOUT, and a close meanwhile must be noticed.
    if let Err(error) = stream.set_read_timeout(Some(TICK)) {
        tracing::warn!(%error, "cannot set a read timeout");
        return Err(None);
    }
    let deadline = Instant::now() + support::CONNECT_TIMEOUT;
    let mut handshake = tungstenite::client_tls_with_config(url, stream, None, None);
    let socket = loop {
        match handshake {
            Ok((socket, _response)) => break socket,
            Err(HandshakeError::Interrupted(waiting)) => {
                if closing() {
                    tracing::debug!("closed while connecting");
                    return Err(None);
                }
                if Instant::now() >= deadline {
                    tracing::warn!("connect timed out");
                    return Err(None);
                }
                handshake = waiting.handshake();
            }
            Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                tracing::warn!(status, "socket handshake refused");
                return Err(Some(HttpResponse { status, body: response.body().clone().unwrap_or_default() }));
            }
            // The URL carries the token: log the error alone.
            Err(HandshakeError::Failure(error)) => {
                tracing::warn!(%error, "WebSocket handshake failed");
                return Err(None);
            }
        }
    };
    tracing::info!("connected");
    Ok(socket)
}

/// Connects TCP to the URL's host and port within [`support::CONNECT_TIMEOUT`], trying each
/// resolved address in turn.
fn connect_tcp(url: &str) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs as _;
    let invalid = |reason: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, reason.to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("URL without a scheme"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let default_port = if scheme == "wss" { 443 } else { 80 };
    let has_port =
        authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok() && !authority.ends_with(']'));
    let target = if has_port { authority.to_owned() } else { format!("{authority}:{default_port}") };
    let mut last_error = invalid("host resolved to no address");
    for address in target.to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, support::CONNECT_TIMEOUT) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

//! The agent client on any executor: one driver loop owns the socket and the timer, one task
//! runs handlers in message order, and every output of the core is carried out under the
//! core's lock, in order.
//!
//! The lock is a plain mutex held only while the core runs and its outputs are dispatched
//! (channel sends and store writes); it is never held across an `.await`, so a handler can send
//! as much as it likes before it returns.

use super::{Control, Runtime, SocketEvent, socket_loop, write, written_out};
use crate::state::{
    AgentState, Effect, Waiter, downloaded, file_sent, handler_span, log_identity_outcome, log_undeliverable, panicked,
    prekeys_published, uploaded,
};
use crate::{ClientError, HandlerResult, HttpExecutor, SharedClock, os_rng};
use futures_channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_util::future::AbortHandle;
use futures_util::{FutureExt as _, StreamExt as _};
use pacerelle_core::AgentMessage;
use pacerelle_core::Rng;
use pacerelle_core::Timestamp;
use pacerelle_core::agent::{
    Agent, AgentConfig, Event, FileUpload, GaveUp, IdentityChange, Input, OutgoingFile, OutgoingMessage, SafetyNumber,
    SentFile, Undeliverable,
};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::store::PeerId;
use pacerelle_core::store::{DynAgentStore, MemoryStore};
use pacerelle_core::widget::{Widget, WidgetPatch};
use pacerelle_core::wire::http::HttpRequest;
use pacerelle_core::{Attachment, e2ee::backend::SignalBackend};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::Instrument as _;
use tungstenite::Message;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type MessageHandler = Arc<dyn Fn(AgentMessage, AgentHandle) -> BoxFuture + Send + Sync>;
type IdentityHandler = Arc<dyn Fn(IdentityChange, AgentHandle) -> BoxFuture + Send + Sync>;
type UndeliverableHandler = Arc<dyn Fn(Undeliverable, AgentHandle) -> BoxFuture + Send + Sync>;
type GaveUpHandler = Arc<dyn Fn(GaveUp, AgentHandle) -> BoxFuture + Send + Sync>;

struct Inner {
    state: AgentState,
    /// The open socket's writer; `None` while disconnected.
    writer: Option<UnboundedSender<Message>>,
}

struct Shared {
    inner: Mutex<Inner>,
    control: UnboundedSender<Control>,
    events: UnboundedSender<Event>,
    http: HttpExecutor,
    /// Where and as whom the agent connects; its token changes with [`AgentHandle::set_token`].
    config: Mutex<ClientConfig>,
    /// Makes an HTTP call on the executor's blocking pool and feeds the answer back
    /// (`spawn_http::<R>`: the handle itself is the same type on every executor).
    spawn_http: fn(HttpRequest, Arc<Shared>),
}

/// Runs `request` off the executor's threads and feeds its answer to the core.
fn spawn_http<R: Runtime>(request: HttpRequest, shared: Arc<Shared>) {
    R::spawn(async move {
        let http = shared.http.clone();
        let id = request.id;
        let result = R::unblock(move || http.execute(&request)).await;
        shared.feed(Input::Http(id, result));
    });
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the core consistent (it never panics
        // mid-update), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Carries out one effect. Runs under the lock, so it only queues.
    fn effect(self: &Arc<Self>, writer: Option<&UnboundedSender<Message>>, effect: Effect) {
        match effect {
            Effect::Http(request) => (self.spawn_http)(request, self.clone()),
            Effect::Frame(text) => {
                if !write(writer, text) {
                    // The socket just died; the core hears of it next. Acknowledgements are
                    // repeated on replay; a message sent in this instant is lost like on any
                    // dropped connection.
                    tracing::warn!("frame dropped: socket closed");
                }
            }
            Effect::Event(event) => {
                let _ = self.events.unbounded_send(event);
            }
            Effect::Connect => {
                let _ = self.control.unbounded_send(Control::Connect);
            }
            Effect::WakeAt(at) => {
                let _ = self.control.unbounded_send(Control::WakeAt(at));
            }
            Effect::Close => {
                let _ = self.control.unbounded_send(Control::Close);
            }
            Effect::Ping => {
                // A socket gone in this instant is reported by its reader.
                if let Some(writer) = writer {
                    let _ = writer.unbounded_send(Message::Ping(Default::default()));
                }
            }
            Effect::Abandon => {
                let _ = self.control.unbounded_send(Control::Abandon);
            }
        }
    }

    /// Runs `command` on the core, then carries out everything it asked for, in order; refused
    /// once the store failed (see [`AgentState::run`]).
    fn with_agent<T>(self: &Arc<Self>, command: impl FnOnce(&mut Agent) -> T) -> Result<T, ClientError> {
        let mut guard = self.lock();
        let Inner { state, writer } = &mut *guard;
        state.run(command, |effect| self.effect(writer.as_ref(), effect))
    }

    /// Runs a command that starts a request, and waits for the event that answers it.
    async fn request<T>(
        self: &Arc<Self>,
        command: impl FnOnce(&mut Agent) -> Result<(pacerelle_core::wire::http::RequestId, T), ClientError>,
    ) -> Result<(T, Event), ClientError> {
        let (answer, answered) = oneshot::channel();
        let waiter: Waiter = Box::new(move |event| {
            let _ = answer.send(event);
        });
        let value = {
            let mut guard = self.lock();
            let Inner { state, writer } = &mut *guard;
            state.run_waiting(command, waiter, |effect| self.effect(writer.as_ref(), effect))?
        };
        // Every request is answered (the HTTP client has its own deadlines); a client that
        // stops first drops the waiter.
        let event = answered.await.map_err(|_| ClientError::Closed)?;
        Ok((value, event))
    }

    fn feed(self: &Arc<Self>, input: Input) {
        let mut guard = self.lock();
        let Inner { state, writer } = &mut *guard;
        state.feed(input, |effect| self.effect(writer.as_ref(), effect));
    }

    /// Feeds inputs that arrived together, with one store commit for all of them.
    fn feed_all(self: &Arc<Self>, inputs: impl IntoIterator<Item = Input>) {
        let mut guard = self.lock();
        let Inner { state, writer } = &mut *guard;
        state.feed_all(inputs, |effect| self.effect(writer.as_ref(), effect));
    }

    fn settle(self: &Arc<Self>, message_id: &str, outcome: HandlerResult) {
        let mut guard = self.lock();
        let Inner { state, writer } = &mut *guard;
        state.settle(message_id, outcome, |effect| self.effect(writer.as_ref(), effect));
    }
}

/// A handle to a running agent: send, reply, show widgets, close. Cheap to clone; handlers
/// receive one. The same type on every async executor.
///
/// Once the agent's store has failed, every method that sends (or downloads) returns
/// [`ClientError::Store`] and does nothing; one already waiting for an upload or a download
/// returns [`ClientError::Closed`].
///
/// ```no_run
/// # async fn run(agent: pacerelle_runtime_support::driver::AgentHandle) -> Result<(), pacerelle_runtime_support::ClientError> {
/// use pacerelle_core::widget::Confirm;
///
/// agent.send_text("conversation-1", "alice", "Starting the deploy").await?;
/// agent.send_widget("conversation-1", "alice", Confirm::new("Deploy now?")).await?;
/// # Ok(())
/// # }
/// ```
///
/// The handle a message handler receives sends within that message's handler call: what it
/// sends is committed with the message's acceptance and sent again if the message comes back
/// (see [`Agent::while_handling`]). Used after the handler returned (a clone kept by a task),
/// or any other handle, it sends through the agent's durable outbox.
#[derive(Clone)]
pub struct AgentHandle {
    shared: Arc<Shared>,
    /// The message whose handler call this handle was given to.
    handling: Option<Arc<str>>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle").field("agent_id", &self.agent_id()).finish()
    }
}

impl AgentHandle {
    /// This handle, sending within `message_id`'s handler call.
    fn for_message(&self, message_id: &str) -> AgentHandle {
        AgentHandle { shared: self.shared.clone(), handling: Some(message_id.into()) }
    }

    /// Runs a send on the core, within this handle's handler call if it has one.
    fn send<T>(&self, command: impl FnOnce(&mut Agent) -> T) -> Result<T, ClientError> {
        self.shared.with_agent(|agent| match self.handling.as_deref() {
            Some(message_id) => agent.while_handling(message_id, command),
            None => command(agent),
        })
    }

    /// The agent's id.
    pub fn agent_id(&self) -> String {
        self.shared.lock().state.agent().agent_id().to_owned()
    }

    /// The time on the agent's clock: the system's, or the one given to [`Client::set_clock`].
    /// Handlers that compare times (a permission's or a widget's expiry) read it here, so a test
    /// with a manual clock controls them too.
    pub fn now(&self) -> Timestamp {
        self.shared.lock().state.now()
    }

    /// Whether the socket is open.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().state.agent().is_connected()
    }

    /// Sends a message; returns its id.
    pub async fn send_message(&self, message: OutgoingMessage) -> Result<String, ClientError> {
        Ok(self.send(|agent| agent.send_message(message))??)
    }

    /// Sends `text` to `to` in `conversation_id`; returns the message id.
    pub async fn send_text(
        &self,
        conversation_id: &str,
        to: &str,
        text: impl Into<String>,
    ) -> Result<String, ClientError> {
        self.send_message(OutgoingMessage::new(conversation_id, to, text)).await
    }

    /// Replies to `message` in its conversation or group, to its device; returns the reply's id.
    pub async fn reply(&self, message: &AgentMessage, text: impl Into<String>) -> Result<String, ClientError> {
        self.send_message(OutgoingMessage::reply(message, text)).await
    }

    /// Shows a widget ([`pacerelle_core::widget::Confirm`], `Choice`, `Permission`, `Form`,
    /// `Progress`, `FilePicker`, `DateTime`); returns its id.
    pub async fn send_widget(
        &self,
        conversation_id: &str,
        to: &str,
        widget: impl Into<Widget>,
    ) -> Result<String, ClientError> {
        let widget = widget.into();
        Ok(self.send(|agent| agent.send_widget(conversation_id, to, widget))??)
    }

    /// Changes a widget already shown; returns the update's id.
    pub async fn send_widget_update(
        &self,
        conversation_id: &str,
        to: &str,
        patch: WidgetPatch,
    ) -> Result<String, ClientError> {
        Ok(self.send(|agent| agent.send_widget_update(conversation_id, to, patch))??)
    }

    /// Uploads a file without sending a message (the official SDK's `upload_file`): encrypts
    /// it, uploads only the ciphertext and returns the attachment, with its key, once the relay
    /// stored it. Any number of messages can then carry it
    /// ([`OutgoingMessage::attachments`]), with other attachments. Needs no connection.
    ///
    /// Without end-to-end encryption it is refused
    /// ([`pacerelle_core::agent::SendError::FileReadableByRelay`]) unless the file says the
    /// relay may read it ([`FileUpload::allow_relay_to_read`]).
    pub async fn upload_file(&self, file: FileUpload) -> Result<Attachment, ClientError> {
        let (_, event) = self.shared.request(|agent| Ok((agent.upload_file(file)?, ()))).await?;
        uploaded(event)
    }

    /// Sends a file in a message of its own (the official SDK's `send_file`, and `send_media`
    /// with dimensions, duration or a thumbnail: [`OutgoingFile`]): encrypts it, uploads only
    /// the ciphertext, then sends the message that carries its key. Returns the message's id
    /// and the attachment once the message is sent. Refused like [`AgentHandle::upload_file`]
    /// without end-to-end encryption.
    pub async fn send_file(&self, file: OutgoingFile) -> Result<SentFile, ClientError> {
        let (_, event) = self.shared.request(|agent| Ok(agent.send_file(file)?)).await?;
        file_sent(event)
    }

    /// Downloads an attachment and decrypts it locally; an attachment without key and IV, or
    /// whose blob fails authentication, is an error.
    pub async fn download_attachment(&self, attachment: &Attachment) -> Result<Vec<u8>, ClientError> {
        let (_, event) = self.shared.request(|agent| Ok((agent.download_attachment(attachment)?, ()))).await?;
        downloaded(event)
    }

    /// Publishes a new prekey bundle (the official SDK's `publish_prekey_bundle`): a new signed
    /// prekey, Kyber prekey and batch of 50 one-time prekeys, private halves stored first, then
    /// put at the relay; returns once the relay took them (transient failures are retried with
    /// backoff, as at start). The agent publishes by itself when it starts and when people used
    /// its one-time prekeys; this is for an app that wants a fresh bundle now (after a restore,
    /// say). Refused without end-to-end encryption, before `connect` (which publishes first),
    /// or while a publication is under way ([`pacerelle_core::agent::PublishError`]). A refusal
    /// by the relay ends the agent as at start (`connect` returns it); this then returns
    /// [`ClientError::Closed`].
    pub async fn publish_prekey_bundle(&self) -> Result<(), ClientError> {
        let (_, event) = self.shared.request(|agent| Ok((agent.publish_prekey_bundle()?, ()))).await?;
        prekeys_published(event)
    }

    /// The agent's identity key (33 bytes), when it runs with end-to-end encryption.
    pub fn identity_key(&self) -> Option<[u8; 33]> {
        self.shared.lock().state.agent().identity_key()
    }

    /// The verification code people compare with their app's, when it runs with end-to-end
    /// encryption.
    pub fn verification_code(&self) -> Option<String> {
        self.shared.lock().state.agent().verification_code()
    }

    /// Trusts the identity key that spoke for `peer` and was refused under
    /// [`pacerelle_core::agent::TrustPolicy::Pinned`] (check its safety number with the person
    /// first); its next message is delivered. Returns the safety number now trusted.
    pub fn trust_identity(&self, peer: &PeerId) -> Result<SafetyNumber, ClientError> {
        Ok(self.shared.with_agent(|agent| agent.trust_identity(peer))??)
    }

    /// The safety number trusted for `peer`, once one of its sessions spoke.
    pub fn trusted_identity(&self, peer: &PeerId) -> Option<SafetyNumber> {
        self.shared.lock().state.agent().trusted_identity(peer)
    }

    /// Authenticates with `token` from now on: the next connection of the socket and every
    /// HTTP call started after this (for short-lived tokens, such as Agent Connect's runtime
    /// tokens). The open socket stays as it is; the relay checked its token when it opened.
    pub fn set_token(&self, token: impl Into<String>) {
        let token = token.into();
        self.shared.http.set_token(&token);
        self.shared.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).token = token;
    }

    /// Stops the agent: [`Client::connect`] returns soon after.
    pub fn close(&self) {
        // Refused only when the store failed, and then the agent is already closing.
        let _ = self.shared.with_agent(Agent::close);
    }
}

/// An agent client on executor `R`. Register handlers, then [`Client::connect`]. Each adapter
/// names it for its executor (`pacerelle_tokio::Client` is `Client<Tokio>`).
pub struct Client<R> {
    config: ClientConfig,
    handle: AgentHandle,
    control: UnboundedReceiver<Control>,
    events: UnboundedReceiver<Event>,
    message_handler: Option<MessageHandler>,
    identity_handler: Option<IdentityHandler>,
    undeliverable_handler: Option<UndeliverableHandler>,
    gave_up_handler: Option<GaveUpHandler>,
    runtime: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// A client on its durable store: SQLite at `<store_root>/<agent_id>/agent.db`, the root
    /// being [`ClientConfig::store_root`] (`PACERELLE_STORE_ROOT`) or `~/.myagents` (see
    /// [`crate::durable`]). With end-to-end encryption its identity, prekeys and sessions
    /// survive restarts; with or without, so do its receipts (nothing is handled twice).
    ///
    /// A store that cannot be opened is an error ([`ClientError::StoreInUse`] when another
    /// process runs the agent, [`ClientError::StoreOpen`], [`ClientError::NoStoreRoot`]),
    /// never a fallback to memory. Needs the `sqlite` feature (on by default); without it,
    /// choose a store with [`Client::with_store`] or [`Client::in_memory`].
    #[cfg(feature = "sqlite")]
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let store = crate::durable::open_store(&config)?;
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
        Self::with_parts(config, agent_config, Box::new(store), os_rng())
    }

    /// A client with full control over the core's configuration and randomness (tests pass a
    /// seeded generator and short backoffs here). Message ids come from `rng`: a seeded generator
    /// must never be reused across runs of one agent, or its new messages repeat old ids.
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
    /// implementation than the native one, such as the official runtime); `created` are the
    /// changes that stored the backend's new identity, if it just made one.
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
        let (control_tx, control) = mpsc::unbounded();
        let (events_tx, events) = mpsc::unbounded();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { state, writer: None }),
            control: control_tx,
            events: events_tx,
            http: HttpExecutor::new(&config.base_url, &config.token),
            config: Mutex::new(config.clone()),
            spawn_http: spawn_http::<R>,
        });
        Client {
            config,
            handle: AgentHandle { shared, handling: None },
            control,
            events,
            message_handler: None,
            identity_handler: None,
            undeliverable_handler: None,
            gave_up_handler: None,
            runtime: PhantomData,
        }
    }

    /// A handle for sending and closing from outside handlers (e.g. on Ctrl-C).
    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// Reads the time from `clock` instead of the system's: the core's `now`, every deadline
    /// the driver waits for (reconnect backoff, keepalive, handler retries) and
    /// [`AgentHandle::now`]. For tests that move time themselves (`pacerelle_test::ManualClock`);
    /// set it before [`Client::connect`].
    pub fn set_clock(&mut self, clock: SharedClock) {
        self.handle.shared.lock().state.set_clock(clock);
    }

    /// Sets the message handler. Returning `Ok` accepts the message (it is acknowledged);
    /// returning an error (or panicking) leaves it unacknowledged and calls the handler again
    /// after a backoff, on the same connection ([`AgentConfig::handler_retry`]), then gives up:
    /// the message stays pending at the relay, which delivers it again after a reconnection,
    /// and [`Client::on_handler_gave_up`] hears of it. Handlers run one at a time, in the order
    /// messages arrived. Without a message handler, messages stay pending at the relay.
    pub fn on_message<F, Fut>(&mut self, handler: F)
    where
        F: Fn(AgentMessage, AgentHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.message_handler = Some(Arc::new(move |message, handle| Box::pin(handler(message, handle))));
    }

    /// Sets the handler for identity changes: a message came from a session whose identity key
    /// is not the one trusted for its sender (with both safety numbers; it runs before that
    /// message's own handler), or the relay says a peer's key changed (no numbers).
    pub fn on_identity_changed<F, Fut>(&mut self, handler: F)
    where
        F: Fn(IdentityChange, AgentHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.identity_handler = Some(Arc::new(move |change, handle| Box::pin(handler(change, handle))));
    }

    /// Sets the handler for messages acknowledged without being handed over: refused
    /// (plaintext to an encrypted agent, an untrusted identity) or unreadable after bounded
    /// deliveries. Without one they are logged as warnings.
    pub fn on_undeliverable<F, Fut>(&mut self, handler: F)
    where
        F: Fn(Undeliverable, AgentHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.undeliverable_handler = Some(Arc::new(move |report, handle| Box::pin(handler(report, handle))));
    }

    /// Sets the handler for messages whose handler failed on every attempt
    /// ([`AgentConfig::handler_retry`]): they stay unacknowledged at the relay. Without one they
    /// are logged as warnings.
    pub fn on_handler_gave_up<F, Fut>(&mut self, handler: F)
    where
        F: Fn(GaveUp, AgentHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.gave_up_handler = Some(Arc::new(move |report, handle| Box::pin(handler(report, handle))));
    }

    /// Connects and serves until [`AgentHandle::close`]; reconnects with backoff when the
    /// connection drops, or goes silent (pinged every [`AgentConfig::keepalive`] interval,
    /// given up when a ping goes unanswered for its timeout). With end-to-end encryption it
    /// first publishes the agent's prekeys (retried with backoff while the relay is
    /// unreachable or failing). Returns an error only when the store failed, the relay refused
    /// the agent's token ([`ClientError::Unauthorized`], at once: a 401 or 403 on the socket's
    /// handshake or on publication) or refused the prekeys.
    ///
    /// A failed store write is fail-stop: nothing the core asked for after it is carried out
    /// (no frame, acknowledgement, HTTP call or handler call), the socket closes, and this
    /// returns [`ClientError::Store`] with the store's error as soon as the handler task has
    /// stopped. Start again from the same store once it works: the relay replays what was not
    /// acknowledged. See [`crate::state`].
    pub async fn connect(self) -> Result<(), ClientError> {
        let Client {
            config,
            handle,
            mut control,
            events,
            message_handler,
            identity_handler,
            undeliverable_handler,
            gave_up_handler,
            runtime: _,
        } = self;
        let handlers = Handlers {
            message: message_handler,
            identity: identity_handler,
            undeliverable: undeliverable_handler,
            gave_up: gave_up_handler,
        };
        let shared = handle.shared.clone();

        // Handlers run on a task of their own, so that a slow handler never stops the socket
        // from being read (or the relay's pings from being answered).
        let (handlers, stop_handlers) = futures_util::future::abortable(run_handlers(events, handle, handlers));
        let serving = Serving { shared: shared.clone(), stop_handlers };
        let (handlers_done, handlers_stopped) = oneshot::channel::<()>();
        R::spawn(async move {
            let _ = handlers.await;
            drop(handlers_done);
        });

        // A failure of the first write closes at once: the loop below ends on it.
        let clock = shared.lock().state.clock().clone();
        let _ = shared.with_agent(|agent| agent.start(clock.now()));
        drop(config);
        let url = || shared.config.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).agent_socket_url();
        let written = socket_loop::<R>(&*clock, url, &mut control, |event| match event {
            SocketEvent::Opened(writer) => {
                shared.lock().writer = Some(writer);
                shared.feed(Input::Connected);
            }
            SocketEvent::Failed => shared.feed(Input::Disconnected),
            SocketEvent::Refused(response) => shared.feed(Input::HandshakeRefused(response)),
            SocketEvent::Pong => shared.feed(Input::Pong),
            SocketEvent::Ping => shared.feed(Input::Ping),
            SocketEvent::Abandoned => shared.lock().writer = None,
            SocketEvent::Frames(frames) => shared.feed_all(frames.into_iter().map(Input::Frame)),
            SocketEvent::Lost => {
                shared.lock().writer = None;
                shared.feed(Input::Disconnected);
            }
            SocketEvent::Timeout => shared.feed(Input::Timeout),
        })
        .await;

        drop(serving);
        // What was queued before the end (a reply written just before a close or a store
        // failure) goes out, then the close frame.
        written_out::<R>(written).await;
        // A handler still running is cancelled at its next await; wait until it is gone so that
        // nothing of this agent runs after `connect` returned.
        let _ = handlers_stopped.await;
        match shared.lock().state.take_fatal() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Ends a serving agent when dropped: at the end of [`Client::connect`], or when its future is
/// dropped before (a `select!` that cancelled it), which would otherwise leave the socket open
/// and the handler task waiting for events forever.
struct Serving {
    shared: Arc<Shared>,
    stop_handlers: AbortHandle,
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Dropping the writer sends a close frame and ends the writer task.
        self.shared.lock().writer = None;
        self.stop_handlers.abort();
    }
}

/// The app's handlers.
struct Handlers {
    message: Option<MessageHandler>,
    identity: Option<IdentityHandler>,
    undeliverable: Option<UndeliverableHandler>,
    gave_up: Option<GaveUpHandler>,
}

/// Runs handlers one at a time, in arrival order, and accepts each message whose handler
/// succeeded.
async fn run_handlers(mut events: UnboundedReceiver<Event>, handle: AgentHandle, handlers: Handlers) {
    while let Some(event) = events.next().await {
        match event {
            Event::Message(message) => {
                let id = message.id.clone();
                let Some(handler) = &handlers.message else {
                    handle.shared.lock().state.leave_unhandled(&id);
                    continue;
                };
                let span = handler_span(&message);
                let outcome = AssertUnwindSafe(handler(message, handle.for_message(&id)))
                    .catch_unwind()
                    .instrument(span.clone())
                    .await
                    .unwrap_or_else(|_| panicked("message"));
                // Settled in the handler's span, as on the blocking runtime: a failure's log line
                // names the message, conversation and sender.
                span.in_scope(|| handle.shared.settle(&id, outcome));
            }
            Event::HandlerGaveUp(report) => {
                crate::state::log_handler_gave_up(&report);
                if let Some(handler) = &handlers.gave_up {
                    let outcome = AssertUnwindSafe(handler(report, handle.clone()))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| panicked("gave-up"));
                    log_identity_outcome(outcome);
                }
            }
            Event::IdentityChanged(change) => {
                tracing::info!(peer = %change.peer, source = ?change.source, "peer identity changed");
                if let Some(handler) = &handlers.identity {
                    let outcome = AssertUnwindSafe(handler(change, handle.clone()))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| panicked("identity"));
                    log_identity_outcome(outcome);
                }
            }
            Event::Undeliverable(report) => match &handlers.undeliverable {
                Some(handler) => {
                    let outcome = AssertUnwindSafe(handler(report, handle.clone()))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| panicked("undeliverable"));
                    log_identity_outcome(outcome);
                }
                None => log_undeliverable(&report),
            },
            // Answers to file sends and downloads nobody waits for any more.
            other => tracing::debug!(?other, "event without a waiter"),
        }
    }
}

//! The agent client: one driver task owns the socket and timers, one task runs handlers in
//! message order, and every output of the core is carried out under the core's lock, in order.
//!
//! The lock is a plain mutex held only while the core runs and its outputs are dispatched
//! (channel sends and store writes); it is never held across an `.await`, so a handler can send
//! as much as it likes before it returns.

use crate::socket;
use futures_util::FutureExt as _;
use pacerelle_core::agent::{Agent, AgentConfig, Event, Input, OutgoingMessage, Output};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::store::{DynAgentStore, MemoryStore};
use pacerelle_core::widget::{Widget, WidgetPatch};
use pacerelle_core::{AgentMessage, Rng, Timestamp};
use pacerelle_runtime_support::{self as support, ClientError, HandlerResult};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::tungstenite::Message;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type MessageHandler = Arc<dyn Fn(AgentMessage, AgentHandle) -> BoxFuture + Send + Sync>;
type IdentityHandler = Arc<dyn Fn(String, AgentHandle) -> BoxFuture + Send + Sync>;

/// What the driver task is told to do.
enum Control {
    Connect,
    WakeAt(Timestamp),
    Close,
}

struct Inner {
    agent: Agent,
    store: Box<dyn DynAgentStore>,
    /// The open socket's writer; `None` while disconnected.
    writer: Option<UnboundedSender<Message>>,
    /// A store failure: the client stops instead of acting on state it could not persist.
    fatal: Option<ClientError>,
}

struct Shared {
    inner: Mutex<Inner>,
    control: UnboundedSender<Control>,
    events: UnboundedSender<Event>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the core consistent (it never panics
        // mid-update), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the core, then carries out everything it asked for, in order.
    fn with_agent<T>(&self, f: impl FnOnce(&mut Agent) -> T) -> T {
        let mut inner = self.lock();
        let result = f(&mut inner.agent);
        self.dispatch(&mut inner);
        result
    }

    fn dispatch(&self, inner: &mut Inner) {
        while let Some(output) = inner.agent.poll_output() {
            match output {
                Output::Persist(changes) => {
                    if let Err(error) = inner.store.apply(&changes) {
                        tracing::error!(%error, "store failed; closing");
                        inner.fatal = Some(ClientError::Store(error));
                        inner.agent.close();
                    }
                }
                Output::Frame(text) => match &inner.writer {
                    Some(writer) if writer.send(Message::text(text)).is_ok() => {}
                    // The socket just died; the core hears of it next. Acknowledgements are
                    // repeated on replay; a message sent in this instant is lost like on any
                    // dropped connection.
                    _ => tracing::warn!("frame dropped: socket closed"),
                },
                Output::Event(event) => {
                    let _ = self.events.send(event);
                }
                Output::Connect => {
                    let _ = self.control.send(Control::Connect);
                }
                Output::WakeAt(at) => {
                    let _ = self.control.send(Control::WakeAt(at));
                }
                Output::Close => {
                    let _ = self.control.send(Control::Close);
                }
            }
        }
    }

    fn feed(&self, input: Input) {
        self.with_agent(|agent| {
            if let Err(error) = agent.handle_input(support::now(), input) {
                match &error {
                    pacerelle_core::agent::InputError::Frame(frame) if frame.is_ignorable() => {
                        tracing::debug!(%error, "frame ignored")
                    }
                    _ => tracing::warn!(%error, "input refused"),
                }
            }
        });
    }
}

/// A handle to a running agent: send, reply, show widgets, close. Cheap to clone; handlers
/// receive one.
#[derive(Clone)]
pub struct AgentHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle").field("agent_id", &self.agent_id()).finish()
    }
}

impl AgentHandle {
    /// The agent's id.
    pub fn agent_id(&self) -> String {
        self.shared.lock().agent.agent_id().to_owned()
    }

    /// Whether the socket is open.
    pub fn is_connected(&self) -> bool {
        self.shared.lock().agent.is_connected()
    }

    /// Sends a message; returns its id.
    pub async fn send_message(&self, message: OutgoingMessage) -> Result<String, ClientError> {
        Ok(self.shared.with_agent(|agent| agent.send_message(message))?)
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
        Ok(self.shared.with_agent(|agent| agent.send_widget(conversation_id, to, widget))?)
    }

    /// Changes a widget already shown; returns the update's id.
    pub async fn send_widget_update(
        &self,
        conversation_id: &str,
        to: &str,
        patch: WidgetPatch,
    ) -> Result<String, ClientError> {
        Ok(self.shared.with_agent(|agent| agent.send_widget_update(conversation_id, to, patch))?)
    }

    /// Stops the agent: [`Client::connect`] returns soon after.
    pub fn close(&self) {
        self.shared.with_agent(Agent::close);
    }
}

/// An agent client on tokio. Register handlers, then [`Client::connect`].
pub struct Client {
    config: ClientConfig,
    handle: AgentHandle,
    control: UnboundedReceiver<Control>,
    events: UnboundedReceiver<Event>,
    message_handler: Option<MessageHandler>,
    identity_handler: Option<IdentityHandler>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Client {
    /// A client with an in-memory store (receipts do not survive a restart).
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        Self::with_store(config, MemoryStore::new())
    }

    /// A client continuing from `store`.
    pub fn with_store(config: ClientConfig, store: impl DynAgentStore + 'static) -> Result<Self, ClientError> {
        let agent_config = AgentConfig::new(config.agent_id.clone());
        Self::with_parts(config, agent_config, Box::new(store), support::os_rng())
    }

    /// A client with full control over the core's configuration and randomness (tests pass a
    /// seeded generator and short backoffs here). Message ids come from `rng`: a seeded generator
    /// must never be reused across runs of one agent, or its new messages repeat old ids.
    pub fn with_parts(
        config: ClientConfig,
        agent_config: AgentConfig,
        mut store: Box<dyn DynAgentStore>,
        rng: Box<Rng>,
    ) -> Result<Self, ClientError> {
        let agent_config = AgentConfig { agent_id: config.agent_id.clone(), e2ee: config.e2ee, ..agent_config };
        let snapshot = store.load().map_err(ClientError::Store)?;
        let agent = Agent::new(agent_config, rng, snapshot)?;
        let (control_tx, control) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { agent, store, writer: None, fatal: None }),
            control: control_tx,
            events: events_tx,
        });
        Ok(Client {
            config,
            handle: AgentHandle { shared },
            control,
            events,
            message_handler: None,
            identity_handler: None,
        })
    }

    /// A handle for sending and closing from outside handlers (e.g. on Ctrl-C).
    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// Sets the message handler. Returning `Ok` accepts the message (it is acknowledged);
    /// returning an error leaves it unacknowledged, so the relay delivers it again after the
    /// next reconnect. Handlers run one at a time, in the order messages arrived.
    pub fn on_message<F, Fut>(&mut self, handler: F)
    where
        F: Fn(AgentMessage, AgentHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.message_handler = Some(Arc::new(move |message, handle| Box::pin(handler(message, handle))));
    }

    /// Sets the handler for `IDENTITY_CHANGED` (a peer's identity key changed).
    pub fn on_identity_changed<F, Fut>(&mut self, handler: F)
    where
        F: Fn(String, AgentHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.identity_handler = Some(Arc::new(move |peer, handle| Box::pin(handler(peer, handle))));
    }

    /// Connects and serves until [`AgentHandle::close`]; reconnects with backoff when the
    /// connection drops. Returns an error only when the store failed.
    pub async fn connect(self) -> Result<(), ClientError> {
        let Client { config, handle, mut control, events, message_handler, identity_handler } = self;
        let shared = handle.shared.clone();
        let handlers = tokio::spawn(run_handlers(events, handle.clone(), message_handler, identity_handler));
        shared.with_agent(|agent| agent.start(support::now()));

        let url = config.agent_socket_url();
        let mut reader: Option<socket::Reader> = None;
        let mut wake: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                command = control.recv() => match command {
                    Some(Control::Connect) => {
                        let opened = socket::open(&url).await;
                        let input = if opened.is_some() { Input::Connected } else { Input::Disconnected };
                        if let Some((stream, writer)) = opened {
                            reader = Some(stream);
                            shared.lock().writer = Some(writer);
                        }
                        shared.feed(input);
                    }
                    Some(Control::WakeAt(at)) => wake = Some(tokio::time::Instant::now() + support::until(at)),
                    Some(Control::Close) | None => break,
                },
                frame = socket::next_frame(&mut reader) => match frame {
                    Some(text) => shared.feed(Input::Frame(text)),
                    None => {
                        tracing::info!("connection lost");
                        reader = None;
                        shared.lock().writer = None;
                        shared.feed(Input::Disconnected);
                    }
                },
                () = socket::sleep_until(wake) => {
                    wake = None;
                    shared.feed(Input::Timeout);
                }
            }
        }
        // Dropping the writer sends a close frame and ends the writer task.
        shared.lock().writer = None;
        handlers.abort();
        let _ = handlers.await;
        match shared.lock().fatal.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Runs handlers one at a time, in arrival order, and accepts each message whose handler
/// succeeded.
async fn run_handlers(
    mut events: UnboundedReceiver<Event>,
    handle: AgentHandle,
    message_handler: Option<MessageHandler>,
    identity_handler: Option<IdentityHandler>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Message(message) => {
                let id = message.id.clone();
                let outcome = match &message_handler {
                    // A panicking handler is a failed handler: the message stays unacknowledged
                    // and the agent keeps serving.
                    Some(handler) => std::panic::AssertUnwindSafe(handler(message, handle.clone()))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err("message handler panicked".into())),
                    None => Ok(()),
                };
                match outcome {
                    Ok(()) => {
                        if let Err(error) = handle.shared.with_agent(|agent| agent.accept(&id, support::now())) {
                            tracing::warn!(%error, "accept failed");
                        }
                    }
                    Err(error) => tracing::warn!(message = %id, %error, "handler failed; message left unacknowledged"),
                }
            }
            Event::IdentityChanged { peer_id } => {
                tracing::info!(peer = %peer_id, "peer identity changed");
                if let Some(handler) = &identity_handler
                    && let Err(error) = std::panic::AssertUnwindSafe(handler(peer_id, handle.clone()))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err("identity handler panicked".into()))
                {
                    tracing::warn!(%error, "identity handler failed");
                }
            }
        }
    }
}

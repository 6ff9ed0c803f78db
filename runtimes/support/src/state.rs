//! The agent's core together with its store: what every adapter, async or blocking, keeps
//! behind its lock. Running a command or an input here persists what the core asks to persist
//! before anything that followed it happens (one commit for all of it: group commit), and hands
//! the remaining outputs to the adapter in order, as [`Effect`]s.
//!
//! Why here: the rules (persist first, stop on a store failure, accept only after a handler
//! succeeded, a panicking handler is a failed one) are the same on every executor; only what an
//! adapter does with a frame, an event or a deadline differs.
//!
//! # Fail-stop on a store failure
//! A store write that fails stops the agent for good, in one place for every runtime:
//! - nothing the core asked for after the failed batch's first change is carried out (with
//!   group commit, a batch fails as a whole): no frame (message or
//!   acknowledgement), HTTP call, event, connect or wake. The adapter gets one
//!   [`Effect::Close`] instead, closes its socket and stops serving;
//! - every later input is ignored, and every later command (a send, an acceptance, a file send
//!   or download) is refused with [`ClientError::Store`] holding a [`StoreStopped`]; so is the
//!   command whose own write failed (its message was not sent). Requests waiting for an answer
//!   when the store failed are dropped: their callers get [`ClientError::Closed`];
//! - [`AgentState::take_fatal`] hands the store's own error to `connect`, which returns it.
//!
//! What the core asked for before the failed write acts on stored state: a frame already handed
//! to the adapter still goes out (a reply whose session step is stored); an event already handed
//! to the handlers may still reach one, whose commands are then refused.
//!
//! Why: the core applies a change to its memory before the store does. Once a write failed, the
//! core's state is ahead of the store's, and acting on it would outlive a restart: a message
//! encrypted under an unsaved chain step is followed, after the restart, by another under the
//! same message key; an acknowledgement of an unsaved acceptance loses the message. Stopping at
//! the write leaves the store the truth: the restarted agent continues from it, and the relay
//! replays what was not acknowledged.
//!
//! # Group commit
//! The core's outputs are carried out in the order it queued them, but its store changes are
//! not written one by one: every change queued by one command or by a run of inputs fed
//! together ([`AgentState::feed_all`]: the frames a socket had buffered) goes to the store in
//! one [`apply_batch`](pacerelle_core::store::AgentStore::apply_batch), one transaction and one
//! `fsync` on a durable store. The rule that keeps every guarantee: an output is carried out
//! only once every change queued before it is durable. Outputs before the first change go out
//! at once; those after it wait for the batch's commit, then go out in their order. Outputs
//! are delayed, never reordered, so what held with a commit per change still holds:
//! - a message reaches the app only after its receipt (and its session's new state) is stored,
//!   so a crash cannot make the agent hand it out twice nor lose it;
//! - an acknowledgement goes out only after its acceptance is stored, so the relay never drops
//!   a message the store does not know was handled;
//! - a ciphertext goes out only after the session step that made it is stored, so no message
//!   key is used twice across a restart; nor does a frame of the outbox go out before its
//!   entry.
//!
//! A crash before the batch's commit loses the whole batch, and nothing that depended on any
//! of it has left the process: the restarted agent is where it would be had those inputs never
//! arrived, and the relay delivers them again.
//!
//! # Observability
//! Every runtime reports through here, so they all report the same: the [`crate::metrics`]
//! (messages handled, failed, retried, undeliverable; reconnects; store commit time) and a
//! `connection` span (agent id and connection number) entered while the core handles what a
//! connection brings, inside which the core opens a `message` span per message (ids only).

use crate::clock::SharedClock;
use crate::{ClientError, HandlerResult, metrics};
use pacerelle_core::Attachment;
use pacerelle_core::agent::{Agent, AgentConfig, Event, FileError, Input, InputError, Output, SentFile};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::store::{DynAgentStore, StoreChanges};
use pacerelle_core::wire::http::{HttpRequest, RequestId};
use pacerelle_core::{Rng, Timestamp};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// How many failed message ids are remembered to count a retry
/// ([`metrics::MESSAGES_RETRIED_TOTAL`]); past it, a retry goes uncounted rather than memory
/// growing with messages that never come back.
const MAX_FAILED_TRACKED: usize = 4096;

/// The most inputs an adapter feeds together ([`AgentState::feed_all`]) when a socket has a
/// burst of frames buffered: enough for a burst of messages to share one store commit, few
/// enough that the adapter soon looks at its controls and timers again.
pub const MAX_BURST: usize = 64;

/// An output of the core that the adapter carries out (store writes are already done).
// Moved once from the core to a queue, like the core's own `Event`: boxing the large variant
// would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Effect {
    /// Send this text frame on the socket.
    Frame(String),
    /// Hand this to the handlers.
    Event(Event),
    /// Open the socket, then feed [`Input::Connected`] or [`Input::Disconnected`].
    Connect,
    /// Feed [`Input::Timeout`] at this time.
    WakeAt(Timestamp),
    /// Make this HTTP call (off the executor's threads), then feed [`Input::Http`].
    Http(HttpRequest),
    /// Close the socket and stop serving.
    Close,
    /// Send a WebSocket ping on the open socket.
    Ping,
    /// Drop the open socket, dead, without a close handshake or reporting its loss.
    Abandon,
}

/// Who waits for the event that answers a request (a file sent, an attachment downloaded):
/// called once, with that event, instead of handing it to the handlers.
pub type Waiter = Box<dyn FnOnce(Event) + Send>;

/// What a command gets, inside [`ClientError::Store`], once the store has failed: the agent has
/// stopped (see the [module docs](self)) and carried out nothing of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (the agent has stopped)")]
pub struct StoreStopped {
    /// The store's error, as text (`connect` returns the error itself).
    pub reason: String,
}

/// The core and its store, plus the failure that stopped the agent, if any.
pub struct AgentState {
    agent: Agent,
    store: Box<dyn DynAgentStore>,
    /// What `connect` returns, once.
    fatal: Option<ClientError>,
    /// Set when a store write failed: from then on nothing runs.
    stopped: Option<StoreStopped>,
    waiters: HashMap<RequestId, Waiter>,
    /// Connections asked for so far: each one after the first is a reconnect.
    connects: u64,
    /// The current connection's span, entered while the core runs.
    connection: tracing::Span,
    /// Messages whose handler failed and that have not come back yet.
    failed: HashSet<String>,
    /// Whether a message arrived without a message handler (logged once).
    warned_unhandled: bool,
    /// Where `now` comes from for inputs and settlements: the system's, or one injected.
    clock: SharedClock,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState").field("agent_id", &self.agent.agent_id()).finish_non_exhaustive()
    }
}

impl AgentState {
    /// Loads `store` and builds the core. The agent id and encryption setting come from
    /// `config`, everything else (backoff, retention) from `agent_config`.
    pub fn open(
        config: &ClientConfig,
        agent_config: AgentConfig,
        mut store: Box<dyn DynAgentStore>,
        rng: Box<Rng>,
    ) -> Result<Self, ClientError> {
        let agent_config = AgentConfig { agent_id: config.agent_id.clone(), e2ee: config.e2ee, ..agent_config };
        let snapshot = store.load().map_err(ClientError::Store)?;
        let agent = Agent::new(agent_config, rng, snapshot)?;
        Ok(AgentState::with_agent(agent, store))
    }

    /// Like [`AgentState::open`], with end-to-end encryption by `backend`.
    pub fn open_with_backend(
        config: &ClientConfig,
        agent_config: AgentConfig,
        mut store: Box<dyn DynAgentStore>,
        rng: Box<Rng>,
        backend: Box<dyn pacerelle_core::e2ee::backend::SignalBackend>,
        created: pacerelle_core::store::E2eeChanges,
    ) -> Result<Self, ClientError> {
        let agent_config = AgentConfig { agent_id: config.agent_id.clone(), ..agent_config };
        let snapshot = store.load().map_err(ClientError::Store)?;
        let agent = Agent::with_backend(agent_config, rng, snapshot, backend, created)?;
        Ok(AgentState::with_agent(agent, store))
    }

    fn with_agent(agent: Agent, store: Box<dyn DynAgentStore>) -> Self {
        AgentState {
            agent,
            store,
            fatal: None,
            stopped: None,
            waiters: HashMap::new(),
            connects: 0,
            connection: tracing::Span::none(),
            failed: HashSet::new(),
            warned_unhandled: false,
            clock: crate::clock::system(),
        }
    }

    /// Reads the time from `clock` from now on (inputs, settlements, [`AgentState::now`]).
    pub fn set_clock(&mut self, clock: SharedClock) {
        self.clock = clock;
    }

    /// The agent's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The time on the agent's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The core, to read from.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// Whether a store write failed and the agent stopped (see the [module docs](self)).
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// Runs `command` on the core, then carries out its outputs: persists its changes in one
    /// commit, passes the rest to `effects` in order.
    ///
    /// Refused with [`ClientError::Store`] (and `command` not run) once the agent stopped, and
    /// when a write of `command` itself failed: what it asked for was not carried out.
    pub fn run<T>(
        &mut self,
        command: impl FnOnce(&mut Agent) -> T,
        effects: impl FnMut(Effect),
    ) -> Result<T, ClientError> {
        self.check_running()?;
        let span = self.connection.clone();
        let _entered = span.enter();
        let result = command(&mut self.agent);
        self.drain(effects);
        self.check_running()?;
        Ok(result)
    }

    /// Runs `command`, which starts a request (a file send, a download); `waiter` gets the event
    /// that answers it. The waiter is in place before any output is carried out, so an answer
    /// cannot slip past it. Refused like [`AgentState::run`]; a waiter whose answer cannot come
    /// any more (the store failed) is dropped.
    pub fn run_waiting<T, E: From<ClientError>>(
        &mut self,
        command: impl FnOnce(&mut Agent) -> Result<(RequestId, T), E>,
        waiter: Waiter,
        effects: impl FnMut(Effect),
    ) -> Result<T, E> {
        self.check_running()?;
        let span = self.connection.clone();
        let _entered = span.enter();
        let result = command(&mut self.agent);
        if let Ok((request, _)) = &result {
            self.waiters.insert(*request, waiter);
        }
        self.drain(effects);
        self.check_running()?;
        result.map(|(_, value)| value)
    }

    /// Feeds `input` to the core (logging a refusal), then carries out its outputs. Ignored once
    /// the agent stopped.
    pub fn feed(&mut self, input: Input, effects: impl FnMut(Effect)) {
        self.feed_all([input], effects);
    }

    /// Feeds `inputs` to the core one after the other (what arrived together: frames already
    /// buffered on the socket), then carries out the outputs of all of them, with every store
    /// change among them in one commit (see the [module docs](self#group-commit)). Ignored once
    /// the agent stopped.
    pub fn feed_all(&mut self, inputs: impl IntoIterator<Item = Input>, effects: impl FnMut(Effect)) {
        let clock = self.clock.clone();
        let fed = self.run(
            |agent| {
                for input in inputs {
                    if let Err(error) = agent.handle_input(clock.now(), input) {
                        match &error {
                            InputError::Frame(frame) if frame.is_ignorable() => {
                                tracing::debug!(%error, "frame ignored")
                            }
                            _ => tracing::warn!(%error, "input refused"),
                        }
                    }
                }
            },
            effects,
        );
        if fed.is_err() {
            tracing::debug!("input ignored: the agent stopped after a store failure");
        }
    }

    /// Settles a message after its handler ran: accepts it (so that it is acknowledged) when
    /// the handler succeeded; when it failed, reports that to the agent, which hands the message
    /// out again after a backoff or, after its last attempt, reports it (left unacknowledged).
    pub fn settle(&mut self, message_id: &str, outcome: HandlerResult, effects: impl FnMut(Effect)) {
        let now = self.clock.now();
        match outcome {
            Ok(()) => match self.run(|agent| agent.accept(message_id, now), effects) {
                Ok(Ok(())) => {
                    self.failed.remove(message_id);
                    metrics::message_handled();
                }
                Ok(Err(error)) => tracing::warn!(%error, "accept failed"),
                Err(_) => {
                    tracing::warn!(message_id = %message_id, "store failed: message left unacknowledged, to come back on replay")
                }
            },
            Err(error) => {
                metrics::message_failed();
                if self.failed.len() < MAX_FAILED_TRACKED {
                    self.failed.insert(message_id.to_owned());
                }
                tracing::warn!(message_id = %message_id, %error, "handler failed; message left unacknowledged");
                let error = error.to_string();
                if let Ok(Err(error)) = self.run(|agent| agent.handler_failed(message_id, &error, now), effects) {
                    tracing::warn!(%error, "handler failure not recorded");
                }
            }
        }
    }

    /// A message arrived and no message handler is set: it stays pending at the relay (not
    /// accepted, not acknowledged), as in the official SDK; said once.
    pub fn leave_unhandled(&mut self, message_id: &str) {
        if !self.warned_unhandled {
            self.warned_unhandled = true;
            tracing::warn!(message_id = %message_id, "no message handler set: messages are left pending at the relay");
        }
    }

    /// Why the agent stopped (its store failed, or the relay refused its prekeys), once: what
    /// `connect` returns.
    pub fn take_fatal(&mut self) -> Option<ClientError> {
        self.fatal.take()
    }

    /// `Err` once the agent stopped: the store failure, for a command's caller.
    fn check_running(&self) -> Result<(), ClientError> {
        match &self.stopped {
            Some(stopped) => Err(ClientError::Store(Box::new(stopped.clone()))),
            None => Ok(()),
        }
    }

    /// Carries out what the core queued: its store changes first, as one group commit, then
    /// every other output in order (see the [module docs](self#group-commit)).
    fn drain(&mut self, mut effects: impl FnMut(Effect)) {
        let mut batch: Vec<StoreChanges> = Vec::new();
        // Outputs that came after the batch's first change: they wait for its commit.
        let mut held: Vec<Output> = Vec::new();
        while let Some(output) = self.agent.poll_output() {
            match output {
                Output::Persist(changes) => batch.push(changes),
                // Nothing before it waits for a write: carried out at once, as without batching.
                other if batch.is_empty() => self.carry_out(other, &mut effects),
                other => held.push(other),
            }
        }
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let applied = self.store.apply_batch(&batch);
        metrics::store_commit(started.elapsed());
        tracing::trace!(changes = batch.len(), held = held.len(), "group commit");
        if let Err(error) = applied {
            self.stop(error, held.len());
            effects(Effect::Close);
            return;
        }
        for output in held {
            self.carry_out(output, &mut effects);
        }
    }

    /// Carries out one output of the core other than a store change, whose writes are durable.
    fn carry_out(&mut self, output: Output, effects: &mut impl FnMut(Effect)) {
        match output {
            // Drained into the batch by the caller; never reaches here.
            Output::Persist(_) => tracing::error!("a store change reached the effects"),
            Output::Frame(text) => effects(Effect::Frame(text)),
            Output::Http(request) => effects(Effect::Http(request)),
            Output::Event(Event::Unauthorized { step, status, reason }) => {
                // The core closes next; `connect` returns why.
                self.fatal = Some(ClientError::Unauthorized { step, status, reason });
            }
            Output::Event(Event::PublicationFailed { step, status, error }) => {
                // The core closes next; `connect` returns why.
                self.fatal = Some(ClientError::Publication { step, status, message: error });
            }
            Output::Event(Event::Message(message)) => {
                if self.failed.remove(&message.id) {
                    metrics::message_retried();
                }
                effects(Effect::Event(Event::Message(message)));
            }
            Output::Event(Event::Undeliverable(report)) => {
                metrics::message_undeliverable(&report.reason);
                effects(Effect::Event(Event::Undeliverable(report)));
            }
            Output::Event(event) => match event.request().and_then(|request| self.waiters.remove(&request)) {
                Some(waiter) => waiter(event),
                None => effects(Effect::Event(event)),
            },
            Output::Connect => {
                self.connects += 1;
                if self.connects > 1 {
                    metrics::reconnect();
                }
                self.connection = tracing::info_span!(
                    parent: None,
                    "connection",
                    agent = %self.agent.agent_id(),
                    connection = self.connects
                );
                effects(Effect::Connect)
            }
            Output::WakeAt(at) => effects(Effect::WakeAt(at)),
            Output::Close => effects(Effect::Close),
            Output::Ping => effects(Effect::Ping),
            Output::Abandon => effects(Effect::Abandon),
        }
    }

    /// Stops the agent at a failed write: everything the core queued behind it is dropped (it
    /// acts on state the store does not hold; `held` outputs the caller already dropped), and
    /// so is what closing the core queues; the caller hands the adapter one [`Effect::Close`]
    /// instead.
    fn stop(&mut self, error: crate::HandlerError, held: usize) {
        tracing::error!(%error, "store failed: the agent stops and carries out nothing more");
        let dropped = held + std::iter::from_fn(|| self.agent.poll_output()).count();
        self.agent.close();
        while self.agent.poll_output().is_some() {}
        // Their answers cannot come any more: dropping them tells whoever waits.
        self.waiters.clear();
        tracing::debug!(dropped, "outputs after the failed write dropped");
        self.stopped = Some(StoreStopped { reason: error.to_string() });
        self.fatal = Some(ClientError::Store(error));
    }
}

/// The outcome of an upload, from the event that answered it.
pub fn uploaded(event: Event) -> Result<Attachment, ClientError> {
    match event {
        Event::Uploaded { result, .. } => Ok(result.map_err(FileError::Upload)?),
        other => Err(unexpected_answer(&other)),
    }
}

/// The outcome of a file send, from the event that answered it.
pub fn file_sent(event: Event) -> Result<SentFile, ClientError> {
    match event {
        Event::FileSent { message_id, attachment, .. } => Ok(SentFile { message_id, attachment }),
        Event::FileFailed { error, .. } => Err(error.into()),
        other => Err(unexpected_answer(&other)),
    }
}

/// The outcome of a prekey publication the app asked for, from the event that answered it.
pub fn prekeys_published(event: Event) -> Result<(), ClientError> {
    match event {
        Event::PrekeysPublished { .. } => Ok(()),
        other => Err(unexpected_answer(&other)),
    }
}

/// The outcome of a download, from the event that answered it.
pub fn downloaded(event: Event) -> Result<Vec<u8>, ClientError> {
    match event {
        Event::Downloaded { result: Ok(bytes), .. } => Ok(bytes.expose().to_vec()),
        Event::Downloaded { result: Err(error), .. } => Err(error.into()),
        other => Err(unexpected_answer(&other)),
    }
}

fn unexpected_answer(event: &Event) -> ClientError {
    ClientError::Http { status: 0, message: format!("unexpected answer: {event:?}") }
}

/// What a panicking handler counts as: a failed one. The message stays unacknowledged and the
/// agent keeps serving.
pub fn panicked(handler: &'static str) -> HandlerResult {
    Err(format!("{handler} handler panicked").into())
}

/// Logs the outcome of a handler that settles nothing (identity changes, undeliverable and
/// gave-up reports): there is nothing to acknowledge.
pub fn log_identity_outcome(outcome: HandlerResult) {
    if let Err(error) = outcome {
        tracing::warn!(%error, "handler failed");
    }
}

/// The span a message's handler runs in (ids only, never the text): what the handler logs is
/// tied to the message.
pub fn handler_span(message: &pacerelle_core::AgentMessage) -> tracing::Span {
    tracing::info_span!("handler", message_id = %message.id, conversation = %message.conversation_id, from = %message.from)
}

/// Logs a message whose handler failed on every attempt (it stays pending at the relay).
pub fn log_handler_gave_up(report: &pacerelle_core::agent::GaveUp) {
    tracing::warn!(
        message_id = %report.message_id,
        attempts = report.attempts,
        error = %report.error,
        "handler failed on every attempt; message left pending at the relay"
    );
}

/// Logs a message acknowledged without being handed over, when the app set no handler for it.
pub fn log_undeliverable(report: &pacerelle_core::agent::Undeliverable) {
    tracing::warn!(
        message_id = %report.message_id,
        from = %report.from,
        conversation = %report.conversation_id,
        reason = %report.reason,
        "message undeliverable"
    );
}

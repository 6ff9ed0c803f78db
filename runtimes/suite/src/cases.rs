//! The cases, each generic over the runtime's [`Harness`]. Every case runs the relay and the
//! person on a tokio runtime of its own, starts the agent with `H`, and ends by closing the
//! agent, which must return `Ok` promptly.

use crate::behaviour::{self, Behaviour, DONE_TITLE};
use crate::harness::{Harness, Running};
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::human::{PersonEvent, PersonMessage};
use pacerelle_core::widget::WidgetKind;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const AGENT: &str = "suite-agent";
const AGENT_TOKEN: &str = "suite-agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
/// How long the person waits for anything the agent should send.
const WAIT: Duration = Duration::from_secs(10);
/// How long `connect` may take to return after `close`: "promptly".
const PROMPT: Duration = Duration::from_secs(2);
/// How long the person listens to be sure that nothing more arrives.
const QUIET: Duration = Duration::from_millis(300);

/// Runs `case` on a tokio runtime for the relay and the person.
fn run(case: impl Future<Output = ()>) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(case);
}

/// The person's side of a conversation: what arrived and was not looked at yet.
struct Inbox {
    person: PersonClient,
    messages: VecDeque<PersonMessage>,
    read: HashSet<String>,
}

impl Inbox {
    async fn connect(relay: &RelayHandle, device: &str) -> Inbox {
        let config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device(device);
        let person = PersonClient::connect(config).await.expect("the person connects");
        Inbox { person, messages: VecDeque::new(), read: HashSet::new() }
    }

    /// Waits for the next event and files it.
    async fn pump(&mut self, waiting_for: &str) {
        match self.person.next_event(WAIT).await {
            Ok(PersonEvent::Message(message)) => self.messages.push_back(message),
            Ok(PersonEvent::Read(receipt)) => {
                self.read.insert(receipt.message_id);
            }
            Ok(_) => {}
            Err(error) => panic!("waiting for {waiting_for}: {error}"),
        }
    }

    /// The next message from the agent.
    async fn message(&mut self) -> PersonMessage {
        loop {
            if let Some(message) = self.messages.pop_front() {
                return message;
            }
            self.pump("a message").await;
        }
    }

    /// Waits until the agent acknowledged `message_id` (the relay reports it read).
    async fn read(&mut self, message_id: &str) {
        while !self.read.contains(message_id) {
            self.pump("a read receipt").await;
        }
    }

    /// Asserts that no message arrives for a while (read receipts are filed).
    async fn quiet(&mut self) {
        let deadline = Instant::now() + QUIET;
        loop {
            if let Some(message) = self.messages.pop_front() {
                panic!("unexpected message {:?}", message.text);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.person.next_event(left).await {
                Ok(PersonEvent::Message(message)) => panic!("unexpected message {:?}", message.text),
                Ok(PersonEvent::Read(receipt)) => {
                    self.read.insert(receipt.message_id);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    fn send(&self, conversation: &str, text: &str) -> String {
        self.person.send_text(conversation, AGENT, text).expect("the person sends")
    }
}

/// The relay, a person on device `phone`, and their conversation with the agent.
struct World {
    relay: RelayHandle,
    inbox: Inbox,
    conversation: String,
}

impl World {
    async fn new() -> World {
        let config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN);
        let relay = Relay::spawn(config).await.expect("the relay starts");
        let inbox = Inbox::connect(&relay, "phone").await;
        let conversation = inbox.person.create_conversation(&[AGENT], false).await.expect("a conversation");
        World { relay, inbox, conversation }
    }

    /// The agent of this relay on runtime `H`, with fast reconnects.
    fn agent<H: Harness>(&self, behaviour: &Behaviour) -> Running {
        let config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(self.relay.base_url()).expect("a base URL");
        H::start(config, fast_backoff(), behaviour.clone())
    }

    fn send(&self, text: &str) -> String {
        self.inbox.send(&self.conversation, text)
    }

    /// Closes the agent (which must return `Ok` promptly), the person and the relay.
    async fn finish<H: Harness>(self, agent: Running) {
        close::<H>(agent).await;
        self.inbox.person.close().await;
        self.relay.shutdown().await;
    }
}

fn fast_backoff() -> AgentConfig {
    AgentConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
        ..AgentConfig::new(AGENT)
    }
}

/// Closes `agent` and checks that `connect` returned `Ok` within [`PROMPT`].
async fn close<H: Harness>(agent: Running) {
    agent.close();
    match agent.finished(PROMPT).await {
        Some(Ok(())) => {}
        Some(Err(error)) => panic!("{}: connect returned {error}", H::NAME),
        None => panic!("{}: connect had not returned {PROMPT:?} after close", H::NAME),
    }
}

/// Waits until `condition` holds, at most [`WAIT`].
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A message is answered, linked to it, and acknowledged.
pub fn echo<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);
        let sent = world.send("hello");
        let reply = world.inbox.message().await;
        assert_eq!(reply.text, "Received: hello");
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()));
        world.inbox.read(&sent).await;
        assert_eq!(behaviour.calls_for(&sent), 1);
        world.finish::<H>(agent).await;
    });
}

/// The answer the person gives to each kind; `None`: the person dismisses it.
fn answer_for(kind: WidgetKind) -> Option<Value> {
    match kind {
        WidgetKind::Confirm => Some(json!(true)),
        WidgetKind::Choice => Some(json!("b")),
        WidgetKind::Permission => Some(json!("session")),
        WidgetKind::Form => Some(json!({"name": "Ada"})),
        // A progress bar asks nothing: the person closes it.
        WidgetKind::Progress => None,
        WidgetKind::FilePicker => Some(json!(["notes.txt"])),
        WidgetKind::DateTime => Some(json!("2026-11-25T10:00:00Z")),
    }
}

/// Every widget kind is shown and answered, and each answer reaches the agent.
pub fn every_widget_kind<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);
        world.send(behaviour::WIDGETS);
        let mut shown = Vec::new();
        for _ in 0..7 {
            let message = world.inbox.message().await;
            let widget = message.widget.unwrap_or_else(|| panic!("expected a widget, got {:?}", message.text));
            shown.push((widget.kind, widget.id));
        }
        let kinds: Vec<&str> = shown.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(kinds, ["confirm", "choice", "permission", "form", "progress", "file-picker", "datetime"]);

        let mut expected = BTreeSet::new();
        for (kind, widget_ref) in &shown {
            let person = &world.inbox.person;
            match answer_for(*kind) {
                Some(value) => {
                    person.answer_widget(&world.conversation, AGENT, widget_ref, value.clone()).expect("an answer");
                    expected.insert(format!("answered {widget_ref}: {value}"));
                }
                None => {
                    person.cancel_widget(&world.conversation, AGENT, widget_ref).expect("a dismissal");
                    expected.insert(format!("dismissed {widget_ref}"));
                }
            }
        }
        let mut answered = BTreeSet::new();
        for _ in 0..7 {
            answered.insert(world.inbox.message().await.text);
        }
        assert_eq!(answered, expected);
        world.finish::<H>(agent).await;
    });
}

/// A widget is shown, then changed by reference.
pub fn widget_update<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);
        world.send(behaviour::PROGRESS);
        let shown = world.inbox.message().await.widget.expect("a progress bar");
        assert_eq!(shown.kind, WidgetKind::Progress);
        let message = world.inbox.message().await;
        let update = message.widget_update.unwrap_or_else(|| panic!("expected an update, got {:?}", message.text));
        assert_eq!(update.widget_ref, shown.id);
        let spec = update.patch.get("spec").expect("a new spec");
        assert_eq!(spec.get("title"), Some(&json!(DONE_TITLE)));
        assert_eq!(spec.get("value"), Some(&json!(100)));
        world.finish::<H>(agent).await;
    });
}

/// A reply goes to the device that wrote, and only there.
pub fn reply_to_source_device<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let mut laptop = Inbox::connect(&world.relay, "laptop").await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);

        let from_phone = world.send("from the phone");
        let reply = world.inbox.message().await;
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(from_phone.as_str()));
        assert_eq!(reply.to_device_id.as_deref(), Some("phone"));

        let from_laptop = laptop.send(&world.conversation, "from the laptop");
        let reply = laptop.message().await;
        assert_eq!(
            reply.reply_to_message_id.as_deref(),
            Some(from_laptop.as_str()),
            "the phone's reply reached the laptop"
        );
        assert_eq!(reply.to_device_id.as_deref(), Some("laptop"));
        world.inbox.quiet().await;
        laptop.quiet().await;

        laptop.person.close().await;
        world.finish::<H>(agent).await;
    });
}

/// The relay drops the agent mid-conversation, twice; messages sent meanwhile are queued and
/// each is handled exactly once and answered, and nothing stays queued.
///
/// The drops happen while the agent has nothing in flight. A reply written in the very instant
/// the connection dies can be lost (the relay does not acknowledge what an agent sends, on any
/// runtime or in the official SDK), so a drop in the middle of a handler is not a case with a
/// deterministic outcome; what the protocol guarantees, and this case checks, is that no message
/// *to* the agent is lost or handled again once accepted.
pub fn relay_drop_mid_conversation<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);
        let mut sent = Vec::new();

        sent.push(world.send("one"));
        assert_eq!(world.inbox.message().await.text, "Received: one");
        world.inbox.read(&sent[0]).await;

        // Two messages arrive while the agent reconnects.
        world.relay.disconnect_agent(AGENT).await;
        sent.push(world.send("two"));
        sent.push(world.send("three"));
        assert_eq!(world.inbox.message().await.text, "Received: two");
        assert_eq!(world.inbox.message().await.text, "Received: three");
        world.inbox.read(&sent[1]).await;
        world.inbox.read(&sent[2]).await;

        // And again: a second drop is recovered from like the first.
        world.relay.disconnect_agent(AGENT).await;
        sent.push(world.send("four"));
        assert_eq!(world.inbox.message().await.text, "Received: four");
        world.inbox.read(&sent[3]).await;
        world.inbox.quiet().await;

        for id in &sent {
            let calls = behaviour.calls_for(id);
            assert_eq!(calls, 1, "{}: message {id} handled {calls} times", H::NAME);
        }
        assert_eq!(behaviour.calls().len(), sent.len());
        assert_eq!(world.relay.pending_for_agent(AGENT), 0, "every message acknowledged");
        assert!(agent.is_connected(), "reconnected");
        world.finish::<H>(agent).await;
    });
}

/// Against an endpoint that accepts and drops every connection, the agent retries with the
/// core's backoff: bounded delays spread by jitter, never a tight loop.
pub fn reconnect_backs_off_with_jitter<H: Harness>() {
    run(async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let base_url = format!("http://{}", listener.local_addr().expect("its address"));
        listener.set_nonblocking(true).expect("non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let attempts = std::thread::spawn(move || {
            let mut attempts = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    // Dropping the stream fails the WebSocket handshake: a failed connect.
                    Ok((_stream, _)) => attempts.push(Instant::now()),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            attempts
        });

        let core = AgentConfig {
            backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(400) },
            ..AgentConfig::new(AGENT)
        };
        let config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(base_url).expect("a base URL");
        let agent = H::start(config, core, Behaviour::new());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!agent.is_connected());
        close::<H>(agent).await;
        stop.store(true, Ordering::SeqCst);
        let attempts = attempts.join().expect("the listener thread");

        let gaps: Vec<Duration> = attempts.windows(2).map(|pair| pair[1] - pair[0]).collect();
        let name = H::NAME;
        // Ceilings 100, 200, 400, 400, ... ms: in 2.5 s at least four attempts, and without
        // backoff there would be thousands.
        assert!(attempts.len() >= 4, "{name}: only {} attempts: {gaps:?}", attempts.len());
        assert!(attempts.len() <= 60, "{name}: {} attempts in 2.5 s: no backoff", attempts.len());
        // No delay beyond the ceiling (plus scheduling slack): the runtime honours the deadline.
        assert!(
            gaps.iter().all(|gap| *gap < Duration::from_millis(900)),
            "{name}: a delay beyond the ceiling: {gaps:?}"
        );
        // Full jitter: the delays differ.
        let distinct: BTreeSet<u128> = gaps.iter().map(|gap| gap.as_millis() / 5).collect();
        assert!(distinct.len() > 1, "{name}: every delay the same, no jitter: {gaps:?}");
    });
}

/// A handler that fails leaves the message unacknowledged; it comes back on replay after a
/// drop, and once accepted never again.
pub fn failing_handler_is_replayed<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        // Sent while the agent is offline: the relay queues it.
        let sent = world.send(behaviour::FAIL_ONCE);
        let agent = world.agent::<H>(&behaviour);

        wait_until("the first attempt", || behaviour.calls_for(&sent) == 1).await;
        world.inbox.quiet().await;
        assert!(!world.inbox.read.contains(&sent), "{}: a failed message was acknowledged", H::NAME);
        assert_eq!(world.relay.pending_for_agent(AGENT), 1, "the relay still holds it");

        world.relay.disconnect_agent(AGENT).await;
        let reply = world.inbox.message().await;
        assert_eq!(reply.text, "handled on attempt 2");
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()));
        world.inbox.read(&sent).await;

        // Accepted: another drop replays nothing.
        world.relay.disconnect_agent(AGENT).await;
        let after = world.send("after the drop");
        assert_eq!(world.inbox.message().await.text, "Received: after the drop");
        world.inbox.read(&after).await;
        assert_eq!(behaviour.calls_for(&sent), 2, "{}: handled again after it was accepted", H::NAME);
        assert_eq!(world.relay.pending_for_agent(AGENT), 0);
        world.finish::<H>(agent).await;
    });
}

/// Closing returns `Ok` promptly — connected, retrying, or in the middle of a handshake that
/// never completes — and the agent stops consuming.
pub fn shutdown_is_prompt_and_clean<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);
        let sent = world.send("hello");
        assert_eq!(world.inbox.message().await.text, "Received: hello");
        world.inbox.read(&sent).await;
        close::<H>(agent).await;

        // Closed means gone: a new message stays queued at the relay, unhandled.
        let after = world.send("anyone there?");
        world.inbox.quiet().await;
        assert_eq!(world.relay.pending_for_agent(AGENT), 1);
        assert_eq!(behaviour.calls_for(&after), 0);

        // While retrying against a relay that is gone.
        let base_url = world.relay.base_url();
        world.inbox.person.close().await;
        world.relay.shutdown().await;
        let config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(base_url).expect("a base URL");
        let retrying = H::start(config, fast_backoff(), Behaviour::new());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!retrying.is_connected());
        close::<H>(retrying).await;

        // While the handshake hangs: the kernel accepts the connection, nothing ever answers,
        // and the connect deadline is far longer than "promptly".
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let base_url = format!("http://{}", silent.local_addr().expect("its address"));
        let config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(base_url).expect("a base URL");
        let connecting = H::start(config, fast_backoff(), Behaviour::new());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!connecting.is_connected());
        close::<H>(connecting).await;
        drop(silent);
    });
}

/// A handler sends several messages and widgets before returning, without deadlocking on the
/// core's lock.
pub fn handler_sends_a_burst<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);
        let sent = world.send(behaviour::BURST);
        let mut got = Vec::new();
        for _ in 0..5 {
            let message = world.inbox.message().await;
            got.push(message.widget.map(|widget| widget.kind.as_str().to_owned()).unwrap_or(message.text));
        }
        assert_eq!(got, ["part 1", "part 2", "part 3", "choice", "progress"]);
        world.inbox.read(&sent).await;
        world.finish::<H>(agent).await;
    });
}

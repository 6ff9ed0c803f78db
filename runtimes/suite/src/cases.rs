//! The cases, each generic over the runtime's [`Harness`]. Every case runs the relay and the
//! person on a tokio runtime of its own, starts the agent with `H`, and ends by closing the
//! agent, which must return `Ok` promptly.

use crate::behaviour::{self, Behaviour, CONFIRM_TITLE, DONE_TITLE, echo_caption, echo_name};
use crate::harness::{Harness, Running};
use crate::waiting::{run, wait_until};
use pacerelle_core::Attachment;
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::attachment::FileMetadata;
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::human::{PersonEvent, PersonMessage};
use pacerelle_core::widget::WidgetKind;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod burst;
mod retries;
mod trust;
pub use burst::a_burst_is_committed_together;
pub use retries::{
    a_failing_handler_is_retried_on_the_same_connection, a_handler_that_always_fails_is_given_up_and_left_pending,
    without_a_handler_messages_stay_pending,
};
pub use trust::{an_impostor_is_announced_and_refused_until_trusted, hostile_frames_are_refused_and_reported};

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

/// The person's side of a conversation: what arrived and was not looked at yet.
struct Inbox {
    person: PersonClient,
    messages: VecDeque<PersonMessage>,
    read: HashSet<String>,
}

impl Inbox {
    /// The person on `device`, with end-to-end encryption when `e2ee`.
    async fn connect(relay: &RelayHandle, device: &str, e2ee: bool) -> Inbox {
        let mut config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device(device);
        if e2ee {
            config = config.encrypted();
        }
        let person = PersonClient::connect(config).await.expect("the person connects");
        Inbox { person, messages: VecDeque::new(), read: HashSet::new() }
    }

    /// Waits for the next event and files it. A refused frame or a failed call (such as the
    /// fetch of the agent's bundle, which drops the messages waiting for a session) fails the
    /// case at once, rather than as a timeout.
    async fn pump(&mut self, waiting_for: &str) {
        match self.person.next_event(WAIT).await {
            Ok(PersonEvent::Message(message)) => self.messages.push_back(message),
            Ok(PersonEvent::Read(receipt)) => {
                self.read.insert(receipt.message_id);
            }
            Ok(event @ (PersonEvent::Refused(_) | PersonEvent::RequestFailed { .. })) => {
                panic!("waiting for {waiting_for}: {event:?}")
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
                Ok(event @ (PersonEvent::Refused(_) | PersonEvent::RequestFailed { .. })) => {
                    panic!("unexpected {event:?}")
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
    /// Whether the person and the agent use end-to-end encryption.
    e2ee: bool,
}

impl World {
    /// Without end-to-end encryption.
    async fn new() -> World {
        World::with(false).await
    }

    /// With end-to-end encryption on both sides.
    async fn encrypted() -> World {
        World::with(true).await
    }

    async fn with(e2ee: bool) -> World {
        let config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN);
        let relay = Relay::spawn(config).await.expect("the relay starts");
        let inbox = Inbox::connect(&relay, "phone", e2ee).await;
        let conversation = inbox.person.create_conversation(&[AGENT], false).await.expect("a conversation");
        World { relay, inbox, conversation, e2ee }
    }

    /// The agent of this relay on runtime `H`, with fast reconnects (and end-to-end encryption
    /// when the world has it).
    fn agent<H: Harness>(&self, behaviour: &Behaviour) -> Running {
        self.agent_with::<H>(behaviour, fast_backoff())
    }

    /// Like [`World::agent`], with the core's settings `core`.
    fn agent_with<H: Harness>(&self, behaviour: &Behaviour, core: AgentConfig) -> Running {
        let mut config =
            ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(self.relay.base_url()).expect("a base URL");
        config.e2ee = self.e2ee;
        H::start(config, core, behaviour.clone())
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
        let mut laptop = Inbox::connect(&world.relay, "laptop", false).await;
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

/// The file the person sends: a real name and type the relay must not learn, and contents no
/// blob may show.
const FILE_NAME: &str = "figures-q3.csv";
const FILE_MIME: &str = "text/csv";
const FILE_CAPTION: &str = "the quarterly figures, as promised";
const FILE_BYTES: &[u8] = b"region,revenue\nnorth,4217\nsouth,3980\n# confidential: never for the relay\n";
const FILE_DIMENSIONS: (u64, u64) = (640, 480);

/// What a file each way leaves to check in what crossed the relay.
struct FileExchange {
    /// The attachment as the agent's handler received it (with its key).
    at_agent: Attachment,
    /// The agent's file as the person received it (with its key).
    at_person: Attachment,
}

/// The person sends a file with a caption; the agent's handler receives its real metadata,
/// downloads and decrypts it, and sends the bytes back reversed as a reply; the person receives
/// that with its real metadata and decrypts it. Both messages are acknowledged.
async fn file_each_way<H: Harness>(world: &mut World, behaviour: &Behaviour) -> FileExchange {
    let name = H::NAME;
    let (width, height) = FILE_DIMENSIONS;
    let metadata = FileMetadata {
        name: FILE_NAME.into(),
        mime: FILE_MIME.into(),
        width: Some(width),
        height: Some(height),
        duration_ms: None,
    };
    let sent = world
        .inbox
        .person
        .send_file(&world.conversation, AGENT, FILE_CAPTION, FILE_BYTES, metadata)
        .await
        .expect("the person sends a file");
    let echo = world.inbox.message().await;

    // What the agent's handler saw and read.
    let call = behaviour.call(&sent).unwrap_or_else(|| panic!("{name}: the file message was not handled"));
    assert_eq!(call.text, FILE_CAPTION, "{name}: the caption");
    assert_eq!(call.encrypted, world.e2ee, "{name}: the file message's encryption");
    let [at_agent] = call.attachments.as_slice() else {
        panic!("{name}: expected one attachment, the handler saw {:?}", call.attachments)
    };
    assert_eq!(
        (at_agent.name.as_str(), at_agent.mime.as_str(), at_agent.size),
        (FILE_NAME, FILE_MIME, FILE_BYTES.len() as u64),
        "{name}: the handler sees the real metadata"
    );
    assert_eq!((at_agent.width, at_agent.height), (Some(width), Some(height)), "{name}: the dimensions");
    let downloads: Vec<_> = behaviour.downloads().into_iter().filter(|download| download.message_id == sent).collect();
    let [download] = downloads.as_slice() else { panic!("{name}: expected one download, got {downloads:?}") };
    assert_eq!(download.attachment_id, at_agent.id);
    assert_eq!(download.result.as_deref(), Ok(FILE_BYTES), "{name}: the agent decrypts the person's file");

    // What the person got back.
    let mut reversed = FILE_BYTES.to_vec();
    reversed.reverse();
    assert_eq!(echo.text, echo_caption(FILE_NAME), "{name}: the agent's caption");
    assert_eq!(echo.reply_to_message_id.as_deref(), Some(sent.as_str()), "{name}: linked to the file message");
    assert_eq!(echo.to_device_id.as_deref(), Some("phone"), "{name}: to the device that sent the file");
    assert_eq!(echo.encrypted, world.e2ee, "{name}: the agent's file message's encryption");
    let [at_person] = echo.attachments.as_slice() else {
        panic!("{name}: expected one attachment, the person got {:?}", echo.attachments)
    };
    let expected_name = echo_name(FILE_NAME);
    assert_eq!(
        (at_person.name.as_str(), at_person.mime.as_str(), at_person.size),
        (expected_name.as_str(), FILE_MIME, reversed.len() as u64),
        "{name}: the person sees the real metadata"
    );
    assert_eq!((at_person.width, at_person.height), (Some(width), Some(height)), "{name}: the dimensions");
    let bytes = world.inbox.person.download_attachment(at_person).await.expect("the person downloads the file");
    assert_eq!(bytes, reversed, "{name}: the person decrypts the agent's file");

    world.inbox.read(&sent).await;
    assert_eq!(behaviour.calls_for(&sent), 1, "{name}: the file message handled once");
    FileExchange { at_agent: at_agent.clone(), at_person: at_person.clone() }
}

/// The file each way left on the relay only redacted envelope entries and ciphertext blobs:
/// exactly two MSG frames with attachments, each entry `attachment`,
/// `application/octet-stream`, the plaintext size and a blob; exactly two blobs, each the
/// file's length plus the 16-byte tag, and nowhere the file's bytes, either way round.
fn assert_files_hidden(name: &str, observed: &[Vec<u8>]) {
    let with_files: Vec<Value> = msg_frames(observed)
        .into_iter()
        .filter(|frame| frame.get("attachments").and_then(Value::as_array).is_some_and(|list| !list.is_empty()))
        .collect();
    assert_eq!(with_files.len(), 2, "{name}: one file message each way: {with_files:?}");
    for frame in &with_files {
        let entries = frame["attachments"].as_array().expect("a list");
        assert_eq!(entries.len(), 1, "{name}: {frame}");
        let entry = &entries[0];
        assert_eq!(entry["name"], json!("attachment"), "{name}: the envelope hides the name: {entry}");
        assert_eq!(entry["mime"], json!("application/octet-stream"), "{name}: the envelope hides the type: {entry}");
        assert_eq!(entry["size"], json!(FILE_BYTES.len()), "{name}: {entry}");
        assert!(entry["blob_id"].as_str().is_some_and(|id| !id.is_empty()), "{name}: a blob: {entry}");
    }
    let blobs: Vec<&Vec<u8>> = observed.iter().filter(|item| serde_json::from_slice::<Value>(item).is_err()).collect();
    let lengths: Vec<usize> = blobs.iter().map(|blob| blob.len()).collect();
    assert_eq!(lengths, [FILE_BYTES.len() + 16; 2], "{name}: two uploads, ciphertext and tag");
    let mut reversed = FILE_BYTES.to_vec();
    reversed.reverse();
    for contents in [FILE_BYTES, reversed.as_slice()] {
        let seen = leaks(observed, contents);
        assert!(seen.is_empty(), "{name}: the file's plaintext crossed the relay: {seen:?}");
    }
}

/// The MSG frames the relay received, from either side.
pub(crate) fn msg_frames(observed: &[Vec<u8>]) -> Vec<Value> {
    frames_of_type(observed, "MSG")
}

/// The socket frames of type `kind` the relay received, from either side, in order.
pub(crate) fn frames_of_type(observed: &[Vec<u8>], kind: &str) -> Vec<Value> {
    observed
        .iter()
        .filter_map(|item| serde_json::from_slice::<Value>(item).ok())
        .filter(|frame| frame.get("type") == Some(&json!(kind)))
        .collect()
}

/// Where `needle` shows in what crossed the relay: in the raw bytes of a frame or blob, in a
/// JSON string of a frame, or in the decoding of a JSON string that is base64 (a plaintext
/// payload is only base64). Empty when nowhere.
pub(crate) fn leaks(observed: &[Vec<u8>], needle: impl AsRef<[u8]>) -> Vec<String> {
    let needle = needle.as_ref();
    let contains = |haystack: &[u8]| haystack.windows(needle.len()).any(|window| window == needle);
    let mut found = Vec::new();
    for (index, item) in observed.iter().enumerate() {
        if contains(item) {
            found.push(format!("item {index}, raw"));
        }
        let Ok(json) = serde_json::from_slice::<Value>(item) else { continue };
        let mut strings = Vec::new();
        json_strings(&json, &mut strings);
        for string in strings {
            if contains(string.as_bytes()) {
                found.push(format!("item {index}, in {string:?}"));
            } else if base64_decode(string).is_some_and(|decoded| contains(&decoded)) {
                found.push(format!("item {index}, inside base64 {string:?}"));
            }
        }
    }
    found
}

/// Every string in `value`, keys included.
fn json_strings<'a>(value: &'a Value, strings: &mut Vec<&'a str>) {
    match value {
        Value::String(string) => strings.push(string),
        Value::Array(items) => items.iter().for_each(|item| json_strings(item, strings)),
        Value::Object(object) => {
            for (key, item) in object {
                strings.push(key);
                json_strings(item, strings);
            }
        }
        _ => {}
    }
}

/// Standard padded base64 (what `payload_b64` and the bundle's keys use); `None` when `text`
/// is not that.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let unpadded = bytes.strip_suffix(b"==").or_else(|| bytes.strip_suffix(b"=")).unwrap_or(bytes);
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for byte in unpadded {
        let sextet = ALPHABET.iter().position(|symbol| symbol == byte)?;
        bits = (bits << 6) | sextet as u32;
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
        }
    }
    Some(out)
}

/// The person sends a file the agent reads, and the agent sends one back, without end-to-end
/// encryption: the files themselves are still encrypted (AES-256-GCM, a fresh key each), their
/// keys and real metadata travel in the `chat.message` payload, and the relay's envelope
/// entries are redacted.
pub fn a_file_each_way<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);
        let exchange = file_each_way::<H>(&mut world, &behaviour).await;
        assert_eq!(agent.verification_code(), None, "{}: a verification code without e2ee", H::NAME);

        let observed = world.relay.observed();
        assert_files_hidden(H::NAME, &observed);
        for frame in msg_frames(&observed) {
            assert_eq!(frame["encrypted"], json!(false), "{}: {frame}", H::NAME);
        }
        // Without end-to-end encryption the payload is only base64: the caption, the real name
        // and the keys are readable there (as in the official SDK). That `leaks` finds them is
        // also what shows it can see through base64, for `encryption_on`.
        let keys = [&exchange.at_agent, &exchange.at_person].map(|attachment| attachment.key_b64.clone());
        let [Some(agent_key), Some(person_key)] = keys else { panic!("attachments without keys: {keys:?}") };
        for needle in [FILE_CAPTION, FILE_NAME, FILE_MIME, &agent_key, &person_key] {
            assert!(
                !leaks(&observed, needle).is_empty(),
                "{}: {needle:?} not found in the plaintext payloads",
                H::NAME
            );
        }
        world.finish::<H>(agent).await;
    });
}

/// What the person writes from the phone in `encryption_on`.
const SECRET_HELLO: &str = "hello through the ratchet";
/// What the person writes from the laptop in `encryption_on`.
const SECRET_FROM_LAPTOP: &str = "and this from the laptop";

/// The whole conversation with end-to-end encryption on both sides: the agent's verification
/// code matches its published identity; a message is answered, linked and acknowledged; a
/// widget is shown and answered; a file goes each way; a reply goes to the device that wrote.
/// Every MSG that crossed the relay is encrypted, and no text, widget, file name, type, key or
/// contents can be read in what it saw.
pub fn encryption_on<H: Harness>() {
    run(async {
        let name = H::NAME;
        let mut world = World::encrypted().await;
        let behaviour = Behaviour::new();
        let agent = world.agent::<H>(&behaviour);
        // The agent publishes its prekeys before it opens its socket; people start their
        // sessions from them.
        wait_until("the agent to publish its prekeys and connect", || agent.is_connected()).await;

        // The code the agent shows is the one the person's app derives from its published key.
        let code = agent.verification_code().unwrap_or_else(|| panic!("{name}: no verification code with e2ee"));
        let bundle = world.inbox.person.fetch_bundle(AGENT).await.expect("the agent's bundle");
        let identity = base64_decode(&bundle.bundle.identity_key).expect("a base64 identity key");
        assert_eq!(identity.len(), 33);
        assert_eq!(code, pacerelle_core::e2ee::bundle::verification_code(&identity), "{name}: the verification code");

        // Echo.
        let sent = world.send(SECRET_HELLO);
        let reply = world.inbox.message().await;
        assert_eq!(reply.text, format!("Received: {SECRET_HELLO}"), "{name}");
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()), "{name}: linked");
        assert!(reply.encrypted, "{name}: the reply arrived in plaintext");
        world.inbox.read(&sent).await;
        let call = behaviour.call(&sent).unwrap_or_else(|| panic!("{name}: not handled"));
        assert!(call.encrypted && call.text == SECRET_HELLO, "{name}: the handler saw {call:?}");
        assert_eq!(behaviour.calls_for(&sent), 1);

        // A widget and its answer.
        let asked = world.send(behaviour::CONFIRM);
        let shown = world.inbox.message().await;
        assert!(shown.encrypted, "{name}: the widget arrived in plaintext");
        let widget = shown.widget.unwrap_or_else(|| panic!("{name}: expected a widget, got {:?}", shown.text));
        assert_eq!(widget.kind, WidgetKind::Confirm);
        assert_eq!(widget.spec.get("title"), Some(&json!(CONFIRM_TITLE)));
        world.inbox.read(&asked).await;
        let answer =
            world.inbox.person.answer_widget(&world.conversation, AGENT, &widget.id, json!(true)).expect("an answer");
        let answered = world.inbox.message().await;
        assert_eq!(answered.text, format!("answered {}: true", widget.id), "{name}: the answer reached the agent");
        assert_eq!(answered.reply_to_message_id.as_deref(), Some(answer.as_str()));
        assert!(answered.encrypted, "{name}: the answer's reply arrived in plaintext");
        world.inbox.read(&answer).await;
        let call = behaviour.call(&answer).unwrap_or_else(|| panic!("{name}: the answer was not handled"));
        assert!(call.encrypted, "{name}: the answer reached the agent in plaintext");

        // A file each way.
        let exchange = file_each_way::<H>(&mut world, &behaviour).await;

        // The post-quantum ratchet is on, at version 1 (never negotiated down).
        let status = world.inbox.person.pq_status(AGENT, &world.conversation).expect("a session with the agent");
        assert!(status.version1, "{name}: SPQR version 1 negotiated");

        // A reply to the device that wrote (its own session).
        let mut laptop = Inbox::connect(&world.relay, "laptop", true).await;
        let from_laptop = laptop.send(&world.conversation, SECRET_FROM_LAPTOP);
        let reply = laptop.message().await;
        assert_eq!(reply.text, format!("Received: {SECRET_FROM_LAPTOP}"), "{name}: the laptop reads the reply");
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(from_laptop.as_str()));
        assert_eq!(reply.to_device_id.as_deref(), Some("laptop"), "{name}: the reply goes to the laptop");
        assert!(reply.encrypted, "{name}: the laptop's reply arrived in plaintext");
        laptop.read(&from_laptop).await;
        world.inbox.quiet().await;
        laptop.quiet().await;

        // What the relay saw.
        let observed = world.relay.observed();
        let msgs = msg_frames(&observed);
        // Five from the person's devices (hello, /confirm, the answer, the file, the laptop's
        // message), five from the agent (their answers).
        assert!(msgs.len() >= 10, "{name}: only {} MSG frames observed", msgs.len());
        for frame in &msgs {
            assert_eq!(frame["encrypted"], json!(true), "{name}: a MSG crossed the relay in plaintext: {frame}");
        }
        assert_files_hidden(name, &observed);
        let keys = [&exchange.at_agent, &exchange.at_person].map(|attachment| attachment.key_b64.clone());
        let [Some(agent_key), Some(person_key)] = keys else { panic!("attachments without keys: {keys:?}") };
        let needles = [
            SECRET_HELLO,
            SECRET_FROM_LAPTOP,
            behaviour::CONFIRM,
            CONFIRM_TITLE,
            "answered ",
            FILE_CAPTION,
            FILE_NAME,
            FILE_MIME,
            "chat.message",
            "widget.standard",
            "widget.response",
            &agent_key,
            &person_key,
        ];
        for needle in needles {
            let seen = leaks(&observed, needle);
            assert!(seen.is_empty(), "{name}: {needle:?} crossed the relay readable: {seen:?}");
        }

        laptop.person.close().await;
        world.finish::<H>(agent).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_padded_standard_only() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGVsbG8h"), Some(b"hello!".to_vec()));
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("aA=="), Some(b"h".to_vec()));
        assert_eq!(base64_decode("aGVsbG8"), None, "unpadded");
        assert_eq!(base64_decode("aGV-bG8="), None, "URL-safe alphabet");
        assert_eq!(base64_decode(""), None);
    }

    #[test]
    fn leaks_are_found_raw_escaped_and_inside_base64() {
        let frame = json!({"type": "MSG", "payload_b64": "c2VjcmV0IHRleHQ=", "note": "a \"quoted\" name"});
        let observed = vec![frame.to_string().into_bytes(), b"\x00blob with secret bytes\xff".to_vec()];
        assert_eq!(leaks(&observed, "secret text").len(), 1, "inside the base64 payload");
        assert_eq!(leaks(&observed, "\"quoted\" name").len(), 1, "a JSON-escaped string");
        assert_eq!(leaks(&observed, "secret bytes"), ["item 1, raw"]);
        assert!(leaks(&observed, "absent").is_empty());
    }
}

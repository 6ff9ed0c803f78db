//! The fail-stop case: an encrypted agent whose store fails at a chosen write stops right there,
//! on every runtime. `connect` returns the store's error promptly, nothing the agent would have
//! sent after the failed write reaches the relay, and the agent restarted from the same store
//! finishes the conversation without using a message key twice.

use crate::behaviour::Behaviour;
use crate::cases::base64_decode;
use crate::harness::{Harness, Running};
use crate::waiting::wait_until;
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::e2ee::message::Framed;
use pacerelle_core::human::{PersonEvent, PersonMessage};
use pacerelle_core::store::{AgentSnapshot, AgentStore, MemoryStore, ReceiptState, StoreChanges};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_runtime_support::ClientError;
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const AGENT: &str = "fail-stop-agent";
const AGENT_TOKEN: &str = "fail-stop-agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
/// What the person writes.
const SECRET: &str = "the launch code is in the blue folder";
/// How long the person waits for anything the agent should send.
const WAIT: Duration = Duration::from_secs(10);
/// How long `connect` may take to return after the failed write (or a close): "promptly".
const PROMPT: Duration = Duration::from_secs(2);
/// How long the person listens to be sure that nothing more arrives.
const QUIET: Duration = Duration::from_millis(300);
/// The error the failing store reports.
const DISK_FULL: &str = "disk full";

/// The write at which the store fails (and every write after it, until a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailingWrite {
    /// During publication: the write that stores the private halves of the prekeys about to
    /// be published.
    Prekeys,
    /// A message's receipt: the write of its pending receipt and its session's new state,
    /// before the handler sees it.
    Receipt,
    /// The handler's reply: the write of the session step that encrypts it, before it goes out.
    ReplySession,
    /// The acceptance: the write that marks the message accepted, before its acknowledgement.
    Acceptance,
}

impl FailingWrite {
    /// Every point the case tries, in the order a conversation reaches them.
    pub const ALL: [FailingWrite; 4] =
        [FailingWrite::Prekeys, FailingWrite::Receipt, FailingWrite::ReplySession, FailingWrite::Acceptance];

    /// Whether `changes` is this write.
    pub fn matches(self, changes: &StoreChanges) -> bool {
        let receipt = |pending: bool| {
            changes.put_receipts.iter().any(|receipt| matches!(receipt.state, ReceiptState::Pending { .. }) == pending)
        };
        match self {
            FailingWrite::Prekeys => !changes.e2ee.put_prekeys.is_empty(),
            FailingWrite::Receipt => receipt(true),
            FailingWrite::ReplySession => changes.put_receipts.is_empty() && !changes.e2ee.put_sessions.is_empty(),
            FailingWrite::Acceptance => receipt(false),
        }
    }

    /// How many times the handler ran before the failed write.
    fn calls_before(self) -> usize {
        match self {
            FailingWrite::Prekeys | FailingWrite::Receipt => 0,
            FailingWrite::ReplySession | FailingWrite::Acceptance => 1,
        }
    }
}

/// Where the agent's stores keep their state: clones share it, so an agent restarted on it
/// continues from what its predecessor stored.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    contents: Arc<Mutex<MemoryStore>>,
    failed: Arc<AtomicBool>,
}

impl Disk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store on this disk that fails at `failing` and every write after it (`None`: never).
    pub fn store(&self, failing: Option<FailingWrite>) -> DiskStore {
        DiskStore { disk: self.clone(), failing, failed: false }
    }

    /// Whether a store on this disk refused a write.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// What the stores on this disk have committed so far.
    pub fn snapshot(&self) -> AgentSnapshot {
        self.contents().snapshot().clone()
    }

    fn contents(&self) -> MutexGuard<'_, MemoryStore> {
        self.contents.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An agent's store on a [`Disk`]; see [`Disk::store`].
#[derive(Debug)]
pub struct DiskStore {
    disk: Disk,
    failing: Option<FailingWrite>,
    failed: bool,
}

impl AgentStore for DiskStore {
    type Error = std::io::Error;

    fn load(&mut self) -> Result<AgentSnapshot, std::io::Error> {
        Ok(self.disk.contents().snapshot().clone())
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), std::io::Error> {
        if self.failed || self.failing.is_some_and(|failing| failing.matches(changes)) {
            self.failed = true;
            self.disk.failed.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other(DISK_FULL));
        }
        let Ok(()) = AgentStore::apply(&mut *self.disk.contents(), changes);
        Ok(())
    }
}

/// The person, and what reached them.
struct Person {
    client: PersonClient,
    conversation: String,
    messages: VecDeque<PersonMessage>,
    read: HashSet<String>,
}

impl Person {
    /// Waits for the next event and files it; a refusal or a failed call fails the case.
    async fn pump(&mut self, waiting_for: &str) {
        match self.client.next_event(WAIT).await {
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

    async fn message(&mut self, name: &str) -> PersonMessage {
        loop {
            if let Some(message) = self.messages.pop_front() {
                return message;
            }
            self.pump(&format!("{name}: a message")).await;
        }
    }

    async fn read(&mut self, name: &str, message_id: &str) {
        while !self.read.contains(message_id) {
            self.pump(&format!("{name}: a read receipt")).await;
        }
    }

    /// Listens for a while: no message may arrive (read receipts are filed).
    async fn quiet(&mut self, name: &str) {
        let deadline = Instant::now() + QUIET;
        loop {
            if let Some(message) = self.messages.pop_front() {
                panic!("{name}: unexpected message {:?}", message.text);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.next_event(left).await {
                Ok(PersonEvent::Message(message)) => self.messages.push_back(message),
                Ok(PersonEvent::Read(receipt)) => {
                    self.read.insert(receipt.message_id);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    fn send(&self, text: &str) -> String {
        self.client.send_text(&self.conversation, AGENT, text).expect("the person sends")
    }
}

/// The agent on runtime `H`, encrypted, with fast reconnects, on `store`.
fn start<H: Harness>(relay: &RelayHandle, behaviour: &Behaviour, store: DiskStore) -> Running {
    let mut config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).expect("a base URL");
    config.e2ee = true;
    let core = AgentConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
        ..AgentConfig::new(AGENT)
    };
    H::start_with_store(config, core, behaviour.clone(), Box::new(store))
}

/// The frames the agent sent that the relay received (those addressed to the person), by type.
fn from_agent(relay: &RelayHandle) -> Vec<Value> {
    relay
        .observed()
        .iter()
        .filter_map(|item| serde_json::from_slice::<Value>(item).ok())
        .filter(|frame| frame["to"] == json!(PERSON))
        .collect()
}

fn of_type<'a>(frames: &'a [Value], kind: &str) -> Vec<&'a Value> {
    frames.iter().filter(|frame| frame["type"] == json!(kind)).collect()
}

/// A store that fails at each [`FailingWrite`] in turn stops the agent there: `connect` returns
/// the store's error within two seconds of the failure; the relay received nothing the agent
/// would have sent after it (no publication, reply or acknowledgement, and the handler was not
/// called for a message whose receipt was not stored); the message stays queued. Restarted on
/// the same, now working, store, the agent handles the replayed message, the person reads the
/// reply, and no two of the agent's ciphertexts share a ratchet key and counter.
pub fn store_failure_is_fail_stop<H: Harness>() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        for failing in FailingWrite::ALL {
            fail_stop_at::<H>(failing).await;
        }
    });
}

async fn fail_stop_at<H: Harness>(failing: FailingWrite) {
    let name = format!("{}, store failing at {failing:?}", H::NAME);
    let name = name.as_str();
    let config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN);
    let relay = Relay::spawn(config).await.expect("the relay starts");
    let config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device("phone").encrypted();
    let client = PersonClient::connect(config).await.expect("the person connects");
    let conversation = client.create_conversation(&[AGENT], false).await.expect("a conversation");
    let mut person = Person { client, conversation, messages: VecDeque::new(), read: HashSet::new() };
    let disk = Disk::new();
    let behaviour = Behaviour::new();

    let agent = start::<H>(&relay, &behaviour, disk.store(Some(failing)));
    let sent = if failing == FailingWrite::Prekeys {
        None
    } else {
        wait_until("the agent to publish its prekeys and connect", || agent.is_connected()).await;
        Some(person.send(SECRET))
    };
    wait_until("the store to fail", || disk.has_failed()).await;
    match agent.finished(PROMPT).await {
        Some(Err(ClientError::Store(error))) => {
            assert!(error.to_string().contains(DISK_FULL), "{name}: connect returned another store error: {error}")
        }
        Some(other) => panic!("{name}: connect returned {other:?} after the store failed"),
        None => panic!("{name}: connect had not returned {PROMPT:?} after the store failed"),
    }

    // What the agent did before the failed write, and nothing after it (given the time to show).
    let replies_before = match failing {
        FailingWrite::Acceptance => {
            let reply = person.message(name).await;
            assert_eq!(reply.text, format!("Received: {SECRET}"), "{name}: the reply sent before the failed write");
            1
        }
        FailingWrite::Prekeys | FailingWrite::Receipt | FailingWrite::ReplySession => 0,
    };
    person.quiet(name).await;
    if failing == FailingWrite::Prekeys {
        let fetched = person.client.fetch_bundle(AGENT).await;
        assert!(fetched.is_err(), "{name}: prekeys published after the failed write");
    }
    let frames = from_agent(&relay);
    assert_eq!(of_type(&frames, "MSG").len(), replies_before, "{name}: the agent's messages: {frames:?}");
    assert!(of_type(&frames, "ACK_READ").is_empty(), "{name}: acknowledged after the failed write: {frames:?}");
    if let Some(sent) = &sent {
        assert!(!person.read.contains(sent), "{name}: the person saw the message read");
        assert_eq!(relay.pending_for_agent(AGENT), 1, "{name}: the relay still holds the message");
        assert_eq!(behaviour.calls_for(sent), failing.calls_before(), "{name}: handler calls before the failure");
    }

    // Restarted on the same store, working again: the conversation goes on from what it holds.
    let agent = start::<H>(&relay, &behaviour, disk.store(None));
    let sent = match sent {
        Some(sent) => sent,
        None => {
            wait_until("the restarted agent to publish its prekeys and connect", || agent.is_connected()).await;
            person.send(SECRET)
        }
    };
    let reply = person.message(name).await;
    assert_eq!(reply.text, format!("Received: {SECRET}"), "{name}: the reply after the restart");
    assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()), "{name}: linked");
    assert!(reply.encrypted, "{name}: the reply arrived in plaintext");
    person.read(name, &sent).await;
    person.quiet(name).await;
    assert_eq!(relay.pending_for_agent(AGENT), 0, "{name}: every message acknowledged");
    assert_eq!(behaviour.calls_for(&sent), failing.calls_before() + 1, "{name}: handler calls in all");

    // No message key used twice: every message of the agent's under its own (ratchet key,
    // counter).
    let frames = from_agent(&relay);
    let messages = of_type(&frames, "MSG");
    assert_eq!(messages.len(), replies_before + 1, "{name}: the agent's messages: {frames:?}");
    let mut keys = HashSet::new();
    for frame in messages {
        let payload = frame["payload_b64"].as_str().and_then(base64_decode).expect("a base64 payload");
        let message = match Framed::decode(&payload).expect("a Signal message") {
            Framed::PreKey(prekey) => prekey.message,
            Framed::Whisper(message) => message,
        };
        let key = (message.ratchet_key.serialize(), message.counter);
        assert!(keys.insert(key), "{name}: two messages under one message key (counter {})", message.counter);
    }

    agent.close();
    match agent.finished(PROMPT).await {
        Some(Ok(())) => {}
        Some(Err(error)) => panic!("{name}: connect returned {error} after close"),
        None => panic!("{name}: connect had not returned {PROMPT:?} after close"),
    }
    person.client.close().await;
    relay.shutdown().await;
}

//! Fail-stop on a store failure, without I/O: an encrypted agent ([`AgentState`], the code every
//! runtime runs) and an encrypted person hold a scripted conversation through a relay played by
//! the test, while the agent's store fails at its Nth write, for every N the script reaches.
//!
//! After the failed write the agent must carry out nothing but closing its socket (no frame,
//! acknowledgement, HTTP call, event, connect or wake), and ignore whatever comes next. Restarted
//! from what its store holds, it must finish the conversation: every message the person sent is
//! handled and acknowledged (after the relay replays what was not), every reply decrypts, and no
//! two of the agent's ciphertexts ever share a ratchet key and counter (a message key used
//! twice), across the failed run and its restart.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_core::agent::{Agent, AgentConfig, Event, Input, OutgoingMessage};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::e2ee::message::Framed;
use pacerelle_core::human::{Person, PersonConfig, PersonEvent, PersonInput, PersonOutput};
use pacerelle_core::store::{AgentSnapshot, AgentStore, MemoryStore, StoreChanges};
use pacerelle_core::wire::http::{HttpResponse, OneTimePrekey, OneTimePrekeysBody, PrekeyBundleBody, RequestId};
use pacerelle_core::wire::person::FetchedBundle;
use pacerelle_core::{AgentMessage, Timestamp};
use pacerelle_runtime_support::state::{AgentState, Effect};
use pacerelle_runtime_support::{ClientError, now};
use rand::SeedableRng as _;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

const AGENT: &str = "agent-1";
const PERSON: &str = "u1";
const CONVERSATION: &str = "c1";
/// The person's messages, in batches sent before the agent answers: batches of several make
/// both ratchets turn at different points.
const BATCHES: [usize; 14] = [1, 2, 1, 3, 1, 1, 2, 4, 1, 2, 1, 3, 2, 1];
/// A message whose text contains this gets two replies.
const TWICE: &str = "twice";

/// Why the test's disk refuses a write.
#[derive(Debug, thiserror::Error)]
#[error("disk full at write {0}")]
struct DiskFull(usize);

/// What the agent's store writes to: a memory store that refuses its Nth write and every write
/// after it (a disk that filled up), until the test replaces the disk for the restart.
#[derive(Debug, Clone, Default)]
struct Disk(Arc<Mutex<DiskState>>);

#[derive(Debug, Default)]
struct DiskState {
    store: MemoryStore,
    writes: usize,
    fail_at: Option<usize>,
    failed_at: Option<usize>,
}

impl Disk {
    fn failing_at(fail_at: Option<usize>) -> Self {
        Disk(Arc::new(Mutex::new(DiskState { fail_at, ..Default::default() })))
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn failed(&self) -> bool {
        self.failed_at().is_some()
    }

    /// The first write refused.
    fn failed_at(&self) -> Option<usize> {
        self.lock().failed_at
    }

    fn writes(&self) -> usize {
        self.lock().writes
    }

    /// From now on every write succeeds.
    fn repair(&self) {
        self.lock().fail_at = None;
    }
}

/// The agent's store: every write goes to the [`Disk`].
struct DiskStore(Disk);

impl AgentStore for DiskStore {
    type Error = DiskFull;

    fn load(&mut self) -> Result<AgentSnapshot, DiskFull> {
        Ok(self.0.lock().store.snapshot().clone())
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), DiskFull> {
        let mut disk = self.0.lock();
        disk.writes += 1;
        let write = disk.writes;
        if disk.fail_at.is_some_and(|fail_at| write >= fail_at) {
            disk.failed_at.get_or_insert(write);
            return Err(DiskFull(write));
        }
        let _ = AgentStore::apply(&mut disk.store, changes);
        Ok(())
    }
}

/// What the agent asked for, in order, and what it asked for after its store failed.
#[derive(Default)]
struct Recorder {
    queue: VecDeque<Effect>,
    /// Effects other than closing that came after the failed write: each one a violation.
    after_failure: Vec<String>,
    /// Closes that came after the failed write.
    closes_after_failure: usize,
}

impl Recorder {
    fn record(&mut self, disk: &Disk, effect: Effect) {
        if disk.failed() {
            match &effect {
                Effect::Close => self.closes_after_failure += 1,
                other => self.after_failure.push(describe(other)),
            }
        }
        // Carried out all the same: on code that does not stop, the restart then shows what
        // acting on unpersisted state costs (a message key used twice).
        self.queue.push_back(effect);
    }
}

/// An effect, without message contents.
fn describe(effect: &Effect) -> String {
    match effect {
        Effect::Frame(text) => {
            let frame: Value = serde_json::from_str(text).unwrap_or_default();
            format!("frame {}", frame["type"])
        }
        Effect::Event(Event::Message(message)) => format!("event: message {}", message.id),
        Effect::Event(other) => format!("event {other:?}"),
        Effect::Http(request) => format!("HTTP {} {}", request.method.as_str(), request.path),
        Effect::Connect => "connect".into(),
        Effect::WakeAt(_) => "wake".into(),
        Effect::Close => "close".into(),
        Effect::Ping => "ping".into(),
        Effect::Abandon => "abandon".into(),
    }
}

/// One run of the agent: its state and what it asked for.
struct AgentSide {
    state: AgentState,
    recorder: Recorder,
    disk: Disk,
    /// Whether its socket is open (from a carried-out connect to a close).
    connected: bool,
}

impl AgentSide {
    /// The agent continuing from what `disk` holds, drawing from `seed`, started.
    fn start(disk: &Disk, seed: u64) -> AgentSide {
        let config = ClientConfig { e2ee: true, ..ClientConfig::new(AGENT, "token") };
        let rng = Box::new(rand::rngs::StdRng::seed_from_u64(seed));
        let state = AgentState::open(&config, AgentConfig::new(AGENT), Box::new(DiskStore(disk.clone())), rng)
            .expect("the agent opens");
        let mut side = AgentSide { state, recorder: Recorder::default(), disk: disk.clone(), connected: false };
        let _ = side.command(|agent| agent.start(now()));
        side
    }

    /// Runs an app command, as a handle does.
    fn command<T>(&mut self, command: impl FnOnce(&mut Agent) -> T) -> Result<T, ClientError> {
        let AgentSide { state, recorder, disk, .. } = self;
        state.run(command, |effect| recorder.record(disk, effect))
    }

    fn feed(&mut self, input: Input) {
        let AgentSide { state, recorder, disk, .. } = self;
        state.feed(input, |effect| recorder.record(disk, effect));
    }

    fn settle(&mut self, message_id: &str, outcome: pacerelle_runtime_support::HandlerResult) {
        let AgentSide { state, recorder, disk, .. } = self;
        state.settle(message_id, outcome, |effect| recorder.record(disk, effect));
    }
}

/// The relay, as far as the agent and the person need it.
#[derive(Default)]
struct Relay {
    /// Messages for the agent it has not acknowledged, in the order sent, with the connection
    /// each was last delivered on.
    pending: Vec<(String, String, Option<u32>)>,
    /// The agent's connections so far.
    connection: u32,
    bundle: Option<PrekeyBundleBody>,
    one_time: VecDeque<OneTimePrekey>,
}

impl Relay {
    fn acknowledge(&mut self, message_id: &str) {
        self.pending.retain(|(id, _, _)| id != message_id);
    }
}

/// One run of the script, against a disk failing at `fail_at`.
struct World<'a> {
    run: String,
    disk: Disk,
    agent: AgentSide,
    /// The agent's seed; its restart draws from the next one (a seed used twice would repeat
    /// ratchet keys).
    seed: u64,
    restarted: bool,
    person: Person,
    relay: Relay,
    /// Bundle fetches waiting for a published bundle.
    fetches: Vec<RequestId>,
    /// The person's messages: id and text.
    sent: Vec<(String, String)>,
    /// Messages whose handler succeeded.
    handled: HashSet<String>,
    /// Replies the agent's handler wrote.
    replies_sent: usize,
    /// Replies the person read.
    replies: Vec<String>,
    /// Every ciphertext the agent sent, by (ratchet key, counter), over every run.
    ciphertexts: &'a mut HashMap<(Vec<u8>, u32), Vec<u8>>,
}

fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

impl<'a> World<'a> {
    fn new(fail_at: Option<usize>, seed: u64, ciphertexts: &'a mut HashMap<(Vec<u8>, u32), Vec<u8>>) -> Self {
        let disk = Disk::failing_at(fail_at);
        let agent = AgentSide::start(&disk, seed);
        let config = PersonConfig { e2ee: true, device_id: Some("phone".into()), ..PersonConfig::new(PERSON) };
        let mut person = Person::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed)));
        person.start();
        person.handle_input(at(1), PersonInput::Connected).expect("the person connects");
        World {
            run: fail_at.map_or_else(|| "no failure".to_owned(), |n| format!("failure at write {n}")),
            disk,
            agent,
            seed,
            restarted: false,
            person,
            relay: Relay::default(),
            fetches: Vec::new(),
            sent: Vec::new(),
            handled: HashSet::new(),
            replies_sent: 0,
            replies: Vec::new(),
            ciphertexts,
        }
    }

    /// Runs the whole script.
    fn script(&mut self) {
        self.settle();
        let mut index = 0;
        for batch in BATCHES {
            for _ in 0..batch {
                index += 1;
                let text =
                    if index % 5 == 2 { format!("message {index}, {TWICE}") } else { format!("message {index}") };
                let id = self.person.send_text(CONVERSATION, AGENT, &text).expect("the person sends");
                self.sent.push((id, text));
            }
            self.settle();
        }
    }

    /// Carries everything between the agent, the relay and the person until nothing moves; a
    /// failed agent is checked, then restarted.
    fn settle(&mut self) {
        loop {
            if let Some(effect) = self.agent.recorder.queue.pop_front() {
                self.carry_out(effect);
            } else if let Some(output) = self.person.poll_output() {
                self.person_output(output);
            } else if !self.answer_fetch() && !self.deliver() {
                if self.disk.failed() && !self.restarted {
                    self.check_stopped();
                    self.restart();
                } else {
                    return;
                }
            }
        }
    }

    /// What the agent asked for, as a runtime carries it out.
    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Frame(text) => self.agent_frame(&text),
            Effect::Http(request) => {
                match request.path.as_str() {
                    "/agent/prekey-bundle" => {
                        self.relay.bundle = Some(serde_json::from_slice(&request.body).expect("a bundle"));
                    }
                    "/agent/one-time-prekeys" => {
                        let body: OneTimePrekeysBody = serde_json::from_slice(&request.body).expect("prekeys");
                        // As the relay does: a key with an id already held replaces it.
                        for key in body.one_time_prekeys {
                            self.relay.one_time.retain(|held| held.prekey_id != key.prekey_id);
                            self.relay.one_time.push_back(key);
                        }
                    }
                    other => panic!("{}: unexpected call to {other}", self.run),
                }
                let taken = Ok(HttpResponse { status: 200, body: b"{}".to_vec() });
                self.agent.feed(Input::Http(request.id, taken));
            }
            Effect::Event(Event::Message(message)) => self.handle(message),
            Effect::Event(other) => panic!("{}: unexpected event {other:?}", self.run),
            Effect::Connect => {
                self.agent.connected = true;
                self.relay.connection += 1;
                self.agent.feed(Input::Connected);
            }
            // Nothing in the script waits for a deadline: publication succeeds at once.
            Effect::WakeAt(_) | Effect::Ping => {}
            Effect::Abandon => self.agent.connected = false,
            Effect::Close => self.agent.connected = false,
        }
    }

    /// The agent's handler: a reply to each message, two to some.
    fn handle(&mut self, message: AgentMessage) {
        // Each reply's text is its own, so that a message key used twice shows as two distinct
        // ciphertexts.
        let mut texts = vec![format!("Received: {} [{}]", message.text, self.replies_sent)];
        if message.text.contains(TWICE) {
            texts.push(format!("Again: {} [{}]", message.text, self.replies_sent + 1));
        }
        self.replies_sent += texts.len();
        let mut outcome: pacerelle_runtime_support::HandlerResult = Ok(());
        for text in texts {
            match self.agent.command(|agent| agent.send_message(OutgoingMessage::reply(&message, text))) {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => panic!("{}: a reply failed: {error}", self.run),
                Err(error) => {
                    outcome = Err(error.into());
                    break;
                }
            }
        }
        if outcome.is_ok() {
            self.handled.insert(message.id.clone());
        }
        self.agent.settle(&message.id, outcome);
    }

    /// A frame the agent sent: to the person (a message) or to the relay (an acknowledgement).
    fn agent_frame(&mut self, text: &str) {
        let mut frame: Value = serde_json::from_str(text).expect("a JSON frame");
        match frame["type"].as_str() {
            Some("MSG") => {
                assert_eq!(frame["encrypted"], json!(true), "{}: a plaintext reply", self.run);
                let payload = STANDARD.decode(frame["payload_b64"].as_str().unwrap_or_default()).expect("base64");
                let message = match Framed::decode(&payload).expect("a Signal message") {
                    Framed::PreKey(prekey) => prekey.message,
                    Framed::Whisper(message) => message,
                };
                let key = (message.ratchet_key.serialize().to_vec(), message.counter);
                if let Some(earlier) = self.ciphertexts.insert(key.clone(), payload.clone()) {
                    assert!(
                        earlier == payload,
                        "{}: two ciphertexts under one message key (counter {}): a message key was used twice",
                        self.run,
                        key.1
                    );
                }
                frame["from"] = json!(AGENT);
                let delivered = self.person.handle_input(at(2), PersonInput::Frame(frame.to_string()));
                if let Err(error) = delivered {
                    panic!("{}: the person cannot read a reply: {error}", self.run);
                }
            }
            Some("ACK_READ") => {
                let id = frame["message_id"].as_str().unwrap_or_default().to_owned();
                self.relay.acknowledge(&id);
            }
            other => panic!("{}: unexpected frame {other:?}", self.run),
        }
    }

    fn person_output(&mut self, output: PersonOutput) {
        match output {
            PersonOutput::Frame(text) => {
                let mut frame: Value = serde_json::from_str(&text).expect("a JSON frame");
                if frame["type"] == json!("MSG") {
                    frame["from"] = json!(PERSON);
                    let id = frame["id"].as_str().unwrap_or_default().to_owned();
                    self.relay.pending.push((id, frame.to_string(), None));
                }
            }
            PersonOutput::Http(request) => self.fetches.push(request.id),
            PersonOutput::Event(PersonEvent::Message(message)) => self.replies.push(message.text),
            PersonOutput::Event(event) => panic!("{}: the person heard {event:?}", self.run),
            PersonOutput::Connect | PersonOutput::Close | PersonOutput::WakeAt(_) => {}
        }
    }

    /// Answers a bundle fetch once the agent has published; whether it did.
    fn answer_fetch(&mut self) -> bool {
        let Some(bundle) = self.relay.bundle.clone() else { return false };
        let Some(request) = self.fetches.pop() else { return false };
        let one_time = self.relay.one_time.pop_front();
        let fetched = FetchedBundle {
            bundle,
            prekey_id: one_time.as_ref().map(|key| key.prekey_id),
            prekey_public: one_time.map(|key| key.public_key),
        };
        let body = serde_json::to_vec(&fetched).expect("a body");
        self.person
            .handle_input(at(2), PersonInput::Http(request, Ok(HttpResponse { status: 200, body })))
            .expect("the bundle");
        true
    }

    /// Delivers the next message the agent has not seen on this connection; whether one went.
    fn deliver(&mut self) -> bool {
        if !self.agent.connected {
            return false;
        }
        let connection = self.relay.connection;
        let Some(next) = self.relay.pending.iter_mut().find(|(_, _, on)| *on != Some(connection)) else { return false };
        next.2 = Some(connection);
        let frame = next.1.clone();
        self.agent.feed(Input::Frame(frame));
        true
    }

    /// The agent whose store failed carried out nothing after the failed write but closing, does
    /// nothing whatever it is told, refuses commands, and reports the failure once.
    fn check_stopped(&mut self) {
        let run = self.run.clone();
        let recorder = &self.agent.recorder;
        assert!(
            recorder.after_failure.is_empty(),
            "{run}: carried out after the failed write: {:?}",
            recorder.after_failure
        );
        assert_eq!(recorder.closes_after_failure, 1, "{run}: the socket closes once");
        assert!(!self.agent.connected, "{run}: still connected");

        let pending = self.relay.pending.first().map(|(_, frame, _)| frame.clone());
        let plaintext = json!({"type": "MSG", "id": "late", "conversation_id": CONVERSATION, "from": PERSON,
            "to": AGENT, "payload_b64": STANDARD.encode("late"), "encrypted": false});
        let mut inputs = vec![
            Input::Connected,
            Input::Frame(plaintext.to_string()),
            Input::Timeout,
            Input::Http(RequestId(1), Ok(HttpResponse { status: 200, body: b"{}".to_vec() })),
            Input::Disconnected,
        ];
        inputs.extend(pending.map(Input::Frame));
        for input in inputs {
            self.agent.feed(input);
        }
        let reply = self.agent.command(|agent| agent.send_message(OutgoingMessage::new(CONVERSATION, PERSON, "late")));
        assert!(matches!(reply, Err(ClientError::Store(_))), "{run}: a send after the failure: {reply:?}");
        if let Some((id, _)) = self.sent.first() {
            self.agent.settle(&id.clone(), Ok(()));
        }
        let _ = self.agent.command(Agent::close);
        let recorder = &self.agent.recorder;
        assert!(
            recorder.queue.is_empty(),
            "{run}: a stopped agent acted: {:?}",
            recorder.queue.iter().map(describe).collect::<Vec<_>>()
        );
        assert!(recorder.after_failure.is_empty(), "{run}: a stopped agent acted: {:?}", recorder.after_failure);
        assert!(!self.agent.state.agent().is_connected(), "{run}: a stopped agent reports a connection");

        match self.agent.state.take_fatal() {
            Some(ClientError::Store(error)) => assert!(error.to_string().contains("disk full"), "{run}: {error}"),
            other => panic!("{run}: the stopped agent reports {other:?}"),
        }
        assert!(self.agent.state.take_fatal().is_none(), "{run}: the failure is reported once");
    }

    /// Starts the agent again from what its store holds, on a repaired disk.
    fn restart(&mut self) {
        self.disk.repair();
        self.restarted = true;
        self.agent = AgentSide::start(&self.disk, self.seed + 1);
    }

    /// Everything the person sent was handled and acknowledged, and answered.
    fn check_finished(&self) {
        let run = &self.run;
        assert!(self.relay.pending.is_empty(), "{run}: {} messages never acknowledged", self.relay.pending.len());
        assert!(self.fetches.is_empty(), "{run}: a bundle fetch never answered");
        let answered = |reply: String| self.replies.iter().any(|text| text.starts_with(&reply));
        for (id, text) in &self.sent {
            assert!(self.handled.contains(id), "{run}: {text:?} never handled");
            assert!(answered(format!("Received: {text} [")), "{run}: no reply to {text:?}");
            if text.contains(TWICE) {
                assert!(answered(format!("Again: {text} [")), "{run}: no second reply to {text:?}");
            }
        }
    }
}

#[test]
fn a_store_failure_at_any_write_stops_the_agent_and_no_message_key_is_used_twice() {
    let mut ciphertexts = HashMap::new();
    // The script without a failure: how many writes it makes.
    let mut world = World::new(None, 1, &mut ciphertexts);
    world.script();
    world.check_finished();
    assert!(!world.restarted);
    let writes = world.disk.writes();
    let messages: usize = BATCHES.iter().sum();
    // At least the receipt and the acceptance of each message and one write per reply.
    assert!(writes > 3 * messages, "only {writes} writes for {messages} messages");

    for fail_at in 1..=writes {
        let seed = 1_000 + 2 * fail_at as u64;
        let mut world = World::new(Some(fail_at), seed, &mut ciphertexts);
        world.script();
        assert!(world.restarted, "failure at write {fail_at}: the agent never restarted");
        assert_eq!(world.disk.failed_at(), Some(fail_at), "the store failed elsewhere");
        world.check_finished();
    }
}

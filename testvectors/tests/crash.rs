//! The crash test (issue 10, item 7 and "Tests and evidence"): an encrypted agent in a child
//! process (`src/bin/crash_agent.rs`, `Client::new` on its SQLite store) is killed with SIGKILL
//! at random moments and restarted on the same store, while people whose encryption is the
//! official Signal runtime talk to it through the development relay, one message in flight per
//! conversation, so a reply that is lost stalls its conversation for good.
//!
//! What it checks, and why each is a delivery guarantee (see `RELIABILITY.md`):
//! - every message is handled and answered, and every answer decrypts and names its message:
//!   no reply lost, no session broken by a crash;
//! - no handler call for a message whose acceptance was already committed when its run of the
//!   agent started: handling is at-least-once until the acceptance commits, exactly-once after
//!   (the test reads the store between a kill and the restart, when the process is dead and its
//!   lock free, to know what was committed);
//! - each conversation still works once the kills stop (one more exchange each).
//!
//! Sizes: 4 people and 600 messages by default (about a dozen kills); `PACERELLE_CRASH_MESSAGES` (total),
//! `PACERELLE_CRASH_PEOPLE`, `PACERELLE_CRASH_SEED` and `PACERELLE_CRASH_STALL_SECS` change them.
//! A conversation without progress for the stall bound (60 s by default, twice the agent's
//! longest reconnect backoff) fails the test with the conversations and message ids concerned.

use pacerelle_conformance::peers::runtime;
use pacerelle_core::human::{PersonError, PersonEvent};
use pacerelle_core::store::{AgentStore as _, ReceiptState};
use pacerelle_official_runtime::backend::RuntimeBackend;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_store_sqlite::SqliteStore;
use pacerelle_tokio::{ClientError, PersonClient, PersonClientConfig};
use rand::{RngExt as _, SeedableRng as _};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The fewest kills a run must see while the people converse to count as a crash test.
const MIN_KILLS: usize = 3;

const AGENT: &str = "crash-agent";
const AGENT_TOKEN: &str = "crash-agent-token";
/// How long the agent may take to publish its prekeys after its first start.
const PUBLICATION: Duration = Duration::from_secs(30);
/// How long a person's setup call (connecting, opening the conversation) may take.
const SETUP: Duration = Duration::from_secs(20);
/// How often a waiting person looks at inputs its client refused (replies that did not
/// decrypt, which come as no event).
const LOOK: Duration = Duration::from_millis(500);

/// The run's size and randomness, from the environment.
#[derive(Debug, Clone, Copy)]
struct Settings {
    people: usize,
    messages: usize,
    seed: u64,
    stall: Duration,
    kill_every_ms: (u64, u64),
}

/// `name` parsed, or `default` when unset.
///
/// # Panics
/// On a value that does not parse: a mistyped size must not quietly run the default.
fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let clock_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0);
        let settings = Settings {
            people: setting("PACERELLE_CRASH_PEOPLE", 4) as usize,
            messages: setting("PACERELLE_CRASH_MESSAGES", 600) as usize,
            seed: setting("PACERELLE_CRASH_SEED", clock_seed),
            stall: Duration::from_secs(setting("PACERELLE_CRASH_STALL_SECS", 60)),
            kill_every_ms: (400, 1600),
        };
        assert!(settings.people >= 1 && settings.messages >= settings.people, "at least one message per person");
        settings
    }

    /// How many messages person `index` sends: the total split as evenly as it goes.
    fn messages_of(&self, index: usize) -> usize {
        self.messages / self.people + usize::from(index < self.messages % self.people)
    }
}

/// A folder of its own under the system's temporary folder, removed when dropped (also when
/// the test panics).
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(seed: u64) -> Self {
        let path = std::env::temp_dir().join(format!("pacerelle-crash-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|error| panic!("creating {}: {error}", path.display()));
        TempRoot(path)
    }

    fn store_root(&self) -> PathBuf {
        self.0.join("store")
    }

    fn handler_log(&self) -> PathBuf {
        self.0.join("handler.log")
    }

    fn agent_stderr(&self) -> PathBuf {
        self.0.join("agent.stderr")
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start the agent's process.
#[derive(Debug, Clone)]
struct AgentCommand {
    base_url: String,
    store_root: PathBuf,
    handler_log: PathBuf,
    stderr: PathBuf,
}

impl AgentCommand {
    /// Starts run number `incarnation` of the agent.
    fn spawn(&self, incarnation: u32) -> AgentProcess {
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .unwrap_or_else(|error| panic!("opening {}: {error}", self.stderr.display()));
        let child = Command::new(env!("CARGO_BIN_EXE_crash_agent"))
            .env("PACERELLE_AGENT_ID", AGENT)
            .env("PACERELLE_AGENT_TOKEN", AGENT_TOKEN)
            .env("PACERELLE_BASE_URL", &self.base_url)
            .env("PACERELLE_E2EE", "1")
            .env("PACERELLE_STORE_ROOT", &self.store_root)
            .env("PACERELLE_CRASH_LOG", &self.handler_log)
            .env("PACERELLE_CRASH_INCARNATION", incarnation.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("starting the crash agent: {error}"));
        AgentProcess { child, incarnation }
    }

    /// The message ids with a committed accepted receipt. Only while no agent runs: the store
    /// is opened as the agent opens it, exclusively.
    fn accepted(&self) -> BTreeSet<String> {
        let snapshot = SqliteStore::open_in(&self.store_root, AGENT)
            .and_then(|mut store| store.load())
            .unwrap_or_else(|error| panic!("the store after a kill does not load: {error}"));
        snapshot
            .receipts
            .into_iter()
            .filter(|(_, receipt)| matches!(receipt.state, ReceiptState::Accepted { .. }))
            .map(|(id, _)| id)
            .collect()
    }
}

/// A run of the agent; killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// process behind.
struct AgentProcess {
    child: Child,
    incarnation: u32,
}

impl AgentProcess {
    /// Kills it with SIGKILL and waits until it is gone (its store lock released). An agent
    /// that had already exited on its own is an error: it should only stop when killed.
    fn kill(mut self) -> Result<(), String> {
        let exited = match self.child.try_wait() {
            Ok(Some(status)) => Some(status),
            Ok(None) | Err(_) => None,
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        match exited {
            Some(status) => Err(format!("run {} of the agent exited on its own ({status})", self.incarnation)),
            None => Ok(()),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the killing thread saw.
#[derive(Debug, Default)]
struct CrashRecord {
    kills: usize,
    restarts: usize,
    /// For each message with a committed acceptance, the run whose death first showed it: no
    /// later run may call its handler.
    accepted_by: BTreeMap<String, u32>,
    /// Runs that ended without being killed.
    exits: Vec<String>,
    /// The last run's number.
    last_incarnation: u32,
}

impl CrashRecord {
    /// Kills `process` and reads what its store holds as committed.
    fn record_death(&mut self, process: AgentProcess, command: &AgentCommand) {
        let incarnation = process.incarnation;
        if let Err(exit) = process.kill() {
            self.exits.push(exit);
        }
        // Receipts age out of the store, so the first sighting is kept rather than the last.
        for message_id in command.accepted() {
            self.accepted_by.entry(message_id).or_insert(incarnation);
        }
    }
}

/// A thread that kills the agent at random moments and restarts it on the same store, reading
/// the store in between. Dropping it stops it and kills the agent.
struct Crasher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<CrashRecord>>,
}

impl Crasher {
    fn start(first: AgentProcess, command: AgentCommand, settings: &Settings) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
        let (low, high) = settings.kill_every_ms;
        let thread = std::thread::spawn(move || {
            let mut record = CrashRecord::default();
            let mut process = first;
            loop {
                let wait = Duration::from_millis(rng.random_range(low..=high));
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
                let incarnation = process.incarnation;
                record.record_death(process, &command);
                record.kills += 1;
                process = command.spawn(incarnation + 1);
                record.restarts += 1;
            }
            record.last_incarnation = process.incarnation;
            record.record_death(process, &command);
            record
        });
        Crasher { stop: Some(stop), thread: Some(thread) }
    }

    /// Stops killing, kills the running agent, and returns what was seen.
    fn finish(mut self) -> CrashRecord {
        self.stop.take();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(record)) => record,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => CrashRecord::default(),
        }
    }
}

impl Drop for Crasher {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One person and their conversation with the agent.
struct Conversation {
    person: String,
    client: PersonClient,
    conversation_id: String,
}

/// Why a conversation stopped before its last message was answered.
#[derive(Debug)]
enum Failure {
    /// No reply to `message_id` within the stall bound.
    Stalled { index: usize, message_id: String, sent_at: Duration },
    /// The person's client refused what it received (a reply that did not decrypt).
    Refused { index: usize, message_id: String, errors: Vec<String> },
    /// An event no correct agent and relay produce here (a message not sent, refused, a
    /// reply with the wrong text, an identity change).
    Wrong { index: usize, message_id: String, what: String },
    /// The person could not send.
    Send { index: usize, error: String },
}

/// How a conversation went.
#[derive(Debug)]
struct Outcome {
    person: String,
    conversation_id: String,
    /// The ids sent in earlier phases, with their texts.
    earlier: Vec<(String, String)>,
    /// The ids sent, in order, with their texts.
    sent: Vec<(String, String)>,
    answered: usize,
    /// Replies to a message that had already been answered (a handler run again before its
    /// acceptance committed): allowed, counted.
    duplicate_replies: usize,
    failure: Option<Failure>,
}

/// What waiting for one reply ended with.
enum Wait {
    Answered,
    Failed(Failure),
}

impl Conversation {
    /// Sends `count` messages one at a time, each after the previous one's reply; `label`
    /// tells the texts of this phase apart, and `earlier` holds the messages of earlier phases
    /// (whose late replies are duplicates, not strangers).
    async fn run(
        &self,
        count: usize,
        label: &str,
        earlier: Vec<(String, String)>,
        stall: Duration,
        start: Instant,
    ) -> Outcome {
        let mut outcome = Outcome {
            person: self.person.clone(),
            conversation_id: self.conversation_id.clone(),
            earlier,
            sent: Vec::new(),
            answered: 0,
            duplicate_replies: 0,
            failure: None,
        };
        for index in 0..count {
            let text = format!("{}:{label}:{index}", self.person);
            let message_id = match self.client.send_text(&self.conversation_id, AGENT, &text) {
                Ok(id) => id,
                Err(error) => {
                    outcome.failure = Some(Failure::Send { index, error: error.to_string() });
                    return outcome;
                }
            };
            outcome.sent.push((message_id.clone(), text.clone()));
            match self.await_reply(&mut outcome, index, &message_id, &text, stall, start).await {
                Wait::Answered => outcome.answered += 1,
                Wait::Failed(failure) => {
                    outcome.failure = Some(failure);
                    return outcome;
                }
            }
        }
        outcome
    }

    /// Waits for the reply to message `index` (`message_id`, which said `text`), counting late
    /// replies to earlier ones in `outcome`.
    async fn await_reply(
        &self,
        outcome: &mut Outcome,
        index: usize,
        message_id: &str,
        text: &str,
        stall: Duration,
        start: Instant,
    ) -> Wait {
        let message_id = message_id.to_owned();
        let sent_at = start.elapsed();
        let deadline = Instant::now() + stall;
        let wrong = |what: String| Wait::Failed(Failure::Wrong { index, message_id: message_id.clone(), what });
        loop {
            let refused: Vec<PersonError> = self.client.take_refused();
            if !refused.is_empty() {
                let errors = refused.iter().map(ToString::to_string).collect();
                return Wait::Failed(Failure::Refused { index, message_id, errors });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wait::Failed(Failure::Stalled { index, message_id, sent_at });
            }
            let event = match self.client.next_event(left.min(LOOK)).await {
                Ok(event) => event,
                Err(ClientError::TimedOut(_)) => continue,
                Err(error) => return wrong(format!("the person's client failed: {error}")),
            };
            match event {
                PersonEvent::Message(reply) => {
                    let answers = reply.reply_to_message_id.as_deref();
                    if answers == Some(message_id.as_str()) {
                        let expected = format!("ack:{text}");
                        if reply.text != expected || !reply.encrypted || reply.from != AGENT {
                            return wrong(format!(
                                "the reply {} reads {:?} (encrypted: {}, from {}), expected {expected:?} encrypted from {AGENT}",
                                reply.id, reply.text, reply.encrypted, reply.from
                            ));
                        }
                        return Wait::Answered;
                    }
                    match outcome.earlier.iter().chain(&outcome.sent).find(|(id, _)| Some(id.as_str()) == answers) {
                        Some((earlier, earlier_text)) if reply.text == format!("ack:{earlier_text}") => {
                            outcome.duplicate_replies += 1;
                        }
                        Some((earlier, _)) => {
                            return wrong(format!("a second reply to {earlier} reads {:?}", reply.text));
                        }
                        None => return wrong(format!("a message answering {answers:?}: {:?}", reply.text)),
                    }
                }
                PersonEvent::Read(_) => {}
                other @ (PersonEvent::NotSent { .. }
                | PersonEvent::Refused(_)
                | PersonEvent::RequestFailed { .. }
                | PersonEvent::IdentityChanged { .. }) => return wrong(format!("{other:?}")),
                other => return wrong(format!("unexpected event {other:?}")),
            }
        }
    }
}

/// A person on the official Signal runtime, connected, with a conversation with the agent.
async fn person(relay: &RelayHandle, name: &str, seed: u64) -> Conversation {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(seed);
    let (backend, _) = RuntimeBackend::load_or_create(&runtime(), &format!("human:{name}"), &Default::default(), rng)
        .unwrap_or_else(|error| panic!("{name}: a fresh official runtime account: {error}"));
    let config = PersonClientConfig::new(name, format!("{name}-token"), relay.base_url()).encrypted();
    let client = PersonClient::connect_with_backend(
        config,
        Box::new(rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(1))),
        Box::new(backend),
    )
    .await
    .unwrap_or_else(|error| panic!("{name}: connecting: {error}"));
    let conversation_id = tokio::time::timeout(SETUP, client.create_conversation(&[AGENT], false))
        .await
        .unwrap_or_else(|_| panic!("{name}: no conversation within {SETUP:?}"))
        .unwrap_or_else(|error| panic!("{name}: opening a conversation: {error}"));
    Conversation { person: name.to_owned(), client, conversation_id }
}

/// One line of the handler log: run `incarnation` called the handler for `message_id`.
#[derive(Debug)]
struct Call {
    incarnation: u32,
    message_id: String,
}

/// The handler log; lines a kill cut short are counted, not parsed.
fn read_log(path: &Path) -> (Vec<Call>, usize) {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        file.read_to_string(&mut text).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    }
    let (mut calls, mut torn) = (Vec::new(), 0);
    for line in text.lines() {
        let mut fields = line.split(' ');
        match (fields.next().map(str::parse::<u32>), fields.next(), fields.next()) {
            (Some(Ok(incarnation)), Some(id), None) if !id.is_empty() => {
                calls.push(Call { incarnation, message_id: id.to_owned() })
            }
            _ => torn += 1,
        }
    }
    (calls, torn)
}

/// The last lines of the agent's stderr, for a failure message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a run found, for the summary and the verdict.
#[derive(Debug, Default)]
struct Findings {
    messages: usize,
    answered: usize,
    duplicate_replies: usize,
    handler_calls: usize,
    rehandled: usize,
    double_acceptances: Vec<String>,
    never_handled: Vec<String>,
    losses: Vec<String>,
    problems: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_reply() {
    let settings = Settings::from_env();
    println!(
        "crash test: seed {} (PACERELLE_CRASH_SEED={} reruns it), {} people, {} messages, a kill every {}-{} ms, stall after {:?}",
        settings.seed,
        settings.seed,
        settings.people,
        settings.messages,
        settings.kill_every_ms.0,
        settings.kill_every_ms.1,
        settings.stall
    );
    let setup = Instant::now();
    let root = TempRoot::new(settings.seed);
    let names: Vec<String> = (0..settings.people).map(|index| format!("person-{index}")).collect();
    let relay =
        Relay::spawn(names.iter().fold(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN), |config, name| {
            config.person(name.clone(), format!("{name}-token"))
        }))
        .await
        .expect("the relay starts");
    let command = AgentCommand {
        base_url: relay.base_url(),
        store_root: root.store_root(),
        handler_log: root.handler_log(),
        stderr: root.agent_stderr(),
    };

    // The first run publishes the prekeys the people start their sessions from.
    let first = command.spawn(1);
    let published = Instant::now() + PUBLICATION;
    while relay.one_time_prekey_ids(AGENT).is_empty() {
        assert!(
            Instant::now() < published,
            "the agent published no prekeys within {PUBLICATION:?}; its stderr:\n{}",
            tail(&command.stderr, 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut conversations = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let seed = settings.seed ^ ((index as u64 + 1) << 32);
        conversations.push(std::sync::Arc::new(person(&relay, name, seed).await));
    }

    println!("setup (relay, first publication, {} people): {:.1} s", settings.people, setup.elapsed().as_secs_f64());
    let start = Instant::now();
    let crasher = Crasher::start(first, command.clone(), &settings);
    let tasks: Vec<_> = conversations
        .iter()
        .enumerate()
        .map(|(index, conversation)| {
            let conversation = conversation.clone();
            let count = settings.messages_of(index);
            tokio::spawn(async move { conversation.run(count, "m", Vec::new(), settings.stall, start).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("a conversation task panicked"));
    }
    let crashing = start.elapsed();
    let record = crasher.finish();

    // Kills over: one more exchange per conversation on a fresh run shows no session broke.
    let last = command.spawn(record.last_incarnation + 1);
    let finals: Vec<_> = conversations
        .iter()
        .zip(&outcomes)
        .map(|(conversation, outcome)| {
            let conversation = conversation.clone();
            let earlier = outcome.sent.clone();
            tokio::spawn(async move { conversation.run(1, "final", earlier, settings.stall, start).await })
        })
        .collect();
    let mut final_outcomes = Vec::new();
    for task in finals {
        final_outcomes.push(task.await.expect("a final exchange panicked"));
    }
    let mut record = record;
    record.record_death(last, &command);
    let duration = start.elapsed();

    let findings = judge(&settings, &outcomes, &final_outcomes, &record, &root.handler_log());
    let summary = summarize(&settings, &findings, &record, crashing, duration);
    let stderr = tail(&command.stderr, 20);
    for conversation in conversations {
        if let Ok(conversation) = std::sync::Arc::try_unwrap(conversation) {
            conversation.client.close().await;
        }
    }
    relay.shutdown().await;
    assert!(
        findings.problems.is_empty(),
        "the crash test failed (seed {}):\n- {}\n{summary}\nthe agent's last stderr lines:\n{}",
        settings.seed,
        findings.problems.join("\n- "),
        if stderr.is_empty() { "(none)" } else { &stderr }
    );
    println!("{summary}");
}

/// Checks the outcomes against the handler log and the receipts seen between runs.
fn judge(settings: &Settings, outcomes: &[Outcome], finals: &[Outcome], record: &CrashRecord, log: &Path) -> Findings {
    let (calls, torn) = read_log(log);
    let mut findings = Findings { handler_calls: calls.len(), ..Default::default() };

    // Which runs called the handler for each message.
    let mut started: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for call in &calls {
        started.entry(&call.message_id).or_default().insert(call.incarnation);
    }
    for (message_id, runs) in &started {
        if runs.len() > 1 {
            findings.rehandled += 1;
        }
        for run in runs {
            if let Some(accepted_by) = record.accepted_by.get(*message_id).filter(|accepted_by| *accepted_by < run) {
                findings.double_acceptances.push(format!(
                    "{message_id} handled by run {run} although run {accepted_by} had committed its acceptance"
                ));
            }
        }
    }

    for outcome in outcomes.iter().chain(finals) {
        findings.messages += outcome.sent.len();
        findings.answered += outcome.answered;
        findings.duplicate_replies += outcome.duplicate_replies;
        for (message_id, _) in &outcome.sent {
            if !started.contains_key(message_id.as_str()) {
                findings.never_handled.push(message_id.clone());
            }
        }
        let Some(failure) = &outcome.failure else { continue };
        let who = format!("{} (conversation {})", outcome.person, outcome.conversation_id);
        let problem = match failure {
            Failure::Stalled { index, message_id, sent_at } => {
                let runs = started.get(message_id.as_str()).map(|runs| runs.len()).unwrap_or(0);
                let accepted = record.accepted_by.contains_key(message_id.as_str());
                // An acceptance is committed only after the handler returned, so after its reply
                // was sent: accepted and unanswered is a lost reply.
                if accepted {
                    findings.losses.push(message_id.clone());
                }
                let verdict = match (runs, accepted) {
                    (0, _) => "never handled",
                    (_, true) => "LOST REPLY: handled, its acceptance committed, the reply never reached the person",
                    (_, false) => "handled, never accepted, no reply",
                };
                format!(
                    "{who} stalled at message {index} ({message_id}, sent {:.1} s into the run, no reply within {:?}): {verdict} (handler runs: {runs})",
                    sent_at.as_secs_f64(),
                    settings.stall
                )
            }
            Failure::Refused { index, message_id, errors } => {
                format!(
                    "{who}: while waiting for the reply to message {index} ({message_id}) the person's client refused: {}",
                    errors.join("; ")
                )
            }
            Failure::Wrong { index, message_id, what } => {
                format!("{who}: while waiting for the reply to message {index} ({message_id}): {what}")
            }
            Failure::Send { index, error } => format!("{who}: message {index} could not be sent: {error}"),
        };
        findings.problems.push(problem);
    }

    let stalled: BTreeSet<&str> = outcomes
        .iter()
        .chain(finals)
        .filter_map(|outcome| match &outcome.failure {
            Some(Failure::Stalled { message_id, .. }) => Some(message_id.as_str()),
            _ => None,
        })
        .collect();
    let unexplained: Vec<&String> =
        findings.never_handled.iter().filter(|message_id| !stalled.contains(message_id.as_str())).collect();
    if !unexplained.is_empty() {
        findings.problems.push(format!("answered but not in the handler log: {unexplained:?}"));
    }
    if !findings.double_acceptances.is_empty() {
        findings.problems.push(format!(
            "{} handler call(s) after the acceptance was committed: {}",
            findings.double_acceptances.len(),
            findings.double_acceptances.join("; ")
        ));
    }
    if !record.exits.is_empty() {
        findings.problems.push(format!("the agent stopped without being killed: {}", record.exits.join("; ")));
    }
    if record.kills < MIN_KILLS {
        // Faster than the kills: the run proved nothing about crashes.
        findings.problems.push(format!(
            "only {} kill(s) while the people conversed (at least {MIN_KILLS} expected): raise PACERELLE_CRASH_MESSAGES",
            record.kills
        ));
    }
    if torn > record.kills {
        // At most the line being written at each kill can be cut short.
        findings.problems.push(format!("{torn} unreadable lines in the handler log"));
    }
    findings
}

/// The figures, as RELIABILITY.md records them.
fn summarize(
    settings: &Settings,
    findings: &Findings,
    record: &CrashRecord,
    crashing: Duration,
    total: Duration,
) -> String {
    let mut summary = String::new();
    let _ = writeln!(summary, "crash test figures (seed {}):", settings.seed);
    let _ = writeln!(
        summary,
        "  messages sent {} (of which {} after the kills), replies {}, duplicate replies {}",
        findings.messages, settings.people, findings.answered, findings.duplicate_replies
    );
    let _ = writeln!(
        summary,
        "  kills {}, restarts {}, handler calls {}, messages handled more than once before acceptance {}",
        record.kills, record.restarts, findings.handler_calls, findings.rehandled
    );
    let _ = writeln!(
        summary,
        "  losses {}, double acceptances {}, never handled {}",
        findings.losses.len(),
        findings.double_acceptances.len(),
        findings.never_handled.len()
    );
    let _ =
        write!(summary, "  duration {:.1} s under kills, {:.1} s in all", crashing.as_secs_f64(), total.as_secs_f64());
    summary
}

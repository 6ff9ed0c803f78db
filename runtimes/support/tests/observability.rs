//! Observability without I/O: an agent ([`AgentState`], the code every runtime runs) handles,
//! fails, retries and refuses messages and reconnects once, under a metrics recorder and a
//! tracing subscriber local to the test's thread; the counters must say exactly that, and no
//! log line may hold a message's text (plain or base64) or the agent's token.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use pacerelle_core::agent::{AgentConfig, Event, Input};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::store::MemoryStore;
use pacerelle_runtime_support::metrics::{
    MESSAGES_FAILED_TOTAL, MESSAGES_HANDLED_TOTAL, MESSAGES_RETRIED_TOTAL, MESSAGES_UNDELIVERABLE_TOTAL, REASON_LABEL,
    RECONNECTS_TOTAL, STORE_COMMIT_SECONDS,
};
use pacerelle_runtime_support::now;
use pacerelle_runtime_support::state::{AgentState, Effect};
use rand::SeedableRng as _;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const AGENT: &str = "agent-1";
const TOKEN: &str = "tok-3c9f1d-never-logged";
/// What each message says: found in no log line.
const SECRET: &str = "the launch code is 0451";

/// Where the test's subscriber writes.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_owned()
    }
}

/// The agent and what it asked its adapter to do.
struct Side {
    state: AgentState,
    effects: Vec<Effect>,
}

impl Side {
    fn open() -> Side {
        // No backoff: the reconnect is due as soon as the connection is lost.
        let agent_config = AgentConfig {
            backoff: Backoff { initial: Duration::ZERO, max: Duration::ZERO },
            ..AgentConfig::new(AGENT)
        };
        let rng = Box::new(rand::rngs::StdRng::seed_from_u64(7));
        let config = ClientConfig::new(AGENT, TOKEN);
        let state =
            AgentState::open(&config, agent_config, Box::new(MemoryStore::new()), rng).expect("the agent opens");
        let mut side = Side { state, effects: Vec::new() };
        let Side { state, effects } = &mut side;
        state.run(|agent| agent.start(now()), |effect| effects.push(effect)).expect("the agent starts");
        side
    }

    fn feed(&mut self, input: Input) {
        let Side { state, effects } = self;
        state.feed(input, |effect| effects.push(effect));
    }

    fn settle(&mut self, message_id: &str, outcome: pacerelle_runtime_support::HandlerResult) {
        let Side { state, effects } = self;
        state.settle(message_id, outcome, |effect| effects.push(effect));
    }

    /// Delivers a plaintext message; returns the ids of the messages handed to the handlers.
    fn deliver(&mut self, id: &str, encrypted: bool) -> Vec<String> {
        let frame = json!({
            "type": "MSG", "id": id, "conversation_id": "c1", "from": "u1", "to": AGENT,
            "payload_b64": STANDARD.encode(SECRET), "encrypted": encrypted,
        });
        self.feed(Input::Frame(frame.to_string()));
        self.events()
            .into_iter()
            .filter_map(|event| if let Event::Message(m) = event { Some(m.id) } else { None })
            .collect()
    }

    fn events(&mut self) -> Vec<Event> {
        self.effects
            .drain(..)
            .filter_map(|effect| if let Effect::Event(event) = effect { Some(event) } else { None })
            .collect()
    }

    fn connects(&mut self) -> usize {
        let count = self.effects.iter().filter(|effect| matches!(effect, Effect::Connect)).count();
        self.effects.clear();
        count
    }
}

fn counter(
    snapshot: &[(CompositeKey, Option<metrics::Unit>, Option<metrics::SharedString>, DebugValue)],
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    snapshot
        .iter()
        .filter(|(key, ..)| key.kind() == MetricKind::Counter && key.key().name() == name)
        .filter(|(key, ..)| {
            let mut found: Vec<(&str, &str)> = key.key().labels().map(|label| (label.key(), label.value())).collect();
            found.sort_unstable();
            let mut wanted = labels.to_vec();
            wanted.sort_unstable();
            found == wanted
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(count) => *count,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

#[test]
fn counters_and_logs_tell_what_happened_without_contents_or_token() {
    let recorder = DebuggingRecorder::new();
    let snapshotter: Snapshotter = recorder.snapshotter();
    let logs = Buffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();

    metrics::with_local_recorder(&recorder, || {
        tracing::subscriber::with_default(subscriber, || {
            let mut side = Side::open();
            assert_eq!(side.connects(), 1, "the agent connects once at start");
            side.feed(Input::Connected);

            // Handled.
            assert_eq!(side.deliver("m-ok", false), ["m-ok"]);
            side.settle("m-ok", Ok(()));
            // Failed: left unacknowledged.
            assert_eq!(side.deliver("m-fail", false), ["m-fail"]);
            side.settle("m-fail", Err("the handler's database is down".into()));
            // Undeliverable: encrypted, to an agent without end-to-end encryption.
            assert!(side.deliver("m-enc", true).is_empty(), "an encrypted message is not handed over");

            // The connection is lost; the agent reconnects and the relay replays what it has
            // not acknowledged: the failed message, handled this time.
            side.effects.clear();
            side.feed(Input::Disconnected);
            side.effects.clear();
            side.feed(Input::Timeout);
            assert_eq!(side.connects(), 1, "the agent reconnects once");
            side.feed(Input::Connected);
            assert_eq!(side.deliver("m-fail", false), ["m-fail"]);
            side.settle("m-fail", Ok(()));
            // A replay of an accepted message is only acknowledged again: nothing counted.
            assert!(side.deliver("m-ok", false).is_empty());
        });
    });

    let snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(counter(&snapshot, MESSAGES_HANDLED_TOTAL, &[]), 2);
    assert_eq!(counter(&snapshot, MESSAGES_FAILED_TOTAL, &[]), 1);
    assert_eq!(counter(&snapshot, MESSAGES_RETRIED_TOTAL, &[]), 1);
    assert_eq!(counter(&snapshot, MESSAGES_UNDELIVERABLE_TOTAL, &[(REASON_LABEL, "encrypted_without_e2ee")]), 1);
    assert_eq!(counter(&snapshot, MESSAGES_UNDELIVERABLE_TOTAL, &[(REASON_LABEL, "plaintext")]), 0);
    assert_eq!(counter(&snapshot, RECONNECTS_TOTAL, &[]), 1);
    let commits = snapshot
        .iter()
        .find(|(key, ..)| key.kind() == MetricKind::Histogram && key.key().name() == STORE_COMMIT_SECONDS)
        .map(|(.., value)| match value {
            DebugValue::Histogram(values) => values.len(),
            other => panic!("{STORE_COMMIT_SECONDS} is not a histogram: {other:?}"),
        })
        .unwrap_or(0);
    // Receipts of m-ok, m-fail and m-enc, and two acceptances, at least.
    assert!(commits >= 5, "store commits timed: {commits}");

    let logs = logs.text();
    // The subscriber saw the messages, by id and inside their spans: the check below is not
    // vacuous.
    assert!(logs.contains("m-fail") && logs.contains("handler failed"), "logs: {logs}");
    assert!(logs.contains("message{id=m-enc"), "the message span names the message: {logs}");
    assert!(logs.contains("connection{agent=agent-1 connection=2}"), "the connection span: {logs}");
    for secret in [SECRET.to_owned(), STANDARD.encode(SECRET), TOKEN.to_owned()] {
        assert!(!logs.contains(&secret), "a log line holds {secret:?}: {logs}");
    }
}

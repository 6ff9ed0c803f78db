//! Observability on every runtime (issue 10, item 8): an agent on tokio, smol, async-std and
//! blocking handles a message, fails one and handles it on the retry, refuses one, and is
//! reconnected, under a metrics recorder and a tracing subscriber; the counters must say
//! exactly that, the logs must name the messages and connections by id, and no log line may
//! hold a message's text (plain or base64) or the agent's token.
//!
//! A test binary of its own: the recorder and the subscriber are process-wide (the agent runs on
//! its runtime's threads), so the cases here run one at a time and read differences.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use pacerelle_core::agent::{AgentConfig, HandlerRetry};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::human::PersonEvent;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_runtime_suite::behaviour::{self, Behaviour, Report};
use pacerelle_runtime_suite::harness::{self, Harness};
use pacerelle_runtime_support::metrics::{
    MESSAGES_FAILED_TOTAL, MESSAGES_HANDLED_TOTAL, MESSAGES_RETRIED_TOTAL, MESSAGES_UNDELIVERABLE_TOTAL, REASON_LABEL,
    RECONNECTS_TOTAL,
};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const AGENT: &str = "observed-agent";
const TOKEN: &str = "tok-91e2ab-never-logged";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
/// What the person says: found in no log line.
const SECRET: &str = "the vault combination is 31-7-22";
const WAIT: Duration = Duration::from_secs(10);

/// Where the process's subscriber writes.
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
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    fn text_from(&self, start: usize) -> String {
        let bytes = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes[start.min(bytes.len())..]).into_owned()
    }
}

/// The process-wide recorder and log, installed once; the guard keeps the cases one at a time.
struct Observed {
    snapshotter: Snapshotter,
    logs: Buffer,
    one_at_a_time: Mutex<()>,
}

fn observed() -> &'static Observed {
    static OBSERVED: OnceLock<Observed> = OnceLock::new();
    OBSERVED.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("the only metrics recorder of this process");
        let logs = Buffer::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,pacerelle=trace"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this process");
        Observed { snapshotter, logs, one_at_a_time: Mutex::new(()) }
    })
}

impl Observed {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.one_at_a_time.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every counter this case checks, counted since the last call (the recorder's snapshot
    /// drains counters): handled, failed, retried, undeliverable (encrypted without end-to-end
    /// encryption), reconnects.
    fn counters(&self) -> [u64; 5] {
        let snapshot: Vec<(CompositeKey, _, _, DebugValue)> = self.snapshotter.snapshot().into_vec();
        let counter = |name: &str, labels: &[(&str, &str)]| -> u64 {
            snapshot
                .iter()
                .filter(|(key, ..)| key.kind() == MetricKind::Counter && key.key().name() == name)
                .filter(|(key, ..)| {
                    let mut found: Vec<(&str, &str)> =
                        key.key().labels().map(|label| (label.key(), label.value())).collect();
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
        };
        [
            counter(MESSAGES_HANDLED_TOTAL, &[]),
            counter(MESSAGES_FAILED_TOTAL, &[]),
            counter(MESSAGES_RETRIED_TOTAL, &[]),
            counter(MESSAGES_UNDELIVERABLE_TOTAL, &[(REASON_LABEL, "encrypted_without_e2ee")]),
            counter(RECONNECTS_TOTAL, &[]),
        ]
    }
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for the agent's reply to `message_id` and its read receipt; returns the reply's text.
async fn answered(person: &PersonClient, message_id: &str) -> String {
    let (mut reply, mut read) = (None, false);
    while reply.is_none() || !read {
        match person.next_event(WAIT).await.expect("the agent answers") {
            PersonEvent::Message(message) if message.reply_to_message_id.as_deref() == Some(message_id) => {
                reply = Some(message.text)
            }
            PersonEvent::Read(receipt) if receipt.message_id == message_id => read = true,
            _ => {}
        }
    }
    reply.unwrap_or_default()
}

fn metrics_and_logs_tell_what_happened<H: Harness>() {
    let observed = observed();
    let _one_at_a_time = observed.lock();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        // Drains what earlier cases counted.
        let _ = observed.counters();
        let logs_start = observed.logs.len();

        let config = RelayConfig::loopback_ephemeral().agent(AGENT, TOKEN).person(PERSON, PERSON_TOKEN);
        let relay: RelayHandle = Relay::spawn(config).await.expect("the relay starts");
        let person = PersonClient::connect(PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()))
            .await
            .expect("the person connects");
        let conversation = person.create_conversation(&[AGENT], false).await.expect("a conversation");
        let behaviour = Behaviour::new();
        let core = AgentConfig {
            backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
            handler_retry: HandlerRetry {
                max_attempts: 3,
                initial: Duration::from_millis(50),
                max: Duration::from_millis(50),
            },
            ..AgentConfig::new(AGENT)
        };
        let config = ClientConfig::new(AGENT, TOKEN).with_base_url(relay.base_url()).expect("a base URL");
        let agent = H::start(config, core, behaviour.clone());

        // Handled.
        let secret = person.send_text(&conversation, AGENT, SECRET).expect("sent");
        assert_eq!(answered(&person, &secret).await, format!("Received: {SECRET}"));
        // Failed once, handled on the retry.
        let flaky = person.send_text(&conversation, AGENT, behaviour::FAIL_ONCE).expect("sent");
        assert_eq!(answered(&person, &flaky).await, "handled on attempt 2");
        // Refused: encrypted, to an agent without end-to-end encryption.
        let payload = STANDARD.encode(SECRET);
        let forged = json!({
            "type": "MSG", "id": "forged-1", "conversation_id": conversation, "from": PERSON, "to": AGENT,
            "payload_b64": payload, "encrypted": true,
        });
        relay.inject_to_agent(AGENT, forged.to_string());
        let refused = || behaviour.reports().iter().any(|report| matches!(report, Report::Undeliverable(_)));
        wait_until("the refusal", refused).await;
        // Reconnected once.
        relay.disconnect_agent(AGENT).await;
        wait_until("the reconnection", || relay.agent_connections(AGENT) == 2 && agent.is_connected()).await;
        let after = person.send_text(&conversation, AGENT, "after the drop").expect("sent");
        assert_eq!(answered(&person, &after).await, "Received: after the drop");

        agent.close();
        assert!(agent.finished(Duration::from_secs(3)).await.is_some(), "{}: connect returned", H::NAME);
        person.close().await;
        relay.shutdown().await;

        // handled (3), failed (1), retried (1), refused (1), reconnected (1).
        assert_eq!(
            observed.counters(),
            [3, 1, 1, 1, 1],
            "{}: handled, failed, retried, undeliverable, reconnects",
            H::NAME
        );

        let logs = observed.logs.text_from(logs_start);
        // The subscriber saw these messages, by id and inside their spans: the checks below are
        // not vacuous.
        let handler_span = format!("handler{{message_id={flaky} conversation={conversation} from={PERSON}}}");
        assert!(logs.contains(&handler_span), "{}: the failed handler's span: {logs}", H::NAME);
        assert!(logs.contains(&format!("message_id={flaky}")), "{}: the failure names its message: {logs}", H::NAME);
        assert!(logs.contains("message{id=forged-1"), "{}: the refused message's span: {logs}", H::NAME);
        assert!(
            logs.contains(&format!("connection{{agent={AGENT} connection=2}}")),
            "{}: the second connection's span: {logs}",
            H::NAME
        );
        for leak in [SECRET.to_owned(), payload.clone(), TOKEN.to_owned()] {
            assert!(!logs.contains(&leak), "{}: a log line holds {leak:?}: {logs}", H::NAME);
        }
    });
}

#[test]
fn tokio() {
    metrics_and_logs_tell_what_happened::<harness::Tokio>();
}

#[test]
fn smol() {
    metrics_and_logs_tell_what_happened::<harness::Smol>();
}

#[test]
fn async_std() {
    metrics_and_logs_tell_what_happened::<harness::AsyncStd>();
}

#[test]
fn blocking() {
    metrics_and_logs_tell_what_happened::<harness::Blocking>();
}

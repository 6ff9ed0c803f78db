//! The official Python agent (`AgentGatewayClient`, e2ee off) against our relay, conversing with
//! our person-side client: text, a widget and its answer, a widget update, a dismissal, replies
//! and read receipts. This proves our relay speaks the agent protocol the official SDK expects
//! and our person client reads what the official agent writes.

use pacerelle_core::human::{PersonEvent, PersonMessage};
use pacerelle_core::widget::WidgetKind;
use pacerelle_relay::{Relay, RelayConfig};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const AGENT: &str = "py-agent";
const AGENT_TOKEN: &str = "py-agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
const WAIT: Duration = Duration::from_secs(20);

/// The official agent as a child process, killed (by its own pid) when dropped.
struct OfficialAgent {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl OfficialAgent {
    fn start(base_url: &str) -> Self {
        let script = pacerelle_conformance::vectors_dir().join("oracle").join("official_agent.py");
        let mut child = pacerelle_conformance::python()
            .arg(script)
            .args(["--base-url", base_url, "--agent-id", AGENT, "--token", AGENT_TOKEN, "--deadline-seconds", "90"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the official agent");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let agent = OfficialAgent { child, lines };
        let ready = agent.lines.recv_timeout(Duration::from_secs(60)).expect("the official agent starts");
        assert_eq!(ready, "READY", "the official agent's first line");
        agent
    }

    /// Messages the official agent reports handled so far.
    fn handled(&self) -> Vec<serde_json::Value> {
        self.lines.try_iter().filter_map(|line| serde_json::from_str(&line).ok()).collect()
    }
}

impl Drop for OfficialAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn next_message(person: &PersonClient, reads: &mut Vec<String>) -> PersonMessage {
    loop {
        match person.next_event(WAIT).await.expect("an answer from the official agent") {
            PersonEvent::Message(message) => return message,
            PersonEvent::Read(receipt) => {
                assert_eq!(receipt.by, AGENT);
                reads.push(receipt.message_id);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_agent_converses_with_our_person_client_through_our_relay() {
    // Install first (blocking, outside the relay's runtime work).
    pacerelle_conformance::oracle_dir();
    let relay = Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN))
        .await
        .unwrap();
    let base_url = relay.base_url();
    let agent = tokio::task::spawn_blocking(move || OfficialAgent::start(&base_url)).await.unwrap();

    let person =
        PersonClient::connect(PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device("laptop"))
            .await
            .unwrap();
    let conversation = person.create_conversation(&[AGENT], false).await.unwrap();
    let mut reads = Vec::new();
    let mut sent = Vec::new();

    // Text, and a reply linked to it and routed to our device.
    let hello = "Bonjour, agent officiel ✓";
    sent.push(person.send_text(&conversation, AGENT, hello).unwrap());
    let reply = next_message(&person, &mut reads).await;
    assert_eq!(reply.text, format!("Received: {hello}"));
    assert_eq!(reply.from, AGENT);
    assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent[0].as_str()));
    assert_eq!(reply.to_device_id.as_deref(), Some("laptop"));
    assert!(!reply.encrypted);

    // A widget from the official agent, read by our person client.
    sent.push(person.send_text(&conversation, AGENT, "widget please").unwrap());
    let question = next_message(&person, &mut reads).await;
    let widget = question.widget.expect("a widget");
    assert_eq!((widget.id.as_str(), widget.kind), ("w-confirm-1", WidgetKind::Confirm));
    assert_eq!(widget.spec.get("title"), Some(&json!("Proceed?")));

    // Our answer, read by the official agent.
    sent.push(person.answer_widget(&conversation, AGENT, &widget.id, json!({"choice": "yes", "n": 2})).unwrap());
    let answered = next_message(&person, &mut reads).await;
    assert_eq!(answered.text, r#"Widget w-confirm-1 answered: {"choice": "yes", "n": 2} cancelled=False"#);

    // A widget update from the official agent.
    sent.push(person.send_text(&conversation, AGENT, "update please").unwrap());
    let update = next_message(&person, &mut reads).await;
    let update = update.widget_update.expect("a widget update");
    assert_eq!(update.widget_ref, "w-confirm-1");
    assert_eq!(update.patch.get("spec"), Some(&json!({"title": "Updated"})));

    // A dismissal.
    sent.push(person.cancel_widget(&conversation, AGENT, &widget.id).unwrap());
    let dismissed = next_message(&person, &mut reads).await;
    assert_eq!(dismissed.text, "Widget w-confirm-1 answered: null cancelled=True");

    // Every message was acknowledged by the official agent (READ receipts), and it handled each once.
    tokio::time::timeout(WAIT, async {
        while reads.len() < sent.len() {
            if let Ok(PersonEvent::Read(receipt)) = person.next_event(WAIT).await {
                reads.push(receipt.message_id);
            }
        }
    })
    .await
    .expect("a read receipt for every message");
    reads.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(reads, expected);
    assert_eq!(relay.pending_for_agent(AGENT), 0);
    let handled: Vec<String> =
        agent.handled().iter().filter_map(|event| event["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(handled, sent, "the official agent handled every message once, in order");

    drop(agent);
    person.close().await;
    relay.shutdown().await;
}

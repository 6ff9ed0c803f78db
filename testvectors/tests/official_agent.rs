//! The official Python agent (`AgentGatewayClient`) against our relay, conversing with our
//! person-side client: text, a widget and its answer, a widget update, a dismissal, replies and
//! read receipts, in plaintext; then, with end-to-end encryption on both sides (the official
//! agent's libsignal runtime and our native PQXDH, Double Ratchet and SPQR), text, a widget
//! answer and a file each way, with nothing readable crossing the relay. This proves our relay
//! speaks the agent protocol the official SDK expects and our person client reads and writes what
//! the official agent does.

use pacerelle_conformance::official_agent::{OfficialAgent, OfficialAgentConfig};
use pacerelle_core::human::{PersonEvent, PersonMessage};
use pacerelle_core::widget::WidgetKind;
use pacerelle_relay::{Relay, RelayConfig};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::json;
use std::time::Duration;

const AGENT: &str = "py-agent";
const AGENT_TOKEN: &str = "py-agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
const WAIT: Duration = Duration::from_secs(20);

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
    let mut agent = tokio::task::spawn_blocking(move || {
        OfficialAgent::start(&OfficialAgentConfig::new(&base_url, AGENT, AGENT_TOKEN))
    })
    .await
    .unwrap();

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_agent_with_e2ee_converses_with_our_encrypted_person_client() {
    use pacerelle_core::attachment::FileMetadata;
    use sha2::Digest as _;

    pacerelle_conformance::oracle_dir();
    let relay = Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN))
        .await
        .unwrap();
    let base_url = relay.base_url();
    // The official agent publishes its libsignal bundle to our relay, then opens its socket.
    let agent = tokio::task::spawn_blocking(move || {
        OfficialAgent::start(&OfficialAgentConfig::new(&base_url, AGENT, AGENT_TOKEN).encrypted())
    })
    .await
    .unwrap();

    let config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device("phone").encrypted();
    let person = PersonClient::connect(config).await.unwrap();
    let conversation = person.create_conversation(&[AGENT], false).await.unwrap();
    let mut reads = Vec::new();

    // Text: our first message starts the session (PQXDH with SPQR) from the agent's bundle.
    let hello = "Bonjour, agent chiffré ✓";
    let first = person.send_text(&conversation, AGENT, hello).unwrap();
    let reply = next_message(&person, &mut reads).await;
    assert!(reply.encrypted, "the official agent answered encrypted");
    assert_eq!(reply.text, format!("Received: {hello}"));
    assert_eq!(reply.reply_to_message_id.as_deref(), Some(first.as_str()));
    assert_eq!(reply.to_device_id.as_deref(), Some("phone"));

    // A widget and our encrypted answer.
    person.send_text(&conversation, AGENT, "widget please").unwrap();
    let question = next_message(&person, &mut reads).await;
    assert!(question.encrypted);
    let widget = question.widget.expect("a widget");
    person.answer_widget(&conversation, AGENT, &widget.id, json!({"choice": "no"})).unwrap();
    let answered = next_message(&person, &mut reads).await;
    assert_eq!(answered.text, r#"Widget w-confirm-1 answered: {"choice": "no"} cancelled=False"#);

    // A file each way: ours is downloaded and decrypted by the official agent, which sends the
    // same bytes back as a file of its own, which we download and decrypt.
    let content: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let metadata =
        FileMetadata { name: "notes-secretes.bin".into(), mime: "application/x-secret".into(), ..Default::default() };
    person.send_file(&conversation, AGENT, "a file for you", &content, metadata).await.unwrap();
    let echoed = next_message(&person, &mut reads).await;
    let digest: String = sha2::Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(echoed.text, format!("file notes-secretes.bin application/x-secret 3000 bytes sha256={digest}"));
    let attachment = echoed.attachments.first().expect("the official agent's file");
    assert_eq!(
        (attachment.name.as_str(), attachment.mime.as_str()),
        ("echo-notes-secretes.bin", "application/x-secret")
    );
    assert_eq!(person.download_attachment(attachment).await.unwrap(), content);

    // A longer conversation, so the post-quantum ratchet turns over several epochs with the
    // official runtime on the other side.
    for round in 0..300 {
        let text = format!("round {round}");
        person.send_text(&conversation, AGENT, &text).unwrap();
        let reply = next_message(&person, &mut reads).await;
        assert_eq!(reply.text, format!("Received: {text}"));
    }
    let status = person.pq_status(AGENT, &conversation).expect("a session");
    assert!(status.version1, "SPQR version 1 negotiated with the official agent");
    assert!(status.epoch >= 3, "SPQR epochs turned over: {}", status.epoch);
    eprintln!("SPQR epoch with the official agent after 303 round trips: {}", status.epoch);

    // Nothing readable crossed the relay: every message encrypted, no text, name or type, and
    // the blobs are ciphertext only.
    let observed = relay.observed();
    let contains = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|window| window == needle);
    let secrets: [&[u8]; 9] = [
        hello.as_bytes(),
        b"widget please",
        b"choice",
        b"a file for you",
        b"notes-secretes",
        b"application/x-secret",
        b"Received",
        b"round 1",
        &content[..64],
    ];
    for item in &observed {
        for secret in secrets {
            assert!(!contains(item, secret), "{:?} crossed the relay", String::from_utf8_lossy(secret));
        }
        if let Ok(frame) = serde_json::from_slice::<serde_json::Value>(item)
            && frame["type"] == "MSG"
        {
            assert_eq!(frame["encrypted"], json!(true), "every message encrypted: {frame}");
        }
    }
    assert!(observed.len() >= 8, "frames and blobs were observed: {}", observed.len());
    drop(agent);
    person.close().await;
    relay.shutdown().await;
}

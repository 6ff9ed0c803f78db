//! The official Python agent (`e2ee=True`) in an encrypted group with our person clients,
//! through our relay: Alice makes the group key and distributes it through Signal (to the
//! official agent's libsignal runtime and to the other persons' native sessions); group messages
//! flow each way, sealed once under the newest key; a rotation to epoch 2 when a member leaves,
//! after which epoch-2 messages flow both ways while an epoch-1 message still opens; a file in
//! the group each way. This proves our sender-key envelopes and group payloads are the official
//! ones, and that nothing readable (text, file, key) crossed the relay.

use pacerelle_conformance::official_agent::{OfficialAgent, OfficialAgentConfig};
use pacerelle_core::attachment::FileMetadata;
use pacerelle_core::human::{GroupMember, PersonEvent, PersonMessage};
use pacerelle_relay::{Relay, RelayConfig};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::{Value, json};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const AGENT: &str = "py-agent";
const AGENT_TOKEN: &str = "py-agent-token";
const PERSONS: [(&str, &str); 3] = [("alice", "alice-token"), ("bob", "bob-token"), ("carol", "carol-token")];
const WAIT: Duration = Duration::from_secs(30);

/// What one person client saw so far: messages by text, and the ids of messages it could not read.
#[derive(Default)]
struct Inbox {
    messages: BTreeMap<String, PersonMessage>,
    unreadable: Vec<String>,
}

impl Inbox {
    /// Waits for the message whose text is `text`.
    async fn message(&mut self, person: &PersonClient, text: &str) -> PersonMessage {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(message) = self.messages.get(text) {
                return message.clone();
            }
            self.next(person, deadline, text).await;
        }
    }

    /// Waits until message `id` is reported unreadable.
    async fn unreadable(&mut self, person: &PersonClient, id: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.unreadable.iter().any(|seen| seen == id) {
            self.next(person, deadline, id).await;
        }
    }

    async fn next(&mut self, person: &PersonClient, deadline: Instant, waiting_for: &str) {
        let left = deadline.saturating_duration_since(Instant::now());
        match person.next_event(left).await {
            Ok(PersonEvent::Message(message)) => {
                assert!(message.is_group() && message.encrypted, "only encrypted group messages here: {message:?}");
                assert!(self.messages.insert(message.text.clone(), message).is_none(), "a message shown twice");
            }
            Ok(PersonEvent::Unreadable { message_id, .. }) => self.unreadable.push(message_id),
            Ok(PersonEvent::Read(_)) => {}
            Ok(other) => panic!("{}: unexpected event {other:?}", person.person_id()),
            Err(error) => panic!("{} waited for {waiting_for:?}: {error}", person.person_id()),
        }
    }
}

fn epoch(message: &PersonMessage) -> i64 {
    message.group_key().expect("sealed under a group key").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_agent_in_an_encrypted_group_with_our_person_clients() {
    pacerelle_conformance::oracle_dir();
    let mut config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN);
    for (id, token) in PERSONS {
        config = config.person(id, token);
    }
    let relay = Relay::spawn(config).await.unwrap();
    let base_url = relay.base_url();
    let mut agent = tokio::task::spawn_blocking(move || {
        OfficialAgent::start(&OfficialAgentConfig::new(&base_url, AGENT, AGENT_TOKEN).encrypted())
    })
    .await
    .unwrap();

    let connect = |(id, token): (&str, &str), device: &str| {
        PersonClient::connect(PersonClientConfig::new(id, token, relay.base_url()).device(device).encrypted())
    };
    let alice = connect(PERSONS[0], "phone").await.unwrap();
    let bob = connect(PERSONS[1], "tablet").await.unwrap();
    let carol = connect(PERSONS[2], "laptop").await.unwrap();
    // Bob and Carol receive their keys from Alice through Signal sessions she starts from their bundles.
    bob.publish_prekeys().await.unwrap();
    carol.publish_prekeys().await.unwrap();
    let (mut alice_inbox, mut bob_inbox, mut carol_inbox) = (Inbox::default(), Inbox::default(), Inbox::default());

    // Alice opens the group and distributes epoch 1 to the official agent, Bob and Carol.
    let members = [GroupMember::agent(AGENT), GroupMember::person("bob"), GroupMember::person("carol")];
    let group = alice.create_group(&members).await.unwrap();
    assert_eq!(alice.group_epoch(&group), 1);

    // Alice's group message reaches the official agent's handler; its reply (sealed once by the
    // official SDK) reaches and opens for every person.
    let hello = "Bonjour le groupe, ici Alice ✓";
    let hello_id = alice.send_group_text(&group, hello).unwrap();
    assert_eq!(
        agent.wait_handled(hello, WAIT),
        json!({"event": "handled", "id": hello_id, "text": hello, "group": true})
    );
    let reply = format!("Received: {hello}");
    for (person, inbox) in [(&alice, &mut alice_inbox), (&bob, &mut bob_inbox), (&carol, &mut carol_inbox)] {
        let answer = inbox.message(person, &reply).await;
        assert_eq!((answer.from.as_str(), epoch(&answer)), (AGENT, 1), "{}", person.person_id());
        assert_eq!(answer.reply_to_message_id.as_deref(), Some(hello_id.as_str()));
        assert!(answer.to_device_id.is_none(), "group messages have no device routing");
    }
    // Bob and Carol read Alice's own message too, with the key she sent them.
    assert_eq!(bob_inbox.message(&bob, hello).await.from, "alice");
    assert_eq!(carol_inbox.message(&carol, hello).await.from, "alice");

    // Bob's group message, under the key he received from Alice.
    let from_bob = "Et voici Bob";
    bob.send_group_text(&group, from_bob).unwrap();
    agent.wait_handled(from_bob, WAIT);
    let reply = format!("Received: {from_bob}");
    assert_eq!(epoch(&alice_inbox.message(&alice, &reply).await), 1);
    assert_eq!(epoch(&bob_inbox.message(&bob, &reply).await), 1);
    assert_eq!(alice_inbox.message(&alice, from_bob).await.from, "bob");

    // Carol leaves: Alice rotates the key to epoch 2 for the official agent and Bob only.
    let remaining = [GroupMember::agent(AGENT), GroupMember::person("bob")];
    assert_eq!(alice.distribute_group_key(&group, &remaining).await.unwrap(), 2);

    // Epoch 2 both ways: Alice's and Bob's messages, and the official agent's replies, which
    // it seals under epoch 2 once it fetched it.
    let rotated = "Nouvelle époque, sans Carol";
    let rotated_id = alice.send_group_text(&group, rotated).unwrap();
    agent.wait_handled(rotated, WAIT);
    let reply = format!("Received: {rotated}");
    assert_eq!(epoch(&alice_inbox.message(&alice, &reply).await), 2);
    assert_eq!(epoch(&bob_inbox.message(&bob, &reply).await), 2);
    assert_eq!(epoch(&bob_inbox.message(&bob, rotated).await), 2);
    // Carol, who left, cannot read epoch 2.
    carol_inbox.unreadable(&carol, &rotated_id).await;
    assert_eq!(carol.group_epoch(&group), 1);

    let bob_rotated = "Bob à l'époque 2";
    bob.send_group_text(&group, bob_rotated).unwrap();
    agent.wait_handled(bob_rotated, WAIT);
    assert_eq!(epoch(&alice_inbox.message(&alice, bob_rotated).await), 2);
    assert_eq!(epoch(&bob_inbox.message(&bob, &format!("Received: {bob_rotated}")).await), 2);

    // An epoch-1 message still opens, for the official agent (which holds epoch 2 already) and
    // for the persons: Carol still seals under the only key she holds.
    let late = "Carol, encore à l'époque 1";
    carol.send_group_text(&group, late).unwrap();
    agent.wait_handled(late, WAIT);
    assert_eq!(epoch(&alice_inbox.message(&alice, late).await), 1);
    assert_eq!(epoch(&bob_inbox.message(&bob, late).await), 1);
    assert_eq!(epoch(&alice_inbox.message(&alice, &format!("Received: {late}")).await), 2);

    // A file in the group: Alice's is downloaded and decrypted by the official agent, which sends
    // the same bytes back to the whole group; Alice and Bob both download and decrypt it.
    let content: Vec<u8> = (0..4000u32).map(|i| (i * 13 % 251) as u8).collect();
    let metadata =
        FileMetadata { name: "plan-du-groupe.bin".into(), mime: "application/x-plan".into(), ..Default::default() };
    let caption = "le plan, pour le groupe";
    alice.send_file(&group, &format!("group:{group}"), caption, &content, metadata).await.unwrap();
    agent.wait_handled(caption, WAIT);
    let digest: String = sha2::Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    let echo_text = format!("file plan-du-groupe.bin application/x-plan 4000 bytes sha256={digest}");
    assert_eq!(bob_inbox.message(&bob, caption).await.attachments.len(), 1);
    for (person, inbox) in [(&alice, &mut alice_inbox), (&bob, &mut bob_inbox)] {
        let echoed = inbox.message(person, &echo_text).await;
        assert_eq!(epoch(&echoed), 2);
        let attachment = echoed.attachments.first().expect("the official agent's file");
        assert_eq!(
            (attachment.name.as_str(), attachment.mime.as_str()),
            ("echo-plan-du-groupe.bin", "application/x-plan")
        );
        assert_eq!(person.download_attachment(attachment).await.unwrap(), content);
    }

    // The official agent handled every group message exactly once.
    let texts: Vec<&str> = agent.handled().iter().filter_map(|event| event["text"].as_str()).collect();
    assert_eq!(texts, [hello, from_bob, rotated, bob_rotated, late, caption]);
    assert!(agent.handled().iter().all(|event| event["group"] == json!(true)));

    // Nothing readable crossed the relay: no text, file name, type or byte, no sender-key
    // plaintext or key; every group message an encrypted `pacerelle.group.message`.
    let observed = relay.observed();
    let contains = |haystack: &[u8], needle: &[u8]| haystack.windows(needle.len()).any(|window| window == needle);
    let secrets: [&[u8]; 11] = [
        hello.as_bytes(),
        from_bob.as_bytes(),
        "Nouvelle".as_bytes(),
        late.as_bytes(),
        caption.as_bytes(),
        b"Received",
        b"plan-du-groupe",
        b"application/x-plan",
        b"pacerelle.group.sender_key",
        b"raw_key_b64",
        &content[..64],
    ];
    let mut group_messages = 0;
    let mut key_distributions = 0;
    for item in &observed {
        for secret in secrets {
            assert!(!contains(item, secret), "{:?} crossed the relay", String::from_utf8_lossy(secret));
        }
        let Ok(value) = serde_json::from_slice::<Value>(item) else { continue };
        if value.get("envelopes").is_some() {
            key_distributions += 1;
        }
        if value["type"] == "MSG" && value["to"] == format!("group:{group}") {
            group_messages += 1;
            assert_eq!(value["encrypted"], json!(true), "{value}");
            let outer = base64_decode(value["payload_b64"].as_str().unwrap());
            let outer: Value = serde_json::from_slice(&outer).unwrap();
            assert_eq!(outer["type"], "pacerelle.group.message");
        }
    }
    assert_eq!(key_distributions, 2, "both distributions were observed (and held no key in the clear)");
    assert!(group_messages >= 12, "group messages observed: {group_messages}");

    drop(agent);
    for person in [alice, bob, carol] {
        person.close().await;
    }
    relay.shutdown().await;
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64 payload")
}

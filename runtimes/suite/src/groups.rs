//! Encrypted group conversations on each runtime (issue 11): two encrypted people and the agent
//! in one group through the relay. Each person's group message reaches the agent's handler
//! (a group message, encrypted), the agent's answer to the group reaches and opens for both
//! people, a key rotation to epoch 2 is followed by messages both ways under epoch 2, and the
//! relay never saw a group message's plaintext or a group key.
//!
//! The agent's side is the core's (`core/src/agent/groups.rs`); what this case adds is that
//! every runtime carries the group-key fetch, the keys' storage and the group sends, with a
//! handler that does nothing group-specific: the behaviour's `Received: <text>` reply, which
//! goes to the group for a group message.

use crate::behaviour::Behaviour;
use crate::cases::{leaks, msg_frames};
use crate::harness::{Harness, Running};
use crate::prekeys::SharedStore;
use crate::waiting::{run, wait_until};
use base64::Engine as _;
use pacerelle_core::agent::e2ee::OutboundCryptoError;
use pacerelle_core::agent::{AgentConfig, SendError};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::human::{GroupMember, PersonEvent, PersonMessage};
use pacerelle_core::store::StoredGroupKey;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_runtime_support::ClientError;
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const AGENT: &str = "groups-agent";
const AGENT_TOKEN: &str = "groups-agent-token";
const ALICE: (&str, &str) = ("alice", "alice-token");
const BOB: (&str, &str) = ("bob", "bob-token");
/// How long anything the agent or a person should do may take (key distribution starts a
/// PQXDH session per member, slower in debug builds).
const WAIT: Duration = Duration::from_secs(20);
/// How long `connect` may take to return after `close`.
const PROMPT: Duration = Duration::from_secs(2);

/// The group messages the people write, and what the agent sends on its own.
const ALICE_FIRST: &str = "alice to the group, epoch one";
const BOB_FIRST: &str = "bob to the group, epoch one";
const ALICE_ROTATED: &str = "alice after the rotation";
const BOB_ROTATED: &str = "bob after the rotation";
const UNPROMPTED: &str = "the agent, unprompted, to the group";
const TOO_EARLY: &str = "sent before the agent held a key";

/// One person and the group messages it received, by text (each must arrive once).
struct Member {
    person: PersonClient,
    messages: BTreeMap<String, PersonMessage>,
}

impl Member {
    async fn connect(relay: &RelayHandle, (id, token): (&str, &str), device: &str) -> Member {
        let config = PersonClientConfig::new(id, token, relay.base_url()).device(device).encrypted();
        let person = PersonClient::connect(config).await.expect("the person connects");
        Member { person, messages: BTreeMap::new() }
    }

    /// Waits for the group message whose text is `text`. Anything but an encrypted group
    /// message (or a read receipt, or a key-distribution report) fails the case at once.
    async fn message(&mut self, text: &str) -> PersonMessage {
        let deadline = Instant::now() + WAIT;
        let who = self.person.person_id();
        loop {
            if let Some(message) = self.messages.get(text) {
                return message.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.person.next_event(left).await {
                Ok(PersonEvent::Message(message)) => {
                    assert!(
                        message.is_group() && message.encrypted,
                        "{who}: not an encrypted group message: {message:?}"
                    );
                    let text = message.text.clone();
                    assert!(self.messages.insert(text.clone(), message).is_none(), "{who}: {text:?} arrived twice");
                }
                Ok(
                    PersonEvent::Read(_)
                    | PersonEvent::GroupKeyDistributed { .. }
                    | PersonEvent::PrekeysPublished { .. },
                ) => {}
                Ok(other) => panic!("{who} waiting for {text:?}: {other:?}"),
                Err(error) => panic!("{who} waiting for {text:?}: {error}"),
            }
        }
    }
}

/// The epoch a person's message was sealed under.
fn epoch(message: &PersonMessage) -> i64 {
    message.group_key().unwrap_or_else(|| panic!("{:?} was not sealed under a group key", message.text)).1
}

/// The group keys the agent stored for `group`, by epoch.
fn stored_keys(store: &SharedStore, group: &str) -> BTreeMap<u64, StoredGroupKey> {
    let keys = store.snapshot().group_keys.into_values();
    keys.filter(|key| key.conversation_id == group).map(|key| (key.epoch, key)).collect()
}

/// The agent answers `text`, sent by `from` as message `id`, to the whole group: the handler
/// saw it once, as an encrypted group message, and both people open the answer under `epoch`.
async fn answered(name: &str, behaviour: &Behaviour, members: [&mut Member; 2], id: &str, text: &str, epoch_now: i64) {
    let reply = format!("Received: {text}");
    for member in members {
        let answer = member.message(&reply).await;
        let who = member.person.person_id();
        assert_eq!(answer.from, AGENT, "{name}: {who}");
        assert_eq!(answer.reply_to_message_id.as_deref(), Some(id), "{name}: {who}: linked to the message");
        assert!(answer.to_device_id.is_none(), "{name}: {who}: group messages have no device routing");
        assert_eq!(epoch(&answer), epoch_now, "{name}: {who}: the agent seals under the newest epoch");
    }
    let call = behaviour.call(id).unwrap_or_else(|| panic!("{name}: {text:?} never reached the handler"));
    assert!(call.group && call.encrypted && call.text == text, "{name}: the handler saw {call:?}");
    assert_eq!(behaviour.calls_for(id), 1, "{name}: {text:?} handled once");
}

/// Two encrypted people (Alice, who makes the group and its keys, and Bob) and the agent in one
/// group: messages each way under epoch 1, a send before the agent holds a key refused (never
/// plaintext), a rotation to epoch 2 and messages each way under it; the agent stored both
/// keys, acknowledged every group message, and neither plaintext nor key crossed the relay.
pub fn an_encrypted_group_with_two_people<H: Harness>() {
    run(async {
        let name = H::NAME;
        let config =
            RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(ALICE.0, ALICE.1).person(BOB.0, BOB.1);
        let relay = Relay::spawn(config).await.expect("the relay starts");
        let store = SharedStore::default();
        let behaviour = Behaviour::new();
        let mut client = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).expect("a base URL");
        client.e2ee = true;
        let core = AgentConfig {
            backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
            ..AgentConfig::new(AGENT)
        };
        let agent: Running = H::start_with_store(client, core, behaviour.clone(), Box::new(store.clone()));
        // Alice distributes the key from the agent's bundle, published before its socket opens.
        wait_until("the agent to publish its prekeys and connect", || agent.is_connected()).await;

        let mut alice = Member::connect(&relay, ALICE, "phone").await;
        let mut bob = Member::connect(&relay, BOB, "tablet").await;
        // Alice sends Bob the group key through a Signal session she starts from his bundle.
        bob.person.publish_prekeys().await.expect("Bob publishes his prekeys");
        let members = [GroupMember::agent(AGENT), GroupMember::person(BOB.0)];
        let group = alice.person.create_group(&members).await.expect("Alice makes the group and its key");
        let to_group = format!("group:{group}");
        assert_eq!(alice.person.group_epoch(&group), 1, "{name}");

        // Before any group message the agent holds no key: a send to the group is refused, not
        // sent in plaintext, and fetches the keys (stored for the next send).
        match agent.send_text(&group, &to_group, TOO_EARLY) {
            Err(ClientError::Send(SendError::Crypto(OutboundCryptoError::NoGroupKey { conversation_id }))) => {
                assert_eq!(conversation_id, group, "{name}")
            }
            other => panic!("{name}: a group send without a key gave {other:?}"),
        }
        wait_until("the agent to fetch and store epoch 1", || stored_keys(&store, &group).contains_key(&1)).await;

        // Epoch 1: each person writes, the agent answers the group.
        let sent = alice.person.send_group_text(&group, ALICE_FIRST).expect("Alice sends");
        answered(name, &behaviour, [&mut alice, &mut bob], &sent, ALICE_FIRST, 1).await;
        assert_eq!(bob.message(ALICE_FIRST).await.from, ALICE.0, "{name}: Bob reads Alice");
        let sent = bob.person.send_group_text(&group, BOB_FIRST).expect("Bob sends");
        answered(name, &behaviour, [&mut alice, &mut bob], &sent, BOB_FIRST, 1).await;
        assert_eq!(epoch(&alice.message(BOB_FIRST).await), 1, "{name}: Alice reads Bob");

        // The rotation: the agent learns of epoch 2 from the first message under it (a key it
        // does not hold: fetched, stored with the receipt, then the message opens).
        assert_eq!(alice.person.rotate_group_key(&group).await.expect("Alice rotates the key"), 2, "{name}");
        let sent = alice.person.send_group_text(&group, ALICE_ROTATED).expect("Alice sends");
        answered(name, &behaviour, [&mut alice, &mut bob], &sent, ALICE_ROTATED, 2).await;
        assert_eq!(epoch(&bob.message(ALICE_ROTATED).await), 2, "{name}: Bob reads epoch 2");
        let sent = bob.person.send_group_text(&group, BOB_ROTATED).expect("Bob sends");
        answered(name, &behaviour, [&mut alice, &mut bob], &sent, BOB_ROTATED, 2).await;
        assert_eq!(epoch(&alice.message(BOB_ROTATED).await), 2, "{name}: Bob seals under epoch 2");

        // A send outside any handler goes to the group too, under the newest epoch.
        let unprompted = agent.send_text(&group, &to_group, UNPROMPTED).expect("the agent sends to the group");
        for member in [&mut alice, &mut bob] {
            let arrived = member.message(UNPROMPTED).await;
            assert_eq!((arrived.id.as_str(), epoch(&arrived)), (unprompted.as_str(), 2), "{name}");
        }

        // Every group message was acknowledged, and the agent keeps both epochs.
        wait_until("every group message acknowledged", || relay.pending_for_agent(AGENT) == 0).await;
        let keys = stored_keys(&store, &group);
        assert_eq!(keys.keys().copied().collect::<Vec<_>>(), [1, 2], "{name}: the keys the agent stored");
        assert_eq!(behaviour.calls().len(), 4, "{name}: four group messages, each handled once");

        // What the relay saw: every group message encrypted, a `pacerelle.group.message` outside
        // (its own format), and no text, inner payload, sender-key plaintext or key anywhere.
        let observed = relay.observed();
        let group_msgs: Vec<Value> =
            msg_frames(&observed).into_iter().filter(|frame| frame["to"] == json!(to_group)).collect();
        // Four from the people, four answers and the unprompted send from the agent.
        assert!(group_msgs.len() >= 9, "{name}: only {} group messages observed", group_msgs.len());
        for frame in &group_msgs {
            assert_eq!(frame["encrypted"], json!(true), "{name}: a group message in plaintext: {frame}");
            let outer = frame["payload_b64"].as_str().and_then(crate::cases::base64_decode);
            let outer: Value = outer.and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
            assert_eq!(outer["type"], json!("pacerelle.group.message"), "{name}: {frame}");
        }
        let distributions = observed.iter().filter_map(|item| serde_json::from_slice::<Value>(item).ok());
        assert_eq!(
            distributions.filter(|body| body.get("envelopes").is_some()).count(),
            2,
            "{name}: two distributions"
        );
        let raw_keys: Vec<Vec<u8>> = keys.values().map(|key| key.raw_key.expose().to_vec()).collect();
        let b64_keys: Vec<String> =
            raw_keys.iter().map(|key| base64::engine::general_purpose::STANDARD.encode(key)).collect();
        let texts = [ALICE_FIRST, BOB_FIRST, ALICE_ROTATED, BOB_ROTATED, UNPROMPTED, TOO_EARLY, "Received: "];
        let formats = ["chat.message", "pacerelle.group.sender_key", "raw_key_b64"];
        let needles = texts.iter().chain(&formats).map(|text| text.as_bytes());
        let needles =
            needles.chain(raw_keys.iter().map(Vec::as_slice)).chain(b64_keys.iter().map(|key| key.as_bytes()));
        for needle in needles {
            let seen = leaks(&observed, needle);
            assert!(
                seen.is_empty(),
                "{name}: {:?} crossed the relay readable: {seen:?}",
                String::from_utf8_lossy(needle)
            );
        }

        agent.close();
        match agent.finished(PROMPT).await {
            Some(Ok(())) => {}
            other => panic!("{name}: connect after close gave {other:?}"),
        }
        for member in [alice, bob] {
            member.person.close().await;
        }
        relay.shutdown().await;
    });
}

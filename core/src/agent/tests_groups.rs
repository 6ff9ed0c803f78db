//! Encrypted groups on the agent side, end to end without I/O: a person core distributes and
//! rotates a group key to the agent, and the test carries frames and HTTP answers between them
//! as the relay would.

use super::tests::encrypted::{drain_into, e2ee_agent, person_frames, to_agent, to_person};
use super::tests::{at, frames};
use super::*;
use crate::human::group::GroupMember;
use crate::human::group::named_key;
use crate::human::{Person, PersonConfig, PersonEvent, PersonInput, PersonOutput};
use crate::payload::group::GroupKey;
use crate::wire::http::{GroupKeyEnvelope, HttpMethod, HttpRequest, HttpResponse};
use crate::wire::person::{DistributeGroupKeys, FetchedBundle};
use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::{Value, json};
use zeroize::Zeroizing;

const GROUP: &str = "g1";
const TO_GROUP: &str = "group:g1";

fn ok(body: Vec<u8>) -> Result<HttpResponse, String> {
    Ok(HttpResponse { status: 200, body })
}

/// The agent's bundle as the relay hands it to a person.
fn agent_bundle(published: &[HttpRequest]) -> Vec<u8> {
    let bundle: crate::wire::http::PrekeyBundleBody = serde_json::from_slice(&published[0].body).unwrap();
    let one_time: crate::wire::http::OneTimePrekeysBody = serde_json::from_slice(&published[1].body).unwrap();
    let fetched = FetchedBundle {
        bundle,
        prekey_id: Some(one_time.one_time_prekeys[0].prekey_id),
        prekey_public: Some(one_time.one_time_prekeys[0].public_key.clone()),
    };
    serde_json::to_vec(&fetched).unwrap()
}

/// Alice (device `phone`), connected.
fn alice() -> Person {
    let config = PersonConfig { e2ee: true, device_id: Some("phone".into()), ..PersonConfig::new("alice") };
    let mut person = Person::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(71)));
    person.start();
    person.handle_input(at(1), PersonInput::Connected).unwrap();
    let _ = person_frames(&mut person);
    person
}

fn answer(person: &mut Person, request: &HttpRequest, body: &[u8]) -> (Vec<String>, Vec<HttpRequest>) {
    person.handle_input(at(2), PersonInput::Http(request.id, ok(body.to_vec()))).unwrap();
    person_frames(person)
}

/// Alice's distribution (or rotation) goes on: the agent's bundle when she asks for it, then
/// her post; returns the envelopes as `GET /agent/group-keys` serves them.
fn distribute(alice: &mut Person, bundle: &[u8]) -> Vec<GroupKeyEnvelope> {
    let (_, mut requests) = person_frames(alice);
    if let Some(fetch) = requests.iter().find(|request| request.path == "/person/agents/agent-1/prekey-bundle") {
        let fetch = fetch.clone();
        requests = answer(alice, &fetch, bundle).1;
    }
    let post = requests.into_iter().find(|request| request.path == "/person/group-keys").expect("a post");
    let posted: DistributeGroupKeys = serde_json::from_slice(&post.body).unwrap();
    answer(alice, &post, br#"{"stored":1}"#);
    posted
        .envelopes
        .into_iter()
        .map(|envelope| GroupKeyEnvelope {
            conversation_id: envelope.conversation_id,
            key_id: envelope.key_id,
            epoch: envelope.epoch,
            sender_id: "alice".into(),
            sender_device_id: envelope.sender_device_id,
            envelope_b64: envelope.envelope_b64,
        })
        .collect()
}

/// Alice's group message (her own key sync answered with nothing new), as the agent gets it.
fn alice_says(alice: &mut Person, text: &str) -> String {
    alice.send_text(GROUP, TO_GROUP, text).unwrap();
    let (_, requests) = person_frames(alice);
    let (sent, _) = answer(alice, &requests[0], b"[]");
    to_agent(&sent[0], "alice")
}

fn http(outputs: &[Output]) -> Vec<HttpRequest> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Http(request) => Some(request.clone()),
            _ => None,
        })
        .collect()
}

fn events(outputs: &[Output]) -> Vec<Event> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn message(outputs: &[Output]) -> AgentMessage {
    match events(outputs).as_slice() {
        [Event::Message(message)] => message.clone(),
        other => panic!("one message: {other:?}"),
    }
}

/// What the person reads of an agent's frame.
fn person_reads(alice: &mut Person, frame: &Value) -> String {
    alice.handle_input(at(9), PersonInput::Frame(to_person(frame))).unwrap();
    std::iter::from_fn(|| alice.poll_output())
        .find_map(|output| match output {
            PersonOutput::Event(PersonEvent::Message(message)) => Some(message.text),
            _ => None,
        })
        .expect("the person reads the agent's group message")
}

/// The fetch the agent asks for: `GET /agent/group-keys` of the group.
fn key_fetch(outputs: &[Output]) -> HttpRequest {
    let calls = http(outputs);
    assert_eq!(calls.len(), 1, "{outputs:?}");
    assert_eq!((calls[0].method, calls[0].path.as_str()), (HttpMethod::Get, "/agent/group-keys?conversation_id=g1"));
    calls[0].clone()
}

#[test]
fn group_messages_open_after_the_key_fetch_across_a_rotation_and_replies_use_the_newest_epoch() {
    let mut store = AgentSnapshot::default();
    let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 61, &mut store);
    let bundle = agent_bundle(&published);
    let mut alice = alice();
    alice.distribute_group_key(GROUP, &[GroupMember::agent("agent-1")]).unwrap();
    let served = distribute(&mut alice, &bundle);
    assert_eq!(served.len(), 1);

    // The message names a key the agent lacks: it asks for the group's keys and waits.
    agent.handle_input(at(3), Input::Frame(alice_says(&mut alice, "bonjour le groupe"))).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    let fetch = key_fetch(&outputs);
    assert!(events(&outputs).is_empty() && frames(&outputs).is_empty(), "{outputs:?}");
    assert!(store.receipts.is_empty() && store.group_keys.is_empty());

    // The answer: one commit holds the receipt, the key and the session the envelope started.
    agent.handle_input(at(4), Input::Http(fetch.id, ok(serde_json::to_vec(&served).unwrap()))).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    let commits: Vec<&StoreChanges> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Persist(changes) => Some(changes),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 1, "{outputs:?}");
    assert_eq!(commits[0].put_receipts.len(), 1);
    assert_eq!(commits[0].put_group_keys.len(), 1);
    assert!(commits[0].e2ee.put_sessions.iter().any(|(name, _)| name == "human:alice:g1:device:phone"));
    let first = message(&outputs);
    assert_eq!((first.text.as_str(), first.is_group(), first.encrypted), ("bonjour le groupe", true, true));
    let epoch_one = store.group_keys.values().next().unwrap().clone();
    assert_eq!((epoch_one.conversation_id.as_str(), epoch_one.epoch), (GROUP, 1));

    // The handler's reply syncs the group's keys first; the handler returns and its acceptance
    // waits for the reply, which nothing holds durably yet.
    let reply = agent.while_handling(&first.id, |agent| agent.reply(&first, "merci")).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    let fetch = key_fetch(&outputs);
    assert!(frames(&outputs).is_empty(), "{outputs:?}");
    agent.accept(&first.id, at(5)).unwrap();
    assert!(drain_into(&mut agent, &mut store).is_empty(), "no acceptance, no acknowledgement yet");
    assert!(matches!(store.receipts[&first.id].state, ReceiptState::Pending { .. }));

    // The answer (the key held, skipped): sealed once under the group key, to the group, no
    // device, then recorded with the acceptance, then acknowledged; Alice reads it.
    agent.handle_input(at(5), Input::Http(fetch.id, ok(serde_json::to_vec(&served).unwrap()))).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    let sent_frames = frames(&outputs);
    assert_eq!(sent_frames.len(), 2, "{outputs:?}");
    let sent = sent_frames[0].clone();
    assert_eq!(
        (sent["id"].as_str(), sent["to"].as_str(), sent["encrypted"].as_bool()),
        (Some(reply.as_str()), Some(TO_GROUP), Some(true))
    );
    assert!(sent.get("to_device_id").is_none());
    assert_eq!(named_key(GROUP, sent["payload_b64"].as_str().unwrap()).unwrap().1, 1);
    assert_eq!(sent_frames[1]["type"], "ACK_READ");
    assert_eq!(store.sent_frames[&first.id].len(), 1, "the group reply is recorded with the acceptance");
    assert!(matches!(store.receipts[&first.id].state, ReceiptState::Accepted { .. }));
    assert!(store.outbox.is_empty());
    assert_eq!(person_reads(&mut alice, &sent), "merci");

    // Rotation: the relay serves both envelopes; the held one is skipped (its Signal message
    // key is spent), the new one taken.
    alice.rotate_group_key(GROUP).unwrap();
    let rotated = distribute(&mut alice, &bundle);
    let both: Vec<GroupKeyEnvelope> = served.iter().chain(&rotated).cloned().collect();
    agent.handle_input(at(6), Input::Frame(alice_says(&mut alice, "époque deux"))).unwrap();
    let fetch = key_fetch(&drain_into(&mut agent, &mut store));
    agent.handle_input(at(7), Input::Http(fetch.id, ok(serde_json::to_vec(&both).unwrap()))).unwrap();
    let second = message(&drain_into(&mut agent, &mut store));
    assert_eq!(second.text, "époque deux");
    assert_eq!(store.group_keys.len(), 2);

    // A late epoch-1 message still opens, without a fetch.
    let key = GroupKey {
        conversation_id: GROUP.into(),
        key_id: epoch_one.key_id.clone(),
        epoch: 1,
        raw_key: Zeroizing::new(epoch_one.raw_key.expose().try_into().unwrap()),
    };
    let late = json!({"type": "MSG", "id": "late", "conversation_id": GROUP, "from": "alice", "to": TO_GROUP,
                      "payload_b64": crate::payload::group::seal(&key, &[3; 12], "encore l'époque 1"), "encrypted": true});
    agent.handle_input(at(8), Input::Frame(late.to_string())).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    assert!(http(&outputs).is_empty());
    assert_eq!(message(&outputs).text, "encore l'époque 1");

    // A send outside a handler uses epoch 2 (through the outbox), and Alice reads it.
    agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "à tous")).unwrap();
    let fetch = key_fetch(&drain_into(&mut agent, &mut store));
    agent.handle_input(at(9), Input::Http(fetch.id, ok(serde_json::to_vec(&both).unwrap()))).unwrap();
    let sent = frames(&drain_into(&mut agent, &mut store)).remove(0);
    assert_eq!(named_key(GROUP, sent["payload_b64"].as_str().unwrap()).unwrap().1, 2);
    assert_eq!(store.outbox.len(), 1);
    assert_eq!(person_reads(&mut alice, &sent), "à tous");

    // The keys survive a restart: a new agent from the store opens and seals, its sync
    // bringing nothing new.
    let (mut restarted, _) = e2ee_agent(store.clone(), 62, &mut store);
    restarted.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "de retour")).unwrap();
    let fetch = key_fetch(&drain_into(&mut restarted, &mut store));
    restarted.handle_input(at(10), Input::Http(fetch.id, ok(serde_json::to_vec(&both).unwrap()))).unwrap();
    let sent = frames(&drain_into(&mut restarted, &mut store)).remove(0);
    assert_eq!(named_key(GROUP, sent["payload_b64"].as_str().unwrap()).unwrap().1, 2);
}

/// The agent with epoch 1 of Alice's group held (from her first message), Alice, the agent's
/// bundle and the envelopes served so far.
fn agent_in_a_group(seed: u64, store: &mut AgentSnapshot) -> (Agent, Person, Vec<u8>, Vec<GroupKeyEnvelope>) {
    let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), seed, store);
    let bundle = agent_bundle(&published);
    let mut alice = alice();
    alice.distribute_group_key(GROUP, &[GroupMember::agent("agent-1")]).unwrap();
    let served = distribute(&mut alice, &bundle);
    agent.handle_input(at(3), Input::Frame(alice_says(&mut alice, "bonjour"))).unwrap();
    let fetch = key_fetch(&drain_into(&mut agent, store));
    agent.handle_input(at(4), Input::Http(fetch.id, ok(serde_json::to_vec(&served).unwrap()))).unwrap();
    let first = message(&drain_into(&mut agent, store));
    agent.accept(&first.id, at(4)).unwrap();
    drain_into(&mut agent, store);
    assert_eq!(store.group_keys.len(), 1);
    (agent, alice, bundle, served)
}

#[test]
fn a_group_send_syncs_first_so_a_rotation_is_used_before_any_message_under_it() {
    let mut store = AgentSnapshot::default();
    let (mut agent, mut alice, bundle, served) = agent_in_a_group(65, &mut store);

    // Alice rotates (a member left); nothing under epoch 2 has reached the agent yet.
    alice.rotate_group_key(GROUP).unwrap();
    let rotated = distribute(&mut alice, &bundle);
    let both: Vec<GroupKeyEnvelope> = served.iter().chain(&rotated).cloned().collect();

    // Two sends while one sync is in flight: one fetch, then both sealed under epoch 2, in order.
    let first = agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "un")).unwrap();
    let second = agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "deux")).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    let fetch = key_fetch(&outputs);
    assert!(frames(&outputs).is_empty(), "nothing sealed before the sync: {outputs:?}");
    agent.handle_input(at(5), Input::Http(fetch.id, ok(serde_json::to_vec(&both).unwrap()))).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    let sent: Vec<Value> = frames(&outputs).into_iter().filter(|frame| frame["type"] == "MSG").collect();
    let ids: Vec<&str> = sent.iter().map(|frame| frame["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    for frame in &sent {
        assert_eq!(named_key(GROUP, frame["payload_b64"].as_str().unwrap()).unwrap().1, 2);
    }
    assert_eq!(store.group_keys.len(), 2, "the new key is held (and stored) from the sync");
    assert_eq!(store.outbox.len(), 2);
    assert_eq!(person_reads(&mut alice, &sent[0]), "un");
    assert_eq!(person_reads(&mut alice, &sent[1]), "deux");
}

#[test]
fn a_failed_key_sync_seals_under_the_newest_key_held() {
    let mut store = AgentSnapshot::default();
    let (mut agent, mut alice, _, _) = agent_in_a_group(66, &mut store);
    let failures: [Result<HttpResponse, String>; 3] = [
        Err("connection refused".into()),
        Ok(HttpResponse { status: 503, body: Vec::new() }),
        ok(b"{\"not\": \"a list\"}".to_vec()),
    ];
    for (index, failure) in failures.into_iter().enumerate() {
        let text = format!("malgré tout {index}");
        let id = agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, &text)).unwrap();
        let fetch = key_fetch(&drain_into(&mut agent, &mut store));
        agent.handle_input(at(5), Input::Http(fetch.id, failure)).unwrap();
        let sent = frames(&drain_into(&mut agent, &mut store));
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(store.outbox.len(), index + 1);
        assert_eq!(sent[0]["id"].as_str(), Some(id.as_str()));
        assert_eq!(named_key(GROUP, sent[0]["payload_b64"].as_str().unwrap()).unwrap().1, 1);
        assert_eq!(person_reads(&mut alice, &sent[0]), text);
    }
}

#[test]
fn a_handler_reply_waiting_for_the_sync_survives_a_lost_socket_and_is_acknowledged_after_it() {
    let mut store = AgentSnapshot::default();
    let (mut agent, mut alice, _, served) = agent_in_a_group(67, &mut store);
    let asked = alice_says(&mut alice, "question");
    agent.handle_input(at(5), Input::Frame(asked.clone())).unwrap();
    let question = message(&drain_into(&mut agent, &mut store));
    agent.while_handling(&question.id, |agent| agent.reply(&question, "réponse")).unwrap();
    let fetch = key_fetch(&drain_into(&mut agent, &mut store));
    agent.accept(&question.id, at(6)).unwrap();

    // The socket drops before the keys answer: the reply is sealed and recorded with the
    // acceptance, nothing leaves, no acknowledgement.
    agent.handle_input(at(6), Input::Disconnected).unwrap();
    drain_into(&mut agent, &mut store);
    agent.handle_input(at(7), Input::Http(fetch.id, ok(serde_json::to_vec(&served).unwrap()))).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    assert!(frames(&outputs).is_empty(), "{outputs:?}");
    assert_eq!(store.sent_frames[&question.id].len(), 1);
    assert!(matches!(store.receipts[&question.id].state, ReceiptState::Accepted { .. }));

    // The relay replays the question on the next socket: the reply goes again, then the ACK.
    agent.handle_input(at(8), Input::Connected).unwrap();
    drain_into(&mut agent, &mut store);
    agent.handle_input(at(8), Input::Frame(asked)).unwrap();
    let replayed = frames(&drain_into(&mut agent, &mut store));
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    assert_eq!(replayed[1]["type"], "ACK_READ");
    assert_eq!(person_reads(&mut alice, &replayed[0]), "réponse");
}

#[test]
fn a_key_that_never_arrives_ends_undeliverable_after_the_bounded_deliveries() {
    let mut store = AgentSnapshot::default();
    let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 63, &mut store);
    agent.config.max_delivery_attempts = 3;
    let bundle = agent_bundle(&published);
    let mut alice = alice();
    alice.distribute_group_key(GROUP, &[GroupMember::agent("agent-1")]).unwrap();
    let _never_served = distribute(&mut alice, &bundle);
    let frame = alice_says(&mut alice, "perdu");
    let id = serde_json::from_str::<Value>(&frame).unwrap()["id"].as_str().unwrap().to_owned();

    let answers: [Result<HttpResponse, String>; 3] =
        [ok(b"[]".to_vec()), Err("connection refused".into()), Ok(HttpResponse { status: 503, body: Vec::new() })];
    for (attempt, result) in answers.into_iter().enumerate() {
        agent.handle_input(at(3), Input::Frame(frame.clone())).unwrap();
        // A replay while the fetch is in flight waits with the first delivery: one fetch.
        agent.handle_input(at(3), Input::Frame(frame.clone())).unwrap();
        let fetch = key_fetch(&drain_into(&mut agent, &mut store));
        agent.handle_input(at(4), Input::Http(fetch.id, result)).unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        assert_eq!(store.failures[&id].attempts, attempt as u32 + 1);
        if attempt < 2 {
            assert!(frames(&outputs).is_empty() && events(&outputs).is_empty(), "{outputs:?}");
        } else {
            assert_eq!(frames(&outputs)[0]["type"], "ACK_READ");
            let reported = events(&outputs);
            assert!(
                matches!(reported.as_slice(), [Event::Undeliverable(Undeliverable { message_id, reason: UndeliverableReason::Unreadable { attempts: 3, .. }, .. })] if *message_id == id),
                "{reported:?}"
            );
        }
    }
    // Given up: a further replay is acknowledged again, without a fetch.
    agent.handle_input(at(5), Input::Frame(frame)).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    assert!(http(&outputs).is_empty());
    assert_eq!(frames(&outputs).len(), 1);
    assert!(store.receipts.is_empty() && store.group_keys.is_empty());
}

#[test]
fn an_envelope_that_does_not_match_its_key_is_refused_and_a_send_without_a_key_is_never_plaintext() {
    let mut store = AgentSnapshot::default();
    let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 64, &mut store);
    let bundle = agent_bundle(&published);

    // No key held: the send is refused (nothing leaves) and the group's keys are asked for.
    let error = agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "secret")).unwrap_err();
    assert_eq!(error, SendError::Crypto(e2ee::OutboundCryptoError::NoGroupKey { conversation_id: GROUP.into() }));
    let outputs = drain_into(&mut agent, &mut store);
    assert!(frames(&outputs).is_empty());
    let fetch = key_fetch(&outputs);
    agent.handle_input(at(2), Input::Http(fetch.id, ok(b"[]".to_vec()))).unwrap();
    assert!(drain_into(&mut agent, &mut store).is_empty());

    let mut alice = alice();
    alice.distribute_group_key(GROUP, &[GroupMember::agent("agent-1")]).unwrap();
    let genuine = distribute(&mut alice, &bundle);
    agent.handle_input(at(3), Input::Frame(alice_says(&mut alice, "bonjour"))).unwrap();
    let fetch = key_fetch(&drain_into(&mut agent, &mut store));
    // The relay relabels the envelope's epoch: the key inside says otherwise.
    let relabelled = vec![GroupKeyEnvelope { epoch: 7, ..genuine[0].clone() }];
    agent.handle_input(at(4), Input::Http(fetch.id, ok(serde_json::to_vec(&relabelled).unwrap()))).unwrap();
    let outputs = drain_into(&mut agent, &mut store);
    assert!(events(&outputs).is_empty() && frames(&outputs).is_empty(), "counted, not yet given up");
    assert!(store.group_keys.is_empty(), "a mismatched key is never held");
    let failure = store.failures.values().next().unwrap();
    assert!(failure.reason.contains("does not match its distribution envelope"), "{}", failure.reason);
    // The session the envelope started is kept: it opened the envelope and moved on.
    assert!(store.e2ee.sessions.contains_key("human:alice:g1:device:phone"));

    // Entries of another conversation, or a float epoch, are refused before any decryption.
    let other = json!([{"conversation_id": "g2", "key_id": "k", "epoch": 1, "sender_id": "alice", "envelope_b64": ""}]);
    let float =
        json!([{"conversation_id": GROUP, "key_id": "k", "epoch": 1.0, "sender_id": "alice", "envelope_b64": ""}]);
    for (body, reason) in [
        (other, "another conversation"),
        (float, "invalid group key envelope"),
        (json!({}), "invalid group key response"),
    ] {
        agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "x")).unwrap_err();
        let fetch = key_fetch(&drain_into(&mut agent, &mut store));
        agent.handle_input(at(5), Input::Http(fetch.id, ok(body.to_string().into_bytes()))).unwrap();
        assert!(drain_into(&mut agent, &mut store).is_empty(), "{reason}: nothing taken, nothing committed");
    }
}

/// What the agent is asked to do next, in a random interleaving.
#[derive(Debug, Clone)]
enum Step {
    /// Deliver the next of Alice's messages (in the shuffled order); the key sync it may cause
    /// is answered with the envelopes of the epochs in the mask.
    Deliver { served: u8 },
    /// The agent sends to the group; its key sync is answered with the envelopes in the mask.
    Send { served: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<u8>().prop_map(|served| Step::Deliver { served }),
        1 => any::<u8>().prop_map(|served| Step::Send { served }),
    ]
}

/// The envelopes of the epochs in `mask` (bit `e - 1` for epoch `e`), in epoch order.
fn served(envelopes: &[GroupKeyEnvelope], mask: u8) -> Vec<u8> {
    let chosen: Vec<&GroupKeyEnvelope> =
        envelopes.iter().filter(|envelope| mask & (1 << (envelope.epoch - 1)) != 0).collect();
    serde_json::to_vec(&chosen).unwrap()
}

/// Answers the agent's key sync, if it asked for one, with `body`; returns what followed.
fn answer_sync(agent: &mut Agent, store: &mut AgentSnapshot, outputs: &[Output], body: Vec<u8>) -> Vec<Output> {
    match http(outputs).as_slice() {
        [] => Vec::new(),
        [fetch] => {
            agent.handle_input(at(6), Input::Http(fetch.id, ok(body))).unwrap();
            drain_into(agent, store)
        }
        calls => panic!("one key sync at a time: {calls:?}"),
    }
}

fn held_epochs(store: &AgentSnapshot) -> std::collections::BTreeSet<u64> {
    store.group_keys.values().map(|key| key.epoch).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Alice rotates through several epochs and writes under each; the agent receives her
    /// messages in any order while the relay serves any subset of the key envelopes at each
    /// sync, and sends to the group in between. A message opens exactly when its key is held;
    /// every send is sealed under the newest epoch held after its sync; once every envelope is
    /// served, every message opens, each exactly once.
    #[test]
    fn any_order_of_key_arrival_and_rotation_opens_a_message_exactly_when_its_key_is_held(
        epochs in 1u64..4,
        per_epoch in 1usize..3,
        order in any::<proptest::sample::Index>(),
        steps in proptest::collection::vec(step(), 1..14),
    ) {
        let mut store = AgentSnapshot::default();
        let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 68, &mut store);
        agent.config.max_delivery_attempts = 1_000;
        let bundle = agent_bundle(&published);
        let mut alice = alice();
        let mut envelopes = Vec::new();
        let mut written: Vec<(String, u64, String)> = Vec::new();
        for epoch in 1..=epochs {
            if epoch == 1 {
                alice.distribute_group_key(GROUP, &[GroupMember::agent("agent-1")]).unwrap();
            } else {
                alice.rotate_group_key(GROUP).unwrap();
            }
            envelopes.extend(distribute(&mut alice, &bundle));
            for index in 0..per_epoch {
                let text = format!("époque {epoch} message {index}");
                written.push((alice_says(&mut alice, &text), epoch, text));
            }
        }
        prop_assert_eq!(envelopes.len() as u64, epochs);
        // A shuffled delivery order, from one random index (a rotation and a reversal suffice
        // to put late epochs first and old messages after new keys).
        let shift = order.index(written.len());
        written.rotate_left(shift);
        if shift % 2 == 1 {
            written.reverse();
        }

        let mut opened: Vec<String> = Vec::new();
        let mut next = 0;
        for step in steps {
            match step {
                Step::Deliver { served: mask } => {
                    let Some((frame, epoch, text)) = written.get(next).cloned() else { continue };
                    next += 1;
                    agent.handle_input(at(5), Input::Frame(frame)).unwrap();
                    let mut outputs = drain_into(&mut agent, &mut store);
                    outputs.extend(answer_sync(&mut agent, &mut store, &outputs.clone(), served(&envelopes, mask)));
                    let delivered: Vec<AgentMessage> = events(&outputs).into_iter().filter_map(|event| match event {
                        Event::Message(message) => Some(message),
                        _ => None,
                    }).collect();
                    let held = held_epochs(&store).contains(&epoch);
                    prop_assert_eq!(delivered.len(), usize::from(held), "epoch {} held: {}", epoch, held);
                    if let Some(message) = delivered.first() {
                        prop_assert_eq!(&message.text, &text);
                        agent.accept(&message.id, at(5)).unwrap();
                        drain_into(&mut agent, &mut store);
                        opened.push(text);
                    }
                }
                Step::Send { served: mask } => {
                    let before = held_epochs(&store);
                    let result = agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "de l'agent"));
                    let outputs = drain_into(&mut agent, &mut store);
                    let after_outputs = answer_sync(&mut agent, &mut store, &outputs, served(&envelopes, mask));
                    let sent: Vec<Value> = frames(&after_outputs).into_iter().filter(|frame| frame["type"] == "MSG").collect();
                    if before.is_empty() {
                        prop_assert!(result.is_err(), "no key held: refused");
                        prop_assert!(sent.is_empty());
                    } else {
                        prop_assert!(result.is_ok());
                        prop_assert_eq!(sent.len(), 1);
                        let sealed = named_key(GROUP, sent[0]["payload_b64"].as_str().unwrap()).unwrap().1;
                        prop_assert_eq!(Some(sealed as u64), held_epochs(&store).last().copied());
                        prop_assert_eq!(person_reads(&mut alice, &sent[0]), "de l'agent");
                    }
                }
            }
        }

        // Every envelope served; every message not yet opened is delivered again (as the relay
        // replays unacknowledged messages) and opens, once.
        let all = served(&envelopes, u8::MAX);
        let unopened: Vec<(String, u64, String)> =
            written.iter().filter(|(_, _, text)| !opened.contains(text)).cloned().collect();
        for (frame, _, text) in unopened {
            agent.handle_input(at(7), Input::Frame(frame)).unwrap();
            let mut outputs = drain_into(&mut agent, &mut store);
            outputs.extend(answer_sync(&mut agent, &mut store, &outputs.clone(), all.clone()));
            let delivered: Vec<String> = events(&outputs).into_iter().filter_map(|event| match event {
                Event::Message(message) => Some(message.text),
                _ => None,
            }).collect();
            prop_assert_eq!(&delivered, &vec![text.clone()]);
            opened.push(text);
        }
        opened.sort();
        let mut expected: Vec<String> = written.iter().map(|(_, _, text)| text.clone()).collect();
        expected.sort();
        prop_assert_eq!(opened, expected);
    }
}

//! Our agent (native Signal) in an encrypted group whose two people, Alice and Bob, hold their
//! Signal sessions in the official runtime: every sender-key envelope the agent opens is an
//! official-runtime ciphertext. The test is the relay: it carries frames between the parties,
//! answers the people's bundle fetches with the agent's (or each other's) published bundles,
//! keeps the envelopes they post to `POST /person/group-keys` and serves them to the agent's
//! `GET /agent/group-keys` and the people's `GET /person/group-keys`.
//!
//! Checked: each person's distribution envelope opens in the agent; each person's group message
//! reaches it as a group message; its group replies open for both people; after Bob rotates to
//! epoch 2 the agent's next send syncs the keys first and is sealed under epoch 2 before any
//! epoch-2 message reached it, while a delayed epoch-1 message still opens; a tampered envelope is refused, the message it should
//! have opened stays unread for its bounded deliveries and is then acknowledged and reported.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_conformance::peers::runtime;
use pacerelle_core::agent::{OutgoingMessage, Undeliverable, UndeliverableReason};
use pacerelle_core::human::group::{GroupMember, named_key};
use pacerelle_core::human::{Person, PersonConfig, PersonEvent, PersonInput, PersonOutput};
use pacerelle_core::store::AgentSnapshot;
use pacerelle_core::wire::http::{
    GroupKeyEnvelope, HttpMethod, HttpRequest, HttpResponse, OneTimePrekey, OneTimePrekeysBody, PrekeyBundleBody,
};
use pacerelle_core::wire::person::{DistributeGroupKeys, FetchedBundle};
use pacerelle_core::{Agent, AgentConfig, AgentMessage, Event, Input, Output, Timestamp};
use pacerelle_official_runtime::backend::RuntimeBackend;
use rand::SeedableRng;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const AGENT: &str = "agent-1";
const GROUP: &str = "g1";
const TO_GROUP: &str = "group:g1";
/// Deliveries of an unreadable message before the agent gives up on it (kept small so the
/// bounded end is reached in a few steps).
const ATTEMPTS: u32 = 3;

fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn seeded(seed: u64) -> Box<pacerelle_core::Rng> {
    Box::new(rand::rngs::StdRng::seed_from_u64(seed))
}

fn ok(body: impl Into<Vec<u8>>) -> Result<HttpResponse, String> {
    Ok(HttpResponse { status: 200, body: body.into() })
}

/// What the agent put out, sorted by kind; its changes are applied to the store on the way.
#[derive(Default)]
struct AgentOut {
    frames: Vec<Value>,
    events: Vec<Event>,
    calls: Vec<HttpRequest>,
}

impl AgentOut {
    fn messages(&self) -> Vec<AgentMessage> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Message(message) => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// The one message delivered, or a panic naming what came instead.
    fn message(&self) -> AgentMessage {
        match self.messages().as_slice() {
            [message] => message.clone(),
            _ => panic!("one message expected: {:?}", self.events),
        }
    }

    /// The one call made, which must be the group's key fetch.
    fn key_fetch(&self) -> HttpRequest {
        assert_eq!(self.calls.len(), 1, "one call expected: {:?}", self.calls);
        let call = &self.calls[0];
        assert_eq!((call.method, call.path.as_str()), (HttpMethod::Get, "/agent/group-keys?conversation_id=g1"));
        call.clone()
    }
}

fn drain_agent(agent: &mut Agent, store: &mut AgentSnapshot) -> AgentOut {
    let mut out = AgentOut::default();
    while let Some(output) = agent.poll_output() {
        match output {
            Output::Persist(changes) => store.apply(&changes),
            Output::Frame(text) => out.frames.push(serde_json::from_str(&text).unwrap()),
            Output::Event(event) => out.events.push(event),
            Output::Http(request) => out.calls.push(request),
            _ => {}
        }
    }
    out
}

/// The agent, encrypted and native, started and connected; returns it with its publication.
fn agent(seed: u64, store: &mut AgentSnapshot) -> (Agent, PrekeyBundleBody, Vec<OneTimePrekey>) {
    let config = AgentConfig { e2ee: true, max_delivery_attempts: ATTEMPTS, ..AgentConfig::new(AGENT) };
    let mut agent = Agent::new(config, seeded(seed), AgentSnapshot::default()).unwrap();
    agent.start(at(0));
    let mut bodies = Vec::new();
    loop {
        let out = drain_agent(&mut agent, store);
        let Some(call) = out.calls.into_iter().next() else { break };
        bodies.push(call.body.clone());
        agent.handle_input(at(1), Input::Http(call.id, ok(b"{}".to_vec()))).unwrap();
    }
    agent.handle_input(at(1), Input::Connected).unwrap();
    drain_agent(&mut agent, store);
    let bundle: PrekeyBundleBody = serde_json::from_slice(&bodies[0]).unwrap();
    let one_time: OneTimePrekeysBody = serde_json::from_slice(&bodies[1]).unwrap();
    (agent, bundle, one_time.one_time_prekeys)
}

/// A person whose Signal sessions are the official runtime's, connected.
fn person(id: &str, device: &str, seed: u64) -> Person {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(seed);
    let (backend, _) =
        RuntimeBackend::load_or_create(&runtime(), &format!("human:{id}"), &Default::default(), rng).unwrap();
    let config = PersonConfig { device_id: Some(device.into()), ..PersonConfig::new(id) };
    let mut person = Person::with_backend(config, seeded(seed + 1), Box::new(backend));
    person.start();
    person.handle_input(at(1), PersonInput::Connected).unwrap();
    drain_person(&mut person);
    person
}

/// What a person put out: frames to the relay's socket, events, calls to answer.
fn drain_person(person: &mut Person) -> (Vec<String>, Vec<PersonEvent>, Vec<HttpRequest>) {
    let (mut frames, mut events, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(output) = person.poll_output() {
        match output {
            PersonOutput::Frame(text) => frames.push(text),
            PersonOutput::Event(event) => events.push(event),
            PersonOutput::Http(request) => calls.push(request),
            _ => {}
        }
    }
    (frames, events, calls)
}

/// The relay's state: published bundles (each one-time prekey handed out once) and the
/// envelopes posted, by recipient.
struct Relay {
    bundles: BTreeMap<String, (PrekeyBundleBody, Vec<OneTimePrekey>)>,
    envelopes: BTreeMap<String, Vec<GroupKeyEnvelope>>,
}

impl Relay {
    fn new(agent_bundle: PrekeyBundleBody, agent_one_time: Vec<OneTimePrekey>) -> Self {
        let bundles = BTreeMap::from([(AGENT.to_owned(), (agent_bundle, agent_one_time))]);
        Relay { bundles, envelopes: BTreeMap::new() }
    }

    /// A bundle as `GET .../prekey-bundle` serves it, with a one-time prekey not handed out yet.
    fn fetch(&mut self, owner: &str) -> Vec<u8> {
        let (bundle, one_time) = self.bundles.get_mut(owner).unwrap_or_else(|| panic!("no bundle of {owner}"));
        let chosen = one_time.remove(0);
        let fetched = FetchedBundle {
            bundle: bundle.clone(),
            prekey_id: Some(chosen.prekey_id),
            prekey_public: Some(chosen.public_key),
        };
        serde_json::to_vec(&fetched).unwrap()
    }

    /// What the agent's `GET /agent/group-keys` gets: every envelope posted for it.
    fn for_agent(&self) -> Vec<GroupKeyEnvelope> {
        self.envelopes.get(AGENT).cloned().unwrap_or_default()
    }

    /// Answers every call `person` makes, as the development relay would, until it makes none;
    /// returns its frames (with `from` added, as the relay delivers them) and events.
    fn serve(&mut self, person: &mut Person) -> (Vec<String>, Vec<PersonEvent>) {
        let id = person.person_id().to_owned();
        let (mut frames, mut events) = (Vec::new(), Vec::new());
        let mut published: Option<PrekeyBundleBody> = None;
        loop {
            let (sent, happened, calls) = drain_person(person);
            frames.extend(sent.iter().map(|frame| from(frame, &id)));
            events.extend(happened);
            if calls.is_empty() {
                return (frames, events);
            }
            for call in calls {
                let body = match (call.method, call.path.as_str()) {
                    (HttpMethod::Get, "/person/agents/agent-1/prekey-bundle") => self.fetch(AGENT),
                    (HttpMethod::Get, path) if path.starts_with("/person/persons/") => {
                        let owner = path.trim_start_matches("/person/persons/").trim_end_matches("/prekey-bundle");
                        self.fetch(owner)
                    }
                    (HttpMethod::Put, "/person/prekey-bundle") => {
                        published = Some(serde_json::from_slice(&call.body).unwrap());
                        b"{}".to_vec()
                    }
                    (HttpMethod::Post, "/person/one-time-prekeys") => {
                        let one_time: OneTimePrekeysBody = serde_json::from_slice(&call.body).unwrap();
                        let bundle = published.take().expect("the bundle before its one-time prekeys");
                        self.bundles.insert(id.clone(), (bundle, one_time.one_time_prekeys));
                        b"{}".to_vec()
                    }
                    (HttpMethod::Post, "/person/group-keys") => {
                        let posted: DistributeGroupKeys = serde_json::from_slice(&call.body).unwrap();
                        let stored = posted.envelopes.len();
                        for envelope in posted.envelopes {
                            self.envelopes.entry(envelope.recipient_id).or_default().push(GroupKeyEnvelope {
                                conversation_id: envelope.conversation_id,
                                key_id: envelope.key_id,
                                epoch: envelope.epoch,
                                sender_id: id.clone(),
                                sender_device_id: envelope.sender_device_id,
                                envelope_b64: envelope.envelope_b64,
                            });
                        }
                        json!({ "stored": stored }).to_string().into_bytes()
                    }
                    (HttpMethod::Get, "/person/group-keys?conversation_id=g1") => {
                        serde_json::to_vec(&self.envelopes.get(&id).cloned().unwrap_or_default()).unwrap()
                    }
                    other => panic!("unexpected call from {id}: {other:?}"),
                };
                person.handle_input(at(2), PersonInput::Http(call.id, ok(body))).unwrap();
            }
        }
    }
}

/// A frame as the relay delivers it: `from` set to its sender.
fn from(frame: &str, sender: &str) -> String {
    let mut frame: Value = serde_json::from_str(frame).unwrap();
    frame["from"] = json!(sender);
    frame.to_string()
}

/// The texts `person` reads of `frame` (the relay answering the key sync it may start).
fn reads(relay: &mut Relay, person: &mut Person, frame: &str) -> Vec<String> {
    person.handle_input(at(9), PersonInput::Frame(frame.to_owned())).unwrap();
    let (_, events) = relay.serve(person);
    events
        .into_iter()
        .filter_map(|event| match event {
            PersonEvent::Message(message) => {
                assert!(message.is_group(), "{message:?}");
                Some(message.text)
            }
            _ => None,
        })
        .collect()
}

/// `person`'s group message, as the relay hands it on.
fn says(relay: &mut Relay, person: &mut Person, text: &str) -> String {
    person.send_text(GROUP, TO_GROUP, text).unwrap();
    let (mut frames, _) = relay.serve(person);
    assert_eq!(frames.len(), 1, "{frames:?}");
    frames.remove(0)
}

/// The epoch a group payload names.
fn epoch_of(frame: &Value) -> i64 {
    named_key(GROUP, frame["payload_b64"].as_str().unwrap()).unwrap().1
}

/// Distributes (or rotates) `person`'s group key through the relay; returns its epoch.
fn distribute(relay: &mut Relay, person: &mut Person, members: &[GroupMember]) -> u64 {
    let job = person.distribute_group_key(GROUP, members).unwrap();
    let (_, events) = relay.serve(person);
    let distributed = events.iter().find_map(|event| match event {
        PersonEvent::GroupKeyDistributed { request, epoch, recipients, .. } if *request == job => {
            Some((*epoch, *recipients))
        }
        _ => None,
    });
    let (epoch, recipients) = distributed.unwrap_or_else(|| panic!("not distributed: {events:?}"));
    assert_eq!(recipients, members.len());
    epoch
}

/// Publishes `person`'s prekeys, so the other person can send it a group key.
fn publish(relay: &mut Relay, person: &mut Person) {
    let job = person.publish_prekeys().unwrap();
    let (_, events) = relay.serve(person);
    assert!(events.iter().any(|event| matches!(event, PersonEvent::PrekeysPublished { request } if *request == job)));
}

/// Checks that an envelope is what the official runtime's `signal_store_encrypt` writes: the
/// one-byte frame, `0x01` for the first message of a session (a PreKey message).
fn assert_runtime_prekey_message(envelope: &GroupKeyEnvelope) {
    let sealed = STANDARD.decode(&envelope.envelope_b64).unwrap();
    assert_eq!(sealed[0], 0x01, "a PreKey message opens a new session");
    assert!(sealed.len() > 100, "{} bytes", sealed.len());
}

#[test]
fn official_runtime_sender_keys_open_in_our_agent_across_a_rotation_and_its_group_replies_reach_both_people() {
    let mut store = AgentSnapshot::default();
    let (mut agent, bundle, one_time) = agent(81, &mut store);
    let mut relay = Relay::new(bundle, one_time);
    let mut alice = person("alice", "phone", 82);
    let mut bob = person("bob", "laptop", 84);
    publish(&mut relay, &mut alice);
    publish(&mut relay, &mut bob);

    // Alice makes the group's key (epoch 1) and sends it to the agent and to Bob, each through
    // her official-runtime session with them.
    let members = [GroupMember::agent(AGENT), GroupMember::person("bob")];
    assert_eq!(distribute(&mut relay, &mut alice, &members), 1);
    let alice_envelope = relay.for_agent()[0].clone();
    assert_eq!((alice_envelope.sender_id.as_str(), alice_envelope.epoch), ("alice", 1));
    assert_eq!(alice_envelope.sender_device_id.as_deref(), Some("phone"));
    assert_runtime_prekey_message(&alice_envelope);

    // Alice's group message names a key the agent lacks: it fetches, opens her envelope with
    // a session it starts from her runtime's PreKey message, then the message.
    let bonjour = says(&mut relay, &mut alice, "bonjour le groupe");
    agent.handle_input(at(3), Input::Frame(bonjour.clone())).unwrap();
    let fetch = drain_agent(&mut agent, &mut store).key_fetch();
    assert!(store.group_keys.is_empty() && store.receipts.is_empty());
    agent.handle_input(at(4), Input::Http(fetch.id, ok(serde_json::to_vec(&relay.for_agent()).unwrap()))).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    let first = out.message();
    assert_eq!(
        (first.text.as_str(), first.from.as_str(), first.is_group(), first.encrypted),
        ("bonjour le groupe", "alice", true, true)
    );
    assert!(out.calls.is_empty());
    assert!(store.e2ee.sessions.contains_key("human:alice:g1:device:phone"));
    let held: Vec<(String, u64)> = store.group_keys.values().map(|key| (key.key_id.clone(), key.epoch)).collect();
    assert_eq!(held, [(alice_envelope.key_id.clone(), 1)]);
    agent.accept(&first.id, at(4)).unwrap();
    drain_agent(&mut agent, &mut store);
    // Bob reads it too: his key came through his runtime session with Alice.
    assert_eq!(reads(&mut relay, &mut bob, &bonjour), ["bonjour le groupe"]);

    // Bob's message, under Alice's key, opens in the agent without a fetch.
    let salut = says(&mut relay, &mut bob, "salut de Bob");
    agent.handle_input(at(5), Input::Frame(salut)).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    assert!(out.calls.is_empty(), "{:?}", out.calls);
    let from_bob = out.message();
    assert_eq!((from_bob.text.as_str(), from_bob.from.as_str(), from_bob.is_group()), ("salut de Bob", "bob", true));

    // The agent's reply goes to the whole group under epoch 1, and both people read it.
    // It syncs the group's keys first (nothing new), as the official SDK does.
    agent.while_handling(&from_bob.id, |agent| agent.reply(&from_bob, "bienvenue à vous deux")).unwrap();
    agent.accept(&from_bob.id, at(6)).unwrap();
    let fetch = drain_agent(&mut agent, &mut store).key_fetch();
    agent.handle_input(at(6), Input::Http(fetch.id, ok(serde_json::to_vec(&relay.for_agent()).unwrap()))).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    let reply = out.frames.iter().find(|frame| frame["type"] == "MSG").expect("the reply").clone();
    assert_eq!((reply["to"].as_str(), reply["encrypted"].as_bool()), (Some(TO_GROUP), Some(true)));
    assert!(reply.get("to_device_id").is_none(), "one ciphertext for the group, no device");
    assert_eq!(epoch_of(&reply), 1);
    let reply = from(&reply.to_string(), AGENT);
    assert_eq!(reads(&mut relay, &mut alice, &reply), ["bienvenue à vous deux"]);
    assert_eq!(reads(&mut relay, &mut bob, &reply), ["bienvenue à vous deux"]);

    // Alice writes once more under epoch 1; the relay holds the message back for a while.
    let delayed = says(&mut relay, &mut alice, "écrit avant la rotation");

    // Bob rotates the group to epoch 2, through his own runtime sessions with the agent and
    // with Alice.
    let members = [GroupMember::agent(AGENT), GroupMember::person("alice")];
    assert_eq!(distribute(&mut relay, &mut bob, &members), 2);
    let bob_envelope = relay.for_agent()[1].clone();
    assert_eq!((bob_envelope.sender_id.as_str(), bob_envelope.epoch), ("bob", 2));
    assert_runtime_prekey_message(&bob_envelope);

    // The agent's next send syncs first: the relay serves both envelopes, the held one is
    // skipped (its Signal message key is spent) and Bob's is opened with a session started from
    // his runtime's PreKey message; the send is sealed under epoch 2 before any epoch-2 message
    // reached the agent.
    agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "déjà l'époque 2")).unwrap();
    let fetch = drain_agent(&mut agent, &mut store).key_fetch();
    agent.handle_input(at(7), Input::Http(fetch.id, ok(serde_json::to_vec(&relay.for_agent()).unwrap()))).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    assert_eq!(epoch_of(&out.frames[0]), 2);
    let early = from(&out.frames[0].to_string(), AGENT);
    assert_eq!(reads(&mut relay, &mut bob, &early), ["déjà l'époque 2"]);
    assert!(store.e2ee.sessions.contains_key("human:bob:g1:device:laptop"));
    let mut epochs: Vec<u64> = store.group_keys.values().map(|key| key.epoch).collect();
    epochs.sort();
    assert_eq!(epochs, [1, 2]);
    agent.handle_input(at(7), Input::Pong).unwrap();
    drain_agent(&mut agent, &mut store);

    // Bob's epoch-2 message opens without a fetch.
    let epoch_two = says(&mut relay, &mut bob, "époque deux");
    agent.handle_input(at(8), Input::Frame(epoch_two)).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    assert!(out.calls.is_empty(), "{:?}", out.calls);
    let second = out.message();
    assert_eq!((second.text.as_str(), second.from.as_str(), second.is_group()), ("époque deux", "bob", true));
    agent.accept(&second.id, at(9)).unwrap();
    drain_agent(&mut agent, &mut store);

    // The delayed epoch-1 message still opens, without a fetch.
    agent.handle_input(at(10), Input::Frame(delayed)).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    assert!(out.calls.is_empty(), "{:?}", out.calls);
    assert_eq!(out.message().text, "écrit avant la rotation");

    // Now the agent's sends use epoch 2, and both people read them (Alice takes Bob's key
    // from the relay as she reads).
    agent.send_message(OutgoingMessage::new(GROUP, TO_GROUP, "à tous, époque 2")).unwrap();
    let fetch = drain_agent(&mut agent, &mut store).key_fetch();
    agent.handle_input(at(11), Input::Http(fetch.id, ok(serde_json::to_vec(&relay.for_agent()).unwrap()))).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    let sent = out.frames.iter().find(|frame| frame["type"] == "MSG").expect("the send").clone();
    assert_eq!(epoch_of(&sent), 2);
    let sent = from(&sent.to_string(), AGENT);
    assert_eq!(reads(&mut relay, &mut alice, &sent), ["à tous, époque 2"]);
    assert_eq!(reads(&mut relay, &mut bob, &sent), ["à tous, époque 2"]);
    assert_eq!(alice.group_epoch(GROUP), 2);
}

#[test]
fn a_tampered_official_runtime_envelope_is_refused_and_its_message_ends_undeliverable_after_the_bounded_deliveries() {
    let mut store = AgentSnapshot::default();
    let (mut agent, bundle, one_time) = agent(91, &mut store);
    let mut relay = Relay::new(bundle, one_time);
    let mut alice = person("alice", "phone", 92);
    assert_eq!(distribute(&mut relay, &mut alice, &[GroupMember::agent(AGENT)]), 1);
    let genuine = relay.for_agent()[0].clone();
    assert_runtime_prekey_message(&genuine);

    // One byte of the ciphertext flipped (its last: the message's MAC), then encoded again, so
    // the envelope is still valid base64 and reaches Signal decryption.
    let mut sealed = STANDARD.decode(&genuine.envelope_b64).unwrap();
    *sealed.last_mut().unwrap() ^= 0x01;
    let tampered = vec![GroupKeyEnvelope { envelope_b64: STANDARD.encode(&sealed), ..genuine.clone() }];

    let frame = says(&mut relay, &mut alice, "jamais lu");
    let id = serde_json::from_str::<Value>(&frame).unwrap()["id"].as_str().unwrap().to_owned();
    for attempt in 1..=ATTEMPTS {
        agent.handle_input(at(3), Input::Frame(frame.clone())).unwrap();
        let fetch = drain_agent(&mut agent, &mut store).key_fetch();
        agent.handle_input(at(4), Input::Http(fetch.id, ok(serde_json::to_vec(&tampered).unwrap()))).unwrap();
        let out = drain_agent(&mut agent, &mut store);
        assert!(out.messages().is_empty(), "attempt {attempt}: {:?}", out.events);
        assert!(store.group_keys.is_empty(), "a key from a tampered envelope is never held");
        assert!(store.receipts.is_empty());
        let failure = &store.failures[&id];
        assert_eq!(failure.attempts, attempt);
        assert!(failure.reason.contains("did not decrypt"), "{}", failure.reason);
        if attempt < ATTEMPTS {
            assert!(out.frames.is_empty() && out.events.is_empty(), "attempt {attempt}: left for a replay");
        } else {
            // The bounded end: acknowledged, so the relay stops replaying it, and reported.
            let acks: Vec<&Value> = out.frames.iter().filter(|frame| frame["type"] == "ACK_READ").collect();
            assert_eq!(acks.len(), 1, "{:?}", out.frames);
            assert_eq!((acks[0]["message_id"].as_str(), acks[0]["to"].as_str()), (Some(id.as_str()), Some("alice")));
            assert!(
                matches!(
                    out.events.as_slice(),
                    [Event::Undeliverable(Undeliverable {
                        message_id,
                        reason: UndeliverableReason::Unreadable { attempts: ATTEMPTS, .. },
                        ..
                    })] if *message_id == id
                ),
                "{:?}",
                out.events
            );
        }
    }
    // Given up: a further replay is acknowledged again, without another fetch.
    agent.handle_input(at(5), Input::Frame(frame)).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    assert!(out.calls.is_empty() && out.messages().is_empty());
    assert_eq!(out.frames.len(), 1);
    assert_eq!(out.frames[0]["type"], "ACK_READ");

    // The refused deliveries left the agent's prekeys and sessions as they were: the genuine
    // envelope, served at last, opens the key and Alice's next message.
    let frame = says(&mut relay, &mut alice, "enfin lu");
    agent.handle_input(at(6), Input::Frame(frame)).unwrap();
    let fetch = drain_agent(&mut agent, &mut store).key_fetch();
    agent.handle_input(at(7), Input::Http(fetch.id, ok(serde_json::to_vec(&[genuine]).unwrap()))).unwrap();
    let out = drain_agent(&mut agent, &mut store);
    assert_eq!((out.message().text.as_str(), out.message().is_group()), ("enfin lu", true));
    assert_eq!(store.group_keys.len(), 1);
}

//! The official runtime behind the core's `SignalBackend` seam: an agent state machine that
//! encrypts with the runtime talks to a person's client that encrypts natively, and the other
//! way round, with publication, messages both ways, and a restart of the runtime-backed agent
//! from its store. Same state machines, either implementation.

use pacerelle_conformance::peers::runtime;
use pacerelle_core::agent::{Agent, AgentConfig, Event, Input, Output};
use pacerelle_core::human::{Person, PersonConfig, PersonEvent, PersonInput, PersonOutput};
use pacerelle_core::store::AgentSnapshot;
use pacerelle_core::wire::http::{HttpRequest, HttpResponse, OneTimePrekeysBody, PrekeyBundleBody};
use pacerelle_core::wire::person::FetchedBundle;
use pacerelle_core::{AgentMessage, Timestamp};
use pacerelle_official_runtime::backend::RuntimeBackend;
use rand::SeedableRng;
use serde_json::{Value, json};

fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

/// Drains the agent, applying its changes to `store`; returns the frames and messages.
fn drain_agent(agent: &mut Agent, store: &mut AgentSnapshot) -> (Vec<Value>, Vec<AgentMessage>, Vec<HttpRequest>) {
    let (mut frames, mut messages, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(output) = agent.poll_output() {
        match output {
            Output::Persist(changes) => store.apply(&changes),
            Output::Frame(text) => frames.push(serde_json::from_str(&text).unwrap()),
            Output::Event(Event::Message(message)) => messages.push(message),
            Output::Http(request) => calls.push(request),
            _ => {}
        }
    }
    (frames, messages, calls)
}

fn drain_person(person: &mut Person) -> (Vec<String>, Vec<String>, Vec<HttpRequest>) {
    let (mut frames, mut texts, mut calls) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(output) = person.poll_output() {
        match output {
            PersonOutput::Frame(text) => frames.push(text),
            PersonOutput::Event(PersonEvent::Message(message)) => texts.push(message.text),
            PersonOutput::Http(request) => calls.push(request),
            _ => {}
        }
    }
    (frames, texts, calls)
}

/// Starts `agent` and answers its publication; returns what a person fetching its bundle gets.
fn publish(agent: &mut Agent, store: &mut AgentSnapshot) -> FetchedBundle {
    agent.start(at(0));
    let mut bodies = Vec::new();
    loop {
        let (_, _, calls) = drain_agent(agent, store);
        let Some(call) = calls.into_iter().next() else { break };
        bodies.push(call.body.clone());
        agent
            .handle_input(at(1), Input::Http(call.id, Ok(HttpResponse { status: 200, body: b"{}".to_vec() })))
            .unwrap();
    }
    agent.handle_input(at(1), Input::Connected).unwrap();
    let bundle: PrekeyBundleBody = serde_json::from_slice(&bodies[0]).unwrap();
    let one_time: OneTimePrekeysBody = serde_json::from_slice(&bodies[1]).unwrap();
    assert_eq!(one_time.one_time_prekeys.len(), 50);
    let chosen = &one_time.one_time_prekeys[9];
    FetchedBundle { bundle, prekey_id: Some(chosen.prekey_id), prekey_public: Some(chosen.public_key.clone()) }
}

fn person_to_agent(frame: &str) -> String {
    let mut frame: Value = serde_json::from_str(frame).unwrap();
    frame["from"] = json!("u1");
    frame.to_string()
}

fn agent_to_person(frame: &Value) -> String {
    let mut frame = frame.clone();
    frame["from"] = json!("agent-1");
    frame.to_string()
}

/// The person's first message, through the bundle fetch, to `agent`; returns the received message.
fn first_message(
    person: &mut Person,
    agent: &mut Agent,
    store: &mut AgentSnapshot,
    fetched: &FetchedBundle,
) -> AgentMessage {
    person.start();
    person.handle_input(at(1), PersonInput::Connected).unwrap();
    drain_person(person);
    person.send_text("c1", "agent-1", "hello agent").unwrap();
    let (_, _, calls) = drain_person(person);
    let body = serde_json::to_vec(fetched).unwrap();
    person.handle_input(at(2), PersonInput::Http(calls[0].id, Ok(HttpResponse { status: 200, body }))).unwrap();
    let (frames, _, _) = drain_person(person);
    agent.handle_input(at(3), Input::Frame(person_to_agent(&frames[0]))).unwrap();
    let (_, mut messages, _) = drain_agent(agent, store);
    let message = messages.remove(0);
    assert_eq!((message.text.as_str(), message.encrypted), ("hello agent", true));
    agent.accept(&message.id, at(4)).unwrap();
    drain_agent(agent, store);
    message
}

fn round_trip(agent: &mut Agent, store: &mut AgentSnapshot, person: &mut Person, message: &AgentMessage, text: &str) {
    agent.reply(message, text).unwrap();
    let (frames, _, _) = drain_agent(agent, store);
    assert_eq!(frames[0]["encrypted"], json!(true));
    // The relay answers the ping behind the reply (sent outside a handler, so through the
    // outbox): proven read, it is not sent again at the next connection.
    agent.handle_input(at(5), Input::Pong).unwrap();
    drain_agent(agent, store);
    person.handle_input(at(5), PersonInput::Frame(agent_to_person(&frames[0]))).unwrap();
    let (_, texts, _) = drain_person(person);
    assert_eq!(texts, [text]);
}

#[test]
fn an_agent_on_the_runtime_serves_a_native_person_and_restarts_from_its_store() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(51);
    let mut store = AgentSnapshot::default();
    let (backend, created) = RuntimeBackend::load_or_create(&runtime(), "agent:agent-1", &store.e2ee, rng).unwrap();
    let config = AgentConfig::new("agent-1");
    let seeded = |seed| -> Box<pacerelle_core::Rng> { Box::new(rand::rngs::StdRng::seed_from_u64(seed)) };
    let mut agent = Agent::with_backend(config.clone(), seeded(1), store.clone(), Box::new(backend), created).unwrap();
    let fetched = publish(&mut agent, &mut store);
    let mut person = Person::new(PersonConfig { e2ee: true, ..PersonConfig::new("u1") }, seeded(2));
    let message = first_message(&mut person, &mut agent, &mut store, &fetched);
    round_trip(&mut agent, &mut store, &mut person, &message, "hello from the runtime");
    let code = agent.verification_code().unwrap();

    // Restarted from its store, the runtime-backed agent keeps its identity and its session.
    let (backend, created) = RuntimeBackend::load_or_create(&runtime(), "agent:agent-1", &store.e2ee, rng).unwrap();
    assert!(created.is_empty());
    let mut agent = Agent::with_backend(config, seeded(3), store.clone(), Box::new(backend), created).unwrap();
    publish(&mut agent, &mut store);
    assert_eq!(agent.verification_code().unwrap(), code);
    round_trip(&mut agent, &mut store, &mut person, &message, "still the runtime");
    person.send_text("c1", "agent-1", "and back").unwrap();
    let (frames, _, _) = drain_person(&mut person);
    agent.handle_input(at(6), Input::Frame(person_to_agent(&frames[0]))).unwrap();
    let (_, messages, _) = drain_agent(&mut agent, &mut store);
    assert_eq!(messages[0].text, "and back");
}

#[test]
fn a_person_on_the_runtime_talks_to_a_native_agent() {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(52);
    let seeded = |seed| -> Box<pacerelle_core::Rng> { Box::new(rand::rngs::StdRng::seed_from_u64(seed)) };
    let mut store = AgentSnapshot::default();
    let config = AgentConfig { e2ee: true, ..AgentConfig::new("agent-1") };
    let mut agent = Agent::new(config, seeded(4), AgentSnapshot::default()).unwrap();
    let fetched = publish(&mut agent, &mut store);
    let (backend, _) = RuntimeBackend::load_or_create(&runtime(), "human:u1", &Default::default(), rng).unwrap();
    let mut person = Person::with_backend(PersonConfig::new("u1"), seeded(5), Box::new(backend));
    let message = first_message(&mut person, &mut agent, &mut store, &fetched);
    for round in 0..20 {
        round_trip(&mut agent, &mut store, &mut person, &message, &format!("native reply {round}"));
    }
}

//! Trust and failure with people on the official Signal runtime (issue 9, items 1, 2, 3 and 6):
//! our agent state machine serves people whose encryption is the official runtime, while the
//! test carries the frames as an untrusted relay would, and forges, tampers with and replays
//! them: an impostor with a fresh runtime identity writing as a known person, a plaintext
//! injection, a tampered ciphertext delivered again and again, and a first message replayed
//! under other names.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_conformance::peers::runtime;
use pacerelle_core::agent::e2ee::InboundCryptoError;
use pacerelle_core::agent::{
    ChangeSource, IdentityChange, InputError, SafetyNumber, TrustError, TrustPolicy, Undeliverable, UndeliverableReason,
};
use pacerelle_core::e2ee::backend::{BackendError, SignalBackend as _};
use pacerelle_core::e2ee::message::Framed;
use pacerelle_core::e2ee::session::DecryptError;
use pacerelle_core::human::{Person, PersonConfig, PersonError, PersonEvent, PersonInput, PersonMessage, PersonOutput};
use pacerelle_core::store::{AgentSnapshot, DeliveryFailure, IdentityKeyBytes, PeerId, StoredPeerIdentity};
use pacerelle_core::widget::Confirm;
use pacerelle_core::wire::http::{HttpRequest, HttpResponse, OneTimePrekeysBody, PrekeyBundleBody};
use pacerelle_core::wire::person::FetchedBundle;
use pacerelle_core::{Agent, AgentConfig, AgentMessage, Event, Input, Output, Timestamp};
use pacerelle_official_runtime::backend::RuntimeBackend;
use rand::SeedableRng;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The digest the agent keys a frame's failure record by.
fn digest_of(frame: &str) -> String {
    pacerelle_core::agent::message_digest(&serde_json::from_str(frame).expect("a JSON object"))
}

const AGENT: &str = "agent-1";
const ALICE: &str = "u1";
const PHONE: &str = "phone";
const CONVERSATION: &str = "c1";

fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn seeded(seed: u64) -> Box<pacerelle_core::Rng> {
    Box::new(rand::rngs::StdRng::seed_from_u64(seed))
}

fn alice_on_phone() -> PeerId {
    PeerId::new(ALICE, Some(PHONE))
}

/// The safety number of a serialized identity key, from its definition (SHA-256 of the key,
/// upper-case hex in groups of four) rather than from the SDK's own function, so a change of
/// either shows.
fn safety_number(identity_key: &IdentityKeyBytes) -> String {
    let hex: String = Sha256::digest(identity_key).iter().map(|byte| format!("{byte:02X}")).collect();
    let groups: Vec<&str> = (0..hex.len()).step_by(4).map(|start| &hex[start..start + 4]).collect();
    groups.join(" ")
}

/// The `ACK_READ` the agent owes the relay for message `id` from `from` in the conversation.
fn ack(from: &str, id: &str) -> Value {
    json!({"type": "ACK_READ", "to": from, "message_id": id, "conversation_id": CONVERSATION})
}

fn frame_of(output: &Output) -> Value {
    match output {
        Output::Frame(text) => serde_json::from_str(text).expect("the agent writes JSON frames"),
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn messages(outputs: &[Output]) -> Vec<AgentMessage> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(Event::Message(message)) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// A text field of a `MSG` frame.
fn field(frame: &str, name: &str) -> String {
    let frame: Value = serde_json::from_str(frame).unwrap();
    frame[name].as_str().unwrap_or_else(|| panic!("a MSG has a text {name}")).to_owned()
}

fn message_id(frame: &str) -> String {
    field(frame, "id")
}

/// The framed ciphertext a `MSG` carries.
fn ciphertext(frame: &str) -> Vec<u8> {
    let frame: Value = serde_json::from_str(frame).unwrap();
    STANDARD.decode(frame["payload_b64"].as_str().unwrap()).unwrap()
}

/// The agent under test and the store its changes go to, with the prekeys it published: the
/// test hands each one-time prekey out once, as the relay does.
struct Served {
    agent: Agent,
    store: AgentSnapshot,
    bundle: PrekeyBundleBody,
    one_time: OneTimePrekeysBody,
    handed_out: usize,
}

impl Served {
    /// A native end-to-end encrypted agent under `config`, its publication taken by the relay,
    /// connected.
    fn new(config: AgentConfig, seed: u64) -> Self {
        let mut agent = Agent::new(AgentConfig { e2ee: true, ..config }, seeded(seed), AgentSnapshot::default())
            .expect("a valid configuration");
        let mut store = AgentSnapshot::default();
        agent.start(at(0));
        let mut bodies = Vec::new();
        loop {
            let calls: Vec<HttpRequest> = Self::drain_into(&mut agent, &mut store)
                .into_iter()
                .filter_map(|output| match output {
                    Output::Http(call) => Some(call),
                    _ => None,
                })
                .collect();
            let Some(call) = calls.into_iter().next() else { break };
            bodies.push(call.body.clone());
            let taken = Ok(HttpResponse { status: 200, body: b"{}".to_vec() });
            agent.handle_input(at(1), Input::Http(call.id, taken)).unwrap();
        }
        agent.handle_input(at(1), Input::Connected).unwrap();
        assert_eq!(bodies.len(), 2, "a bundle, then its one-time prekeys");
        let bundle = serde_json::from_slice(&bodies[0]).unwrap();
        let one_time = serde_json::from_slice(&bodies[1]).unwrap();
        Served { agent, store, bundle, one_time, handed_out: 0 }
    }

    fn drain_into(agent: &mut Agent, store: &mut AgentSnapshot) -> Vec<Output> {
        let outputs: Vec<Output> = std::iter::from_fn(|| agent.poll_output()).collect();
        for output in &outputs {
            if let Output::Persist(changes) = output {
                store.apply(changes);
            }
        }
        outputs
    }

    /// Everything the agent has to do, its changes applied to the store.
    fn drain(&mut self) -> Vec<Output> {
        Self::drain_into(&mut self.agent, &mut self.store)
    }

    /// What the relay answers a person fetching the agent's bundle: the next unused one-time
    /// prekey.
    fn fetch(&mut self) -> FetchedBundle {
        let chosen = &self.one_time.one_time_prekeys[self.handed_out];
        self.handed_out += 1;
        FetchedBundle {
            bundle: self.bundle.clone(),
            prekey_id: Some(chosen.prekey_id),
            prekey_public: Some(chosen.public_key.clone()),
        }
    }

    /// Delivers `frame` to the agent at `now`; returns what the agent said and did.
    fn deliver(&mut self, now: u64, frame: &str) -> (Result<(), InputError>, Vec<Output>) {
        let result = self.agent.handle_input(at(now), Input::Frame(frame.to_owned()));
        (result, self.drain())
    }

    /// The store holds exactly what the agent holds: every change went through `Persist`.
    fn assert_store_is_complete(&self) {
        assert_eq!(self.agent.snapshot(), &self.store);
    }
}

/// A person whose encryption is the official runtime, with a fresh runtime identity, writing
/// from `device`.
struct RuntimePerson {
    person: Person,
    /// The identity key the runtime made, as it reports it.
    identity: IdentityKeyBytes,
}

impl RuntimePerson {
    fn new(user: &str, device: &str, seed: u64) -> Self {
        let rng = &mut rand::rngs::StdRng::seed_from_u64(seed);
        let (backend, _) =
            RuntimeBackend::load_or_create(&runtime(), &format!("human:{user}"), &Default::default(), rng)
                .expect("a fresh runtime account");
        let identity = backend.identity_key();
        let config = PersonConfig { device_id: Some(device.to_owned()), ..PersonConfig::new(user) };
        let mut person = Person::with_backend(config, seeded(seed), Box::new(backend));
        person.start();
        person.handle_input(at(1), PersonInput::Connected).unwrap();
        let _ = std::iter::from_fn(|| person.poll_output()).count();
        RuntimePerson { person, identity }
    }

    /// The frames the person's client writes and the messages it shows, after answering a
    /// bundle fetch (the session's start) from `served`.
    fn drain(&mut self, served: &mut Served) -> (Vec<String>, Vec<PersonMessage>) {
        let (mut frames, mut shown) = (Vec::new(), Vec::new());
        while let Some(output) = self.person.poll_output() {
            match output {
                PersonOutput::Frame(text) => frames.push(text),
                PersonOutput::Event(PersonEvent::Message(message)) => shown.push(message),
                PersonOutput::Http(call) => {
                    let body = serde_json::to_vec(&served.fetch()).unwrap();
                    let answer = Ok(HttpResponse { status: 200, body });
                    self.person.handle_input(at(2), PersonInput::Http(call.id, answer)).unwrap();
                }
                PersonOutput::Event(other) => panic!("unexpected event for the person: {other:?}"),
                _ => {}
            }
        }
        (frames, shown)
    }

    /// Writes with `send` and returns the `MSG` as the relay hands it to the agent, naming
    /// `from` as its sender (the relay's word, which an impostor's relay forges).
    fn write(
        &mut self,
        served: &mut Served,
        from: &str,
        send: impl FnOnce(&mut Person) -> Result<String, PersonError>,
    ) -> String {
        let id = send(&mut self.person).expect("the person's client writes");
        let (frames, shown) = self.drain(served);
        assert!(shown.is_empty());
        let [frame] = &frames[..] else { panic!("one frame per message: {frames:?}") };
        let mut frame: Value = serde_json::from_str(frame).unwrap();
        assert_eq!((frame["id"].as_str(), frame["encrypted"].as_bool()), (Some(id.as_str()), Some(true)));
        assert_eq!(frame["from_device_id"], json!(self.person.device_id()));
        frame["from"] = json!(from);
        frame.to_string()
    }

    /// Writes `text` to the agent in the conversation.
    fn say(&mut self, served: &mut Served, from: &str, text: &str) -> String {
        self.write(served, from, |person| person.send_text(CONVERSATION, AGENT, text))
    }

    /// Receives the agent's `frame` as the relay hands it over: the message shown, or the
    /// client's error.
    fn receive(&mut self, served: &mut Served, frame: &Value) -> Result<PersonMessage, PersonError> {
        let mut frame = frame.clone();
        frame["from"] = json!(AGENT);
        self.person.handle_input(at(3), PersonInput::Frame(frame.to_string()))?;
        let (frames, shown) = self.drain(served);
        let [shown] = &shown[..] else { panic!("one message shown: {shown:?}") };
        assert_eq!(frames.len(), 1, "the client acknowledges what it shows");
        Ok(shown.clone())
    }
}

/// Alice (her own runtime identity, device "phone") has written to the agent, whose app
/// accepted the message. Returns her and that message.
fn alice_converses(served: &mut Served, seed: u64) -> (RuntimePerson, AgentMessage) {
    let mut alice = RuntimePerson::new(ALICE, PHONE, seed);
    let first = alice.say(served, ALICE, "hello agent");
    assert!(matches!(Framed::decode(&ciphertext(&first)), Ok(Framed::PreKey(_))), "the runtime's first message");
    let (result, outputs) = served.deliver(10, &first);
    result.unwrap();
    let delivered = messages(&outputs);
    let [message] = &delivered[..] else { panic!("{outputs:?}") };
    assert_eq!((message.text.as_str(), message.encrypted), ("hello agent", true));
    assert_eq!(
        message.sender_identity.as_ref().map(SafetyNumber::as_str),
        Some(safety_number(&alice.identity).as_str())
    );
    assert!(!outputs.iter().any(|output| matches!(output, Output::Event(Event::IdentityChanged(_)))));
    served.agent.accept(&message.id, at(11)).unwrap();
    let acknowledged = served.drain();
    assert_eq!(frame_of(acknowledged.last().unwrap()), ack(ALICE, &message.id));
    (alice, message.clone())
}

/// The agent replies `text` to `message`; returns the reply's frame (encrypted, to Alice's
/// phone). Sent outside a handler, it goes through the durable outbox: committed with the
/// session's step, then the frame, then the ping whose pong would prove it read.
fn reply(served: &mut Served, message: &AgentMessage, text: &str) -> Value {
    let id = served.agent.reply(message, text).unwrap();
    let outputs = served.drain();
    let [Output::Persist(_), sent @ Output::Frame(_), Output::Ping] = &outputs[..] else { panic!("{outputs:?}") };
    let sent = frame_of(sent);
    assert_eq!((sent["id"].as_str(), sent["to"].as_str()), (Some(id.as_str()), Some(ALICE)));
    assert_eq!((sent["encrypted"].as_bool(), sent["to_device_id"].as_str()), (Some(true), Some(PHONE)));
    sent
}

/// Item 1 under the default policy: the impostor's message is delivered, announced first with
/// both safety numbers, and carries the impostor's.
#[test]
fn an_impostor_with_a_fresh_runtime_identity_is_announced_then_delivered_by_default() {
    let config = AgentConfig::new(AGENT);
    assert_eq!(config.trust_policy, TrustPolicy::TrustOnFirstUse, "the default policy");
    let mut served = Served::new(config, 101);
    let (alice, _) = alice_converses(&mut served, 102);
    let peer = alice_on_phone();
    let alice_number = safety_number(&alice.identity);
    assert_eq!(served.agent.trusted_identity(&peer).as_ref().map(SafetyNumber::as_str), Some(alice_number.as_str()));

    let mut mallory = RuntimePerson::new(ALICE, PHONE, 103);
    assert_ne!(mallory.identity, alice.identity, "a fresh runtime identity");
    let mallory_number = safety_number(&mallory.identity);
    let forged = mallory.say(&mut served, ALICE, "it is me, really");
    let (result, outputs) = served.deliver(20, &forged);
    result.unwrap();

    // The change comes before anything else, then the message's receipt, then the message.
    let [
        Output::Event(Event::IdentityChanged(change)),
        Output::Persist(changes),
        Output::Event(Event::Message(message)),
    ] = &outputs[..]
    else {
        panic!("{outputs:?}")
    };
    let IdentityChange { peer: changed, previous, current, source, trusted } = change;
    assert_eq!(changed, &peer);
    assert_eq!(previous.as_ref().map(SafetyNumber::as_str), Some(alice_number.as_str()));
    assert_eq!(current.as_ref().map(SafetyNumber::as_str), Some(mallory_number.as_str()));
    assert_eq!((*source, *trusted), (ChangeSource::Session, true));
    assert_eq!(
        changes.e2ee.put_peer_identities,
        [(peer.clone(), StoredPeerIdentity { trusted: mallory.identity, pending: None, last_seen: at(20) })]
    );
    assert_eq!(changes.put_receipts.len(), 1);
    assert_eq!(changes.put_receipts[0].sender_identity, Some(mallory.identity));
    assert_eq!((message.id.as_str(), message.text.as_str()), (message_id(&forged).as_str(), "it is me, really"));
    assert_eq!(message.sender_identity.as_ref().map(SafetyNumber::as_str), Some(mallory_number.as_str()));
    assert_eq!(served.agent.trusted_identity(&peer).as_ref().map(SafetyNumber::as_str), Some(mallory_number.as_str()));

    // The newcomer's session is the peer's now: the reply reaches the identity that spoke.
    let sent = reply(&mut served, message, "noted");
    assert_eq!(mallory.receive(&mut served, &sent).unwrap().text, "noted");
    served.assert_store_is_complete();
}

/// Item 1 pinned: the impostor is refused (acknowledged, reported, never handed over) and
/// announced once; Alice keeps the conversation; trusting the newcomer lets its next message in.
#[test]
fn a_pinned_agent_refuses_an_impostor_on_the_runtime_until_the_app_trusts_it() {
    let mut served = Served::new(AgentConfig { trust_policy: TrustPolicy::Pinned, ..AgentConfig::new(AGENT) }, 201);
    let (mut alice, hello) = alice_converses(&mut served, 202);
    let peer = alice_on_phone();
    let alice_number = safety_number(&alice.identity);
    let before = served.store.clone();

    let mut mallory = RuntimePerson::new(ALICE, PHONE, 203);
    assert_ne!(mallory.identity, alice.identity, "a fresh runtime identity");
    let mallory_number = safety_number(&mallory.identity);
    let forged = mallory.say(&mut served, ALICE, "approve the deploy");
    let forged_id = message_id(&forged);
    let (result, outputs) = served.deliver(20, &forged);
    let error = result.unwrap_err();
    assert_eq!(error, InputError::UntrustedIdentity { message_id: forged_id.clone(), peer: peer.clone() });
    let [
        Output::Event(Event::IdentityChanged(change)),
        Output::Persist(changes),
        acknowledged @ Output::Frame(_),
        Output::Event(Event::Undeliverable(refused)),
    ] = &outputs[..]
    else {
        panic!("{outputs:?}")
    };
    let IdentityChange { peer: changed, previous, current, source, trusted } = change;
    assert_eq!(changed, &peer);
    assert_eq!(previous.as_ref().map(SafetyNumber::as_str), Some(alice_number.as_str()));
    assert_eq!(current.as_ref().map(SafetyNumber::as_str), Some(mallory_number.as_str()));
    assert_eq!((*source, *trusted), (ChangeSource::Session, false));
    // Only the refusal and the pending newcomer are stored: no receipt, no session, no prekey used.
    assert!(changes.put_receipts.is_empty() && changes.e2ee.put_sessions.is_empty());
    assert!(changes.e2ee.remove_prekeys.is_empty());
    let alice_record =
        StoredPeerIdentity { trusted: alice.identity, pending: Some(mallory.identity), last_seen: at(10) };
    assert_eq!(changes.e2ee.put_peer_identities, [(peer.clone(), alice_record)]);
    assert_eq!(
        changes.put_failures,
        [DeliveryFailure {
            message_id: forged_id.clone(),
            digest: digest_of(&forged),
            from: ALICE.into(),
            conversation_id: CONVERSATION.into(),
            attempts: 1,
            reason: error.to_string(),
            first_at: at(20),
            given_up_at: Some(at(20)),
        }]
    );
    assert_eq!(frame_of(acknowledged), ack(ALICE, &forged_id));
    let UndeliverableReason::UntrustedIdentity { peer: refused_peer, safety_number: spoke } = &refused.reason else {
        panic!("{refused:?}")
    };
    assert_eq!((refused.message_id.as_str(), refused.from.as_str()), (forged_id.as_str(), ALICE));
    assert_eq!((refused_peer, spoke.as_str()), (&peer, mallory_number.as_str()));
    assert_eq!(served.store.e2ee.sessions, before.e2ee.sessions, "the newcomer's session is forgotten");
    assert_eq!(served.store.e2ee.prekeys, before.e2ee.prekeys);
    assert_eq!(served.store.receipts, before.receipts);
    assert_eq!(served.agent.trusted_identity(&peer).as_ref().map(SafetyNumber::as_str), Some(alice_number.as_str()));

    // The agent's reply still goes to Alice, and her runtime reads it.
    let sent = reply(&mut served, &hello, "still you");
    assert_eq!(alice.receive(&mut served, &sent).unwrap().text, "still you");

    // The impostor writes again: refused again, not announced again.
    let again = mallory.say(&mut served, ALICE, "approve it now");
    let again_id = message_id(&again);
    let (result, outputs) = served.deliver(30, &again);
    assert_eq!(result, Err(InputError::UntrustedIdentity { message_id: again_id.clone(), peer: peer.clone() }));
    let [Output::Persist(_), acknowledged @ Output::Frame(_), Output::Event(Event::Undeliverable(refused))] =
        &outputs[..]
    else {
        panic!("{outputs:?}")
    };
    assert_eq!(frame_of(acknowledged), ack(ALICE, &again_id));
    assert_eq!(refused.message_id, again_id);
    assert!(matches!(&refused.reason, UndeliverableReason::UntrustedIdentity { safety_number, .. }
        if safety_number.as_str() == mallory_number));

    // Alice's own conversation is untouched by all this.
    let from_alice = alice.say(&mut served, ALICE, "thanks");
    let (result, outputs) = served.deliver(35, &from_alice);
    result.unwrap();
    let delivered = messages(&outputs);
    let [message] = &delivered[..] else { panic!("{outputs:?}") };
    assert_eq!(message.text, "thanks");
    assert!(!outputs.iter().any(|output| matches!(output, Output::Event(Event::IdentityChanged(_)))));

    // The app checks the newcomer's safety number with the person and trusts it.
    let trusted = served.agent.trust_identity(&peer).unwrap();
    assert_eq!(trusted.as_str(), mallory_number);
    assert_eq!(served.agent.trust_identity(&peer), Err(TrustError::NothingPending(peer.clone())));
    let outputs = served.drain();
    let [Output::Persist(changes)] = &outputs[..] else { panic!("{outputs:?}") };
    assert_eq!(
        changes.e2ee.put_peer_identities,
        [(peer.clone(), StoredPeerIdentity { trusted: mallory.identity, pending: None, last_seen: at(35) })]
    );
    let now_trusted = mallory.say(&mut served, ALICE, "now?");
    let (result, outputs) = served.deliver(40, &now_trusted);
    result.unwrap();
    let [Output::Persist(_), Output::Event(Event::Message(message))] = &outputs[..] else { panic!("{outputs:?}") };
    assert_eq!((message.id.as_str(), message.text.as_str()), (message_id(&now_trusted).as_str(), "now?"));
    assert_eq!(message.sender_identity.as_ref().map(SafetyNumber::as_str), Some(mallory_number.as_str()));
    served.assert_store_is_complete();
}

/// Item 2: a plaintext widget answer forged as Alice is acknowledged and reported, never
/// delivered; her encrypted answer to the same widget then arrives as usual.
#[test]
fn a_plaintext_injection_is_refused_and_the_encrypted_conversation_goes_on() {
    let mut served = Served::new(AgentConfig::new(AGENT), 301);
    let (mut alice, _) = alice_converses(&mut served, 302);
    let widget = served.agent.send_widget(CONVERSATION, ALICE, Confirm::new("Deploy to production?")).unwrap();
    let outputs = served.drain();
    let [Output::Persist(_), sent @ Output::Frame(_), Output::Ping] = &outputs[..] else { panic!("{outputs:?}") };
    let shown = alice.receive(&mut served, &frame_of(sent)).unwrap();
    assert_eq!(shown.widget.map(|widget| widget.id), Some(widget.clone()));
    let before = served.store.clone();

    // The relay writes Alice's approval itself, in plaintext.
    let approval = pacerelle_core::widget::response_payload("forged-response", &widget, Some(json!(true)), false);
    let injected = json!({
        "type": "MSG", "id": "forged-1", "conversation_id": CONVERSATION, "from": ALICE,
        "from_device_id": PHONE, "to": AGENT, "encrypted": false,
        "payload_b64": STANDARD.encode(approval),
    })
    .to_string();
    let (result, outputs) = served.deliver(20, &injected);
    let error = result.unwrap_err();
    assert_eq!(error, InputError::Plaintext { message_id: "forged-1".into() });
    let [Output::Persist(changes), acknowledged @ Output::Frame(_), Output::Event(Event::Undeliverable(refused))] =
        &outputs[..]
    else {
        panic!("{outputs:?}")
    };
    assert_eq!(
        changes.put_failures,
        [DeliveryFailure {
            message_id: "forged-1".into(),
            digest: digest_of(&injected),
            from: ALICE.into(),
            conversation_id: CONVERSATION.into(),
            attempts: 1,
            reason: error.to_string(),
            first_at: at(20),
            given_up_at: Some(at(20)),
        }]
    );
    assert!(changes.put_receipts.is_empty() && changes.e2ee.is_empty(), "nothing else is stored");
    assert_eq!(frame_of(acknowledged), ack(ALICE, "forged-1"));
    assert_eq!(
        refused,
        &Undeliverable {
            message_id: "forged-1".into(),
            from: ALICE.into(),
            conversation_id: CONVERSATION.into(),
            reason: UndeliverableReason::Plaintext,
        }
    );
    // Delivered again: acknowledged again, silently.
    let (result, outputs) = served.deliver(21, &injected);
    result.unwrap();
    let [acknowledged @ Output::Frame(_)] = &outputs[..] else { panic!("{outputs:?}") };
    assert_eq!(frame_of(acknowledged), ack(ALICE, "forged-1"));
    assert_eq!(served.store.receipts, before.receipts);
    assert_eq!(served.store.e2ee, before.e2ee);

    // Alice's own answer, encrypted by her runtime, arrives: she declines.
    let answer =
        alice.write(&mut served, ALICE, |person| person.answer_widget(CONVERSATION, AGENT, &widget, json!(false)));
    let (result, outputs) = served.deliver(30, &answer);
    result.unwrap();
    let delivered = messages(&outputs);
    let [message] = &delivered[..] else { panic!("{outputs:?}") };
    let response = message.widget_response.as_ref().expect("a widget answer");
    assert_eq!(
        (response.widget_ref.as_str(), &response.value, response.cancelled),
        (widget.as_str(), &Some(json!(false)), false)
    );
    assert_eq!(
        message.sender_identity.as_ref().map(SafetyNumber::as_str),
        Some(safety_number(&alice.identity).as_str())
    );
    served.agent.accept(&message.id, at(31)).unwrap();
    let message = message.clone();
    served.drain();
    let sent = reply(&mut served, &message, "not deploying");
    assert_eq!(alice.receive(&mut served, &sent).unwrap().text, "not deploying");
    served.assert_store_is_complete();
}

/// Item 3: a runtime ciphertext tampered with in transit is counted at each delivery, then
/// acknowledged and reported once; replays after that are acknowledged silently, and no session
/// state moved, so Alice's next message decrypts.
#[test]
fn a_tampered_runtime_ciphertext_is_given_up_after_bounded_deliveries_and_the_session_goes_on() {
    let config = AgentConfig::new(AGENT);
    let attempts = config.max_delivery_attempts;
    assert!(attempts > 1, "several deliveries are counted before giving up");
    let mut served = Served::new(config, 401);
    let (mut alice, hello) = alice_converses(&mut served, 402);
    // Alice reads a reply, so her runtime's next message is an ordinary one, not a PreKey one.
    let sent = reply(&mut served, &hello, "hi");
    assert_eq!(alice.receive(&mut served, &sent).unwrap().text, "hi");

    let genuine = alice.say(&mut served, ALICE, "the real text");
    let mut tampered: Value = serde_json::from_str(&genuine).unwrap();
    let mut bytes = ciphertext(&genuine);
    assert!(matches!(Framed::decode(&bytes), Ok(Framed::Whisper(_))), "an ordinary runtime message");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    tampered["payload_b64"] = json!(STANDARD.encode(&bytes));
    let tampered = tampered.to_string();
    let id = message_id(&genuine);
    let before = served.store.clone();

    for attempt in 1..=attempts {
        let now = 100 + u64::from(attempt);
        let (result, outputs) = served.deliver(now, &tampered);
        let error = result.unwrap_err();
        assert!(
            matches!(&error, InputError::Crypto { message_id, error: InboundCryptoError::Decrypt(BackendError::Decrypt(_)) } if *message_id == id),
            "{error:?}"
        );
        let expected = DeliveryFailure {
            message_id: id.clone(),
            digest: digest_of(&tampered),
            from: ALICE.into(),
            conversation_id: CONVERSATION.into(),
            attempts: attempt,
            reason: error.to_string(),
            first_at: at(101),
            given_up_at: (attempt == attempts).then_some(at(now)),
        };
        if attempt < attempts {
            // Counted durably, and nothing else: the relay delivers it again.
            let [Output::Persist(changes)] = &outputs[..] else { panic!("attempt {attempt}: {outputs:?}") };
            assert_eq!(changes.put_failures, std::slice::from_ref(&expected));
            assert!(changes.e2ee.is_empty() && changes.put_receipts.is_empty());
        } else {
            let [
                Output::Persist(changes),
                acknowledged @ Output::Frame(_),
                Output::Event(Event::Undeliverable(given_up)),
            ] = &outputs[..]
            else {
                panic!("last attempt: {outputs:?}")
            };
            assert_eq!(changes.put_failures, std::slice::from_ref(&expected));
            assert!(changes.e2ee.is_empty() && changes.put_receipts.is_empty());
            assert_eq!(frame_of(acknowledged), ack(ALICE, &id));
            assert_eq!(
                given_up,
                &Undeliverable {
                    message_id: id.clone(),
                    from: ALICE.into(),
                    conversation_id: CONVERSATION.into(),
                    reason: UndeliverableReason::Unreadable { attempts, error: error.to_string() },
                }
            );
        }
        assert_eq!(served.store.failures.get(&id), Some(&expected));
    }
    // The relay keeps replaying it: acknowledged each time, silently, no longer counted.
    for replay in 0..2 {
        let (result, outputs) = served.deliver(200 + replay, &tampered);
        result.unwrap();
        let [acknowledged @ Output::Frame(_)] = &outputs[..] else { panic!("{outputs:?}") };
        assert_eq!(frame_of(acknowledged), ack(ALICE, &id));
        assert_eq!(served.store.failures[&id].attempts, attempts);
    }
    // No session record, prekey or identity changed through all of it.
    assert_eq!(served.store.e2ee, before.e2ee);
    assert_eq!(served.store.receipts, before.receipts);

    // The genuine message under that id (another digest than the forged copies) is still read.
    let (result, outputs) = served.deliver(250, &genuine);
    result.unwrap();
    let delivered = messages(&outputs);
    let [message] = &delivered[..] else { panic!("{outputs:?}") };
    assert_eq!((message.id.as_str(), message.text.as_str()), (id.as_str(), "the real text"));

    let next = alice.say(&mut served, ALICE, "are you there?");
    let (result, outputs) = served.deliver(300, &next);
    result.unwrap();
    let delivered = messages(&outputs);
    let [message] = &delivered[..] else { panic!("{outputs:?}") };
    assert_eq!(message.text, "are you there?");
    assert_eq!(
        message.sender_identity.as_ref().map(SafetyNumber::as_str),
        Some(safety_number(&alice.identity).as_str())
    );
    served.assert_store_is_complete();
}

/// Item 6: Alice's runtime PreKey message, delivered again under a new message id with another
/// device, conversation or sender (or with nothing else changed), starts no second session and
/// is never delivered twice.
#[test]
fn a_replayed_runtime_first_message_starts_no_second_session_and_no_second_delivery() {
    let config = AgentConfig::new(AGENT);
    let attempts = config.max_delivery_attempts;
    let mut served = Served::new(config, 601);
    let mut alice = RuntimePerson::new(ALICE, PHONE, 602);
    let first = alice.say(&mut served, ALICE, "pay 10 EUR");
    assert!(matches!(Framed::decode(&ciphertext(&first)), Ok(Framed::PreKey(_))), "the runtime's first message");
    let mut delivered = Vec::new();
    let (result, outputs) = served.deliver(10, &first);
    result.unwrap();
    delivered.extend(messages(&outputs));
    served.agent.accept(&message_id(&first), at(11)).unwrap();
    served.drain();
    let before = served.store.clone();
    assert_eq!(before.e2ee.sessions.len(), 1, "one session: {:?}", before.e2ee.sessions.keys());
    assert_eq!(before.e2ee.peer_identities.keys().collect::<Vec<_>>(), [&alice_on_phone()]);

    // Under another name the session's first message is recognised as such; under the same
    // names (only the id new) the session itself knows the message as a duplicate.
    let replays = [
        ("from_device_id", "laptop", DecryptError::ReplayedFirstMessage),
        ("conversation_id", "c2", DecryptError::ReplayedFirstMessage),
        ("from", "u2", DecryptError::ReplayedFirstMessage),
        ("from", ALICE, DecryptError::Duplicate { counter: 0 }),
    ];
    for (index, (renamed, value, refusal)) in replays.into_iter().enumerate() {
        let mut replayed: Value = serde_json::from_str(&first).unwrap();
        let id = format!("replay-{index}");
        replayed["id"] = json!(id);
        replayed[renamed] = json!(value);
        let replayed = replayed.to_string();
        let (from, conversation) = (field(&replayed, "from"), field(&replayed, "conversation_id"));
        // Delivered as often as the relay likes: counted, then acknowledged and reported.
        for attempt in 1..=attempts {
            let (result, outputs) = served.deliver(20 + u64::from(attempt), &replayed);
            let error = result.unwrap_err();
            assert_eq!(
                error,
                InputError::Crypto {
                    message_id: id.clone(),
                    error: InboundCryptoError::Decrypt(BackendError::Decrypt(refusal.clone())),
                },
                "{renamed} {value}, attempt {attempt}"
            );
            delivered.extend(messages(&outputs));
            let acknowledgements: Vec<Value> =
                outputs.iter().filter(|output| matches!(output, Output::Frame(_))).map(frame_of).collect();
            let reports: Vec<&Undeliverable> = outputs
                .iter()
                .filter_map(|output| match output {
                    Output::Event(Event::Undeliverable(report)) => Some(report),
                    _ => None,
                })
                .collect();
            assert_eq!(served.store.failures[&id].attempts, attempt);
            if attempt < attempts {
                assert!(acknowledgements.is_empty() && reports.is_empty(), "{renamed}: {outputs:?}");
            } else {
                let ack_read =
                    json!({"type": "ACK_READ", "to": from, "message_id": id, "conversation_id": conversation});
                assert_eq!(acknowledgements, [ack_read]);
                let [report] = &reports[..] else { panic!("{outputs:?}") };
                assert_eq!(
                    (report.from.as_str(), report.conversation_id.as_str()),
                    (from.as_str(), conversation.as_str())
                );
                assert!(
                    matches!(report.reason, UndeliverableReason::Unreadable { attempts: given, .. } if given == attempts)
                );
            }
            assert_eq!(served.store.e2ee, before.e2ee, "{renamed}: no second session, nothing changed");
        }
    }
    // The original itself, delivered again: acknowledged from its receipt, not handed over again.
    let (result, outputs) = served.deliver(40, &first);
    result.unwrap();
    let [acknowledged @ Output::Frame(_)] = &outputs[..] else { panic!("{outputs:?}") };
    assert_eq!(frame_of(acknowledged), ack(ALICE, &message_id(&first)));

    let [message] = &delivered[..] else { panic!("exactly one delivery: {delivered:?}") };
    assert_eq!((message.id.as_str(), message.text.as_str()), (message_id(&first).as_str(), "pay 10 EUR"));
    assert_eq!(served.store.e2ee, before.e2ee);
    assert_eq!(served.store.receipts.keys().collect::<Vec<_>>(), [&message_id(&first)]);
    served.assert_store_is_complete();
}

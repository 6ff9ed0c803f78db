//! Behaviour of the agent state machine, driven with a seeded RNG and a fake clock.

use super::*;
use crate::agent::{ChangeSource, IdentityChange, SafetyNumber, TrustError, Undeliverable, UndeliverableReason};
use crate::store::PeerId;
use crate::widget::{Confirm, WidgetPatch};
use proptest::prelude::*;
use rand::SeedableRng;
use serde_json::{Value, json};

pub(super) fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

pub(super) fn connected_agent(config: AgentConfig) -> Agent {
    let mut agent =
        Agent::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(42)), AgentSnapshot::default()).unwrap();
    agent.start(at(0));
    assert_eq!(agent.poll_output(), Some(Output::Connect));
    agent.handle_input(at(1), Input::Connected).unwrap();
    // Connected, it asks to be woken for its first ping.
    let first_ping = at(1).saturating_add(agent.config.keepalive.interval);
    assert_eq!(agent.poll_output(), Some(Output::WakeAt(first_ping)));
    agent
}

pub(super) fn agent() -> Agent {
    connected_agent(AgentConfig::new("agent-1"))
}

pub(super) fn msg_frame(id: &str, text: &str, extra: Value) -> String {
    let mut frame = json!({
        "type": "MSG", "id": id, "conversation_id": "c1", "from": "u1", "to": "agent-1",
        "payload_b64": STANDARD.encode(text), "encrypted": false,
    });
    if let (Some(frame), Value::Object(extra)) = (frame.as_object_mut(), extra) {
        frame.extend(extra);
    }
    frame.to_string()
}

pub(super) fn drain(agent: &mut Agent) -> Vec<Output> {
    std::iter::from_fn(|| agent.poll_output()).collect()
}

pub(super) fn only_message(outputs: &[Output]) -> AgentMessage {
    let messages: Vec<_> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(Event::Message(message)) => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 1, "{outputs:?}");
    messages[0].clone()
}

pub(super) fn frames(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Frame(text) => Some(serde_json::from_str(text).unwrap()),
            _ => None,
        })
        .collect()
}

pub(super) fn receive(agent: &mut Agent, id: &str, text: &str, extra: Value) -> AgentMessage {
    agent.handle_input(at(10), Input::Frame(msg_frame(id, text, extra))).unwrap();
    only_message(&drain(agent))
}

#[test]
fn receipt_is_persisted_before_the_app_sees_the_message_and_ack_follows_acceptance() {
    let mut agent = agent();
    agent.handle_input(at(10), Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    let outputs = drain(&mut agent);
    assert!(matches!(&outputs[0], Output::Persist(changes) if changes.put_receipts[0].message_id == "m1"));
    assert!(matches!(&outputs[1], Output::Event(Event::Message(m)) if m.text == "hello" && !m.encrypted));
    assert_eq!(outputs.len(), 2, "no ack before acceptance");

    agent.accept("m1", at(20)).unwrap();
    let outputs = drain(&mut agent);
    assert!(matches!(&outputs[0], Output::Persist(changes)
        if matches!(changes.put_receipts[0].state, ReceiptState::Accepted { at } if at == Timestamp::from_millis(20))));
    assert_eq!(
        frames(&outputs),
        vec![json!({"type": "ACK_READ", "to": "u1", "message_id": "m1", "conversation_id": "c1"})]
    );
}

#[test]
fn accepted_replay_is_acknowledged_again_without_an_event() {
    let mut agent = agent();
    receive(&mut agent, "m1", "hello", json!({}));
    agent.accept("m1", at(20)).unwrap();
    drain(&mut agent);
    agent.handle_input(at(30), Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(frames(&outputs).len(), 1);
    assert_eq!(outputs.len(), 1, "only the ACK: {outputs:?}");
    // Accepting again is harmless and silent.
    agent.accept("m1", at(40)).unwrap();
    assert!(drain(&mut agent).is_empty());
}

#[test]
fn pending_replay_hands_out_the_stored_text_without_decoding_again() {
    let mut agent = agent();
    receive(&mut agent, "m1", "hello", json!({}));
    // The handler failed: no accept. The relay replays the message before the retry is due,
    // and the replay stands for it.
    agent.handler_failed("m1", "boom", at(20)).unwrap();
    drain(&mut agent);
    agent.handle_input(at(30), Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    let outputs = drain(&mut agent);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Persist(_))), "nothing new to persist: {outputs:?}");
    assert_eq!(only_message(&outputs).text, "hello");
}

#[test]
fn same_id_with_other_contents_is_a_conflict_and_never_acknowledges_a_pending_message() {
    let mut agent = agent();
    receive(&mut agent, "m1", "hello", json!({}));
    let before = agent.snapshot().clone();
    for frame in [
        msg_frame("m1", "tampered", json!({})),
        msg_frame("m1", "hello", json!({"reply_to_message_id": "m0"})),
        msg_frame("m1", "hello", json!({"from_device_id": "d9"})),
    ] {
        assert_eq!(
            agent.handle_input(at(30), Input::Frame(frame)),
            Err(InputError::Conflict { message_id: "m1".into() })
        );
    }
    assert!(drain(&mut agent).is_empty());
    assert_eq!(agent.snapshot(), &before);
    agent.accept("m1", at(40)).unwrap();
    drain(&mut agent);
    // Once m1 is accepted, an impostor under its id is counted like any unreadable message and
    // given up on (acknowledging m1 again harms nothing); m1's receipt stays.
    let attempts = AgentConfig::new("agent-1").max_delivery_attempts;
    for attempt in 1..=attempts {
        assert_eq!(
            agent.handle_input(at(50), Input::Frame(msg_frame("m1", "other", json!({})))),
            Err(InputError::Conflict { message_id: "m1".into() })
        );
        let outputs = drain(&mut agent);
        assert_eq!(frames(&outputs).len(), usize::from(attempt == attempts), "attempt {attempt}: {outputs:?}");
    }
    assert!(matches!(agent.snapshot().receipts["m1"].state, ReceiptState::Accepted { .. }));
    assert!(agent.snapshot().failures["m1"].given_up_at.is_some());
}

#[test]
fn unreadable_messages_are_retried_a_bounded_number_of_deliveries_then_given_up() {
    let mut agent = connected_agent(AgentConfig { max_delivery_attempts: 3, ..AgentConfig::new("agent-1") });
    let mut bad_base64 = serde_json::from_str::<Value>(&msg_frame("m1", "x", json!({}))).unwrap();
    // Python's `b64decode` skips `*` but not a group left open ("Incorrect padding").
    bad_base64["payload_b64"] = json!("*aGk");
    let bad_base64 = bad_base64.to_string();
    let not_utf8 = msg_frame("m2", "", json!({"payload_b64": STANDARD.encode([0xff, 0xfe])}));
    for attempt in 1..=3u32 {
        assert!(matches!(
            agent.handle_input(at(u64::from(attempt)), Input::Frame(bad_base64.clone())),
            Err(InputError::Undecodable { reason: "payload_b64 is not base64", .. })
        ));
        let outputs = drain(&mut agent);
        // Each delivery is counted durably before anything else.
        let Some(Output::Persist(changes)) = outputs.first() else { panic!("{outputs:?}") };
        assert_eq!(changes.put_failures[0].attempts, attempt);
        if attempt < 3 {
            assert_eq!(outputs.len(), 1, "not acknowledged, not reported yet: {outputs:?}");
        } else {
            assert_eq!(
                frames(&outputs),
                vec![json!({"type":"ACK_READ","to":"u1","message_id":"m1","conversation_id":"c1"})]
            );
            let reported: Vec<_> = outputs
                .iter()
                .filter_map(|output| match output {
                    Output::Event(Event::Undeliverable(undeliverable)) => Some(undeliverable.clone()),
                    Output::Event(other) => panic!("only the report reaches the app: {other:?}"),
                    _ => None,
                })
                .collect();
            assert_eq!(reported.len(), 1);
            assert_eq!((reported[0].message_id.as_str(), reported[0].from.as_str()), ("m1", "u1"));
            assert!(matches!(reported[0].reason, UndeliverableReason::Unreadable { attempts: 3, .. }));
        }
    }
    // Given up: a replay is acknowledged again, silently, and nothing is counted any more.
    agent.handle_input(at(10), Input::Frame(bad_base64.clone())).unwrap();
    assert_eq!(frames(&drain(&mut agent)).len(), 1);
    // Restarted from its snapshot, it still knows.
    let snapshot = agent.snapshot().clone();
    assert!(snapshot.receipts.is_empty(), "never a receipt, never handed over");
    let mut restarted =
        Agent::new(AgentConfig::new("agent-1"), Box::new(rand::rngs::StdRng::seed_from_u64(1)), snapshot).unwrap();
    restarted.start(at(11));
    restarted.handle_input(at(11), Input::Connected).unwrap();
    drain(&mut restarted);
    restarted.handle_input(at(12), Input::Frame(bad_base64)).unwrap();
    let outputs = drain(&mut restarted);
    assert_eq!(frames(&outputs).len(), 1);
    assert!(!outputs.iter().any(|output| matches!(output, Output::Event(_))));

    // The genuine message under that id, after the forged copies were given up, is read.
    agent.handle_input(at(13), Input::Frame(msg_frame("m1", "the real one", json!({})))).unwrap();
    assert_eq!(only_message(&drain(&mut agent)).text, "the real one");

    assert!(matches!(
        agent.handle_input(at(20), Input::Frame(not_utf8)),
        Err(InputError::Undecodable { reason: "payload is not UTF-8", .. })
    ));
    assert!(frames(&drain(&mut agent)).is_empty());
}

#[test]
fn refusals_are_acknowledged_and_reported_at_once() {
    let mut agent = agent();
    let encrypted = msg_frame("m3", "x", json!({"encrypted": true}));
    assert_eq!(
        agent.handle_input(at(1), Input::Frame(encrypted)),
        Err(InputError::EncryptedWithoutE2ee { message_id: "m3".into() })
    );
    let outputs = drain(&mut agent);
    assert_eq!(frames(&outputs).len(), 1, "acknowledged: {outputs:?}");
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::Event(Event::Undeliverable(Undeliverable { reason: UndeliverableReason::EncryptedWithoutE2ee, .. }))
    )));
    assert!(agent.snapshot().receipts.is_empty());

    // A MSG frame the SDK refuses but can name is counted like any unreadable message.
    let refused = r#"{"type":"MSG","id":"m4","conversation_id":"c1","from":"u1","payload_b64":7}"#;
    let error = agent.handle_input(at(2), Input::Frame(refused.into())).unwrap_err();
    assert!(matches!(error, InputError::Frame(_)), "{error:?}");
    assert_eq!(agent.snapshot().failures["m4"].attempts, 1);
}

#[test]
fn identity_changes_and_ignorable_frames() {
    let mut agent = agent();
    agent.handle_input(at(1), Input::Frame(r#"{"type":"IDENTITY_CHANGED","user_id":"u1"}"#.into())).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Event(Event::IdentityChanged(IdentityChange::from_relay("u1".into())))]);
    for frame in ["", "null", r#"{"type":"HELLO"}"#] {
        let Err(InputError::Frame(error)) = agent.handle_input(at(1), Input::Frame(frame.into())) else {
            panic!("{frame} must be refused");
        };
        assert!(error.is_ignorable());
    }
    assert!(drain(&mut agent).is_empty());
}

#[test]
fn messages_carry_widget_answers_updates_and_attachments() {
    let mut agent = agent();
    let answer =
        receive(&mut agent, "m1", r#"{"type":"widget.response","id":"r1","ref":"w1","value":"yes"}"#, json!({}));
    assert_eq!(answer.text, "Widget response");
    assert_eq!(answer.widget_response.unwrap().value, Some(json!("yes")));
    let update = receive(&mut agent, "m2", r#"{"type":"widget.update","id":"u1","ref":"w1","patch":{}}"#, json!({}));
    assert_eq!(update.widget_update.unwrap().widget_ref, "w1");
    let with_file = receive(
        &mut agent,
        "m3",
        r#"{"kind":"chat.message","text":"see","attachments":[{"id":"a1","key_b64":"k","iv_b64":"i","name":"real.txt","mime":"text/plain","size":4}]}"#,
        json!({"attachments": [{"id": "a1", "name": "attachment", "mime": "application/octet-stream", "size": 4, "blob_id": "b1"}]}),
    );
    assert_eq!(with_file.text, "see");
    assert_eq!(with_file.attachments[0].name, "real.txt");
    assert_eq!(with_file.attachments[0].blob_id, "b1");
    assert_eq!(with_file.attachments[0].key_b64.as_deref(), Some("k"));
}

#[test]
fn replies_route_to_the_source_device_and_are_checked() {
    let mut agent = agent();
    let message = receive(&mut agent, "m1", "hi", json!({"from_device_id": "phone"}));
    agent.reply(&message, "hello back").unwrap();
    let sent = frames(&drain(&mut agent));
    assert_eq!(sent[0]["to"], "u1");
    assert_eq!(sent[0]["to_device_id"], "phone");
    assert_eq!(sent[0]["reply_to_message_id"], "m1");
    assert_eq!(STANDARD.decode(sent[0]["payload_b64"].as_str().unwrap()).unwrap(), b"hello back");

    // Without a source, the last device seen for that person in that conversation.
    agent.send_message(OutgoingMessage::new("c1", "u1", "ping")).unwrap();
    assert_eq!(frames(&drain(&mut agent))[0]["to_device_id"], "phone");
    // An explicit device wins; other conversations know no device.
    agent.send_message(OutgoingMessage::new("c1", "u1", "ping").to_device("laptop")).unwrap();
    assert_eq!(frames(&drain(&mut agent))[0]["to_device_id"], "laptop");
    agent.send_message(OutgoingMessage::new("c2", "u1", "ping")).unwrap();
    assert!(frames(&drain(&mut agent))[0].get("to_device_id").is_none());

    // A reply to m1 in another conversation, or to another person, is refused.
    for wrong in
        [OutgoingMessage::new("c2", "u1", "x").reply_to("m1"), OutgoingMessage::new("c1", "u2", "x").reply_to("m1")]
    {
        assert_eq!(agent.send_message(wrong), Err(SendError::ReplyMismatch { message_id: "m1".into() }));
    }
    assert!(drain(&mut agent).is_empty());
}

#[test]
fn group_replies_go_to_the_group_without_a_device() {
    let mut agent = agent();
    let message = receive(&mut agent, "m1", "hi all", json!({"to": "group:c1", "from_device_id": "phone"}));
    assert!(message.is_group());
    agent.reply(&message, "hello group").unwrap();
    let sent = frames(&drain(&mut agent));
    assert_eq!(sent[0]["to"], "group:c1");
    assert!(sent[0].get("to_device_id").is_none());
}

#[test]
fn widgets_and_updates_return_their_ids() {
    let mut agent = agent();
    let id = agent.send_widget("c1", "u1", Confirm::new("Go?")).unwrap();
    let sent = frames(&drain(&mut agent));
    let payload = String::from_utf8(STANDARD.decode(sent[0]["payload_b64"].as_str().unwrap()).unwrap()).unwrap();
    let widget = crate::widget::parse_standard(&payload).unwrap();
    assert_eq!(widget.id, id);
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    let update_id =
        agent.send_widget_update("c1", "u1", WidgetPatch::new(&id).expires_at("2030-01-01T00:00:00Z")).unwrap();
    let sent = frames(&drain(&mut agent));
    let payload = String::from_utf8(STANDARD.decode(sent[0]["payload_b64"].as_str().unwrap()).unwrap()).unwrap();
    let update = parse_payload(&payload).widget_update.unwrap();
    assert_eq!((update.id.as_str(), update.widget_ref.as_str()), (update_id.as_str(), id.as_str()));
}

#[test]
fn sending_needs_a_connection_and_addresses() {
    let mut agent =
        Agent::new(AgentConfig::new("a"), Box::new(rand::rngs::StdRng::seed_from_u64(1)), AgentSnapshot::default())
            .unwrap();
    assert_eq!(agent.send_message(OutgoingMessage::new("c", "u", "x")), Err(SendError::NotConnected));
    let mut agent = self::agent();
    assert_eq!(agent.send_message(OutgoingMessage::new("", "u", "x")), Err(SendError::EmptyField("conversation_id")));
    assert_eq!(agent.send_message(OutgoingMessage::new("c", "", "x")), Err(SendError::EmptyField("to")));
    assert_eq!(agent.accept("nope", at(1)), Err(AcceptError::UnknownMessage { message_id: "nope".into() }));
}

#[test]
fn configuration_is_checked() {
    let rng = || -> Box<crate::Rng> { Box::new(rand::rngs::StdRng::seed_from_u64(1)) };
    assert_eq!(
        Agent::new(AgentConfig::new(""), rng(), AgentSnapshot::default()).unwrap_err(),
        ConfigError::EmptyAgentId
    );
    let mut stored = AgentSnapshot::default();
    stored.e2ee.identity = Some(crate::store::StoredIdentity {
        private_key: crate::store::SecretBytes::new(vec![1; 31]),
        registration_id: 1,
    });
    let e2ee = AgentConfig { e2ee: true, ..AgentConfig::new("a") };
    assert!(matches!(
        Agent::new(e2ee, rng(), stored).unwrap_err(),
        ConfigError::E2eeState(crate::e2ee::account::AccountError::InvalidKey { kind: "identity", .. })
    ));
}

#[test]
fn acceptance_while_disconnected_is_acknowledged_on_replay() {
    let mut agent = agent();
    receive(&mut agent, "m1", "hello", json!({}));
    agent.handle_input(at(11), Input::Disconnected).unwrap();
    agent.accept("m1", at(12)).unwrap();
    let outputs = drain(&mut agent);
    assert!(frames(&outputs).is_empty(), "no frame on a closed socket: {outputs:?}");
    let Some(Output::WakeAt(retry_at)) = outputs.iter().find(|o| matches!(o, Output::WakeAt(_))).cloned() else {
        panic!("a reconnect is scheduled: {outputs:?}");
    };
    agent.handle_input(retry_at, Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Connect]);
    agent.handle_input(retry_at, Input::Connected).unwrap();
    agent.handle_input(retry_at, Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    assert_eq!(frames(&drain(&mut agent))[0]["type"], "ACK_READ");
}

#[test]
fn accepted_receipts_age_out_by_count_and_time() {
    let config = AgentConfig {
        max_accepted_receipts: 3,
        receipt_retention: Duration::from_secs(60),
        ..AgentConfig::new("agent-1")
    };
    let mut agent = connected_agent(config);
    for index in 0..5u64 {
        let id = format!("m{index}");
        receive(&mut agent, &id, "x", json!({}));
        agent.accept(&id, at(1000 + index)).unwrap();
    }
    let kept: Vec<_> = agent.snapshot().receipts.keys().cloned().collect();
    assert_eq!(kept, ["m2", "m3", "m4"]);
    // A minute later, everything older than the window goes at the next acceptance.
    receive(&mut agent, "late", "x", json!({}));
    agent.accept("late", at(1000 + 61_000)).unwrap();
    let kept: Vec<_> = agent.snapshot().receipts.keys().cloned().collect();
    assert_eq!(kept, ["late"]);
}

#[test]
fn a_restarted_agent_continues_from_its_snapshot() {
    let mut first = agent();
    first.handle_input(at(10), Input::Frame(msg_frame("m1", "hello", json!({"from_device_id": "phone"})))).unwrap();
    // Everything the first agent asked to persist, applied to a store, is what the second loads.
    let mut store = crate::store::MemoryStore::new();
    for output in drain(&mut first) {
        if let Output::Persist(changes) = output {
            crate::store::AgentStore::apply(&mut store, &changes).unwrap();
        }
    }
    let snapshot = crate::store::AgentStore::load(&mut store).unwrap();
    assert_eq!(&snapshot, first.snapshot());
    let mut second =
        Agent::new(AgentConfig::new("agent-1"), Box::new(rand::rngs::StdRng::seed_from_u64(7)), snapshot).unwrap();
    second.start(at(0));
    second.handle_input(at(1), Input::Connected).unwrap();
    drain(&mut second);
    // The pending message comes back from the relay and is handed out from the stored text.
    second.handle_input(at(2), Input::Frame(msg_frame("m1", "hello", json!({"from_device_id": "phone"})))).unwrap();
    let outputs = drain(&mut second);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Persist(_))));
    assert_eq!(only_message(&outputs).text, "hello");
    second.accept("m1", at(3)).unwrap();
    assert_eq!(frames(&drain(&mut second))[0]["message_id"], "m1");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary text never panics, and a refused frame leaves no output and no state change.
    #[test]
    fn arbitrary_frames_never_panic_or_corrupt(text in ".{0,200}") {
        let mut agent = agent();
        let before = agent.snapshot().clone();
        if agent.handle_input(at(5), Input::Frame(text)).is_err() {
            prop_assert!(agent.poll_output().is_none());
            prop_assert_eq!(agent.snapshot(), &before);
        }
    }

    /// Structurally valid messages with arbitrary field values never panic, and each id yields
    /// at most one receipt.
    #[test]
    fn arbitrary_messages_are_handled(
        id in "[a-z0-9]{0,4}",
        payload in proptest::option::of(".{0,40}"),
        device in proptest::option::of("[a-z]{0,3}"),
        encrypted in any::<bool>(),
        attachments in prop_oneof![Just(json!(null)), Just(json!([{"id": "a", "name": "n", "mime": "m", "blob_id": "b", "size": -1}])), Just(json!("x"))],
    ) {
        let mut agent = agent();
        let frame = json!({
            "type": "MSG", "id": id, "conversation_id": "c", "from": "u",
            "payload_b64": payload.map(|p| STANDARD.encode(p)), "encrypted": encrypted,
            "from_device_id": device, "attachments": attachments,
        }).to_string();
        for _ in 0..2 {
            let _ = agent.handle_input(at(5), Input::Frame(frame.clone()));
        }
        prop_assert!(agent.snapshot().receipts.len() <= 1);
    }
}

pub(super) mod encrypted {
    //! An agent and a person with end-to-end encryption, talking through frames the test
    //! carries between them as the relay would.
    use super::*;
    use crate::human::{Person, PersonConfig, PersonInput, PersonOutput};
    use crate::wire::http::{HttpRequest, HttpResponse};
    use crate::wire::person::FetchedBundle;

    fn ok(body: &str) -> Result<HttpResponse, String> {
        Ok(HttpResponse { status: 200, body: body.as_bytes().to_vec() })
    }

    /// An e2ee agent started from `snapshot`, its publication answered by a relay that takes
    /// it, connected; returns the agent and the two published bodies.
    pub(in crate::agent) fn e2ee_agent(
        snapshot: AgentSnapshot,
        seed: u64,
        store: &mut AgentSnapshot,
    ) -> (Agent, Vec<HttpRequest>) {
        let config = AgentConfig { e2ee: true, ..AgentConfig::new("agent-1") };
        let mut agent = Agent::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(seed)), snapshot).unwrap();
        agent.start(at(0));
        let mut published = Vec::new();
        loop {
            let outputs = drain_into(&mut agent, store);
            if outputs.contains(&Output::Connect) {
                break;
            }
            let request = outputs
                .into_iter()
                .find_map(|output| match output {
                    Output::Http(request) => Some(request),
                    _ => None,
                })
                .expect("a publication call before the socket opens");
            agent.handle_input(at(1), Input::Http(request.id, ok("{}"))).unwrap();
            published.push(request);
        }
        agent.handle_input(at(1), Input::Connected).unwrap();
        // Connected, it sends its outbox again (replies sent outside a handler and never
        // proven read) with a ping to prove them, and asks to be woken when its one-time prekeys
        // are due for a refill.
        let outputs = drain_into(&mut agent, store);
        let resent = store.outbox.len();
        let (outbox, rest) = outputs.split_at(resent + usize::from(resent > 0));
        assert!(outbox.iter().take(resent).all(|output| matches!(output, Output::Frame(_))), "{outputs:?}");
        assert!(resent == 0 || outbox.last() == Some(&Output::Ping), "{outputs:?}");
        assert!(matches!(rest, [Output::WakeAt(_)]), "{outputs:?}");
        (agent, published)
    }

    /// Applies every `Persist` to `store` and returns the outputs.
    pub(in crate::agent) fn drain_into(agent: &mut Agent, store: &mut AgentSnapshot) -> Vec<Output> {
        let outputs = drain(agent);
        for output in &outputs {
            if let Output::Persist(changes) = output {
                store.apply(changes);
            }
        }
        outputs
    }

    /// What the relay hands the agent for a person's outbound frame.
    pub(in crate::agent) fn to_agent(person_frame: &str, from: &str) -> String {
        let mut frame: Value = serde_json::from_str(person_frame).unwrap();
        frame["from"] = json!(from);
        frame.to_string()
    }

    /// What the relay hands the person for an agent's outbound frame.
    pub(in crate::agent) fn to_person(agent_frame: &Value) -> String {
        let mut frame = agent_frame.clone();
        frame["from"] = json!("agent-1");
        frame.to_string()
    }

    pub(in crate::agent) fn person_frames(person: &mut Person) -> (Vec<String>, Vec<crate::wire::http::HttpRequest>) {
        let (mut frames, mut requests) = (Vec::new(), Vec::new());
        while let Some(output) = person.poll_output() {
            match output {
                PersonOutput::Frame(text) => frames.push(text),
                PersonOutput::Http(request) => requests.push(request),
                _ => {}
            }
        }
        (frames, requests)
    }

    /// An agent and a person with a session: the person's first message has been received and
    /// accepted. Returns the agent, its store, the person and that message.
    pub(in crate::agent) fn conversing() -> (Agent, AgentSnapshot, Person, AgentMessage) {
        let mut store = AgentSnapshot::default();
        let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 11, &mut store);
        let bundle: crate::wire::http::PrekeyBundleBody = serde_json::from_slice(&published[0].body).unwrap();
        let one_time: crate::wire::http::OneTimePrekeysBody = serde_json::from_slice(&published[1].body).unwrap();
        let fetched = FetchedBundle {
            bundle,
            prekey_id: Some(one_time.one_time_prekeys[0].prekey_id),
            prekey_public: Some(one_time.one_time_prekeys[0].public_key.clone()),
        };
        let config = PersonConfig { e2ee: true, ..PersonConfig::new("u1") };
        let mut person = Person::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(12)));
        person.start();
        person.handle_input(at(1), PersonInput::Connected).unwrap();
        let _ = person_frames(&mut person);
        person.send_text("c1", "agent-1", "send me a file").unwrap();
        let (_, requests) = person_frames(&mut person);
        let body = serde_json::to_vec(&fetched).unwrap();
        person.handle_input(at(2), PersonInput::Http(requests[0].id, Ok(HttpResponse { status: 200, body }))).unwrap();
        let (sent, _) = person_frames(&mut person);
        agent.handle_input(at(3), Input::Frame(to_agent(&sent[0], "u1"))).unwrap();
        let message = only_message(&drain_into(&mut agent, &mut store));
        agent.accept(&message.id, at(4)).unwrap();
        drain_into(&mut agent, &mut store);
        (agent, store, person, message)
    }

    /// A person `user` (seeded `seed`, so a fresh identity per seed) who fetched the agent's
    /// bundle with one-time prekey number `prekey` and wrote `text` in `conversation`: the
    /// person and the frame as the agent receives it (device `device`).
    fn stranger(
        published: &[HttpRequest],
        prekey: usize,
        seed: u64,
        user: &str,
        device: Option<&str>,
        text: &str,
    ) -> (Person, String) {
        let bundle: crate::wire::http::PrekeyBundleBody = serde_json::from_slice(&published[0].body).unwrap();
        let one_time: crate::wire::http::OneTimePrekeysBody = serde_json::from_slice(&published[1].body).unwrap();
        let fetched = FetchedBundle {
            bundle,
            prekey_id: Some(one_time.one_time_prekeys[prekey].prekey_id),
            prekey_public: Some(one_time.one_time_prekeys[prekey].public_key.clone()),
        };
        let config = PersonConfig { e2ee: true, ..PersonConfig::new(user) };
        let mut person = Person::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(seed)));
        person.start();
        person.handle_input(at(1), PersonInput::Connected).unwrap();
        let _ = person_frames(&mut person);
        person.send_text("c1", "agent-1", text).unwrap();
        let (_, requests) = person_frames(&mut person);
        let body = serde_json::to_vec(&fetched).unwrap();
        person.handle_input(at(2), PersonInput::Http(requests[0].id, Ok(HttpResponse { status: 200, body }))).unwrap();
        let (sent, _) = person_frames(&mut person);
        let mut frame: Value = serde_json::from_str(&to_agent(&sent[0], user)).unwrap();
        if let Some(device) = device {
            frame["from_device_id"] = json!(device);
        }
        (person, frame.to_string())
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

    fn trusting_agent(policy: TrustPolicy, store: &mut AgentSnapshot) -> (Agent, Vec<HttpRequest>) {
        let (agent, published) = e2ee_agent(AgentSnapshot::default(), 21, store);
        let mut agent = agent;
        agent.config.trust_policy = policy;
        (agent, published)
    }

    #[test]
    fn plaintext_is_refused_by_an_encrypted_agent_unless_it_opts_in() {
        let mut store = AgentSnapshot::default();
        let (mut agent, _) = e2ee_agent(AgentSnapshot::default(), 31, &mut store);
        let injected = msg_frame("forged", r#"{"type":"widget.response","id":"r","ref":"w","value":true}"#, json!({}));
        let error = agent.handle_input(at(3), Input::Frame(injected.clone())).unwrap_err();
        assert_eq!(error, InputError::Plaintext { message_id: "forged".into() });
        let outputs = drain_into(&mut agent, &mut store);
        assert_eq!(frames(&outputs).len(), 1, "acknowledged, so it does not come back");
        assert!(matches!(&events(&outputs)[..],
            [Event::Undeliverable(Undeliverable { reason: UndeliverableReason::Plaintext, message_id, .. })] if message_id == "forged"));
        assert!(store.receipts.is_empty());
        // Replayed: acknowledged again, never handed over, never reported twice.
        agent.handle_input(at(4), Input::Frame(injected.clone())).unwrap();
        assert!(events(&drain_into(&mut agent, &mut store)).is_empty());

        // Opted in (a mixed deployment), plaintext is a message like any other, and says so.
        let mut store = AgentSnapshot::default();
        let (mut agent, _) = e2ee_agent(AgentSnapshot::default(), 32, &mut store);
        agent.config.accept_plaintext = true;
        agent.handle_input(at(3), Input::Frame(injected)).unwrap();
        let message = only_message(&drain_into(&mut agent, &mut store));
        assert!(!message.encrypted);
        assert_eq!(message.sender_identity, None);
    }

    #[test]
    fn a_new_identity_under_a_known_peer_is_reported_then_trusted_by_default() {
        let mut store = AgentSnapshot::default();
        let (mut agent, published) = trusting_agent(TrustPolicy::TrustOnFirstUse, &mut store);
        let (alice, first) = stranger(&published, 0, 40, "u1", Some("phone"), "hello");
        agent.handle_input(at(3), Input::Frame(first)).unwrap();
        let message = only_message(&drain_into(&mut agent, &mut store));
        let alice_number = SafetyNumber::of(&alice.identity_key().unwrap());
        assert_eq!(message.sender_identity.as_ref(), Some(&alice_number));
        let peer = PeerId::new("u1", Some("phone"));
        assert_eq!(agent.trusted_identity(&peer), Some(alice_number.clone()));

        // Someone else (a fresh identity) writes as the same person and device.
        let (mallory, forged) = stranger(&published, 1, 41, "u1", Some("phone"), "it is me, really");
        agent.handle_input(at(5), Input::Frame(forged)).unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        let mallory_number = SafetyNumber::of(&mallory.identity_key().unwrap());
        let events = events(&outputs);
        let [Event::IdentityChanged(change), Event::Message(message)] = &events[..] else { panic!("{events:?}") };
        assert_eq!(change.peer, peer);
        assert_eq!(change.previous.as_ref(), Some(&alice_number));
        assert_eq!(change.current.as_ref(), Some(&mallory_number));
        assert_eq!((change.source, change.trusted), (ChangeSource::Session, true));
        assert_eq!(message.sender_identity.as_ref(), Some(&mallory_number), "the app sees who spoke");
        assert_eq!(agent.trusted_identity(&peer), Some(mallory_number));
        assert_eq!(store.e2ee.peer_identities[&peer].trusted, mallory.identity_key().unwrap());
    }

    #[test]
    fn a_pinned_peer_refuses_a_new_identity_until_the_app_trusts_it() {
        let mut store = AgentSnapshot::default();
        let (mut agent, published) = trusting_agent(TrustPolicy::Pinned, &mut store);
        let (mut alice, first) = stranger(&published, 0, 50, "u1", Some("phone"), "hello");
        agent.handle_input(at(3), Input::Frame(first)).unwrap();
        let message = only_message(&drain_into(&mut agent, &mut store));
        agent.accept(&message.id, at(4)).unwrap();
        drain_into(&mut agent, &mut store);
        let sessions_before = store.e2ee.sessions.clone();
        let prekeys_before = store.e2ee.prekeys.len();

        let (mut mallory, forged) = stranger(&published, 1, 51, "u1", Some("phone"), "approve the deploy");
        let forged_id = serde_json::from_str::<Value>(&forged).unwrap()["id"].as_str().unwrap().to_owned();
        let error = agent.handle_input(at(5), Input::Frame(forged.clone())).unwrap_err();
        assert!(matches!(error, InputError::UntrustedIdentity { .. }), "{error:?}");
        let outputs = drain_into(&mut agent, &mut store);
        let mallory_number = SafetyNumber::of(&mallory.identity_key().unwrap());
        let peer = PeerId::new("u1", Some("phone"));
        let events_seen = events(&outputs);
        let [Event::IdentityChanged(change), Event::Undeliverable(refused)] = &events_seen[..] else {
            panic!("{events_seen:?}")
        };
        assert!(!change.trusted);
        assert_eq!(change.current.as_ref(), Some(&mallory_number));
        assert_eq!(refused.message_id, forged_id);
        assert_eq!(
            refused.reason,
            UndeliverableReason::UntrustedIdentity { peer: peer.clone(), safety_number: mallory_number.clone() }
        );
        assert_eq!(frames(&outputs).len(), 1, "acknowledged");
        // Nothing of the newcomer's session was kept: replies still go to Alice.
        assert_eq!(store.e2ee.sessions, sessions_before);
        assert_eq!(store.e2ee.prekeys.len(), prekeys_before);
        let reply = agent.reply(&message, "still you").unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        let reply_frame = frames(&outputs).into_iter().find(|frame| frame["id"] == json!(reply)).unwrap();
        alice.handle_input(at(6), PersonInput::Frame(to_person(&reply_frame))).unwrap();
        assert!(std::iter::from_fn(|| alice.poll_output()).any(|output| matches!(output,
            PersonOutput::Event(crate::human::PersonEvent::Message(m)) if m.text == "still you")));

        // The newcomer writes again: refused, not announced twice.
        mallory.send_text("c1", "agent-1", "again").unwrap();
        let (sent, _) = person_frames(&mut mallory);
        let mut again: Value = serde_json::from_str(&to_agent(&sent[0], "u1")).unwrap();
        again["from_device_id"] = json!("phone");
        assert!(agent.handle_input(at(7), Input::Frame(again.to_string())).is_err());
        let events_seen = events(&drain_into(&mut agent, &mut store));
        assert!(matches!(&events_seen[..], [Event::Undeliverable(_)]), "{events_seen:?}");

        // The app checks the safety number and trusts it: the newcomer's next message arrives.
        assert_eq!(agent.trust_identity(&peer).unwrap(), mallory_number);
        assert_eq!(agent.trust_identity(&peer), Err(TrustError::NothingPending(peer.clone())));
        drain_into(&mut agent, &mut store);
        mallory.send_text("c1", "agent-1", "now?").unwrap();
        let (sent, _) = person_frames(&mut mallory);
        let mut now_trusted: Value = serde_json::from_str(&to_agent(&sent[0], "u1")).unwrap();
        now_trusted["from_device_id"] = json!("phone");
        agent.handle_input(at(8), Input::Frame(now_trusted.to_string())).unwrap();
        let message = only_message(&drain_into(&mut agent, &mut store));
        assert_eq!((message.text.as_str(), message.sender_identity), ("now?", Some(mallory_number)));
    }

    #[test]
    fn a_first_message_replayed_under_another_name_starts_no_second_session() {
        let mut store = AgentSnapshot::default();
        let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 60, &mut store);
        let (_, first) = stranger(&published, 0, 61, "u1", Some("phone"), "pay 10 EUR");
        agent.handle_input(at(3), Input::Frame(first.clone())).unwrap();
        let message = only_message(&drain_into(&mut agent, &mut store));
        agent.accept(&message.id, at(4)).unwrap();
        drain_into(&mut agent, &mut store);
        let sessions = store.e2ee.sessions.len();
        for (index, (field, value)) in
            [("from_device_id", "laptop"), ("conversation_id", "c2"), ("from", "u2")].into_iter().enumerate()
        {
            let mut replayed: Value = serde_json::from_str(&first).unwrap();
            replayed["id"] = json!(format!("replay-{index}"));
            replayed[field] = json!(value);
            let error = agent.handle_input(at(5), Input::Frame(replayed.to_string())).unwrap_err();
            assert!(
                matches!(
                    &error,
                    InputError::Crypto {
                        error: e2ee::InboundCryptoError::Decrypt(crate::e2ee::backend::BackendError::Decrypt(
                            crate::e2ee::session::DecryptError::ReplayedFirstMessage
                        )),
                        ..
                    }
                ),
                "{field}: {error:?}"
            );
            let outputs = drain_into(&mut agent, &mut store);
            assert!(!events(&outputs).iter().any(|event| matches!(event, Event::Message(_))), "no second delivery");
            assert_eq!(store.e2ee.sessions.len(), sessions, "no second session");
        }
    }

    /// Random schedules of what a hostile relay can do to a conversation.
    mod hostile_schedules {
        use super::*;
        use std::collections::{BTreeMap, BTreeSet};

        #[derive(Debug, Clone)]
        enum Op {
            /// Alice writes a message (held by the relay until delivered).
            AliceWrites,
            /// The relay delivers one of Alice's messages (again, maybe, or out of order).
            Deliver(usize),
            /// It delivers one under a new id, maybe from another device or conversation.
            ReplayAsNew(usize, u8),
            /// It delivers a copy with one byte flipped, under a new id.
            Tamper(usize, usize),
            /// It writes a plaintext message as Alice.
            Plaintext,
            /// A fresh identity writes as Alice, on her device.
            Impostor,
            /// The agent replies to the last message it handled, and the reply reaches Alice.
            Reply,
            /// The agent restarts from its store.
            Restart,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => Just(Op::AliceWrites),
                4 => any::<usize>().prop_map(Op::Deliver),
                2 => (any::<usize>(), any::<u8>()).prop_map(|(index, how)| Op::ReplayAsNew(index, how)),
                2 => (any::<usize>(), any::<usize>()).prop_map(|(index, byte)| Op::Tamper(index, byte)),
                1 => Just(Op::Plaintext),
                1 => Just(Op::Impostor),
                1 => Just(Op::Reply),
                1 => Just(Op::Restart),
            ]
        }

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Author {
            Alice,
            Impostor,
        }

        struct World {
            agent: Agent,
            store: AgentSnapshot,
            config: AgentConfig,
            alice: Person,
            impostor: Option<Person>,
            identities: BTreeMap<&'static str, SafetyNumber>,
            /// Alice's frames as the relay holds them.
            outbox: Vec<String>,
            /// Every message really written, by id: who wrote it and what.
            written: BTreeMap<String, (Author, String)>,
            /// The texts handed to the app (every text written is unique).
            handed: BTreeSet<String>,
            last_handled: Option<AgentMessage>,
            replies: usize,
            restarts: u64,
            fresh: usize,
        }

        impl World {
            fn new(pinned: bool) -> (World, Vec<HttpRequest>) {
                let mut store = AgentSnapshot::default();
                let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 70, &mut store);
                if pinned {
                    agent.config.trust_policy = TrustPolicy::Pinned;
                }
                let config = agent.config.clone();
                let (alice, first) = stranger(&published, 0, 71, "u1", Some("phone"), "alice 0");
                let mut identities = BTreeMap::new();
                identities.insert("alice", SafetyNumber::of(&alice.identity_key().unwrap()));
                let mut world = World {
                    agent,
                    store,
                    config,
                    alice,
                    impostor: None,
                    identities,
                    outbox: Vec::new(),
                    written: BTreeMap::new(),
                    handed: BTreeSet::new(),
                    last_handled: None,
                    replies: 0,
                    restarts: 0,
                    fresh: 0,
                };
                world.note(&first, Author::Alice, "alice 0");
                world.outbox.push(first.clone());
                // Alice speaks first, so hers is the identity trusted on first use.
                world.deliver(first);
                (world, published)
            }

            fn note(&mut self, frame: &str, author: Author, text: &str) {
                let id = serde_json::from_str::<Value>(frame).unwrap()["id"].as_str().unwrap().to_owned();
                self.written.insert(id, (author, text.to_owned()));
            }

            fn fresh_id(&mut self) -> String {
                self.fresh += 1;
                format!("hostile-{}", self.fresh)
            }

            /// Hands `frame` to the agent, then checks and accepts whatever it hands the app.
            fn deliver(&mut self, frame: String) {
                let _ = self.agent.handle_input(at(10), Input::Frame(frame));
                for output in drain_into(&mut self.agent, &mut self.store) {
                    let Output::Event(Event::Message(message)) = output else { continue };
                    // The relay names messages: one it delivered first under an id of its own
                    // is still what its author wrote, once.
                    let (author, _) = self
                        .written
                        .values()
                        .find(|(_, text)| *text == message.text)
                        .unwrap_or_else(|| panic!("{:?} handed to the app, but nobody wrote it", message.text))
                        .clone();
                    if let Some((_, text)) = self.written.get(&message.id) {
                        assert_eq!(&message.text, text, "{}: not what was written", message.id);
                    }
                    assert!(message.encrypted, "{} handed over without encryption", message.id);
                    let key = if author == Author::Alice { "alice" } else { "impostor" };
                    assert_eq!(
                        message.sender_identity.as_ref(),
                        Some(&self.identities[key]),
                        "{}: not the identity that wrote it",
                        message.id
                    );
                    if self.config.trust_policy == TrustPolicy::Pinned {
                        assert_eq!(author, Author::Alice, "a pinned agent handed over the impostor's message");
                    }
                    assert!(self.handed.insert(message.text.clone()), "{:?} handed over twice", message.text);
                    self.agent.accept(&message.id, at(11)).unwrap();
                    drain_into(&mut self.agent, &mut self.store);
                    if author == Author::Alice {
                        self.last_handled = Some(message);
                    }
                }
            }

            fn step(&mut self, op: Op, published: &[HttpRequest]) {
                let pick = |len: usize, index: usize| index % len.max(1);
                match op {
                    Op::AliceWrites => {
                        let text = format!("alice {}", self.written.len());
                        self.alice.send_text("c1", "agent-1", &text).unwrap();
                        let (sent, _) = person_frames(&mut self.alice);
                        let mut frame: Value = serde_json::from_str(&to_agent(&sent[0], "u1")).unwrap();
                        frame["from_device_id"] = json!("phone");
                        let frame = frame.to_string();
                        self.note(&frame, Author::Alice, &text);
                        self.outbox.push(frame);
                    }
                    Op::Deliver(index) => {
                        let frame = self.outbox[pick(self.outbox.len(), index)].clone();
                        self.deliver(frame);
                    }
                    Op::ReplayAsNew(index, how) => {
                        let mut frame: Value =
                            serde_json::from_str(&self.outbox[pick(self.outbox.len(), index)]).unwrap();
                        frame["id"] = json!(self.fresh_id());
                        match how % 3 {
                            0 => frame["from_device_id"] = json!("laptop"),
                            1 => frame["conversation_id"] = json!("c2"),
                            _ => {}
                        }
                        self.deliver(frame.to_string());
                    }
                    Op::Tamper(index, byte) => {
                        let mut frame: Value =
                            serde_json::from_str(&self.outbox[pick(self.outbox.len(), index)]).unwrap();
                        let mut bytes = STANDARD.decode(frame["payload_b64"].as_str().unwrap()).unwrap();
                        let at_byte = pick(bytes.len(), byte);
                        bytes[at_byte] ^= 0x01;
                        frame["payload_b64"] = json!(STANDARD.encode(bytes));
                        frame["id"] = json!(self.fresh_id());
                        self.deliver(frame.to_string());
                    }
                    Op::Plaintext => {
                        let id = self.fresh_id();
                        let frame = json!({
                            "type": "MSG", "id": id, "conversation_id": "c1", "from": "u1", "to": "agent-1",
                            "from_device_id": "phone", "encrypted": false, "payload_b64": STANDARD.encode("alice 1"),
                        });
                        self.deliver(frame.to_string());
                    }
                    Op::Impostor => {
                        let text = format!("impostor {}", self.written.len());
                        let frame = match self.impostor.as_mut() {
                            None => {
                                let (impostor, frame) = stranger(published, 1, 72, "u1", Some("phone"), &text);
                                self.identities.insert("impostor", SafetyNumber::of(&impostor.identity_key().unwrap()));
                                self.impostor = Some(impostor);
                                frame
                            }
                            Some(impostor) => {
                                impostor.send_text("c1", "agent-1", &text).unwrap();
                                let (sent, _) = person_frames(impostor);
                                let mut frame: Value = serde_json::from_str(&to_agent(&sent[0], "u1")).unwrap();
                                frame["from_device_id"] = json!("phone");
                                frame.to_string()
                            }
                        };
                        self.note(&frame, Author::Impostor, &text);
                        self.deliver(frame);
                    }
                    Op::Reply => {
                        // Each reply Alice reads starts a new receiving chain at the agent; past
                        // five, a message held back from before is dropped by design.
                        if self.replies >= 3 {
                            return;
                        }
                        let Some(source) = self.last_handled.clone() else { return };
                        let Ok(_) = self.agent.reply(&source, "noted") else { return };
                        self.replies += 1;
                        for frame in frames(&drain_into(&mut self.agent, &mut self.store)) {
                            if frame["type"] == json!("MSG") {
                                // After an impostor took over (trusted on first use), the reply is
                                // theirs and Alice cannot read it: that is the point.
                                let _ = self.alice.handle_input(at(12), PersonInput::Frame(to_person(&frame)));
                                let _ = person_frames(&mut self.alice);
                            }
                        }
                    }
                    Op::Restart => {
                        self.restarts += 1;
                        let (mut agent, _) = e2ee_agent(self.store.clone(), 100 + self.restarts, &mut self.store);
                        agent.config = self.config.clone();
                        self.agent = agent;
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

            /// Whatever the relay does, the app is handed only what Alice (or, trusted on first
            /// use, the impostor) wrote, with the identity that wrote it, each message once;
            /// and every message Alice wrote arrives.
            #[test]
            fn hostile_schedules_hand_over_only_what_was_written_exactly_once(
                pinned in any::<bool>(),
                ops in proptest::collection::vec(op(), 1..40),
            ) {
                let (mut world, published) = World::new(pinned);
                for op in ops {
                    world.step(op, &published);
                }
                // Finally the relay delivers everything of Alice's it still holds, in order.
                for frame in world.outbox.clone() {
                    world.deliver(frame);
                }
                for (author, text) in world.written.values() {
                    if *author == Author::Alice {
                        prop_assert!(world.handed.contains(text), "Alice's {:?} never arrived", text);
                    }
                }
            }
        }
    }

    #[test]
    fn files_go_up_encrypted_and_come_back_decrypted() {
        let (mut agent, mut store, mut person, message) = conversing();
        let content = b"%PDF-1.7 quarterly figures".to_vec();
        let file = OutgoingFile::new("c1", "u1", content.clone(), "report.pdf", "application/pdf")
            .text("here it is")
            .dimensions(10, 20);
        let file = OutgoingFile {
            message: OutgoingMessage { reply_to_message_id: Some(message.id.clone()), ..file.message },
            ..file
        };
        let (request, message_id) = agent.send_file(file).unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        let [Output::Http(upload)] = outputs.as_slice() else { panic!("only the upload first: {outputs:?}") };
        assert_eq!((upload.id, upload.path.as_str()), (request, "/agent/blobs"));
        assert_eq!(upload.content_type, Some("application/octet-stream"));
        assert_eq!(upload.body.len(), content.len() + 16, "ciphertext and tag");
        assert!(!upload.body.windows(4).any(|window| window == b"%PDF"), "no plaintext leaves");
        let ciphertext = upload.body.clone();

        let uploaded = br#"{"id":"blob-1","sha256":"abc"}"#;
        agent
            .handle_input(at(5), Input::Http(request, Ok(HttpResponse { status: 200, body: uploaded.to_vec() })))
            .unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        let sent = outputs.iter().find_map(|output| match output {
            Output::Event(Event::FileSent { request: answered, message_id: id, attachment }) => {
                Some((*answered, id.clone(), attachment.blob_id.clone()))
            }
            _ => None,
        });
        assert_eq!(sent, Some((request, message_id.clone(), "blob-1".to_owned())));
        let frame = frames(&outputs).remove(0);
        assert_eq!(frame["id"], json!(message_id));
        assert_eq!(
            frame["attachments"],
            json!([{"id": frame["attachments"][0]["id"], "name": "attachment", "mime": "application/octet-stream",
                    "size": content.len(), "blob_id": "blob-1", "sha256": "abc"}]),
            "the relay sees a redacted entry"
        );
        let text = frame.to_string();
        assert!(!text.contains("report.pdf") && !text.contains("application/pdf"));

        // The person reads the real metadata and key from the encrypted payload.
        person.handle_input(at(6), PersonInput::Frame(to_person(&frame))).unwrap();
        let received = std::iter::from_fn(|| person.poll_output())
            .find_map(|output| match output {
                PersonOutput::Event(crate::human::PersonEvent::Message(message)) => Some(message),
                _ => None,
            })
            .unwrap();
        assert_eq!(received.text, "here it is");
        let attachment = received.attachments[0].clone();
        assert_eq!((attachment.name.as_str(), attachment.mime.as_str()), ("report.pdf", "application/pdf"));
        assert_eq!((attachment.width, attachment.height, attachment.blob_id.as_str()), (Some(10), Some(20), "blob-1"));

        // Downloaded with that metadata, the blob decrypts to the file; tampered, it does not.
        let download = agent.download_attachment(&attachment).unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        let [Output::Http(call)] = outputs.as_slice() else { panic!("{outputs:?}") };
        assert_eq!((call.id, call.path.as_str()), (download, "/agent/blobs/blob-1"));
        agent
            .handle_input(at(7), Input::Http(download, Ok(HttpResponse { status: 200, body: ciphertext.clone() })))
            .unwrap();
        let Some(Output::Event(Event::Downloaded { request, result: Ok(bytes) })) = drain(&mut agent).pop() else {
            panic!("a download")
        };
        assert_eq!((request, bytes.expose()), (download, content.as_slice()));
        assert!(!format!("{bytes:?}").contains("PDF"));

        let mut tampered = ciphertext.clone();
        tampered[3] ^= 1;
        let download = agent.download_attachment(&attachment).unwrap();
        drain(&mut agent);
        agent.handle_input(at(8), Input::Http(download, Ok(HttpResponse { status: 200, body: tampered }))).unwrap();
        assert!(matches!(
            drain(&mut agent).pop(),
            Some(Output::Event(Event::Downloaded {
                result: Err(DownloadError::Attachment(crate::attachment::AttachmentError::Decrypt { .. })),
                ..
            }))
        ));
        let download = agent.download_attachment(&attachment).unwrap();
        drain(&mut agent);
        let missing = Ok(HttpResponse { status: 404, body: br#"{"error":"unknown blob"}"#.to_vec() });
        agent.handle_input(at(9), Input::Http(download, missing)).unwrap();
        assert!(matches!(
            drain(&mut agent).pop(),
            Some(Output::Event(Event::Downloaded { result: Err(DownloadError::Http { status: 404, .. }), .. }))
        ));
        let without_key = Attachment { key_b64: None, ..attachment };
        assert!(matches!(
            agent.download_attachment(&without_key),
            Err(DownloadError::Attachment(crate::attachment::AttachmentError::NoKey { .. }))
        ));

        // And the other way: a person's file reaches the agent with its real metadata.
        let metadata = crate::attachment::FileMetadata {
            name: "photo.jpg".into(),
            mime: "image/jpeg".into(),
            width: Some(4),
            height: Some(3),
            duration_ms: None,
        };
        let (blob, mut photo) =
            crate::attachment::encrypt(b"JFIF pixels", metadata, &mut rand::rngs::StdRng::seed_from_u64(13));
        photo.blob_id = "blob-2".into();
        person.send_attachments("c1", "agent-1", "a photo", std::slice::from_ref(&photo)).unwrap();
        let (sent, _) = person_frames(&mut person);
        assert!(!sent[0].contains("photo.jpg") && !sent[0].contains("image/jpeg"), "redacted on the wire");
        agent.handle_input(at(11), Input::Frame(to_agent(&sent[0], "u1"))).unwrap();
        let message = only_message(&drain_into(&mut agent, &mut store));
        assert_eq!(message.text, "a photo");
        let received = &message.attachments[0];
        assert_eq!(
            (received.name.as_str(), received.mime.as_str(), received.width),
            ("photo.jpg", "image/jpeg", Some(4))
        );
        let download = agent.download_attachment(received).unwrap();
        drain(&mut agent);
        agent.handle_input(at(12), Input::Http(download, Ok(HttpResponse { status: 200, body: blob }))).unwrap();
        let Some(Output::Event(Event::Downloaded { result: Ok(bytes), .. })) = drain(&mut agent).pop() else {
            panic!("the photo")
        };
        assert_eq!(bytes.expose(), b"JFIF pixels");

        // A failed upload is reported and sends nothing; a file to a stranger is not uploaded.
        let (request, _) = agent.send_file(OutgoingFile::new("c1", "u1", vec![1, 2], "a.bin", "x/y")).unwrap();
        drain(&mut agent);
        agent.handle_input(at(10), Input::Http(request, Err("connection reset".into()))).unwrap();
        let outputs = drain(&mut agent);
        assert!(frames(&outputs).is_empty());
        assert!(matches!(outputs.as_slice(), [Output::Event(Event::FileFailed { error: FileError::Upload(_), .. })]));
        let error = agent.send_file(OutgoingFile::new("c2", "stranger", vec![1], "a", "b")).unwrap_err();
        assert!(matches!(error, SendError::Crypto(e2ee::OutboundCryptoError::NoSession { .. })));
        assert!(drain(&mut agent).is_empty());
    }

    #[test]
    fn prekeys_are_published_again_before_the_relay_runs_dry() {
        let mut store = AgentSnapshot::default();
        let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 21, &mut store);
        let bundle: crate::wire::http::PrekeyBundleBody = serde_json::from_slice(&published[0].body).unwrap();
        let one_time: crate::wire::http::OneTimePrekeysBody = serde_json::from_slice(&published[1].body).unwrap();
        for (index, prekey) in one_time.one_time_prekeys.iter().take(super::REPLENISH_AFTER).enumerate() {
            // A new person each time, each with the one-time prekey the relay handed out.
            let fetched = FetchedBundle {
                bundle: bundle.clone(),
                prekey_id: Some(prekey.prekey_id),
                prekey_public: Some(prekey.public_key.clone()),
            };
            let person_id = format!("u{index}");
            let config = PersonConfig { e2ee: true, ..PersonConfig::new(person_id.clone()) };
            let mut person = Person::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(100 + index as u64)));
            person.start();
            person.handle_input(at(1), PersonInput::Connected).unwrap();
            let _ = person_frames(&mut person);
            person.send_text("c1", "agent-1", "hi").unwrap();
            let (_, requests) = person_frames(&mut person);
            let body = serde_json::to_vec(&fetched).unwrap();
            person
                .handle_input(at(2), PersonInput::Http(requests[0].id, Ok(HttpResponse { status: 200, body })))
                .unwrap();
            let (sent, _) = person_frames(&mut person);
            agent.handle_input(at(3), Input::Frame(to_agent(&sent[0], &person_id))).unwrap();
            let outputs = drain_into(&mut agent, &mut store);
            let calls: Vec<_> = outputs.iter().filter(|o| matches!(o, Output::Http(_))).collect();
            if index + 1 < super::REPLENISH_AFTER {
                assert!(calls.is_empty(), "no publication after {} sessions", index + 1);
            } else {
                // Half the one-time prekeys used: a new publication, private halves first.
                let persist =
                    outputs.iter().position(|o| matches!(o, Output::Persist(c) if c.e2ee.put_prekeys.len() == 52));
                let call =
                    outputs.iter().position(|o| matches!(o, Output::Http(r) if r.path == "/agent/prekey-bundle"));
                assert!(persist.is_some() && call.is_some() && persist < call, "{outputs:?}");
                assert!(agent.is_connected(), "the socket stays open meanwhile");
                // The relay takes both calls; nothing else happens (no reconnect).
                let Some(Output::Http(put)) = call.map(|at| outputs[at].clone()) else { unreachable!() };
                agent.handle_input(at(4), Input::Http(put.id, ok("{}"))).unwrap();
                let outputs = drain_into(&mut agent, &mut store);
                let [Output::Http(post)] = outputs.as_slice() else { panic!("{outputs:?}") };
                assert_eq!(post.path, "/agent/one-time-prekeys");
                agent.handle_input(at(5), Input::Http(post.id, ok("{}"))).unwrap();
                // The relay took the batch: recorded, and the next refill scheduled.
                let outputs = drain_into(&mut agent, &mut store);
                assert!(
                    matches!(outputs.as_slice(), [Output::Persist(c), Output::WakeAt(_)]
                        if c.e2ee.one_time_published_at == Some(at(5))),
                    "{outputs:?}"
                );
                assert!(agent.is_connected());
            }
        }
    }

    #[test]
    fn a_conversation_is_encrypted_both_ways_and_survives_a_restart() {
        let mut store = AgentSnapshot::default();
        let (mut agent, published) = e2ee_agent(AgentSnapshot::default(), 7, &mut store);
        let code = agent.verification_code().unwrap();
        assert_eq!(code.len(), 79);
        assert!(store.e2ee.identity.is_some());
        assert_eq!(store.e2ee.prekeys.len(), 52, "private halves stored before publishing");
        let methods: Vec<_> = published.iter().map(|request| (request.method, request.path.as_str())).collect();
        assert_eq!(
            methods,
            [
                (crate::wire::http::HttpMethod::Put, "/agent/prekey-bundle"),
                (crate::wire::http::HttpMethod::Post, "/agent/one-time-prekeys")
            ]
        );
        let bundle: crate::wire::http::PrekeyBundleBody = serde_json::from_slice(&published[0].body).unwrap();
        let one_time: crate::wire::http::OneTimePrekeysBody = serde_json::from_slice(&published[1].body).unwrap();
        assert_eq!(one_time.one_time_prekeys.len(), 50);
        let fetched = FetchedBundle {
            bundle,
            prekey_id: Some(one_time.one_time_prekeys[0].prekey_id),
            prekey_public: Some(one_time.one_time_prekeys[0].public_key.clone()),
        };

        let config = PersonConfig { e2ee: true, device_id: Some("phone".into()), ..PersonConfig::new("u1") };
        let mut person = Person::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(8)));
        person.start();
        person.handle_input(at(1), PersonInput::Connected).unwrap();
        let _ = person_frames(&mut person);
        let first = person.send_text("c1", "agent-1", "hello agent").unwrap();
        let second = person.send_text("c1", "agent-1", "second").unwrap();
        let (frames_out, requests) = person_frames(&mut person);
        assert!(frames_out.is_empty(), "messages wait for the session");
        assert_eq!(requests.len(), 1, "one bundle fetch for both");
        let body = serde_json::to_vec(&fetched).unwrap();
        person.handle_input(at(2), PersonInput::Http(requests[0].id, Ok(HttpResponse { status: 200, body }))).unwrap();
        let (frames_out, _) = person_frames(&mut person);
        assert_eq!(frames_out.len(), 2);
        let sent: Value = serde_json::from_str(&frames_out[0]).unwrap();
        assert_eq!((sent["id"].as_str(), sent["encrypted"].as_bool()), (Some(first.as_str()), Some(true)));
        assert!(!frames_out[0].contains("hello agent"));

        // The agent decrypts under the device-scoped name; the session and the pending receipt
        // are one commit, before the app sees the message.
        agent.handle_input(at(3), Input::Frame(to_agent(&frames_out[0], "u1"))).unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        match &outputs[0] {
            Output::Persist(changes) => {
                assert_eq!(changes.put_receipts.len(), 1);
                assert_eq!(changes.e2ee.put_sessions[0].0, "human:u1:c1:device:phone");
                assert_eq!(changes.e2ee.remove_prekeys.len(), 1, "the one-time prekey is used up");
            }
            other => panic!("persist first: {other:?}"),
        }
        let message = only_message(&outputs);
        assert_eq!((message.text.as_str(), message.encrypted), ("hello agent", true));
        agent.accept(&message.id, at(4)).unwrap();
        drain_into(&mut agent, &mut store);

        // A replay of the accepted message is acknowledged without decrypting again.
        agent.handle_input(at(5), Input::Frame(to_agent(&frames_out[0], "u1"))).unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        assert_eq!(frames(&outputs)[0]["type"], "ACK_READ");

        // The reply goes to the phone, encrypted, after its session change is committed.
        agent.reply(&message, "hello person").unwrap();
        let outputs = drain_into(&mut agent, &mut store);
        assert!(matches!(&outputs[0], Output::Persist(changes) if !changes.e2ee.put_sessions.is_empty()));
        let reply = frames(&outputs).remove(0);
        assert_eq!((reply["encrypted"].as_bool(), reply["to_device_id"].as_str()), (Some(true), Some("phone")));
        person.handle_input(at(6), PersonInput::Frame(to_person(&reply))).unwrap();
        let event = std::iter::from_fn(|| person.poll_output()).find_map(|output| match output {
            PersonOutput::Event(crate::human::PersonEvent::Message(message)) => Some(message),
            _ => None,
        });
        assert_eq!(event.unwrap().text, "hello person");

        // Restarted from its store, the agent puts its bundle again (same identity; it still
        // holds 49 one-time prekeys, so it makes none), reads the second message and replies
        // again.
        let identity = store.e2ee.identity.clone();
        let (mut agent, published) = e2ee_agent(store.clone(), 9, &mut store);
        assert_eq!(published.len(), 1);
        assert_eq!(store.e2ee.identity, identity, "no new identity");
        assert_eq!(agent.verification_code().unwrap(), code);
        agent.handle_input(at(7), Input::Frame(to_agent(&frames_out[1], "u1"))).unwrap();
        let message = only_message(&drain_into(&mut agent, &mut store));
        assert_eq!((message.id.as_str(), message.text.as_str()), (second.as_str(), "second"));
        agent.reply(&message, "still here").unwrap();
        let reply = frames(&drain_into(&mut agent, &mut store)).remove(0);
        person.handle_input(at(8), PersonInput::Frame(to_person(&reply))).unwrap();

        // A tampered ciphertext is a precise error and changes nothing.
        let mut tampered: Value = serde_json::from_str(&to_agent(&frames_out[1], "u1")).unwrap();
        tampered["id"] = json!("m-tampered");
        let mut bytes = STANDARD.decode(tampered["payload_b64"].as_str().unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        tampered["payload_b64"] = json!(STANDARD.encode(bytes));
        let before = agent.snapshot().clone();
        let error = agent.handle_input(at(9), Input::Frame(tampered.to_string())).unwrap_err();
        assert!(matches!(error, InputError::Crypto { .. }), "{error:?}");
        // Only its delivery is counted; no session, key or receipt changed.
        let outputs = drain_into(&mut agent, &mut store);
        assert!(matches!(&outputs[..], [Output::Persist(changes)] if changes.e2ee.is_empty()), "{outputs:?}");
        assert_eq!(agent.snapshot().e2ee, before.e2ee);
        assert_eq!(agent.snapshot().receipts, before.receipts);

        // The first publication's keys are still held, less the one used; the restart made none.
        assert_eq!(store.e2ee.prekeys.len(), 51);

        // No session with a stranger: a clear error, nothing sent.
        let error = agent.send_message(OutgoingMessage::new("c9", "stranger", "hi")).unwrap_err();
        assert!(matches!(error, SendError::Crypto(e2ee::OutboundCryptoError::NoSession { .. })), "{error:?}");
    }
}

#[test]
fn publication_is_retried_and_a_refusal_stops_the_agent() {
    let config = AgentConfig { e2ee: true, ..AgentConfig::new("agent-1") };
    let mut agent =
        Agent::new(config.clone(), Box::new(rand::rngs::StdRng::seed_from_u64(3)), AgentSnapshot::default()).unwrap();
    agent.start(at(0));
    let first_request = |outputs: Vec<Output>| {
        outputs.into_iter().find_map(|output| match output {
            Output::Http(request) => Some(request),
            _ => None,
        })
    };
    let put = first_request(drain(&mut agent)).expect("the bundle first");
    // A relay that is down: retried after a backoff, the same body again.
    let unreachable = Err("connection refused".to_owned());
    agent.handle_input(at(10), Input::Http(put.id, unreachable)).unwrap();
    let Some(Output::WakeAt(retry)) = drain(&mut agent).pop() else { panic!("a retry is scheduled") };
    agent.handle_input(at(10), Input::Timeout).unwrap();
    assert!(drain(&mut agent).is_empty(), "not before its time");
    agent.handle_input(retry, Input::Timeout).unwrap();
    let again = first_request(drain(&mut agent)).expect("the bundle again");
    assert_eq!((again.path.as_str(), &again.body), (put.path.as_str(), &put.body));
    assert_ne!(again.id, put.id);
    // A 503 is retried too; an answer to an old request is ignored.
    agent.handle_input(retry, Input::Http(put.id, Ok(HttpResponse { status: 200, body: vec![] }))).unwrap();
    assert!(drain(&mut agent).is_empty());
    agent.handle_input(retry, Input::Http(again.id, Ok(HttpResponse { status: 503, body: vec![] }))).unwrap();
    assert!(matches!(drain(&mut agent).pop(), Some(Output::WakeAt(_))));

    // A wrong token is final: the app hears why and the agent closes without connecting.
    let mut agent =
        Agent::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(4)), AgentSnapshot::default()).unwrap();
    agent.start(at(0));
    let put = first_request(drain(&mut agent)).unwrap();
    let refused = Ok(HttpResponse { status: 401, body: br#"{"error":"invalid token"}"#.to_vec() });
    agent.handle_input(at(1), Input::Http(put.id, refused)).unwrap();
    assert_eq!(
        drain(&mut agent),
        vec![
            Output::Event(Event::Unauthorized {
                step: AuthStep::Publication(PublicationStep::Bundle),
                status: 401,
                reason: Some("invalid token".into())
            }),
            Output::Close
        ]
    );
}

fn events(outputs: &[Output]) -> Vec<&Event> {
    outputs.iter().filter_map(|output| if let Output::Event(event) = output { Some(event) } else { None }).collect()
}

fn wake(outputs: &[Output]) -> Option<Timestamp> {
    outputs.iter().rev().find_map(|output| if let Output::WakeAt(at) = output { Some(*at) } else { None })
}

#[test]
fn a_silent_connection_is_pinged_given_up_and_replaced_without_handling_twice() {
    let keepalive = Keepalive { interval: Duration::from_secs(1), timeout: Duration::from_secs(2) };
    let mut agent = connected_agent(AgentConfig { keepalive, ..AgentConfig::new("agent-1") });
    // Pings on schedule while traffic proves the socket alive.
    agent.handle_input(at(1001), Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Ping, Output::WakeAt(at(2001))]);
    agent.handle_input(at(1500), Input::Pong).unwrap();
    assert!(drain(&mut agent).is_empty(), "a pong asks for nothing");
    agent.handle_input(at(2001), Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Ping, Output::WakeAt(at(3001))]);
    // A frame answers the ping as well as a pong would.
    agent.handle_input(at(2500), Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    assert_eq!(events(&drain(&mut agent)).len(), 1);
    agent.accept("m1", at(2600)).unwrap();
    assert_eq!(frames(&drain(&mut agent))[0]["type"], "ACK_READ");
    // Then silence: pinged at 3001 and 4001, dead at 5001 (two seconds after the first).
    agent.handle_input(at(3001), Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Ping, Output::WakeAt(at(4001))]);
    agent.handle_input(at(4001), Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Ping, Output::WakeAt(at(5001))]);
    agent.handle_input(at(5000), Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::WakeAt(at(5001))], "woken early, it asks again");
    agent.handle_input(at(5001), Input::Timeout).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(outputs[0], Output::Abandon);
    assert!(!agent.is_connected());
    let retry = wake(&outputs).expect("a reconnection is scheduled");
    assert!(retry <= at(5001).saturating_add(agent.config.backoff.initial));
    // A runtime that still reports the abandoned socket's loss does not delay the retry.
    agent.handle_input(at(5002), Input::Disconnected).unwrap();
    assert!(drain(&mut agent).is_empty());
    agent.handle_input(retry, Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Connect]);
    agent.handle_input(retry, Input::Connected).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::WakeAt(retry.saturating_add(keepalive.interval))]);
    // The relay replays what its acknowledgement may not have reached: acknowledged again,
    // never handled again; a message sent meanwhile is handled once.
    agent.handle_input(retry, Input::Frame(msg_frame("m1", "hello", json!({})))).unwrap();
    let outputs = drain(&mut agent);
    assert!(events(&outputs).is_empty(), "{outputs:?}");
    assert_eq!(frames(&outputs)[0]["type"], "ACK_READ");
    agent.handle_input(retry, Input::Frame(msg_frame("m2", "meanwhile", json!({})))).unwrap();
    assert_eq!(events(&drain(&mut agent)).len(), 1);
}

#[test]
fn the_keepalive_deadline_is_never_hidden_behind_a_later_one() {
    // The runtime keeps one deadline: while a publication retry is pending far away, the agent
    // still asks for its next ping first.
    let keepalive = Keepalive { interval: Duration::from_millis(100), timeout: Duration::from_millis(100) };
    let config = AgentConfig { keepalive, ..AgentConfig::new("agent-1") };
    let mut agent = connected_agent(config);
    agent.wake_at(at(60_000));
    assert_eq!(drain(&mut agent), vec![Output::WakeAt(at(101))]);
    // After a ping, the timeout is the earliest deadline when pings are farther apart.
    let keepalive = Keepalive { interval: Duration::from_millis(500), timeout: Duration::from_millis(100) };
    let mut agent = connected_agent(AgentConfig { keepalive, ..AgentConfig::new("agent-1") });
    agent.handle_input(at(501), Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Ping, Output::WakeAt(at(601))]);
    agent.handle_input(at(601), Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent)[0], Output::Abandon);
}

#[test]
fn a_refused_handshake_stops_the_agent_only_for_a_refused_token() {
    let refusal = |status: u16, body: &[u8]| Input::HandshakeRefused(HttpResponse { status, body: body.to_vec() });
    let mut agent = Agent::new(
        AgentConfig::new("agent-1"),
        Box::new(rand::rngs::StdRng::seed_from_u64(7)),
        AgentSnapshot::default(),
    )
    .unwrap();
    agent.start(at(0));
    assert_eq!(drain(&mut agent), vec![Output::Connect]);
    // A relay restarting: retried with backoff.
    agent.handle_input(at(1), refusal(503, b"")).unwrap();
    let retry = wake(&drain(&mut agent)).expect("a retry");
    agent.handle_input(retry, Input::Timeout).unwrap();
    assert_eq!(drain(&mut agent), vec![Output::Connect]);
    // A refused token: the app hears where and why, and the agent closes.
    agent.handle_input(retry, refusal(401, br#"{"error":"missing or invalid token"}"#)).unwrap();
    assert_eq!(
        drain(&mut agent),
        vec![
            Output::Event(Event::Unauthorized {
                step: AuthStep::Socket,
                status: 401,
                reason: Some("missing or invalid token".into())
            }),
            Output::Close
        ]
    );
    agent.handle_input(retry, Input::Disconnected).unwrap();
    assert!(drain(&mut agent).is_empty(), "closed stays closed");
    // 403 too, without a body.
    let mut agent = Agent::new(
        AgentConfig::new("agent-1"),
        Box::new(rand::rngs::StdRng::seed_from_u64(8)),
        AgentSnapshot::default(),
    )
    .unwrap();
    agent.start(at(0));
    drain(&mut agent);
    agent.handle_input(at(1), refusal(403, b"forbidden")).unwrap();
    assert_eq!(
        drain(&mut agent),
        vec![Output::Event(Event::Unauthorized { step: AuthStep::Socket, status: 403, reason: None }), Output::Close]
    );
}

/// Feeds timeouts at each deadline the agent asks for up to `until`, with `between` run at each
/// step; returns the outputs, stopping at the first [`Output::Abandon`].
fn run_clock(agent: &mut Agent, from: u64, until: u64, mut between: impl FnMut(&mut Agent, u64)) -> Vec<Output> {
    let mut all = Vec::new();
    let mut now = from;
    while now <= until {
        between(agent, now);
        let outputs = drain(agent);
        all.extend(outputs.iter().cloned());
        if outputs.contains(&Output::Abandon) {
            break;
        }
        agent.handle_input(at(now), Input::Timeout).unwrap();
        let outputs = drain(agent);
        all.extend(outputs.iter().cloned());
        if outputs.contains(&Output::Abandon) {
            break;
        }
        now += 250;
    }
    all
}

#[test]
fn frames_arriving_after_a_ping_keep_the_socket_alive_while_its_pong_is_late() {
    // A backlog: the relay's pong sits behind frames the agent has yet to read, so it comes long
    // after the timeout; every frame read meanwhile proves the socket alive.
    let keepalive = Keepalive { interval: Duration::from_secs(1), timeout: Duration::from_secs(2) };
    let mut agent = connected_agent(AgentConfig { keepalive, ..AgentConfig::new("agent-1") });
    let mut received = 0;
    let outputs = run_clock(&mut agent, 1001, 30_001, |agent, now| {
        // A frame every 250 ms of the virtual clock, never a pong.
        received += 1;
        agent.handle_input(at(now), Input::Frame(msg_frame(&format!("m{received}"), "backlog", json!({})))).unwrap();
    });
    assert!(!outputs.contains(&Output::Abandon), "a socket that keeps delivering is not dead");
    assert!(agent.is_connected());
    let pings = outputs.iter().filter(|output| **output == Output::Ping).count();
    assert!(pings >= 25, "pings keep going on schedule: {pings}");
    assert_eq!(events(&outputs).len(), received, "every frame was handled");
    // The pongs come at last, 29 s late: nothing changes.
    agent.handle_input(at(30_100), Input::Pong).unwrap();
    assert!(agent.is_connected());

    // Then nothing at all, the pongs included: dead two seconds after the first unanswered ping.
    let outputs = run_clock(&mut agent, 30_251, 40_001, |_, _| {});
    assert!(outputs.contains(&Output::Abandon), "a silent socket is dead");
    assert!(!agent.is_connected());
    // The late pong answered the ping of 30,001; the next, at 31,001, goes unanswered: dead at
    // its timeout, 33,001, and the reconnection follows within the first backoff.
    let retry = wake(&outputs).expect("a reconnection is scheduled");
    assert!(retry >= at(33_001) && retry <= at(33_001).saturating_add(agent.config.backoff.initial), "{retry:?}");
}

#[test]
fn the_relays_own_pings_also_prove_the_socket_alive_but_silence_does_not() {
    let keepalive = Keepalive { interval: Duration::from_secs(1), timeout: Duration::from_secs(2) };
    let mut agent = connected_agent(AgentConfig { keepalive, ..AgentConfig::new("agent-1") });
    let outputs = run_clock(&mut agent, 1001, 10_001, |agent, _| agent.handle_input(at(0), Input::Ping).unwrap());
    assert!(!outputs.contains(&Output::Abandon), "{outputs:?}");
    let mut silent = connected_agent(AgentConfig { keepalive, ..AgentConfig::new("agent-1") });
    let outputs = run_clock(&mut silent, 1001, 10_001, |_, _| {});
    assert!(outputs.contains(&Output::Abandon), "{outputs:?}");
}

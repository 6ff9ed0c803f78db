//! Behaviour of the person-side state machine.

use super::*;
use rand::SeedableRng;
use serde_json::json;

fn person() -> Person {
    let config = PersonConfig { device_id: Some("phone".into()), ..PersonConfig::new("u1") };
    let mut person = Person::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(3)));
    person.start();
    assert_eq!(person.poll_output(), Some(PersonOutput::Connect));
    person.handle_input(Timestamp::from_millis(0), PersonInput::Connected).unwrap();
    person
}

fn drain(person: &mut Person) -> Vec<PersonOutput> {
    std::iter::from_fn(|| person.poll_output()).collect()
}

fn agent_frame(id: &str, text: &str) -> String {
    json!({"type": "MSG", "id": id, "conversation_id": "c1", "from": "agent-1", "to": "u1",
           "payload_b64": STANDARD.encode(text), "encrypted": false, "to_device_id": "phone"})
    .to_string()
}

#[test]
fn messages_are_acknowledged_and_shown_once() {
    let mut person = person();
    let (_, widget) = widget::Widget::from(widget::Confirm::new("Go?").id("w1")).encode(|| unreachable!());
    person.handle_input(Timestamp::from_millis(1), PersonInput::Frame(agent_frame("m1", &widget))).unwrap();
    let outputs = drain(&mut person);
    let PersonOutput::Frame(ack) = &outputs[0] else { panic!("{outputs:?}") };
    assert_eq!(serde_json::from_str::<Value>(ack).unwrap()["type"], "ACK_READ");
    let PersonOutput::Event(PersonEvent::Message(message)) = &outputs[1] else { panic!("{outputs:?}") };
    assert_eq!(message.widget.as_ref().unwrap().id, "w1");
    assert_eq!(message.to_device_id.as_deref(), Some("phone"));
    // A replay is acknowledged again but not shown twice.
    person.handle_input(Timestamp::from_millis(2), PersonInput::Frame(agent_frame("m1", &widget))).unwrap();
    let outputs = drain(&mut person);
    assert_eq!(outputs.len(), 1);
    assert!(matches!(&outputs[0], PersonOutput::Frame(_)));
}

#[test]
fn sends_carry_the_device_and_widget_answers() {
    let mut person = person();
    person.answer_widget("c1", "agent-1", "w1", json!(true)).unwrap();
    let outputs = drain(&mut person);
    let PersonOutput::Frame(frame) = &outputs[0] else { panic!() };
    let frame: Value = serde_json::from_str(frame).unwrap();
    assert_eq!(frame["from_device_id"], "phone");
    let payload = String::from_utf8(STANDARD.decode(frame["payload_b64"].as_str().unwrap()).unwrap()).unwrap();
    let answer = parse_payload(&payload).widget_response.unwrap();
    assert_eq!((answer.widget_ref.as_str(), answer.value, answer.cancelled), ("w1", Some(json!(true)), false));
    person.cancel_widget("c1", "agent-1", "w1").unwrap();
    let PersonOutput::Frame(frame) = &drain(&mut person)[0] else { panic!() };
    let frame: Value = serde_json::from_str(frame).unwrap();
    let payload = String::from_utf8(STANDARD.decode(frame["payload_b64"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(parse_payload(&payload).text, "Widget cancelled");
}

#[test]
fn http_answers_become_events_and_failures_are_precise() {
    let mut person = person();
    let request = person.create_conversation(CreateConversation {
        members: vec!["agent-1".into()],
        group: false,
        conversation_id: None,
    });
    let PersonOutput::Http(http) = &drain(&mut person)[0] else { panic!() };
    assert_eq!((http.method, http.path.as_str()), (HttpMethod::Post, "/person/conversations"));
    let ok = HttpResponse { status: 200, body: br#"{"conversation_id":"c9"}"#.to_vec() };
    person.handle_input(Timestamp::from_millis(1), PersonInput::Http(request, Ok(ok))).unwrap();
    assert_eq!(
        drain(&mut person),
        vec![PersonOutput::Event(PersonEvent::ConversationCreated { request, conversation_id: "c9".into() })]
    );
    let request = person.fetch_bundle("agent/1");
    let PersonOutput::Http(http) = &drain(&mut person)[0] else { panic!() };
    assert_eq!(http.path, "/person/agents/agent%2F1/prekey-bundle");
    let denied = HttpResponse { status: 404, body: br#"{"error":"unknown agent"}"#.to_vec() };
    person.handle_input(Timestamp::from_millis(1), PersonInput::Http(request, Ok(denied))).unwrap();
    assert_eq!(
        drain(&mut person),
        vec![PersonOutput::Event(PersonEvent::RequestFailed { request, status: 404, error: "unknown agent".into() })]
    );
}

#[test]
fn relay_frames_and_bad_input() {
    let mut person = person();
    person
        .handle_input(
            Timestamp::from_millis(1),
            PersonInput::Frame(r#"{"type":"READ","message_id":"m","conversation_id":"c","by":"a"}"#.into()),
        )
        .unwrap();
    assert!(matches!(&drain(&mut person)[0], PersonOutput::Event(PersonEvent::Read(receipt)) if receipt.by == "a"));
    assert!(person.handle_input(Timestamp::from_millis(1), PersonInput::Frame("garbage".into())).is_err());
    let encrypted = json!({"type": "MSG", "id": "m", "conversation_id": "c", "from": "a", "to": "u1", "payload_b64": "AAAA", "encrypted": true});
    assert_eq!(
        person.handle_input(Timestamp::from_millis(1), PersonInput::Frame(encrypted.to_string())),
        Err(PersonError::EncryptedWithoutE2ee { message_id: "m".into() })
    );
    assert!(drain(&mut person).is_empty());
}

#[test]
fn an_encrypted_message_whose_session_cannot_start_is_reported_not_sent() {
    let config = PersonConfig { e2ee: true, ..PersonConfig::new("u1") };
    let mut person = Person::new(config, Box::new(rand::rngs::StdRng::seed_from_u64(3)));
    person.start();
    person.handle_input(Timestamp::from_millis(1), PersonInput::Connected).unwrap();
    drain(&mut person);
    let first = person.send_text("c1", "agent-1", "one").unwrap();
    let second = person.send_text("c1", "agent-1", "two").unwrap();
    let outputs = drain(&mut person);
    let [PersonOutput::Http(fetch)] = outputs.as_slice() else { panic!("one bundle fetch: {outputs:?}") };
    assert_eq!(fetch.path, "/person/agents/agent-1/prekey-bundle");
    let unknown = HttpResponse { status: 404, body: br#"{"error":"unknown prekey bundle"}"#.to_vec() };
    person.handle_input(Timestamp::from_millis(2), PersonInput::Http(fetch.id, Ok(unknown))).unwrap();
    let outputs = drain(&mut person);
    let not_sent: Vec<&str> = outputs
        .iter()
        .filter_map(|output| match output {
            PersonOutput::Event(PersonEvent::NotSent { message_id, error }) => {
                assert_eq!(error, "unknown prekey bundle");
                Some(message_id.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(not_sent, [first.as_str(), second.as_str()], "{outputs:?}");
    assert!(
        outputs
            .iter()
            .any(|output| matches!(output, PersonOutput::Event(PersonEvent::RequestFailed { status: 404, .. })))
    );
    assert!(!outputs.iter().any(|output| matches!(output, PersonOutput::Frame(_))), "nothing sent");
}

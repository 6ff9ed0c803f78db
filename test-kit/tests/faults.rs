//! Each fault and each kind of person the kit simulates, on tokio (the runtime-specific code is
//! the agents' own, which `runtimes.rs` covers on all four): a half-open socket, late and
//! reordered delivery, a store failing at its next write, a person on two devices, an encrypted
//! group, and the answer helpers of every widget kind.

use pacerelle_core::AgentMessage;
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::connection::Keepalive;
use pacerelle_core::widget::{Choice, ChoiceOption, DateTime, FilePicker, Form, FormField, Permission};
use pacerelle_runtime_support::{ClientError, os_rng};
use pacerelle_test::{FailingStore, SharedStore, TestAgent, TestRelay, WidgetKind};
use pacerelle_tokio::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Answers every message `Received: <text>`, counting the calls.
fn echo(client: &mut Client, calls: &Arc<AtomicUsize>) {
    let calls = calls.clone();
    client.on_message(move |message, agent| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            agent.reply(&message, format!("Received: {}", message.text)).await?;
            Ok(())
        }
    });
}

#[test]
fn a_half_open_socket_is_noticed_and_replaced() {
    let relay = TestRelay::start();
    let keepalive = Keepalive { interval: Duration::from_millis(200), timeout: Duration::from_millis(500) };
    let config = relay.agent("echo");
    let core = AgentConfig { keepalive, ..AgentConfig::new("echo") };
    let mut client = Client::with_parts(config, core, Box::new(SharedStore::new()), os_rng()).expect("the agent");
    let calls = Arc::new(AtomicUsize::new(0));
    echo(&mut client, &calls);
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("echo");

    let sockets = relay.agent_connections("echo");
    relay.half_open("echo");
    let sent = alice.say("said into the silence");
    relay.expect_reconnection("echo", sockets);
    alice.expect_reply(&sent, "Received: said into the silence");
    relay.expect_all_acknowledged("echo");

    // The frozen socket thaws: what it held reaches nobody twice.
    relay.thaw("echo");
    let after = alice.say("after the thaw");
    alice.expect_reply(&after, "Received: after the thaw");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "each message handled once");
    agent.stop();
}

#[test]
fn late_delivery_keeps_the_order() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.agent("echo")).expect("the agent");
    echo(&mut client, &Arc::default());
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("echo");

    relay.delay_to_agent("echo", Duration::from_millis(50));
    let sent: Vec<String> = ["one", "two", "three"].iter().map(|text| alice.say(text)).collect();
    for (id, text) in sent.iter().zip(["one", "two", "three"]) {
        alice.expect_reply(id, &format!("Received: {text}"));
    }
    relay.delay_to_agent("echo", Duration::ZERO);
    agent.stop();
}

#[test]
fn reordered_delivery_reaches_the_handler_reordered() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.agent("echo")).expect("the agent");
    echo(&mut client, &Arc::default());
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("echo");

    relay.reorder_to_agent("echo", 2);
    let first = alice.say("first");
    let second = alice.say("second");
    // The handler sees them in the order they arrived: the second first.
    alice.expect_reply(&second, "Received: second");
    alice.expect_reply(&first, "Received: first");
    relay.expect_all_acknowledged("echo");
    agent.stop();
}

#[test]
fn a_store_failing_at_its_next_write_stops_the_agent_and_a_restart_recovers() {
    let relay = TestRelay::start();
    let disk = SharedStore::new();
    let (store, switch) = FailingStore::new(disk.clone());
    let mut client = Client::with_store(relay.agent("echo"), store).expect("the agent");
    let calls = Arc::new(AtomicUsize::new(0));
    echo(&mut client, &calls);
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("echo");

    switch.fail_next_write();
    let sent = alice.say("hello");
    match agent.expect_stopped() {
        ClientError::Store(error) => assert!(error.to_string().contains("on purpose"), "{error}"),
        other => panic!("expected a store failure, got {other}"),
    }
    assert_eq!(switch.failures(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never saw a message whose receipt was not stored");
    alice.expect_nothing_for(Duration::from_millis(200));
    assert_eq!(relay.pending_for_agent("echo"), 1, "the relay still holds the message");

    // Restarted on what the store holds, the agent handles the replayed message.
    let mut client = Client::with_store(relay.agent("echo"), disk).expect("the agent again");
    echo(&mut client, &calls);
    let agent = TestAgent::start(client);
    alice.expect_reply(&sent, "Received: hello");
    relay.expect_all_acknowledged("echo");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    agent.stop();
}

#[test]
fn a_reply_goes_to_the_device_that_wrote() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.agent("echo")).expect("the agent");
    echo(&mut client, &Arc::default());
    let agent = TestAgent::start(client);
    let phone = relay.person("alice").talks_to("echo");
    let laptop = phone.on_device("laptop");

    let sent = laptop.say("from the laptop");
    let reply = laptop.expect_reply(&sent, "Received: from the laptop");
    assert_eq!(reply.to_device_id.as_deref(), Some("laptop"));
    phone.expect_nothing_for(Duration::from_millis(200));
    agent.stop();
}

#[test]
fn an_encrypted_group_of_two_people() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.encrypted_agent("echo")).expect("the agent");
    echo(&mut client, &Arc::default());
    let agent = TestAgent::start(client);
    let people = relay.group("echo", [relay.person("alice").encrypted(), relay.person("bob").encrypted()]);
    let [alice, bob] = &people[..] else { panic!("two people") };

    let sent = alice.say("hello group");
    for person in [alice, bob] {
        let reply = person.expect_reply(&sent, "Received: hello group");
        assert!(reply.encrypted && reply.is_group(), "{reply:?}");
    }
    assert_eq!(bob.next_message_from_people().text, "hello group");
    agent.stop();
}

/// Shows each widget kind on request, and says what the answer to it was.
fn widget_agent(client: &mut Client) {
    client.on_message(|message: AgentMessage, agent| async move {
        let (conversation, person) = (&message.conversation_id, &message.from);
        if let Some(response) = &message.widget_response {
            let answer = match (&response.value, response.cancelled) {
                (_, true) => "dismissed".to_owned(),
                (Some(value), false) => value.to_string(),
                (None, false) => "nothing".to_owned(),
            };
            agent.reply(&message, answer).await?;
            return Ok(());
        }
        match message.text.as_str() {
            "choice" => {
                let options = [ChoiceOption::new("a", "A"), ChoiceOption::new("b", "B")];
                agent.send_widget(conversation, person, Choice::new("Pick one", options)).await?
            }
            "permission" => agent.send_widget(conversation, person, Permission::new("Read files?")).await?,
            "form" => {
                let fields = [FormField::new("name", "Name", "text")];
                agent.send_widget(conversation, person, Form::new("Who?", fields)).await?
            }
            "files" => agent.send_widget(conversation, person, FilePicker::new("Which files?")).await?,
            _ => agent.send_widget(conversation, person, DateTime::new("When?", "datetime")).await?,
        };
        Ok(())
    });
}

#[test]
fn every_widget_kind_is_answered_by_its_helper() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.agent("widgets")).expect("the agent");
    widget_agent(&mut client);
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("widgets");

    alice.say("choice");
    alice.expect_widget(WidgetKind::Choice).choose("b");
    alice.expect_text(r#""b""#);
    alice.say("permission");
    alice.expect_widget(WidgetKind::Permission).grant("session");
    alice.expect_text(r#"{"granted":true,"scope":"session"}"#);
    alice.say("form");
    let form = alice.expect_widget(WidgetKind::Form);
    assert_eq!(form.title(), Some("Who?"));
    form.fill(serde_json::json!({"name": "Ada"}));
    alice.expect_text(r#"{"name":"Ada"}"#);
    alice.say("files");
    alice.expect_widget(WidgetKind::FilePicker).pick_files(&["notes.txt"]);
    alice.expect_text(r#"["notes.txt"]"#);
    alice.say("when");
    let when = alice.expect_widget(WidgetKind::DateTime);
    when.pick_datetime("2026-11-25T10:00:00Z");
    alice.expect_text(r#""2026-11-25T10:00:00Z""#);
    when.dismiss();
    alice.expect_text("dismissed");
    agent.stop();
}

#[test]
#[should_panic(expected = "expected the text \"Received: bye\", got the text \"Received: hello\"")]
fn a_failed_expectation_says_what_was_expected_and_what_came() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.agent("echo")).expect("the agent");
    echo(&mut client, &Arc::default());
    let _agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("echo");
    alice.say("hello");
    alice.expect_text("Received: bye");
}

//! The kit on each of the four runtimes: the same echo agent answers a person and a widget
//! answer, and survives a dropped socket and a relay restart (messages said while it was away
//! are answered once it is back), everything acknowledged.

use pacerelle_core::AgentMessage;
use pacerelle_core::widget::Confirm;
use pacerelle_runtime_support::driver;
use pacerelle_test::{ServeAgent, TestAgent, TestRelay, WidgetKind};

/// What the echo agent answers to `message`: a confirm widget for "deploy", a word for the
/// widget's answer, `Received: <text>` for the rest.
enum Answer {
    Widget,
    Text(String),
}

fn answer(message: &AgentMessage) -> Answer {
    match &message.widget_response {
        Some(response) if response.value == Some(serde_json::json!(true)) => Answer::Text("confirmed".into()),
        Some(_) => Answer::Text("declined".into()),
        None if message.text == "deploy" => Answer::Widget,
        None => Answer::Text(format!("Received: {}", message.text)),
    }
}

/// The echo agent on an async runtime `R`.
fn async_echo<R: driver::Runtime>(relay: &TestRelay) -> driver::Client<R> {
    let mut client = driver::Client::<R>::in_memory(relay.agent("echo")).expect("the agent is made");
    client.on_message(|message, agent| async move {
        match answer(&message) {
            Answer::Widget => {
                agent.send_widget(&message.conversation_id, &message.from, Confirm::new("Deploy now?")).await?
            }
            Answer::Text(text) => agent.reply(&message, text).await?,
        };
        Ok(())
    });
    client
}

/// The conversation and the faults, whatever the runtime.
fn echo_survives_faults<C: ServeAgent>(relay: &TestRelay, client: C) {
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("echo");

    let hello = alice.say("hello");
    alice.expect_reply(&hello, "Received: hello");
    alice.expect_read(&hello);
    alice.say("deploy");
    let widget = alice.expect_widget(WidgetKind::Confirm);
    assert_eq!(widget.title(), Some("Deploy now?"), "{}", C::RUNTIME);
    widget.yes();
    alice.expect_text("confirmed");

    // Said while the socket is down: the relay keeps it and replays it on the new socket.
    let sockets = relay.agent_connections("echo");
    relay.drop_agent_socket("echo");
    let during_drop = alice.say("said during the drop");
    relay.expect_reconnection("echo", sockets);
    alice.expect_reply(&during_drop, "Received: said during the drop");

    let sockets = relay.agent_connections("echo");
    relay.go_down();
    let during_outage = alice.say("said while the relay was down");
    relay.come_back();
    relay.expect_reconnection("echo", sockets);
    alice.expect_reply(&during_outage, "Received: said while the relay was down");

    relay.expect_all_acknowledged("echo");
    agent.stop();
}

#[test]
fn tokio() {
    let relay = TestRelay::start();
    let client = async_echo::<pacerelle_tokio::Tokio>(&relay);
    echo_survives_faults(&relay, client);
}

#[cfg(feature = "smol")]
#[test]
fn smol() {
    let relay = TestRelay::start();
    let client = async_echo::<pacerelle_smol::Smol>(&relay);
    echo_survives_faults(&relay, client);
}

#[cfg(feature = "async-std")]
#[test]
fn async_std() {
    let relay = TestRelay::start();
    let client = async_echo::<pacerelle_async_std::AsyncStd>(&relay);
    echo_survives_faults(&relay, client);
}

#[cfg(feature = "blocking")]
#[test]
fn blocking() {
    let relay = TestRelay::start();
    let mut client = pacerelle_blocking::Client::in_memory(relay.agent("echo")).expect("the agent is made");
    client.on_message(|message, agent| {
        match answer(&message) {
            Answer::Widget => {
                agent.send_widget(&message.conversation_id, &message.from, Confirm::new("Deploy now?"))?
            }
            Answer::Text(text) => agent.reply(&message, text)?,
        };
        Ok(())
    });
    echo_survives_faults(&relay, client);
}

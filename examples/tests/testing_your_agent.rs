//! The echo agent's tests: `tests/echo.rs` of an agent's crate, with `pacerelle = { version =
//! "0.1", features = ["test-kit"] }` in its `[dev-dependencies]`. Plain `#[test]`s: the kit
//! runs the relay and the people itself.

use pacerelle::test::{TestAgent, TestRelay, WidgetKind};
use pacerelle::tokio::Client;
use pacerelle::widget::Confirm;

/// The echo agent, as the app installs it: `Received: <text>`, a confirm widget on "deploy",
/// and what the widget's answer was.
fn echo(client: &mut Client) {
    client.on_message(|message, agent| async move {
        if let Some(answer) = &message.widget_response {
            let said = if answer.value == Some(true.into()) { "Deploying" } else { "Not deploying" };
            agent.reply(&message, said).await?;
        } else if message.text == "deploy" {
            agent.send_widget(&message.conversation_id, &message.from, Confirm::new("Deploy now?")).await?;
        } else {
            agent.reply(&message, format!("Received: {}", message.text)).await?;
        }
        Ok(())
    });
}

#[test]
fn the_echo_agent_answers_asks_and_survives_a_dropped_socket() {
    let relay = TestRelay::start(); // a development relay in this process, on a loopback port
    let mut client = Client::in_memory(relay.agent("echo")).unwrap(); // the agent, registered
    echo(&mut client);
    let agent = TestAgent::start(client); // served on its own thread until connected
    let alice = relay.person("alice").talks_to("echo");

    let hello = alice.say("hello");
    alice.expect_reply(&hello, "Received: hello");
    alice.expect_read(&hello); // handled and acknowledged

    alice.say("deploy");
    let confirm = alice.expect_widget(WidgetKind::Confirm);
    assert_eq!(confirm.title(), Some("Deploy now?"));
    confirm.yes();
    alice.expect_text("Deploying");

    relay.drop_agent_socket("echo"); // a fault: the relay drops the agent's socket
    let again = alice.say("still there?"); // kept by the relay until the agent is back
    alice.expect_reply(&again, "Received: still there?");
    relay.expect_all_acknowledged("echo");
    agent.stop(); // connect returned Ok
}

#[test]
fn the_echo_agent_end_to_end_encrypted() {
    let relay = TestRelay::start();
    let mut client = Client::in_memory(relay.encrypted_agent("echo")).unwrap();
    echo(&mut client);
    let agent = TestAgent::start(client); // its prekeys are published once it is connected
    let bob = relay.person("bob").encrypted().talks_to("echo");

    let hi = bob.say("hi");
    let reply = bob.expect_reply(&hi, "Received: hi");
    assert!(reply.encrypted);
    agent.stop();
}

//! The echo conversation (text, a confirm widget, its answer, a widget update) on every runtime:
//! the echo agent served by the test kit, and the examples' scripted person (`script.rs`, what
//! `cargo run --example echo` runs) on the same runtime as the agent where it has one.

use pacerelle::test::{ServeAgent, TestAgent, TestRelay};
use pacerelle_examples::{echo, script};
use std::time::Duration;

const EXPECTED_LINES: usize = 7;

/// The scripted person's token at the test relay.
const PERSON_TOKEN: &str = "alice-token";

/// Serves the echo agent `client` on `relay`, registers the scripted person, and runs the
/// script with `run`; checks the transcript and that the agent closes promptly without error.
fn holds_the_echo_conversation<C: ServeAgent>(
    relay: &TestRelay,
    client: C,
    run: impl FnOnce(&str) -> Result<Vec<String>, script::ScriptError>,
) {
    let agent = TestAgent::start(client);
    relay.handle().add_person(script::PERSON_ID, PERSON_TOKEN);
    let transcript = run(&relay.base_url()).unwrap();
    assert_eq!(transcript.len(), EXPECTED_LINES, "{} {transcript:#?}", C::RUNTIME);
    agent.stop_within(Duration::from_secs(5));
}

#[test]
fn tokio_agent_holds_the_echo_conversation() {
    let relay = TestRelay::start();
    let mut client = pacerelle::tokio::Client::in_memory(relay.agent(script::AGENT_ID)).unwrap();
    client.on_message(|message, agent| async move { echo::run_tokio(echo::respond(&message), &agent).await });
    holds_the_echo_conversation(&relay, client, |url| relay.block_on(script::run_echo_conversation(url, PERSON_TOKEN)));
}

#[test]
fn blocking_agent_holds_the_echo_conversation() {
    let relay = TestRelay::start();
    let mut client = pacerelle::blocking::Client::in_memory(relay.agent(script::AGENT_ID)).unwrap();
    client.on_message(|message, agent| echo::run_blocking(echo::respond(&message), agent));
    holds_the_echo_conversation(&relay, client, |url| relay.block_on(script::run_echo_conversation(url, PERSON_TOKEN)));
}

#[test]
fn smol_agent_and_person_hold_the_echo_conversation() {
    let relay = TestRelay::start();
    let mut client = pacerelle::smol::Client::in_memory(relay.agent(script::AGENT_ID)).unwrap();
    client.on_message(|message, agent| async move { echo::run_async(echo::respond(&message), &agent).await });
    holds_the_echo_conversation(&relay, client, |url| {
        smol::block_on(script::run_echo_conversation_on::<pacerelle::smol::Smol>(url, PERSON_TOKEN))
    });
}

#[test]
fn async_std_agent_and_person_hold_the_echo_conversation() {
    let relay = TestRelay::start();
    let mut client = pacerelle::async_std::Client::in_memory(relay.agent(script::AGENT_ID)).unwrap();
    client.on_message(|message, agent| async move { echo::run_async(echo::respond(&message), &agent).await });
    holds_the_echo_conversation(&relay, client, |url| {
        async_std::task::block_on(script::run_echo_conversation_on::<pacerelle::async_std::AsyncStd>(url, PERSON_TOKEN))
    });
}

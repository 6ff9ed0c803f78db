//! The echo conversation (text, a confirm widget, its answer, a widget update) on every runtime,
//! against the embedded relay.

use pacerelle::ClientConfig;
use pacerelle_examples::{echo, script};
use std::time::Duration;

const EXPECTED_LINES: usize = 7;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_agent_holds_the_echo_conversation() {
    let (relay, credentials) = script::start_relay().await.unwrap();
    let config =
        ClientConfig::new(script::AGENT_ID, credentials.agent_token.clone()).with_base_url(relay.base_url()).unwrap();
    let mut client = pacerelle::tokio::Client::in_memory(config).unwrap();
    client.on_message(|message, agent| async move { echo::run_tokio(echo::respond(&message), &agent).await });
    let agent = client.handle();
    let serving = tokio::spawn(client.connect());

    let transcript = script::run_echo_conversation(&relay.base_url(), &credentials.person_token).await.unwrap();
    assert_eq!(transcript.len(), EXPECTED_LINES, "{transcript:#?}");

    agent.close();
    tokio::time::timeout(Duration::from_secs(5), serving).await.expect("close is prompt").unwrap().unwrap();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_agent_holds_the_echo_conversation() {
    let (relay, credentials) = script::start_relay().await.unwrap();
    let config =
        ClientConfig::new(script::AGENT_ID, credentials.agent_token.clone()).with_base_url(relay.base_url()).unwrap();
    let mut client = pacerelle::blocking::Client::in_memory(config).unwrap();
    client.on_message(|message, agent| echo::run_blocking(echo::respond(&message), agent));
    let agent = client.handle();
    let serving = std::thread::spawn(move || client.connect());

    let transcript = script::run_echo_conversation(&relay.base_url(), &credentials.person_token).await.unwrap();
    assert_eq!(transcript.len(), EXPECTED_LINES, "{transcript:#?}");

    agent.close();
    let closed = tokio::task::spawn_blocking(move || serving.join());
    tokio::time::timeout(Duration::from_secs(5), closed).await.expect("close is prompt").unwrap().unwrap().unwrap();
    relay.shutdown().await;
}

#[test]
fn smol_agent_and_person_hold_the_echo_conversation() {
    let (relay, credentials) = script::start_background_relay().unwrap();
    let config =
        ClientConfig::new(script::AGENT_ID, credentials.agent_token.clone()).with_base_url(relay.base_url()).unwrap();
    let mut client = pacerelle::smol::Client::in_memory(config).unwrap();
    client.on_message(|message, agent| async move { echo::run_async(echo::respond(&message), &agent).await });
    let agent = client.handle();
    let transcript = smol::block_on(async {
        let serving = smol::spawn(client.connect());
        let transcript =
            script::run_echo_conversation_on::<pacerelle::smol::Smol>(&relay.base_url(), &credentials.person_token)
                .await
                .unwrap();
        agent.close();
        smol::future::or(serving, async {
            smol::Timer::after(Duration::from_secs(5)).await;
            panic!("close is not prompt")
        })
        .await
        .unwrap();
        transcript
    });
    assert_eq!(transcript.len(), EXPECTED_LINES, "{transcript:#?}");
    relay.shutdown();
}

#[test]
fn async_std_agent_and_person_hold_the_echo_conversation() {
    let (relay, credentials) = script::start_background_relay().unwrap();
    let config =
        ClientConfig::new(script::AGENT_ID, credentials.agent_token.clone()).with_base_url(relay.base_url()).unwrap();
    let mut client = pacerelle::async_std::Client::in_memory(config).unwrap();
    client.on_message(|message, agent| async move { echo::run_async(echo::respond(&message), &agent).await });
    let agent = client.handle();
    let transcript = async_std::task::block_on(async {
        let serving = async_std::task::spawn(client.connect());
        let transcript = script::run_echo_conversation_on::<pacerelle::async_std::AsyncStd>(
            &relay.base_url(),
            &credentials.person_token,
        )
        .await
        .unwrap();
        agent.close();
        async_std::future::timeout(Duration::from_secs(5), serving).await.expect("close is prompt").unwrap();
        transcript
    });
    assert_eq!(transcript.len(), EXPECTED_LINES, "{transcript:#?}");
    relay.shutdown();
}

//! The echo agent on smol, one command: `cargo run --example echo_smol`.
//!
//! With no configuration it starts a relay on a loopback port (on a thread of its own: the relay
//! is built on tokio, the agent and the scripted person run on smol), and the person talks to the
//! agent (text, a confirm widget, its answer, a widget update), printing the conversation; it
//! exits 0 when every answer was right.
//!
//! With `PACERELLE_AGENT_ID` and `PACERELLE_AGENT_TOKEN` (and optionally `PACERELLE_BASE_URL`,
//! `PACERELLE_E2EE=1` to encrypt, `PACERELLE_STORE_ROOT`) set, it prints its verification code
//! (with encryption) and serves that relay as the echo agent, on its durable store, until interrupted.

use pacerelle::smol::{Client, Smol};
use pacerelle::{ClientConfig, ClientError};
use pacerelle_examples::{BoxError, configured, echo, exit_code, init_logging, script, serving_banner};
use std::process::ExitCode;

fn echo_client(mut client: Client) -> Client {
    client.on_message(|message, agent| async move { echo::run_async(echo::respond(&message), &agent).await });
    client
}

/// The echo agent on its durable store (`~/.myagents/<agent_id>/` or `PACERELLE_STORE_ROOT`),
/// encrypted when `PACERELLE_E2EE` says so, after printing what a person needs to check it.
fn serving_client(config: ClientConfig) -> Result<Client, ClientError> {
    let client = Client::new(config.clone())?;
    println!("{}", serving_banner("smol", &config, client.handle().verification_code().as_deref()));
    Ok(echo_client(client))
}

fn main() -> ExitCode {
    init_logging();
    exit_code("echo_smol", if configured() { serve() } else { demo() })
}

/// Serves the configured relay until the process is interrupted.
fn serve() -> Result<(), BoxError> {
    let config = ClientConfig::from_env()?;
    smol::block_on(serving_client(config)?.connect())?;
    Ok(())
}

/// Relay, agent and person in one process.
fn demo() -> Result<(), BoxError> {
    let (relay, credentials) = script::start_background_relay()?;
    eprintln!("relay listening on {}", relay.base_url());
    let config = ClientConfig::new(script::AGENT_ID, credentials.agent_token).with_base_url(relay.base_url())?;
    // The relay lives in this process and dies with it: nothing to resume, so nothing is kept.
    let client = echo_client(Client::in_memory(config)?);
    let agent = client.handle();
    let outcome = smol::block_on(async {
        let serving = smol::spawn(client.connect());
        let outcome = script::run_echo_conversation_on::<Smol>(&relay.base_url(), &credentials.person_token).await;
        agent.close();
        serving.await.map(|()| outcome)
    })?;
    relay.shutdown();
    outcome?;
    println!("echo: conversation complete (smol)");
    Ok(())
}

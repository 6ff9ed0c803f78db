//! The echo agent on tokio, one command: `cargo run --example echo_tokio` (or `--example echo`,
//! the same program).
//!
//! With no configuration it starts a relay on a loopback port, runs the echo agent on tokio
//! against it, and has a scripted person talk to the agent (text, a confirm widget, its answer,
//! a widget update), printing the conversation; it exits 0 when every answer was right.
//!
//! With `PACERELLE_AGENT_ID` and `PACERELLE_AGENT_TOKEN` (and optionally `PACERELLE_BASE_URL`,
//! `PACERELLE_E2EE=1` to encrypt, `PACERELLE_STORE_ROOT`) set, it prints its verification code
//! (with encryption) and serves that relay as the echo agent, on its durable store, until Ctrl-C.

use pacerelle::tokio::Client;
use pacerelle::{ClientConfig, ClientError};
use pacerelle_examples::{BoxError, configured, echo, exit_code, init_logging, script, serving_banner};
use std::process::ExitCode;

fn echo_client(mut client: Client) -> Client {
    client.on_message(|message, agent| async move { echo::run_tokio(echo::respond(&message), &agent).await });
    client
}

/// The echo agent on its durable store (`~/.myagents/<agent_id>/` or `PACERELLE_STORE_ROOT`),
/// encrypted when `PACERELLE_E2EE` says so, after printing what a person needs to check it.
fn serving_client(config: ClientConfig) -> Result<Client, ClientError> {
    let client = Client::new(config.clone())?;
    println!("{}", serving_banner("tokio", &config, client.handle().verification_code().as_deref()));
    Ok(echo_client(client))
}

/// Serves or runs the demo.
#[tokio::main]
pub async fn main() -> ExitCode {
    init_logging();
    exit_code("echo", if configured() { serve().await } else { demo().await })
}

/// Serves the configured relay until Ctrl-C.
async fn serve() -> Result<(), BoxError> {
    let config = ClientConfig::from_env()?;
    let client = serving_client(config)?;
    let handle = client.handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        handle.close();
    });
    client.connect().await?;
    Ok(())
}

/// Relay, agent and person in one process.
async fn demo() -> Result<(), BoxError> {
    let (relay, credentials) = script::start_relay().await?;
    eprintln!("relay listening on {}", relay.base_url());
    let config = ClientConfig::new(script::AGENT_ID, credentials.agent_token).with_base_url(relay.base_url())?;
    // The relay lives in this process and dies with it: nothing to resume, so nothing is kept.
    let client = echo_client(Client::in_memory(config)?);
    let agent = client.handle();
    let serving = tokio::spawn(client.connect());
    let outcome = script::run_echo_conversation(&relay.base_url(), &credentials.person_token).await;
    agent.close();
    serving.await??;
    relay.shutdown().await;
    outcome?;
    println!("echo: conversation complete");
    Ok(())
}

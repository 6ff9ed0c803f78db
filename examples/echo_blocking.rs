//! The echo agent without an async runtime, one command: `cargo run --example echo_blocking`.
//!
//! With no configuration it starts a relay on a loopback port (on a thread of its own), serves
//! the echo agent on another thread, and has a scripted person talk to it (text, a confirm
//! widget, its answer, a widget update), printing the conversation; it exits 0 when every answer
//! was right. The agent needs no executor; the scripted person is async and runs on a small
//! tokio runtime of its own.
//!
//! With `PACERELLE_AGENT_ID` and `PACERELLE_AGENT_TOKEN` (and optionally `PACERELLE_BASE_URL`,
//! `PACERELLE_E2EE=1` to encrypt, `PACERELLE_STORE_ROOT`) set, it prints its verification code
//! (with encryption) and serves that relay as the echo agent, on its durable store, until interrupted.

use pacerelle::blocking::Client;
use pacerelle::{ClientConfig, ClientError};
use pacerelle_examples::{BoxError, configured, echo, exit_code, init_logging, script, serving_banner};
use std::process::ExitCode;

fn echo_client(mut client: Client) -> Client {
    client.on_message(|message, agent| echo::run_blocking(echo::respond(&message), agent));
    client
}

/// The echo agent on its durable store (`~/.myagents/<agent_id>/` or `PACERELLE_STORE_ROOT`),
/// encrypted when `PACERELLE_E2EE` says so, after printing what a person needs to check it.
fn serving_client(config: ClientConfig) -> Result<Client, ClientError> {
    let client = Client::new(config.clone())?;
    println!("{}", serving_banner("blocking", &config, client.handle().verification_code().as_deref()));
    Ok(echo_client(client))
}

fn main() -> ExitCode {
    init_logging();
    exit_code("echo_blocking", if configured() { serve() } else { demo() })
}

/// Serves the configured relay on this thread until the process is interrupted.
fn serve() -> Result<(), BoxError> {
    let config = ClientConfig::from_env()?;
    serving_client(config)?.connect()?;
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
    let serving = std::thread::spawn(move || client.connect());
    let person = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = person.block_on(script::run_echo_conversation(&relay.base_url(), &credentials.person_token));
    agent.close();
    serving.join().map_err(|_| "the agent thread panicked")??;
    relay.shutdown();
    outcome?;
    println!("echo: conversation complete (blocking)");
    Ok(())
}

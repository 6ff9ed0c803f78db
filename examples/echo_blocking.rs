//! The echo agent without an async runtime, one command: `cargo run --example echo_blocking`.
//!
//! With no configuration it starts a relay on a loopback port (on a thread of its own), serves
//! the echo agent on another thread, and has a scripted person talk to it (text, a confirm
//! widget, its answer, a widget update), printing the conversation; it exits 0 when every answer
//! was right. The agent needs no executor; the scripted person is async and runs on a small
//! tokio runtime of its own.
//!
//! With `PACERELLE_AGENT_ID` and `PACERELLE_AGENT_TOKEN` (and optionally `PACERELLE_BASE_URL`)
//! set, it serves that relay as the echo agent until interrupted.

use pacerelle::blocking::Client;
use pacerelle::{ClientConfig, ClientError};
use pacerelle_examples::{BoxError, configured, echo, exit_code, init_logging, script};
use std::process::ExitCode;

fn echo_client(config: ClientConfig) -> Result<Client, ClientError> {
    let mut client = Client::new(config)?;
    client.on_message(|message, agent| echo::run_blocking(echo::respond(&message), agent));
    Ok(client)
}

fn main() -> ExitCode {
    init_logging();
    exit_code("echo_blocking", if configured() { serve() } else { demo() })
}

/// Serves the configured relay on this thread until the process is interrupted.
fn serve() -> Result<(), BoxError> {
    let config = ClientConfig::from_env()?;
    eprintln!("echo agent {} serving {} (blocking; Ctrl-C to stop)", config.agent_id, config.base_url);
    echo_client(config)?.connect()?;
    Ok(())
}

/// Relay, agent and person in one process.
fn demo() -> Result<(), BoxError> {
    let (relay, credentials) = script::start_background_relay()?;
    eprintln!("relay listening on {}", relay.base_url());
    let config = ClientConfig::new(script::AGENT_ID, credentials.agent_token).with_base_url(relay.base_url())?;
    let client = echo_client(config)?;
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

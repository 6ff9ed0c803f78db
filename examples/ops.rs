//! The operations agent, one command: `cargo run --example ops`.
//!
//! It starts a relay on a loopback port, the operations agent (end-to-end encrypted, on tokio)
//! and Alice, an encrypted person. Alice asks for the disk usage and grants it once: a progress
//! widget, then the output of `df -h` as an encrypted file, which she downloads and decrypts.
//! She asks for something not on the allowlist (refused), denies `uname -a` (not run), and
//! grants `uptime` for the session, so that her second `uptime` runs without a question. It
//! prints the transcript and exits 0 when every step went as it should.
//!
//! With `PACERELLE_AGENT_ID` and `PACERELLE_AGENT_TOKEN` set (and `PACERELLE_BASE_URL`,
//! `PACERELLE_E2EE=1`: the permission policy only takes encrypted answers), it serves that relay
//! as the operations agent, on its durable store, until Ctrl-C.

use pacerelle::core::human::PersonMessage;
use pacerelle::core::widget::WidgetKind;
use pacerelle::tokio::{Client, PersonClient};
use pacerelle::{ClientConfig, HandlerResult};
use pacerelle_examples::demo::{self, Stage, read_until};
use pacerelle_examples::ops::OpsAgent;
use pacerelle_examples::{BoxError, configured, exit_code, init_logging};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const AGENT: &str = "ops-agent";

/// Grants last the working day at most.
const SESSION_LENGTH: Duration = Duration::from_secs(8 * 3600);

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    exit_code("ops", if configured() { serve().await } else { demo().await })
}

/// Hands every message to the operations agent.
fn install(client: &mut Client, ops: Arc<OpsAgent>) {
    client.on_message(move |message, agent| {
        let ops = ops.clone();
        async move { ops.handle(message, agent).await }
    });
}

async fn serve() -> Result<(), BoxError> {
    let config = ClientConfig::from_env()?;
    let mut client = Client::new(config.clone())?;
    install(&mut client, OpsAgent::new("Operations on this host", SESSION_LENGTH)?);
    demo::serve("operations", client, &config).await
}

async fn demo() -> Result<(), BoxError> {
    let stage = Stage::start(AGENT, &["alice"]).await?;
    println!("relay on {}", stage.relay.base_url());
    let ops = OpsAgent::new("Operations on this host", SESSION_LENGTH)?;
    let (agent, serving) = stage.run_agent(|client| install(client, ops)).await?;
    let alice = stage.person("alice", "laptop").await?;
    let conversation = alice.create_conversation(&[AGENT], false).await?;
    let say = |text: &str| {
        println!("alice → {AGENT}: {text}");
        alice.send_text(&conversation, AGENT, text)
    };

    say("help")?;
    read_until(&alice, |message| message.text.starts_with("I can run")).await?;

    // Granted once: the command runs, and its output comes back as an encrypted file.
    say("disk")?;
    let question = read_until(&alice, is_permission).await?;
    answer(&alice, &conversation, &question, json!({"granted": true, "scope": "once"}))?;
    let report = read_until(&alice, |message| !message.attachments.is_empty()).await?;
    let output = alice.download_attachment(&report.attachments[0]).await?;
    let output = String::from_utf8_lossy(&output);
    println!("  alice decrypts {}:", report.attachments[0].name);
    for line in output.lines() {
        println!("    | {line}");
    }
    if !output.contains("Filesystem") {
        return Err("the file is not the output of df -h".into());
    }

    // Not on the allowlist: refused without a question.
    say("rm -rf /")?;
    read_until(&alice, |message| message.text.starts_with("I don't run")).await?;

    // Denied: nothing runs.
    say("kernel")?;
    let question = read_until(&alice, is_permission).await?;
    answer(&alice, &conversation, &question, json!({"granted": false}))?;
    read_until(&alice, |message| message.text.starts_with("Understood")).await?;

    // Granted for the session: the second request runs without asking.
    say("uptime")?;
    let question = read_until(&alice, is_permission).await?;
    answer(&alice, &conversation, &question, json!({"granted": true, "scope": "session"}))?;
    read_until(&alice, |message| !message.attachments.is_empty()).await?;
    say("uptime")?;
    let again = read_until(&alice, |message| is_permission(message) || !message.attachments.is_empty()).await?;
    if is_permission(&again) {
        return Err("the session grant did not cover the second uptime".into());
    }

    alice.close().await;
    agent.close();
    serving.await??;
    stage.relay.shutdown().await;
    println!("ops: conversation complete");
    Ok(())
}

fn is_permission(message: &PersonMessage) -> bool {
    message.widget.as_ref().is_some_and(|widget| widget.kind == WidgetKind::Permission)
}

/// Alice answers the permission widget `question` with `value`.
fn answer(
    alice: &PersonClient,
    conversation: &str,
    question: &PersonMessage,
    value: serde_json::Value,
) -> HandlerResult {
    let widget = question.widget.as_ref().ok_or("not a widget")?;
    println!("alice → {AGENT}: [answer] {value}");
    alice.answer_widget(conversation, AGENT, &widget.id, value)?;
    Ok(())
}

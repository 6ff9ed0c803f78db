//! The poll agent in an encrypted group, one command: `cargo run --example group_agent`.
//!
//! It starts a relay on a loopback port, the poll agent (end-to-end encrypted, on tokio) and two
//! encrypted people, Alice and Bob. Alice makes a group with Bob and the agent (its key reaches
//! both through their Signal sessions) and opens a poll; each votes on the choice widget, Bob
//! changes his mind, the tally on the widget follows every vote, Bob may not close Alice's poll,
//! and Alice closes it: the result goes to the whole group. Everything the agent sends is sealed
//! under the group's key. It prints the transcript and exits 0 when everyone read the result.
//!
//! With `PACERELLE_AGENT_ID` and `PACERELLE_AGENT_TOKEN` set (and optionally
//! `PACERELLE_BASE_URL`, `PACERELLE_E2EE=1`), it serves that relay as the poll agent, on its
//! durable store, until Ctrl-C.

use pacerelle::ClientConfig;
use pacerelle::core::human::{GroupMember, PersonMessage};
use pacerelle::core::widget::WidgetKind;
use pacerelle::tokio::{Client, PersonClient};
use pacerelle_examples::demo::{self, Stage, read_until};
use pacerelle_examples::poll::PollAgent;
use pacerelle_examples::{BoxError, configured, exit_code, init_logging};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;

const AGENT: &str = "poll-agent";
const QUESTION: &str = "/poll Where shall we have lunch? | Pizza | Sushi | Tacos";
const RESULT: &str = "Poll closed: Where shall we have lunch? Pizza 0, Sushi 2, Tacos 0 (2 votes). Sushi wins.";

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    exit_code("group_agent", if configured() { serve().await } else { demo().await })
}

/// Hands every message to the poll agent.
fn install(client: &mut Client) {
    let polls = Arc::new(PollAgent::new());
    client.on_message(move |message, agent| {
        let polls = polls.clone();
        async move { polls.handle(message, agent).await }
    });
}

async fn serve() -> Result<(), BoxError> {
    let config = ClientConfig::from_env()?;
    let mut client = Client::new(config.clone())?;
    install(&mut client);
    demo::serve("poll", client, &config).await
}

async fn demo() -> Result<(), BoxError> {
    let stage = Stage::start(AGENT, &["alice", "bob"]).await?;
    println!("relay on {}", stage.relay.base_url());
    let (agent, serving) = stage.run_agent(install).await?;
    let alice = stage.person("alice", "phone").await?;
    let bob = stage.person("bob", "laptop").await?;
    // Alice sends Bob the group key through a Signal session she starts from his prekeys.
    bob.publish_prekeys().await?;
    let group = alice.create_group(&[GroupMember::agent(AGENT), GroupMember::person("bob")]).await?;
    println!("alice made group {group} with bob and {AGENT}; key epoch {}", alice.group_epoch(&group));

    say(&alice, &group, QUESTION)?;
    let poll = read_until(&alice, is_poll).await?;
    read_until(&bob, is_poll).await?;
    let tally = |text: &'static str| move |message: &PersonMessage| shows_tally(message, text);

    vote(&alice, &group, &poll, "1")?;
    read_until(&alice, tally("Pizza 0, Sushi 1, Tacos 0 (1 vote)")).await?;
    read_until(&bob, tally("Pizza 0, Sushi 1, Tacos 0 (1 vote)")).await?;
    vote(&bob, &group, &poll, "0")?;
    read_until(&alice, tally("Pizza 1, Sushi 1, Tacos 0 (2 votes)")).await?;
    read_until(&bob, tally("Pizza 1, Sushi 1, Tacos 0 (2 votes)")).await?;
    vote(&bob, &group, &poll, "1")?;
    read_until(&alice, tally("Pizza 0, Sushi 2, Tacos 0 (2 votes)")).await?;
    read_until(&bob, tally("Pizza 0, Sushi 2, Tacos 0 (2 votes)")).await?;

    say(&bob, &group, "/close")?;
    read_until(&bob, |message| message.text.starts_with("Only alice")).await?;
    say(&alice, &group, "/close")?;
    for person in [&alice, &bob] {
        let result = read_until(person, |message| message.text.starts_with("Poll closed")).await?;
        if result.text != RESULT || result.group_key().is_none() {
            return Err(format!("unexpected result {:?}", result.text).into());
        }
    }

    agent.close();
    serving.await??;
    alice.close().await;
    bob.close().await;
    stage.relay.shutdown().await;
    println!("group_agent: poll complete");
    Ok(())
}

/// `from` writes `text` to the whole group.
fn say(from: &PersonClient, group: &str, text: &str) -> Result<(), BoxError> {
    println!("{} → group: {text}", from.person_id());
    from.send_group_text(group, text)?;
    Ok(())
}

/// `from` votes for `option` (its id) on `poll`, in front of the whole group.
fn vote(from: &PersonClient, group: &str, poll: &PersonMessage, option: &str) -> Result<(), BoxError> {
    let widget = poll.widget.as_ref().ok_or("not a widget")?;
    println!("{} → group: [vote] {option}", from.person_id());
    from.answer_widget(group, &format!("group:{group}"), &widget.id, json!(option))?;
    Ok(())
}

fn is_poll(message: &PersonMessage) -> bool {
    message.widget.as_ref().is_some_and(|widget| widget.kind == WidgetKind::Choice)
}

/// Whether `message` updates the poll's widget to show `tally`.
fn shows_tally(message: &PersonMessage, tally: &str) -> bool {
    message.widget_update.as_ref().is_some_and(|update| {
        let body = update.patch.get("spec").and_then(|spec| spec.get("body")).and_then(|body| body.as_str());
        body.is_some_and(|body| body.ends_with(tally))
    })
}

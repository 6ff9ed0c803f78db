//! The booking agent, one command: `cargo run --example form`.
//!
//! It starts a relay on a loopback port, the booking agent (end-to-end encrypted, on tokio) and
//! Alice, an encrypted person. Alice books a table: she fills in the form (a party too large
//! first, which the agent explains and asks again), picks a day and a time, reads the summary
//! in a confirm widget and confirms; the agent acknowledges with a reference. It prints the
//! transcript and exits 0 when every step went as it should.
//!
//! With `PACERELLE_AGENT_ID` and `PACERELLE_AGENT_TOKEN` set (and optionally
//! `PACERELLE_BASE_URL`, `PACERELLE_E2EE=1`), it serves that relay as the booking agent, on its
//! durable store, until Ctrl-C.

use pacerelle::ClientConfig;
use pacerelle::core::human::PersonMessage;
use pacerelle::core::widget::WidgetKind;
use pacerelle::tokio::{Client, PersonClient};
use pacerelle_examples::booking::{self, BookingAgent};
use pacerelle_examples::demo::{self, Stage, read_until};
use pacerelle_examples::{BoxError, configured, exit_code, init_logging};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::sync::Arc;

const AGENT: &str = "booking-agent";

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    exit_code("form", if configured() { serve().await } else { demo().await })
}

/// Hands every message to the booking agent.
fn install(client: &mut Client) {
    let bookings = Arc::new(BookingAgent::new());
    client.on_message(move |message, agent| {
        let bookings = bookings.clone();
        async move { bookings.handle(message, agent).await }
    });
}

async fn serve() -> Result<(), BoxError> {
    let config = ClientConfig::from_env()?;
    let mut client = Client::new(config.clone())?;
    install(&mut client);
    demo::serve("booking", client, &config).await
}

async fn demo() -> Result<(), BoxError> {
    let stage = Stage::start(AGENT, &["alice"]).await?;
    println!("relay on {}", stage.relay.base_url());
    let (agent, serving) = stage.run_agent(install).await?;
    let alice = stage.person("alice", "phone").await?;
    let conversation = alice.create_conversation(&[AGENT], false).await?;
    let fill = |widget: &PersonMessage, value: Value| answer(&alice, &conversation, widget, value);

    println!("alice → {AGENT}: book");
    alice.send_text(&conversation, AGENT, "book")?;
    let form = read_until(&alice, |message| is(message, WidgetKind::Form)).await?;
    fill(&form, json!({"name": "Alice Martin", "party_size": 40}))?;
    let form = read_until(&alice, |message| is(message, WidgetKind::Form)).await?;
    fill(&form, json!({"name": "Alice Martin", "party_size": 4}))?;
    let day = read_until(&alice, |message| is(message, WidgetKind::DateTime)).await?;
    // The first day the picker allows (today), a week on.
    let min = day.widget.as_ref().and_then(|widget| widget.spec.get("min")).and_then(Value::as_str);
    let date = week_after(min.ok_or("the date picker has no first day")?);
    fill(&day, json!(date))?;
    let time = read_until(&alice, |message| is(message, WidgetKind::DateTime)).await?;
    fill(&time, json!("19:30"))?;
    let confirm = read_until(&alice, |message| is(message, WidgetKind::Confirm)).await?;
    fill(&confirm, json!(true))?;
    let booked = read_until(&alice, |message| message.text.starts_with("Booked:")).await?;
    let expected = format!("a table for 4 guests under Alice Martin on {date} at 19:30");
    if !booked.text.contains(&expected) {
        return Err(format!("unexpected booking {:?}", booked.text).into());
    }

    alice.close().await;
    agent.close();
    serving.await??;
    stage.relay.shutdown().await;
    println!("form: booking complete");
    Ok(())
}

fn is(message: &PersonMessage, kind: WidgetKind) -> bool {
    message.widget.as_ref().is_some_and(|widget| widget.kind == kind)
}

/// Alice answers `widget` with `value`.
fn answer(alice: &PersonClient, conversation: &str, widget: &PersonMessage, value: Value) -> Result<(), BoxError> {
    let widget = widget.widget.as_ref().ok_or("not a widget")?;
    println!("alice → {AGENT}: [answer] {value}");
    alice.answer_widget(conversation, AGENT, &widget.id, value)?;
    Ok(())
}

/// `date` (`YYYY-MM-DD`) plus seven days, by the booking agent's calendar.
fn week_after(date: &str) -> String {
    booking::add_days(date, 7).unwrap_or_else(|| date.to_owned())
}

//! The scripted person: opens a conversation with the echo agent, says hello, asks for a widget,
//! answers it, and checks every answer, printing the conversation as it goes.

use crate::echo::{ANSWERED_TITLE, CONFIRM_COMMAND, CONFIRM_TITLE};
use pacerelle::ClientError;
use pacerelle::core::human::PersonMessage;
use pacerelle::core::widget::WidgetKind;
use pacerelle::tokio::PersonClientConfig;
use pacerelle_relay::{BackgroundRelay, Relay, RelayConfig, RelayHandle};
use pacerelle_runtime_support::driver::{PersonClient, Runtime};
use serde_json::json;
use std::time::Duration;

/// The embedded relay's agent.
pub const AGENT_ID: &str = "echo-agent";
/// The embedded relay's person.
pub const PERSON_ID: &str = "alice";

/// How long the script waits for each answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Credentials of the embedded relay's agent and person.
#[derive(Clone)]
pub struct Credentials {
    /// The agent's token.
    pub agent_token: String,
    /// The person's token.
    pub person_token: String,
}

/// Starts a relay on an ephemeral loopback port with one agent and one person, on the current
/// tokio runtime.
pub async fn start_relay() -> Result<(RelayHandle, Credentials), Box<dyn std::error::Error + Send + Sync>> {
    let (config, credentials) = relay_config();
    let relay = Relay::spawn(config).await?;
    Ok((relay, credentials))
}

/// The same relay on a runtime of its own, for programs that do not run tokio (the relay is
/// built on it; the agent and the person need not be).
pub fn start_background_relay() -> Result<(BackgroundRelay, Credentials), Box<dyn std::error::Error + Send + Sync>> {
    let (config, credentials) = relay_config();
    let relay = BackgroundRelay::start(config)?;
    Ok((relay, credentials))
}

fn relay_config() -> (RelayConfig, Credentials) {
    let credentials = Credentials { agent_token: random_token(), person_token: random_token() };
    let config = RelayConfig::loopback_ephemeral()
        .agent(AGENT_ID, &credentials.agent_token)
        .person(PERSON_ID, &credentials.person_token);
    (config, credentials)
}

/// A fresh token from OS randomness.
fn random_token() -> String {
    use rand::RngExt as _;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the script failed.
#[derive(Debug)]
pub struct ScriptError(pub String);

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScriptError {}

impl From<ClientError> for ScriptError {
    fn from(error: ClientError) -> Self {
        ScriptError(error.to_string())
    }
}

fn check(condition: bool, what: impl FnOnce() -> String) -> Result<(), ScriptError> {
    if condition { Ok(()) } else { Err(ScriptError(what())) }
}

/// Runs the echo conversation as `PERSON_ID` against the relay at `base_url`, on tokio, printing
/// each line; returns the transcript.
pub async fn run_echo_conversation(base_url: &str, person_token: &str) -> Result<Vec<String>, ScriptError> {
    run_echo_conversation_on::<pacerelle::tokio::Tokio>(base_url, person_token).await
}

/// [`run_echo_conversation`] with the person on async runtime `R` (smol, async-std, tokio).
pub async fn run_echo_conversation_on<R: Runtime>(
    base_url: &str,
    person_token: &str,
) -> Result<Vec<String>, ScriptError> {
    let mut transcript = Vec::new();
    let mut say = |line: String| {
        println!("{line}");
        transcript.push(line);
    };
    let config = PersonClientConfig::new(PERSON_ID, person_token, base_url).device("phone");
    let person = PersonClient::<R>::connect(config).await?;
    let conversation = person.create_conversation(&[AGENT_ID], false).await?;

    let hello = "Hello, Pacerelle!";
    let sent = person.send_text(&conversation, AGENT_ID, hello)?;
    say(format!("{PERSON_ID} → {AGENT_ID}: {hello}"));
    let reply = person.next_message(ANSWER_TIMEOUT).await?;
    say(format!("{AGENT_ID} → {PERSON_ID}: {}", reply.text));
    check(reply.text == format!("Received: {hello}"), || format!("unexpected reply {:?}", reply.text))?;
    check(reply.reply_to_message_id.as_deref() == Some(sent.as_str()), || {
        "the reply is not linked to its message".into()
    })?;
    check(reply.to_device_id.as_deref() == Some("phone"), || "the reply is not routed to the sending device".into())?;

    person.send_text(&conversation, AGENT_ID, CONFIRM_COMMAND)?;
    say(format!("{PERSON_ID} → {AGENT_ID}: {CONFIRM_COMMAND}"));
    let question = person.next_message(ANSWER_TIMEOUT).await?;
    let widget =
        question.widget.clone().ok_or_else(|| ScriptError(format!("expected a widget, got {:?}", question.text)))?;
    let title = widget.spec.get("title").and_then(|t| t.as_str()).unwrap_or_default().to_owned();
    say(format!("{AGENT_ID} → {PERSON_ID}: [{} widget {}] {title}", widget.kind.as_str(), widget.id));
    check(widget.kind == WidgetKind::Confirm && title == CONFIRM_TITLE, || format!("unexpected widget {widget:?}"))?;

    person.answer_widget(&conversation, AGENT_ID, &widget.id, json!(true))?;
    say(format!("{PERSON_ID} → {AGENT_ID}: [answer to {}] true", widget.id));
    let mut answered: Option<PersonMessage> = None;
    let mut updated: Option<PersonMessage> = None;
    while answered.is_none() || updated.is_none() {
        let message = person.next_message(ANSWER_TIMEOUT).await?;
        if let Some(update) = &message.widget_update {
            let new_title =
                update.patch.get("spec").and_then(|s| s.get("title")).and_then(|t| t.as_str()).unwrap_or_default();
            say(format!("{AGENT_ID} → {PERSON_ID}: [update of widget {}] {new_title}", update.widget_ref));
            check(update.widget_ref == widget.id && new_title == ANSWERED_TITLE, || {
                format!("unexpected update {update:?}")
            })?;
            updated = Some(message);
        } else {
            say(format!("{AGENT_ID} → {PERSON_ID}: {}", message.text));
            check(message.text == "You answered true", || format!("unexpected answer {:?}", message.text))?;
            answered = Some(message);
        }
    }
    person.close().await;
    Ok(transcript)
}

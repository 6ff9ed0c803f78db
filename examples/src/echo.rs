//! The echo agent's behaviour, as actions any runtime carries out.
//!
//! - plain text `T` → reply `Received: T`;
//! - `/confirm` → a confirm widget "Ship it?";
//! - an answer to that widget → reply `You answered <value>` and an update marking the widget
//!   answered.

use pacerelle::widget::{Confirm, Widget, WidgetPatch};
use pacerelle::{AgentMessage, OutgoingMessage};
use serde_json::{Map, json};

/// The text that asks the echo agent for a widget.
pub const CONFIRM_COMMAND: &str = "/confirm";
/// The widget's title.
pub const CONFIRM_TITLE: &str = "Ship it?";
/// The widget's title once answered.
pub const ANSWERED_TITLE: &str = "Ship it? (answered)";

/// Something the echo agent does in response to a message.
#[derive(Debug)]
pub enum Action {
    /// Send this message.
    Send(OutgoingMessage),
    /// Show this widget to `to` in `conversation_id`.
    Widget {
        /// The conversation.
        conversation_id: String,
        /// The person.
        to: String,
        /// The widget.
        widget: Widget,
    },
    /// Update a widget.
    Update {
        /// The conversation.
        conversation_id: String,
        /// The person.
        to: String,
        /// The change.
        patch: WidgetPatch,
    },
}

/// What the echo agent does with `message`.
pub fn respond(message: &AgentMessage) -> Vec<Action> {
    if let Some(answer) = &message.widget_response {
        let value = answer.value.clone().unwrap_or(serde_json::Value::Null);
        let said =
            if answer.cancelled { "You dismissed the question".to_owned() } else { format!("You answered {value}") };
        let mut spec = Map::new();
        spec.insert("title".into(), json!(ANSWERED_TITLE));
        return vec![
            Action::Send(OutgoingMessage::reply(message, said)),
            Action::Update {
                conversation_id: message.conversation_id.clone(),
                to: message.from.clone(),
                patch: WidgetPatch::new(&answer.widget_ref).spec(spec),
            },
        ];
    }
    if message.text == CONFIRM_COMMAND {
        return vec![Action::Widget {
            conversation_id: message.conversation_id.clone(),
            to: message.from.clone(),
            widget: Confirm::new(CONFIRM_TITLE)
                .body("The echo agent asks before shipping.")
                .labels("Ship", "Wait")
                .into(),
        }];
    }
    vec![Action::Send(OutgoingMessage::reply(message, format!("Received: {}", message.text)))]
}

/// Carries out `actions` with the tokio runtime's handle.
pub async fn run_tokio(actions: Vec<Action>, agent: &pacerelle::tokio::AgentHandle) -> pacerelle::HandlerResult {
    run_async(actions, agent).await
}

/// Carries out `actions` with an async runtime's handle: tokio, smol and async-std share one
/// handle type, so one function serves the three.
pub async fn run_async(
    actions: Vec<Action>,
    agent: &pacerelle_runtime_support::driver::AgentHandle,
) -> pacerelle::HandlerResult {
    for action in actions {
        match action {
            Action::Send(message) => {
                agent.send_message(message).await?;
            }
            Action::Widget { conversation_id, to, widget } => {
                agent.send_widget(&conversation_id, &to, widget).await?;
            }
            Action::Update { conversation_id, to, patch } => {
                agent.send_widget_update(&conversation_id, &to, patch).await?;
            }
        }
    }
    Ok(())
}

/// Carries out `actions` with the blocking runtime's handle.
pub fn run_blocking(actions: Vec<Action>, agent: &pacerelle::blocking::AgentHandle) -> pacerelle::HandlerResult {
    for action in actions {
        match action {
            Action::Send(message) => {
                agent.send_message(message)?;
            }
            Action::Widget { conversation_id, to, widget } => {
                agent.send_widget(&conversation_id, &to, widget)?;
            }
            Action::Update { conversation_id, to, patch } => {
                agent.send_widget_update(&conversation_id, &to, patch)?;
            }
        }
    }
    Ok(())
}

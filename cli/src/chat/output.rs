//! What `pacerelle chat` prints on stdout: every event as stable, parseable text lines, or as
//! one JSON object per line with `--json`.
//!
//! Text lines start with a fixed word and put the one free-form field (a text, a title, a name)
//! last, so `cut -d' ' -f…` and `read` work. What the agent wrote is escaped (`\n`, `\r`, `\t`,
//! `\\`, and `\u{…}` for other control and bidirectional-override characters): one event is one
//! line, and a hostile agent cannot move the cursor, recolour the terminal or reorder what
//! follows. JSON strings are escaped by serde_json.

use crate::escape::escape;
use pacerelle_core::human::PersonMessage;
use serde_json::{Value, json};

/// Something worth a line on stdout.
#[derive(Debug)]
pub(crate) enum Shown<'a> {
    /// The conversation the chat is in (first line).
    Conversation {
        /// Its id.
        conversation_id: &'a str,
    },
    /// A message arrived; its attachments are numbered from `first_attachment`.
    Message {
        /// The message.
        message: &'a PersonMessage,
        /// The agent this chat talks to (its messages are `agent: …`).
        agent: &'a str,
        /// The number of its first attachment, for `/fetch`.
        first_attachment: usize,
    },
    /// A text or widget answer went out (JSON only: a person typing needs no echo).
    Sent {
        /// Its id.
        message_id: &'a str,
    },
    /// A file went out.
    FileSent {
        /// The message's id.
        message_id: &'a str,
        /// Its size.
        bytes: usize,
        /// Its name.
        name: &'a str,
    },
    /// An attachment was written to a file.
    Fetched {
        /// Its number.
        attachment: usize,
        /// Its size.
        bytes: usize,
        /// Where.
        path: &'a str,
    },
    /// The agent read (accepted) a message (JSON only).
    Read {
        /// The message.
        message_id: &'a str,
    },
    /// A message could not be sent after all.
    NotSent {
        /// The message.
        message_id: &'a str,
        /// Why.
        error: &'a str,
    },
    /// The relay refused a frame.
    Refused {
        /// The message, when the frame had one.
        message_id: Option<&'a str>,
        /// The relay's reason.
        error: &'a str,
    },
    /// A message arrived that could not be read.
    Unreadable {
        /// The message, when known.
        message_id: Option<&'a str>,
        /// Why.
        error: &'a str,
    },
    /// The agent's identity key changed.
    IdentityChanged {
        /// The agent.
        agent_id: &'a str,
    },
}

impl Shown<'_> {
    /// The text lines (possibly none).
    pub(crate) fn lines(&self) -> Vec<String> {
        match self {
            Shown::Conversation { conversation_id } => vec![format!("conversation {}", escape(conversation_id))],
            Shown::Message { message, agent, first_attachment } => message_lines(message, agent, *first_attachment),
            Shown::Sent { .. } | Shown::Read { .. } => Vec::new(),
            Shown::FileSent { message_id, bytes, name } => {
                vec![format!("file-sent {} {bytes} {}", escape(message_id), escape(name))]
            }
            Shown::Fetched { attachment, bytes, path } => {
                vec![format!("fetched {attachment} {bytes} {}", escape(path))]
            }
            Shown::NotSent { message_id, error } => vec![format!("not-sent {} {}", escape(message_id), escape(error))],
            Shown::Refused { message_id, error } => {
                vec![format!("refused {} {}", escape(message_id.unwrap_or("-")), escape(error))]
            }
            Shown::Unreadable { message_id, error } => {
                vec![format!("unreadable {} {}", escape(message_id.unwrap_or("-")), escape(error))]
            }
            Shown::IdentityChanged { agent_id } => vec![format!("identity-changed {}", escape(agent_id))],
        }
    }

    /// The JSON object.
    pub(crate) fn json(&self) -> Value {
        match self {
            Shown::Conversation { conversation_id } => {
                json!({"event": "conversation", "conversation_id": conversation_id})
            }
            Shown::Message { message, first_attachment, .. } => message_json(message, *first_attachment),
            Shown::Sent { message_id } => json!({"event": "sent", "message_id": message_id}),
            Shown::FileSent { message_id, bytes, name } => {
                json!({"event": "file_sent", "message_id": message_id, "bytes": bytes, "name": name})
            }
            Shown::Fetched { attachment, bytes, path } => {
                json!({"event": "fetched", "attachment": attachment, "bytes": bytes, "path": path})
            }
            Shown::Read { message_id } => json!({"event": "read", "message_id": message_id}),
            Shown::NotSent { message_id, error } => {
                json!({"event": "not_sent", "message_id": message_id, "error": error})
            }
            Shown::Refused { message_id, error } => {
                json!({"event": "refused", "message_id": message_id, "error": error})
            }
            Shown::Unreadable { message_id, error } => {
                json!({"event": "unreadable", "message_id": message_id, "error": error})
            }
            Shown::IdentityChanged { agent_id } => json!({"event": "identity_changed", "agent_id": agent_id}),
        }
    }
}

fn title(spec: &serde_json::Map<String, Value>) -> &str {
    spec.get("title").and_then(Value::as_str).unwrap_or("")
}

/// A JSON value as one line of text (strings without their quotes).
fn plain(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

fn message_lines(message: &PersonMessage, agent: &str, first_attachment: usize) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(widget) = &message.widget {
        let id = escape(&widget.id);
        lines.push(format!("widget {id} {} {}", widget.kind.as_str(), escape(title(&widget.spec))));
        let entries = |key: &str| widget.spec.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
        for option in entries("options") {
            let (value, label) = match &option {
                Value::Object(option) => (plain(option.get("id")), plain(option.get("label"))),
                other => (plain(Some(other)), plain(Some(other))),
            };
            lines.push(format!("option {id} {} {}", escape(&value), escape(&label)));
        }
        for field in entries("fields") {
            let field = field.as_object().cloned().unwrap_or_default();
            let (name, kind, label) = (plain(field.get("name")), plain(field.get("type")), plain(field.get("label")));
            lines.push(format!("field {id} {} {} {}", escape(&name), escape(&kind), escape(&label)));
        }
        for scope in entries("scopes") {
            lines.push(format!("scope {id} {}", escape(&plain(Some(&scope)))));
        }
    } else if let Some(update) = &message.widget_update {
        let patch = Value::Object(update.patch.clone()).to_string();
        lines.push(format!("widget-update {} {}", escape(&update.widget_ref), escape(&patch)));
    } else if message.text.is_empty() && !message.attachments.is_empty() {
        // A file without a caption: its attachment lines say it all.
    } else if message.from == agent {
        lines.push(format!("agent: {}", escape(&message.text)));
    } else {
        lines.push(format!("message {}: {}", escape(&message.from), escape(&message.text)));
    }
    for (offset, attachment) in message.attachments.iter().enumerate() {
        lines.push(format!(
            "attachment {} {} {} {}",
            first_attachment + offset,
            attachment.size,
            escape(&attachment.mime),
            escape(&attachment.name)
        ));
    }
    lines
}

fn message_json(message: &PersonMessage, first_attachment: usize) -> Value {
    let attachments: Vec<Value> = message
        .attachments
        .iter()
        .enumerate()
        .map(|(offset, attachment)| {
            json!({
                "n": first_attachment + offset,
                "name": attachment.name,
                "mime": attachment.mime,
                "size": attachment.size,
                "blob_id": attachment.blob_id,
            })
        })
        .collect();
    let mut object = json!({
        "event": "message",
        "message_id": message.id,
        "conversation_id": message.conversation_id,
        "from": message.from,
        "encrypted": message.encrypted,
        "reply_to_message_id": message.reply_to_message_id,
        "attachments": attachments,
    });
    if let Some(widget) = &message.widget {
        object["event"] = json!("widget");
        object["widget"] = json!({
            "id": widget.id,
            "kind": widget.kind.as_str(),
            "title": title(&widget.spec),
            "spec": widget.spec,
            "expires_at": widget.expires_at,
        });
    } else if let Some(update) = &message.widget_update {
        object["event"] = json!("widget_update");
        object["widget_update"] = json!({"id": update.id, "ref": update.widget_ref, "patch": update.patch});
    } else {
        object["text"] = json!(message.text);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacerelle_core::Attachment;
    use pacerelle_core::payload::widget::parse_standard;
    use pacerelle_core::wire::person::PersonInboundMsg;

    fn message(from: &str, text: &str) -> PersonMessage {
        let frame: PersonInboundMsg = serde_json::from_value(json!({
            "id": "m1", "conversation_id": "c1", "from": from, "to": "alice", "payload_b64": "", "encrypted": true
        }))
        .unwrap();
        PersonMessage {
            id: "m1".into(),
            conversation_id: "c1".into(),
            from: from.into(),
            text: text.into(),
            encrypted: true,
            widget: parse_standard(text),
            widget_update: None,
            reply_to_message_id: None,
            to_device_id: None,
            attachments: Vec::new(),
            frame,
        }
    }

    #[test]
    fn messages_widgets_and_attachments() {
        let mut text = message("echo", "hi\nthere");
        text.attachments = vec![Attachment {
            name: "report q3.pdf".into(),
            mime: "application/pdf".into(),
            size: 12,
            ..Attachment::default()
        }];
        let shown = Shown::Message { message: &text, agent: "echo", first_attachment: 3 };
        assert_eq!(shown.lines(), ["agent: hi\\nthere", "attachment 3 12 application/pdf report q3.pdf"]);
        let object = shown.json();
        assert_eq!(object["text"], "hi\nthere");
        assert_eq!(object["attachments"][0]["n"], 3);

        let payload = r#"{"type": "widget.standard", "id": "w1", "v": 1, "kind": "choice", "spec": {"title": "Pick one", "options": [{"id": "a", "label": "Apple pie"}, {"id": "b", "label": "Banana"}]}}"#;
        let widget = message("echo", payload);
        let shown = Shown::Message { message: &widget, agent: "echo", first_attachment: 1 };
        assert_eq!(shown.lines(), ["widget w1 choice Pick one", "option w1 a Apple pie", "option w1 b Banana"]);
        let object = shown.json();
        assert_eq!((object["event"].as_str(), object["widget"]["kind"].as_str()), (Some("widget"), Some("choice")));

        text.text.clear();
        let shown = Shown::Message { message: &text, agent: "echo", first_attachment: 1 };
        assert_eq!(shown.lines(), ["attachment 1 12 application/pdf report q3.pdf"]);

        let mut update = message("echo", "");
        let mut patch = serde_json::Map::new();
        patch.insert("spec".into(), json!({"title": "Done"}));
        update.widget_update = Some(pacerelle_core::WidgetUpdate { id: "u1".into(), widget_ref: "w1".into(), patch });
        let shown = Shown::Message { message: &update, agent: "echo", first_attachment: 1 };
        assert_eq!(shown.lines(), [r#"widget-update w1 {"spec":{"title":"Done"}}"#]);
        assert_eq!(shown.json()["widget_update"]["ref"], "w1");

        let other = message("bob", "hello");
        assert_eq!(
            Shown::Message { message: &other, agent: "echo", first_attachment: 1 }.lines(),
            ["message bob: hello"]
        );
        assert!(Shown::Sent { message_id: "m" }.lines().is_empty());
        assert_eq!(Shown::Sent { message_id: "m" }.json(), json!({"event": "sent", "message_id": "m"}));
    }
}

//! What travels inside `payload_b64`: the text of a message and the structures it may carry.
//!
//! A payload is UTF-8 text. It is plain text unless it starts with `{` and parses to one of the
//! shapes below; anything else (bad JSON, other shapes, wrong field types) stays plain text,
//! unchanged, exactly as the official SDK reads it.

pub mod chat;
pub mod delivery;
pub mod group;
pub mod history;
pub mod widget;

use crate::message::{WidgetResponse, WidgetUpdate};
pub use chat::AttachmentSecret;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A payload text, read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedPayload {
    /// The text to show: the payload itself, a chat message's `text`, or `Widget response`,
    /// `Widget cancelled`, `Widget update`.
    pub text: String,
    /// Attachment secrets (key, IV, real metadata) by attachment id, from a `chat.message`.
    pub secrets: BTreeMap<String, AttachmentSecret>,
    /// The widget answer, for `widget.response`.
    pub widget_response: Option<WidgetResponse>,
    /// The widget change, for `widget.update`.
    pub widget_update: Option<WidgetUpdate>,
}

impl ParsedPayload {
    fn plain(text: &str) -> Self {
        ParsedPayload { text: text.to_owned(), ..Default::default() }
    }
}

/// Reads a payload text as the official SDK does.
///
/// ```
/// use pacerelle_core::payload::parse_payload;
/// assert_eq!(parse_payload("hello").text, "hello");
/// let answer = parse_payload(r#"{"type":"widget.response","id":"r1","ref":"w1","value":true}"#);
/// assert_eq!(answer.text, "Widget response");
/// assert_eq!(answer.widget_response.unwrap().widget_ref, "w1");
/// assert_eq!(parse_payload(" {not json").text, " {not json");
/// ```
pub fn parse_payload(text: &str) -> ParsedPayload {
    let Some(object) = json_object(text) else {
        return ParsedPayload::plain(text);
    };
    let string = |field: &str| object.get(field).and_then(Value::as_str).map(str::to_owned);
    match (object.get("type").and_then(Value::as_str), string("id"), string("ref")) {
        (Some("widget.response"), Some(id), Some(widget_ref)) => {
            let cancelled = object.get("cancelled") == Some(&Value::Bool(true));
            return ParsedPayload {
                text: if cancelled { "Widget cancelled" } else { "Widget response" }.into(),
                widget_response: Some(WidgetResponse {
                    id,
                    widget_ref,
                    // `null` and absence are the same to the official SDK (`dict.get`).
                    value: object.get("value").filter(|value| !value.is_null()).cloned(),
                    cancelled,
                }),
                ..Default::default()
            };
        }
        (Some("widget.update"), Some(id), Some(widget_ref)) => {
            if let Some(Value::Object(patch)) = object.get("patch") {
                return ParsedPayload {
                    text: "Widget update".into(),
                    widget_update: Some(WidgetUpdate { id, widget_ref, patch: patch.clone() }),
                    ..Default::default()
                };
            }
        }
        _ => {}
    }
    match (object.get("kind").and_then(Value::as_str), object.get("text")) {
        (Some("chat.message"), Some(Value::String(chat_text))) => ParsedPayload {
            text: chat_text.clone(),
            secrets: chat::read_secrets(object.get("attachments")),
            ..Default::default()
        },
        _ => ParsedPayload::plain(text),
    }
}

/// The JSON object a payload holds, if it starts with `{` and parses to one.
pub(crate) fn json_object(text: &str) -> Option<Map<String, Value>> {
    if !text.starts_with('{') {
        return None;
    }
    // Read as the official SDK's `json.loads` reads it (NaN, big integers, deep nesting), so
    // a payload it understands is understood here too.
    match crate::wire::python::loads(text) {
        Ok(crate::wire::python::Loaded { value: crate::wire::python::PyValue::Dict(entries), unsupported: None }) => {
            Some(crate::wire::python::json_object(&entries))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn widget_response_shapes() {
        let cancelled = parse_payload(r#"{"type":"widget.response","id":"r","ref":"w","cancelled":true}"#);
        assert_eq!(cancelled.text, "Widget cancelled");
        let response = cancelled.widget_response.unwrap();
        assert!(response.cancelled);
        assert_eq!(response.value, None);
        // Only JSON `true` cancels.
        let not_cancelled =
            parse_payload(r#"{"type":"widget.response","id":"r","ref":"w","cancelled":"true","value":{"a":1}}"#);
        assert_eq!(not_cancelled.text, "Widget response");
        assert_eq!(not_cancelled.widget_response.unwrap().value, Some(json!({"a": 1})));
        // A non-string ref is plain text.
        let text = r#"{"type":"widget.response","id":"r","ref":1}"#;
        assert_eq!(parse_payload(text), ParsedPayload::plain(text));
    }

    #[test]
    fn widget_update_needs_an_object_patch() {
        let update = parse_payload(r#"{"type":"widget.update","id":"u","ref":"w","patch":{"spec":{"title":"t"}}}"#);
        assert_eq!(update.text, "Widget update");
        assert_eq!(update.widget_update.unwrap().patch["spec"], json!({"title": "t"}));
        let text = r#"{"type":"widget.update","id":"u","ref":"w","patch":[1]}"#;
        assert_eq!(parse_payload(text), ParsedPayload::plain(text));
    }

    #[test]
    fn non_payload_json_is_plain_text() {
        for text in
            ["{}", "[1,2]", "{\"kind\":\"chat.message\",\"text\":5}", "{\"kind\":\"other\",\"text\":\"x\"}", "{", " {}"]
        {
            assert_eq!(parse_payload(text), ParsedPayload::plain(text), "{text}");
        }
    }

    #[test]
    fn chat_message_carries_text_and_secrets() {
        let parsed = parse_payload(
            r#"{"kind":"chat.message","text":"see file","attachments":[{"id":"a1","key_b64":"k","iv_b64":"i","name":"r.pdf","size":3}]}"#,
        );
        assert_eq!(parsed.text, "see file");
        assert_eq!(parsed.secrets["a1"].name.as_deref(), Some("r.pdf"));
        assert_eq!(parsed.secrets["a1"].size, Some(3));
    }
}

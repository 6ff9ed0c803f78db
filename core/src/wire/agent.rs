//! Frames on the agent's socket, `GET {ws_base}/ws/agent?token=...`.

use super::python::{self, PyValue};
use super::{FieldProblem, FrameError};
use crate::payload::chat::PublicAttachment;
use crate::payload::history::HistoryRecord;
use serde::Serialize;
use serde_json::{Map, Value};

/// A frame the relay sends to an agent.
// Moved once through a queue, never stored in bulk: boxing the large variant would only add
// an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum InboundFrame {
    /// A message from a person (or another agent) in a conversation.
    Msg(InboundMsg),
    /// A peer's identity key changed; the app is told, nothing is destroyed.
    IdentityChanged {
        /// The person (`user_id`) or agent (`agent_id`) whose key changed.
        peer_id: String,
    },
}

impl InboundFrame {
    /// Parses one text frame as the official SDK reads it (see the [module docs](super) for
    /// what it accepts that strict JSON parsing would not).
    ///
    /// ```
    /// use pacerelle_core::wire::{InboundFrame, FrameError};
    /// let frame = InboundFrame::parse(r#"{"type":"IDENTITY_CHANGED","user_id":"u1"}"#)?;
    /// assert_eq!(frame, InboundFrame::IdentityChanged { peer_id: "u1".into() });
    /// assert!(InboundFrame::parse("[1]").unwrap_err().is_ignorable());
    /// # Ok::<(), FrameError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let loaded = python::loads(text).map_err(FrameError::NotJson)?;
        if let Some(reason) = loaded.unsupported {
            return Err(FrameError::Unsupported(reason));
        }
        let PyValue::Dict(entries) = &loaded.value else {
            return Err(FrameError::NotObject);
        };
        match loaded.value.get("type").and_then(PyValue::as_str) {
            Some("MSG") => InboundMsg::from_value(&loaded.value, entries).map(InboundFrame::Msg),
            // `env.get("user_id") or env.get("agent_id") or ""`: never refused.
            Some("IDENTITY_CHANGED") => Ok(InboundFrame::IdentityChanged {
                peer_id: optional(&loaded.value, "user_id")
                    .or_else(|| optional(&loaded.value, "agent_id"))
                    .unwrap_or_default(),
            }),
            kind => Err(FrameError::UnknownType(kind.map(str::to_owned))),
        }
    }
}

/// A required, non-empty string field (the official SDK's routing check).
fn required(frame: &PyValue, field: &'static str) -> Result<String, FrameError> {
    match frame.get(field) {
        None | Some(PyValue::None) => Err(FrameError::InvalidField { field, problem: FieldProblem::Missing }),
        Some(PyValue::Str(text)) if text.is_empty() => {
            Err(FrameError::InvalidField { field, problem: FieldProblem::Empty })
        }
        Some(PyValue::Str(text)) => Ok(text.clone()),
        Some(_) => Err(FrameError::InvalidField { field, problem: FieldProblem::WrongType }),
    }
}

/// An optional field as the official SDK uses it: given when truthy, as Python's `str()` of it
/// (a device id `3` is the device `"3"`); `null`, `""`, `0`, `false`, `[]` and `{}` are absent.
fn optional(frame: &PyValue, field: &str) -> Option<String> {
    frame.get(field).filter(|value| value.truthy()).map(PyValue::py_str)
}

/// An inbound `MSG` frame, its routing fields checked, the original object kept.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMsg {
    /// The relay's id for this message; replays carry the same id.
    pub id: String,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// The sender's id.
    pub from: String,
    /// The sender's device, when the frame names one.
    pub from_device_id: Option<String>,
    /// The addressee: this agent's id, or `group:{conversation_id}` in a group.
    pub to: Option<String>,
    /// The payload, base64 (of UTF-8 text, or of a Signal ciphertext when `encrypted`).
    pub payload_b64: String,
    /// Whether the payload is end-to-end encrypted.
    pub encrypted: bool,
    /// The message this one answers, if any.
    pub reply_to_message_id: Option<String>,
    /// The official SDK's digest of the frame, computed on the frame as Python reads it.
    pub digest: String,
    /// The frame as received, for [`crate::AgentMessage::raw`] (NaN and infinities, which
    /// serde_json cannot hold, as `null`).
    pub raw: Map<String, Value>,
}

impl InboundMsg {
    fn from_value(frame: &PyValue, entries: &[(String, PyValue)]) -> Result<Self, FrameError> {
        let id = required(frame, "id")?;
        let from = required(frame, "from")?;
        let conversation_id = required(frame, "conversation_id")?;
        // `env.get("payload_b64", "")`: absent is empty; anything but a string (`null`
        // included) makes the official SDK raise when it decodes it.
        let payload_b64 = match frame.get("payload_b64") {
            None => String::new(),
            Some(PyValue::Str(text)) => text.clone(),
            Some(_) => return Err(FrameError::InvalidField { field: "payload_b64", problem: FieldProblem::WrongType }),
        };
        Ok(InboundMsg {
            id,
            conversation_id,
            from,
            from_device_id: optional(frame, "from_device_id"),
            to: optional(frame, "to"),
            payload_b64,
            // The official SDK treats anything but JSON `true` as plaintext.
            encrypted: frame.get("encrypted") == Some(&PyValue::Bool(true)),
            reply_to_message_id: optional(frame, "reply_to_message_id"),
            digest: python::message_digest(frame),
            raw: python::json_object(entries),
        })
    }

    /// Whether this message was sent to the conversation's group rather than to the agent alone.
    pub fn is_group(&self) -> bool {
        self.to.as_deref().is_some_and(|to| is_group_target(to, &self.conversation_id))
    }

    /// The public attachment list as the relay gave it (a JSON value of any shape).
    pub fn raw_attachments(&self) -> Option<&Value> {
        self.raw.get("attachments")
    }
}

/// A `MSG` frame that [`InboundFrame::parse`] refused but that names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedMsg {
    /// Its `id`.
    pub id: String,
    /// Its `from`.
    pub from: String,
    /// Its `conversation_id`.
    pub conversation_id: String,
    /// Its digest, as the official SDK would compute it.
    pub digest: String,
}

/// The id, sender, conversation and digest of a `MSG` frame that [`InboundFrame::parse`]
/// refused, when it names them (non-empty strings): enough to acknowledge it and report it, so
/// that a frame the SDK cannot read does not come back forever. Frames the official SDK cannot
/// read either (nested too deep, an integer too long) are named too.
pub fn refused_msg_ids(text: &str) -> Option<RefusedMsg> {
    let frame = python::loads(text).ok()?.value;
    if frame.get("type").and_then(PyValue::as_str) != Some("MSG") {
        return None;
    }
    Some(RefusedMsg {
        id: required(&frame, "id").ok()?,
        from: required(&frame, "from").ok()?,
        conversation_id: required(&frame, "conversation_id").ok()?,
        digest: python::message_digest(&frame),
    })
}

/// Whether `to` addresses the group of `conversation_id` (`group:{conversation_id}`).
pub fn is_group_target(to: &str, conversation_id: &str) -> bool {
    to.strip_prefix("group:") == Some(conversation_id)
}

/// An outbound `MSG` frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboundMsg {
    /// A fresh UUID v4.
    pub id: String,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// The addressee: a person's id or `group:{conversation_id}`.
    pub to: String,
    /// Base64 of the payload (plain UTF-8, or a ciphertext when `encrypted`).
    pub payload_b64: String,
    /// Whether `payload_b64` is end-to-end encrypted.
    pub encrypted: bool,
    /// The person's device the reply is meant for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_device_id: Option<String>,
    /// The payload sealed for the conversation's archive (`history-v1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_record: Option<HistoryRecord>,
    /// The message this one answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to_message_id: Option<String>,
    /// Public (redacted) attachment metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<PublicAttachment>>,
}

impl OutboundMsg {
    /// The frame's JSON text, with `"type":"MSG"` first.
    pub fn to_frame(&self) -> String {
        tagged_frame("MSG", self)
    }
}

/// `ACK_READ`: the agent's handler accepted a message; the relay stops replaying it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AckRead {
    /// The message's sender (`from`).
    pub to: String,
    /// The acknowledged message id.
    pub message_id: String,
    /// The message's conversation.
    pub conversation_id: String,
}

impl AckRead {
    /// The frame's JSON text.
    pub fn to_frame(&self) -> String {
        tagged_frame("ACK_READ", self)
    }
}

/// Serializes `body` as an object with `"type": kind` as its first field.
pub(crate) fn tagged_frame<T: Serialize>(kind: &str, body: &T) -> String {
    let mut object = Map::new();
    object.insert("type".into(), Value::String(kind.into()));
    if let Ok(Value::Object(fields)) = serde_json::to_value(body) {
        object.extend(fields);
    }
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_msg(text: &str) -> Result<InboundMsg, FrameError> {
        match InboundFrame::parse(text)? {
            InboundFrame::Msg(msg) => Ok(msg),
            other => panic!("not a MSG: {other:?}"),
        }
    }

    #[test]
    fn full_msg_parses() {
        let msg = parse_msg(
            r#"{"type":"MSG","id":"m","conversation_id":"c","from":"u","to":"group:c","payload_b64":"aGk=",
                "encrypted":true,"from_device_id":"d1","reply_to_message_id":"m0","attachments":[]}"#,
        )
        .unwrap();
        assert_eq!(msg.id, "m");
        assert_eq!(msg.from_device_id.as_deref(), Some("d1"));
        assert!(msg.encrypted);
        assert!(msg.is_group());
        assert_eq!(msg.reply_to_message_id.as_deref(), Some("m0"));
        assert_eq!(msg.raw_attachments(), Some(&Value::Array(vec![])));
    }

    #[test]
    fn routing_fields_are_required_non_empty_strings() {
        for (frame, field, problem) in [
            (r#"{"type":"MSG","conversation_id":"c","from":"u"}"#, "id", FieldProblem::Missing),
            (r#"{"type":"MSG","id":"","conversation_id":"c","from":"u"}"#, "id", FieldProblem::Empty),
            (r#"{"type":"MSG","id":7,"conversation_id":"c","from":"u"}"#, "id", FieldProblem::WrongType),
            (r#"{"type":"MSG","id":"m","conversation_id":null,"from":"u"}"#, "conversation_id", FieldProblem::Missing),
            (r#"{"type":"MSG","id":"m","conversation_id":"c","from":["u"]}"#, "from", FieldProblem::WrongType),
            (
                r#"{"type":"MSG","id":"m","conversation_id":"c","from":"u","payload_b64":5}"#,
                "payload_b64",
                FieldProblem::WrongType,
            ),
            (
                r#"{"type":"MSG","id":"m","conversation_id":"c","from":"u","payload_b64":null}"#,
                "payload_b64",
                FieldProblem::WrongType,
            ),
        ] {
            assert_eq!(parse_msg(frame).unwrap_err(), FrameError::InvalidField { field, problem }, "{frame}");
        }
    }

    #[test]
    fn optional_fields_are_read_as_python_uses_them() {
        for (value, expected) in [
            ("3", Some("3")),
            ("2.5", Some("2.5")),
            ("true", Some("True")),
            ("NaN", Some("nan")),
            ("[1]", Some("[1]")),
            ("0", None),
            ("false", None),
            ("[]", None),
            ("{}", None),
            ("\"\"", None),
            ("null", None),
        ] {
            let frame = format!(
                r#"{{"type":"MSG","id":"m","conversation_id":"c","from":"u","from_device_id":{value},"to":{value},"reply_to_message_id":{value}}}"#
            );
            let msg = parse_msg(&frame).unwrap();
            for field in [&msg.from_device_id, &msg.to, &msg.reply_to_message_id] {
                assert_eq!(field.as_deref(), expected, "{value}");
            }
        }
    }

    /// Frames serde_json reads too keep the digest the SDK always computed on them.
    #[test]
    fn the_digest_is_unchanged_on_strict_json() {
        for frame in [
            r#"{"type":"MSG","id":"m","conversation_id":"c","from":"u","payload_b64":"aGk=","encrypted":false}"#,
            r#"{"type":"MSG","id":"m","conversation_id":"c","from":"u","to":"group:c","from_device_id":"d","reply_to_message_id":"r","attachments":[{"id":"a","size":3,"width":6E81,"name":"\u00e9\ud83d\ude00"}],"x":-0.0}"#,
        ] {
            let strict: Value = serde_json::from_str(frame).unwrap();
            assert_eq!(
                parse_msg(frame).unwrap().digest,
                crate::agent::message_digest(strict.as_object().unwrap()),
                "{frame}"
            );
        }
    }

    #[test]
    fn encrypted_is_only_json_true() {
        for (value, expected) in [("true", true), ("false", false), ("1", false), ("\"true\"", false), ("null", false)]
        {
            let frame = format!(r#"{{"type":"MSG","id":"m","conversation_id":"c","from":"u","encrypted":{value}}}"#);
            assert_eq!(parse_msg(&frame).unwrap().encrypted, expected, "{value}");
        }
    }

    #[test]
    fn other_frames_are_ignorable_errors() {
        for frame in ["not json", "[]", "3", r#"{"type":"PING"}"#, r#"{"no":"type"}"#, r#"{"type":5}"#] {
            let error = InboundFrame::parse(frame).unwrap_err();
            assert!(error.is_ignorable(), "{frame}: {error}");
        }
    }

    #[test]
    fn identity_changed_takes_user_or_agent_id() {
        assert_eq!(
            InboundFrame::parse(r#"{"type":"IDENTITY_CHANGED","agent_id":"a2"}"#).unwrap(),
            InboundFrame::IdentityChanged { peer_id: "a2".into() }
        );
        // As the official SDK: `user_id or agent_id or ""`, never refused.
        for (frame, peer) in [
            (r#"{"type":"IDENTITY_CHANGED"}"#, ""),
            (r#"{"type":"IDENTITY_CHANGED","user_id":"","agent_id":"a"}"#, "a"),
            (r#"{"type":"IDENTITY_CHANGED","user_id":0,"agent_id":7}"#, "7"),
        ] {
            assert_eq!(
                InboundFrame::parse(frame).unwrap(),
                InboundFrame::IdentityChanged { peer_id: peer.into() },
                "{frame}"
            );
        }
    }

    #[test]
    fn group_target_matches_only_its_conversation() {
        assert!(is_group_target("group:c1", "c1"));
        assert!(!is_group_target("group:c1", "c2"));
        assert!(!is_group_target("c1", "c1"));
    }

    #[test]
    fn outbound_frames_lead_with_their_type() {
        let ack = AckRead { to: "u".into(), message_id: "m".into(), conversation_id: "c".into() };
        assert_eq!(ack.to_frame(), r#"{"type":"ACK_READ","to":"u","message_id":"m","conversation_id":"c"}"#);
        let msg = OutboundMsg {
            id: "i".into(),
            conversation_id: "c".into(),
            to: "u".into(),
            payload_b64: "aGk=".into(),
            encrypted: false,
            to_device_id: None,
            history_record: None,
            reply_to_message_id: Some("m".into()),
            attachments: None,
        };
        assert_eq!(
            msg.to_frame(),
            r#"{"type":"MSG","id":"i","conversation_id":"c","to":"u","payload_b64":"aGk=","encrypted":false,"reply_to_message_id":"m"}"#
        );
    }
}

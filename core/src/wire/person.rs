//! The person side of the local development relay: the API a person's app would use.
//!
//! Pacerelle's own person-facing API is not public, so the development relay (`relay/`) speaks
//! this one, designed here and shared by the relay and the person-side state machine
//! ([`crate::human`]) so they cannot drift apart. Agent-facing endpoints are exactly PROTOCOL.md.
//!
//! # HTTP (bearer: the person's token)
//! | call | body | answer |
//! | --- | --- | --- |
//! | `POST /person/conversations` | [`CreateConversation`] | [`ConversationCreated`] |
//! | `GET /person/agents/{agent_id}/prekey-bundle` | none | [`FetchedBundle`] (consumes one one-time prekey) |
//! | `PUT /person/identity` | [`PublishIdentity`] | `{}` |
//! | `POST /person/blobs` | raw bytes | [`super::http::BlobUploaded`] |
//! | `GET /person/blobs/{blob_id}` | none | raw bytes |
//! | `POST /person/group-keys` | [`DistributeGroupKeys`] | `{"stored": n}` |
//! | `GET /person/group-keys?conversation_id=...` | none | [`super::http::GroupKeyEnvelope`] list addressed to the caller |
//! | `PUT /person/prekey-bundle` | [`super::http::PrekeyBundleBody`] | `{}` |
//! | `POST /person/one-time-prekeys` | [`super::http::OneTimePrekeysBody`] | `{"held": n}` |
//! | `GET /person/persons/{person_id}/prekey-bundle` | none | [`FetchedBundle`] (another person's, consuming one one-time prekey) |
//!
//! # Socket: `GET {ws_base}/ws/person?token=<token>[&device_id=<device>]`
//! Text frames, one JSON object each, `type` first.
//! - person → relay: `MSG` ([`PersonOutboundMsg`]), `ACK_READ` ([`super::AckRead`], `to` = the
//!   agent).
//! - relay → person: `MSG` ([`PersonInboundMsg`]), `READ` ([`ReadReceipt`]) when an agent
//!   acknowledged one of this person's messages, `IDENTITY_CHANGED` (`agent_id`), `ERROR`
//!   ([`RelayErrorFrame`]) when the relay refused a frame.
//!
//! Delivery is at least once in both directions: the relay keeps every message until its
//! recipient acknowledges it, and replays unacknowledged ones when the recipient reconnects. A
//! message with `to_device_id` is delivered to that device's socket; one without it to every
//! socket of the person.

use super::{FrameError, agent::tagged_frame, optional_str, parse_object, required_str};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /person/conversations`: open a conversation between the caller and `members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateConversation {
    /// Agents and other persons to include (the caller is always a member).
    pub members: Vec<String>,
    /// A group conversation (messages addressed to `group:{id}` reach every member).
    #[serde(default)]
    pub group: bool,
    /// A caller-chosen id; the relay makes one when absent. Reusing an existing id with the same
    /// members returns it; with other members it is a 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
}

/// The answer to [`CreateConversation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationCreated {
    /// The conversation's id.
    pub conversation_id: String,
}

/// The answer to `GET /person/agents/{agent_id}/prekey-bundle`: the agent's published bundle,
/// with one of its one-time prekeys (removed from the relay as it is handed out) while any last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedBundle {
    /// The bundle as the agent published it.
    #[serde(flatten)]
    pub bundle: super::http::PrekeyBundleBody,
    /// The handed-out one-time prekey's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prekey_id: Option<u32>,
    /// Base64 of its public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prekey_public: Option<String>,
}

/// `PUT /person/identity`: the person's identity key; when it changes, every agent sharing a
/// conversation with the person gets `IDENTITY_CHANGED` with `user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishIdentity {
    /// Base64 of the identity key.
    pub identity_key: String,
}

/// `POST /person/group-keys`: group-key envelopes for the other members to fetch, agents with
/// `GET /agent/group-keys`, persons with `GET /person/group-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributeGroupKeys {
    /// One envelope per recipient.
    pub envelopes: Vec<GroupKeyForRecipient>,
}

/// One envelope of [`DistributeGroupKeys`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKeyForRecipient {
    /// The member (agent or person) that may fetch it.
    pub recipient_id: String,
    /// The group conversation.
    pub conversation_id: String,
    /// The key's id.
    pub key_id: String,
    /// Its epoch (at least 1).
    pub epoch: u64,
    /// The sending device, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_device_id: Option<String>,
    /// Base64 of the Signal ciphertext for that recipient.
    pub envelope_b64: String,
}

/// A `MSG` a person sends; the relay adds `from` (and `from_device_id` from the socket when the
/// frame has none) before handing it to the recipients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonOutboundMsg {
    /// A fresh UUID v4, chosen by the person's app.
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// An agent's id, another person's id, or `group:{conversation_id}`.
    pub to: String,
    /// Base64 payload.
    pub payload_b64: String,
    /// Whether the payload is end-to-end encrypted.
    pub encrypted: bool,
    /// The sending device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_device_id: Option<String>,
    /// The message this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_message_id: Option<String>,
    /// Public attachment metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Value>,
}

impl PersonOutboundMsg {
    /// The frame's JSON text.
    pub fn to_frame(&self) -> String {
        tagged_frame("MSG", self)
    }
}

/// A `MSG` delivered to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonInboundMsg {
    /// The message id (the sender's).
    pub id: String,
    /// The conversation.
    pub conversation_id: String,
    /// The sender (an agent or another person).
    pub from: String,
    /// The addressee as the sender wrote it.
    pub to: String,
    /// Base64 payload.
    pub payload_b64: String,
    /// Whether it is end-to-end encrypted.
    pub encrypted: bool,
    /// The sender's device, for messages from persons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_device_id: Option<String>,
    /// The device the sender addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_device_id: Option<String>,
    /// The message this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_message_id: Option<String>,
    /// Public attachment metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Value>,
    /// The archive copy an agent attached (`history-v1`), as sent: open it with
    /// [`crate::payload::history::open`], which checks its shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_record: Option<Value>,
}

/// `READ`: an agent acknowledged (accepted) one of this person's messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReceipt {
    /// The acknowledged message.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// The agent that read it.
    pub by: String,
}

/// `ERROR`: the relay refused a frame from this socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayErrorFrame {
    /// Why.
    pub error: String,
    /// The refused message's id, when the frame had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl RelayErrorFrame {
    /// The frame's JSON text.
    pub fn to_frame(&self) -> String {
        tagged_frame("ERROR", self)
    }
}

impl ReadReceipt {
    /// The frame's JSON text.
    pub fn to_frame(&self) -> String {
        tagged_frame("READ", self)
    }
}

impl PersonInboundMsg {
    /// The frame's JSON text.
    pub fn to_frame(&self) -> String {
        tagged_frame("MSG", self)
    }
}

/// A frame the relay sends to a person.
// Moved once through a queue, never stored in bulk: boxing the large variant would only add
// an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum PersonInboundFrame {
    /// A message for the person.
    Msg(PersonInboundMsg),
    /// An agent read one of the person's messages.
    Read(ReadReceipt),
    /// An agent's identity key changed.
    IdentityChanged {
        /// The agent.
        agent_id: String,
    },
    /// The relay refused one of the person's frames.
    Error(RelayErrorFrame),
}

impl PersonInboundFrame {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let (object, kind) = parse_object(text)?;
        match kind.as_deref() {
            Some("MSG") => {
                // Check routing fields with the precise errors first, then take the rest.
                required_str(&object, "id")?;
                required_str(&object, "conversation_id")?;
                required_str(&object, "from")?;
                decode(object).map(PersonInboundFrame::Msg)
            }
            Some("READ") => {
                required_str(&object, "message_id")?;
                decode(object).map(PersonInboundFrame::Read)
            }
            Some("IDENTITY_CHANGED") => {
                let agent_id = match optional_str(&object, "agent_id")? {
                    Some(id) => id,
                    None => required_str(&object, "user_id")?,
                };
                Ok(PersonInboundFrame::IdentityChanged { agent_id })
            }
            Some("ERROR") => decode(object).map(PersonInboundFrame::Error),
            _ => Err(FrameError::UnknownType(kind)),
        }
    }
}

/// A frame a person sends to the relay, as the relay parses it.
#[derive(Debug, Clone, PartialEq)]
pub enum PersonOutboundFrame {
    /// A message.
    Msg(PersonOutboundMsg),
    /// An acknowledgement of a message the person received.
    AckRead(super::AckRead),
}

impl PersonOutboundFrame {
    /// Parses one text frame (the relay's side).
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let (object, kind) = parse_object(text)?;
        match kind.as_deref() {
            Some("MSG") => {
                required_str(&object, "id")?;
                required_str(&object, "conversation_id")?;
                required_str(&object, "to")?;
                decode(object).map(PersonOutboundFrame::Msg)
            }
            Some("ACK_READ") => parse_ack(&object).map(PersonOutboundFrame::AckRead),
            _ => Err(FrameError::UnknownType(kind)),
        }
    }
}

/// An agent's frame as the relay parses it.
// Moved once through a queue, never stored in bulk: boxing the large variant would only add
// an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOutboundFrame {
    /// A message, with its optional fields as the agent wrote them.
    Msg(AgentOutboundMsg),
    /// An acknowledgement.
    AckRead(super::AckRead),
}

/// An agent's `MSG`, as the relay reads it (the fields of [`super::OutboundMsg`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AgentOutboundMsg {
    /// Message id.
    pub id: String,
    /// Conversation.
    pub conversation_id: String,
    /// Addressee.
    pub to: String,
    /// Base64 payload.
    #[serde(default)]
    pub payload_b64: String,
    /// Encrypted or not.
    #[serde(default)]
    pub encrypted: bool,
    /// Target device.
    #[serde(default)]
    pub to_device_id: Option<String>,
    /// Archive record, passed through unread.
    #[serde(default)]
    pub history_record: Option<Value>,
    /// Answered message.
    #[serde(default)]
    pub reply_to_message_id: Option<String>,
    /// Public attachment metadata.
    #[serde(default)]
    pub attachments: Option<Value>,
}

impl AgentOutboundFrame {
    /// Parses one frame an agent sent (the relay's side).
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let (object, kind) = parse_object(text)?;
        match kind.as_deref() {
            Some("MSG") => {
                required_str(&object, "id")?;
                required_str(&object, "conversation_id")?;
                required_str(&object, "to")?;
                decode(object).map(AgentOutboundFrame::Msg)
            }
            Some("ACK_READ") => parse_ack(&object).map(AgentOutboundFrame::AckRead),
            _ => Err(FrameError::UnknownType(kind)),
        }
    }
}

/// An `ACK_READ` from either side: all three fields required.
fn parse_ack(object: &Map<String, Value>) -> Result<super::AckRead, FrameError> {
    Ok(super::AckRead {
        to: required_str(object, "to")?,
        message_id: required_str(object, "message_id")?,
        conversation_id: required_str(object, "conversation_id")?,
    })
}

fn decode<T: serde::de::DeserializeOwned>(object: Map<String, Value>) -> Result<T, FrameError> {
    serde_json::from_value(Value::Object(object)).map_err(|error| FrameError::Schema(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_frames_round_trip() {
        let msg = PersonOutboundMsg {
            id: "m".into(),
            conversation_id: "c".into(),
            to: "a".into(),
            payload_b64: "aGk=".into(),
            encrypted: false,
            from_device_id: Some("d".into()),
            reply_to_message_id: None,
            attachments: None,
        };
        assert_eq!(PersonOutboundFrame::parse(&msg.to_frame()).unwrap(), PersonOutboundFrame::Msg(msg));
        let receipt = ReadReceipt { message_id: "m".into(), conversation_id: "c".into(), by: "a".into() };
        assert_eq!(PersonInboundFrame::parse(&receipt.to_frame()).unwrap(), PersonInboundFrame::Read(receipt));
        let error = RelayErrorFrame { error: "nope".into(), message_id: None };
        assert_eq!(PersonInboundFrame::parse(&error.to_frame()).unwrap(), PersonInboundFrame::Error(error));
    }

    #[test]
    fn malformed_person_frames_are_precise_errors() {
        assert!(matches!(
            PersonOutboundFrame::parse(r#"{"type":"MSG","id":"m","conversation_id":"c"}"#),
            Err(FrameError::InvalidField { field: "to", .. })
        ));
        assert!(matches!(
            PersonOutboundFrame::parse(r#"{"type":"MSG","id":"m","conversation_id":"c","to":"a","encrypted":"yes"}"#),
            Err(FrameError::Schema(_))
        ));
        assert!(PersonOutboundFrame::parse(r#"{"type":"HELLO"}"#).unwrap_err().is_ignorable());
        assert!(matches!(
            AgentOutboundFrame::parse(r#"{"type":"ACK_READ","to":"u","conversation_id":"c"}"#),
            Err(FrameError::InvalidField { field: "message_id", .. })
        ));
    }
}

//! A message the app wants to send, built before the agent turns it into a frame.

use crate::message::{AgentMessage, Attachment};

/// A message to send: text, optional attachments, optional reply link and device.
///
/// ```
/// use pacerelle_core::agent::OutgoingMessage;
/// let message = OutgoingMessage::new("conv-1", "user-1", "Hello").reply_to("m-41").to_device("phone");
/// assert_eq!(message.text, "Hello");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The conversation.
    pub conversation_id: String,
    /// A person's id, or `group:{conversation_id}`.
    pub to: String,
    /// The text.
    pub text: String,
    /// The message this answers; checked against its conversation and sender.
    pub reply_to_message_id: Option<String>,
    /// Attachments already uploaded.
    pub attachments: Vec<Attachment>,
    /// The person's device; defaults to the source message's, then the last seen.
    pub to_device_id: Option<String>,
}

impl OutgoingMessage {
    /// A message with `text` to `to` in `conversation_id`.
    pub fn new(conversation_id: impl Into<String>, to: impl Into<String>, text: impl Into<String>) -> Self {
        OutgoingMessage {
            conversation_id: conversation_id.into(),
            to: to.into(),
            text: text.into(),
            reply_to_message_id: None,
            attachments: Vec::new(),
            to_device_id: None,
        }
    }

    /// A reply to `message`: same conversation (or group), linked to it, to its device.
    pub fn reply(message: &AgentMessage, text: impl Into<String>) -> Self {
        let group = message.is_group();
        OutgoingMessage {
            conversation_id: message.conversation_id.clone(),
            to: if group { format!("group:{}", message.conversation_id) } else { message.from.clone() },
            text: text.into(),
            reply_to_message_id: Some(message.id.clone()),
            attachments: Vec::new(),
            to_device_id: if group { None } else { message.from_device_id.clone() },
        }
    }

    /// Links the message to the one it answers.
    pub fn reply_to(mut self, message_id: impl Into<String>) -> Self {
        self.reply_to_message_id = Some(message_id.into());
        self
    }

    /// Addresses a device of the person.
    pub fn to_device(mut self, device_id: impl Into<String>) -> Self {
        self.to_device_id = Some(device_id.into());
        self
    }

    /// Adds attachments.
    pub fn attachments(mut self, attachments: impl IntoIterator<Item = Attachment>) -> Self {
        self.attachments.extend(attachments);
        self
    }
}

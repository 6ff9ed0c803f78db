//! The values an app receives: a message, its attachments, a widget answer or update.

use serde_json::{Map, Value};

/// A message for the agent's handler, decoded and decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentMessage {
    /// The relay's message id; accept it with [`crate::Agent::accept`].
    pub id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// The sender.
    pub from: String,
    /// The sender's device, when the frame named one; replies go there.
    pub from_device_id: Option<String>,
    /// The addressee as the frame gave it (`group:{conversation_id}` in groups).
    pub to: Option<String>,
    /// The text: plain text, a chat message's text, or `Widget response` / `Widget cancelled` /
    /// `Widget update` for widget traffic.
    pub text: String,
    /// Whether it arrived end-to-end encrypted.
    pub encrypted: bool,
    /// The safety number of the identity key whose session decrypted it (end-to-end encrypted
    /// messages; `None` for plaintext, or when the Signal implementation cannot tell).
    pub sender_identity: Option<crate::agent::SafetyNumber>,
    /// Attachments, with their real metadata when the encrypted payload carried it.
    pub attachments: Vec<Attachment>,
    /// The message this one answers.
    pub reply_to_message_id: Option<String>,
    /// A person's answer to a widget.
    pub widget_response: Option<WidgetResponse>,
    /// A widget update sent into the conversation.
    pub widget_update: Option<WidgetUpdate>,
    /// The frame as received.
    pub raw: Map<String, Value>,
}

impl AgentMessage {
    /// Whether the message was sent to the conversation's group.
    pub fn is_group(&self) -> bool {
        self.to.as_deref().is_some_and(|to| crate::wire::agent::is_group_target(to, &self.conversation_id))
    }
}

/// A file or media item attached to a message.
///
/// `key_b64` and `iv_b64` decrypt the blob; they are secrets and never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Attachment {
    /// The attachment's id within the message.
    pub id: String,
    /// The file name (the real one only inside an encrypted payload).
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// The relay blob holding the ciphertext.
    pub blob_id: String,
    /// Hex SHA-256 of the stored ciphertext, when known.
    pub sha256: Option<String>,
    /// Width in pixels, for images and video.
    pub width: Option<u64>,
    /// Height in pixels, for images and video.
    pub height: Option<u64>,
    /// Duration, for audio and video.
    pub duration_ms: Option<u64>,
    /// A blob holding a thumbnail.
    pub thumbnail_blob_id: Option<String>,
    /// Base64 AES-256-GCM key (secret).
    pub key_b64: Option<String>,
    /// Base64 12-byte IV.
    pub iv_b64: Option<String>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("mime", &self.mime)
            .field("size", &self.size)
            .field("blob_id", &self.blob_id)
            .field("sha256", &self.sha256)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("duration_ms", &self.duration_ms)
            .field("thumbnail_blob_id", &self.thumbnail_blob_id)
            .field("key_b64", &self.key_b64.as_ref().map(|_| "<redacted>"))
            .field("iv_b64", &self.iv_b64)
            .finish()
    }
}

/// A person's answer to a widget (`widget.response`).
#[derive(Debug, Clone, PartialEq)]
pub struct WidgetResponse {
    /// The response's own id.
    pub id: String,
    /// The widget it answers.
    pub widget_ref: String,
    /// The answer (shape depends on the widget kind), `None` when absent.
    pub value: Option<Value>,
    /// Whether the person dismissed the widget instead of answering.
    pub cancelled: bool,
}

/// A change to a widget already shown (`widget.update`).
#[derive(Debug, Clone, PartialEq)]
pub struct WidgetUpdate {
    /// The update's own id.
    pub id: String,
    /// The widget it changes.
    pub widget_ref: String,
    /// The patch (`spec`, `expires_at`).
    pub patch: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_keys_stay_out_of_debug() {
        let attachment = Attachment { key_b64: Some("c2VjcmV0LWtleQ==".into()), ..Default::default() };
        let shown = format!("{attachment:?}");
        assert!(!shown.contains("c2VjcmV0LWtleQ=="), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}

//! The MCP resources of `pacerelle mcp`: the agent's conversations and their recent messages,
//! as JSON the client reads.
//!
//! - `pacerelle://conversations`: every conversation, most recent first (`conversation_id`,
//!   `to`, `last_cursor`, `messages` kept);
//! - `pacerelle://conversations/{conversation_id}`: one conversation and its last
//!   [`RECENT`] messages in both directions, oldest first (the template lists it).

use super::conversations::{Conversation, Conversations};
use rmcp::ErrorData;
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate,
};
use serde_json::{Value, json};

/// The list of conversations.
pub const CONVERSATIONS: &str = "pacerelle://conversations";
/// How many messages a conversation's resource holds.
pub const RECENT: usize = 50;
const JSON: &str = "application/json";

fn conversation_uri(id: &str) -> String {
    format!("{CONVERSATIONS}/{}", encode(id))
}

/// `id` with what a URI path segment cannot hold percent-encoded.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The reverse of [`encode`]; `None` for a malformed escape or bytes that are not UTF-8.
fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = segment.get(at + 1..at + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn summary(conversation: &Conversation) -> Value {
    json!({
        "conversation_id": conversation.id,
        "to": conversation.to,
        "last_cursor": conversation.last_cursor,
        "messages": conversation.messages,
        "uri": conversation_uri(&conversation.id),
    })
}

/// `resources/list`: the list, then each conversation.
pub fn list(conversations: &Conversations) -> ListResourcesResult {
    let mut resources = vec![
        Resource::new(CONVERSATIONS, "conversations")
            .with_title("Conversations")
            .with_description("The agent's conversations, most recent first")
            .with_mime_type(JSON),
    ];
    resources.extend(conversations.conversations().iter().map(|conversation| {
        Resource::new(conversation_uri(&conversation.id), format!("conversation {}", conversation.id))
            .with_title(format!("Conversation with {}", conversation.to))
            .with_description(format!("The last {RECENT} messages, both directions"))
            .with_mime_type(JSON)
    }));
    ListResourcesResult::with_all_items(resources)
}

/// `resources/templates/list`: a conversation by id.
pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(format!("{CONVERSATIONS}/{{conversation_id}}"), "conversation")
            .with_title("A conversation")
            .with_description(format!("A conversation and its last {RECENT} messages, both directions"))
            .with_mime_type(JSON),
    ])
}

/// `resources/read`.
pub fn read(conversations: &Conversations, uri: &str) -> Result<ReadResourceResult, ErrorData> {
    let body = if uri == CONVERSATIONS {
        json!({"conversations": conversations.conversations().iter().map(summary).collect::<Vec<_>>()})
    } else {
        let id = uri
            .strip_prefix(CONVERSATIONS)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(decode)
            .ok_or_else(|| not_found(uri))?;
        let (conversation, entries) = conversations.recent(&id, RECENT).ok_or_else(|| not_found(uri))?;
        let mut body = summary(&conversation);
        if let Value::Object(map) = &mut body {
            map.insert("recent".into(), Value::Array(entries.iter().map(|entry| entry.to_json()).collect()));
        }
        body
    };
    let contents = ResourceContents::TextResourceContents {
        uri: uri.to_owned(),
        mime_type: Some(JSON.to_owned()),
        text: body.to_string(),
        meta: None,
    };
    Ok(ReadResourceResult::new(vec![contents]))
}

fn not_found(uri: &str) -> ErrorData {
    ErrorData::resource_not_found(
        format!("no resource {uri:?}: {CONVERSATIONS} lists the conversations"),
        Some(json!({"uri": uri})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_the_uri() {
        for id in ["9c164e97-0061-4405-b9f5-9966a3fbb719", "a b/c%d", "é"] {
            let uri = conversation_uri(id);
            assert!(!uri[CONVERSATIONS.len() + 1..].contains(['/', ' ']), "{uri}");
            assert_eq!(decode(&uri[CONVERSATIONS.len() + 1..]).as_deref(), Some(id));
        }
        assert_eq!(decode("%G0"), None);
        assert_eq!(decode("%4"), None);
    }

    #[test]
    fn unknown_resources_are_not_found() {
        let conversations = Conversations::new();
        let listed = read(&conversations, CONVERSATIONS).unwrap();
        let ResourceContents::TextResourceContents { text, .. } = &listed.contents[0] else { panic!("text") };
        assert_eq!(text, r#"{"conversations":[]}"#);
        for uri in ["pacerelle://conversations/nope", "pacerelle://other", "pacerelle://conversations/%ZZ"] {
            let error = read(&conversations, uri).unwrap_err();
            assert_eq!(error.code, rmcp::model::ErrorCode::RESOURCE_NOT_FOUND, "{uri}");
        }
        assert_eq!(list(&conversations).resources.len(), 1);
    }
}

//! `InboundFrame::parse` (the agent's socket) on any text: it must never panic, and what it
//! accepts must satisfy the frame's documented shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_core::wire::{FrameError, InboundFrame};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match InboundFrame::parse(&text) {
        Ok(InboundFrame::Msg(msg)) => {
            // Routing fields are required non-empty strings.
            assert!(!msg.id.is_empty() && !msg.conversation_id.is_empty() && !msg.from.is_empty());
            // Optional strings treat "" as absent.
            for field in [&msg.from_device_id, &msg.to, &msg.reply_to_message_id] {
                assert_ne!(field.as_deref(), Some(""));
            }
            assert_eq!(msg.raw.get("type"), Some(&Value::String("MSG".into())));
            assert_eq!(msg.encrypted, msg.raw.get("encrypted") == Some(&Value::Bool(true)));
            let _ = msg.is_group();
        }
        Ok(InboundFrame::IdentityChanged { peer_id }) => assert!(!peer_id.is_empty()),
        Err(error) => {
            // Only non-JSON text is reported as such.
            let parsed = serde_json::from_str::<Value>(&text);
            assert_eq!(matches!(error, FrameError::NotJson(_)), parsed.is_err(), "{error}");
            let _ = error.is_ignorable();
            let _ = error.to_string();
        }
    }
});

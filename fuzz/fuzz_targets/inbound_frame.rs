//! `InboundFrame::parse` (the agent's socket) on any text: it must never panic, and what it
//! accepts must satisfy the frame's documented shape, and it reads all that Python's
//! `json.loads` reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_core::wire::{FrameError, InboundFrame, python};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match InboundFrame::parse(&text) {
        Ok(InboundFrame::Msg(msg)) => {
            // Routing fields are required non-empty strings.
            assert!(!msg.id.is_empty() && !msg.conversation_id.is_empty() && !msg.from.is_empty());
            // Optional fields treat falsy values ("" among them) as absent.
            for field in [&msg.from_device_id, &msg.to, &msg.reply_to_message_id] {
                assert_ne!(field.as_deref(), Some(""));
            }
            assert_eq!(msg.raw.get("type"), Some(&Value::String("MSG".into())));
            assert_eq!(msg.encrypted, msg.raw.get("encrypted") == Some(&Value::Bool(true)));
            assert_eq!(msg.digest.len(), 64);
            let _ = msg.is_group();
        }
        // As the official SDK, an identity change is never refused (its peer may be "").
        Ok(InboundFrame::IdentityChanged { .. }) => {}
        Err(error) => {
            // Only what Python's json.loads refuses is reported as not JSON; whatever serde_json
            // reads, the frame parser reads too.
            let parsed = python::loads(&text);
            assert_eq!(matches!(error, FrameError::NotJson(_)), parsed.is_err(), "{error}");
            if serde_json::from_str::<Value>(&text).is_ok() {
                assert!(!matches!(error, FrameError::NotJson(_)), "{error}");
            }
            let _ = error.is_ignorable();
            let _ = error.to_string();
        }
    }
});

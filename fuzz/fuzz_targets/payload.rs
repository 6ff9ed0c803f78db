//! Payload readers on any text: `parse_payload`, `delivery::unwrap_delivery`,
//! `group::{parse_sender_key, parse_ciphertext}` and `widget::parse_standard` must never panic.
//!
//! Properties:
//! - a text that does not start with `{` is plain text: `parse_payload(t).text == t`, nothing
//!   else set;
//! - a widget answer read from a payload, written again with `response_payload`, reads back the
//!   same (floats compared as `pacerelle_fuzz::same_modulo_float_parsing` explains);
//! - a standard widget's kind name maps back to its kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_core::payload::{delivery, group, parse_payload};
use pacerelle_core::widget::{self, WidgetKind};
use pacerelle_fuzz::same_modulo_float_parsing;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text);
    // The same text behind a leading space is never JSON to these readers: exercise the
    // plain-text property on every input, not only those that happen not to start with `{`.
    check(&format!(" {text}"));
});

fn check(text: &str) {
    let parsed = parse_payload(text);
    if !text.starts_with('{') {
        assert_eq!(parsed.text, text, "plain text must come back unchanged");
        assert!(parsed.secrets.is_empty() && parsed.widget_response.is_none() && parsed.widget_update.is_none());
    }
    assert!(!(parsed.widget_response.is_some() && parsed.widget_update.is_some()));
    if let Some(response) = &parsed.widget_response {
        let again =
            widget::response_payload(&response.id, &response.widget_ref, response.value.clone(), response.cancelled);
        let reread = parse_payload(&again);
        let back = reread.widget_response.as_ref().unwrap_or_else(|| panic!("not a widget.response: {again}"));
        assert_eq!(
            (&back.id, &back.widget_ref, back.cancelled),
            (&response.id, &response.widget_ref, response.cancelled)
        );
        // Floats compared through a correctly rounded parser: see same_modulo_float_parsing.
        let serde_float = |value: f64| Value::from(value).to_string();
        let same_value = match (&back.value, &response.value) {
            (Some(back), Some(value)) => same_modulo_float_parsing(value, back, &serde_float),
            (back, value) => back == value,
        };
        assert!(same_value, "widget.response value round trip: {again}");
        assert_eq!(reread.text, parsed.text);
    }
    if let Some(update) = &parsed.widget_update {
        assert_eq!(parsed.text, "Widget update");
        let _ = update.patch.len();
    }

    match delivery::unwrap_delivery(text) {
        Ok(Some((_body, key))) => {
            assert_eq!(key.epoch, 1);
            assert!(!format!("{key:?}").contains("raw_key_b64"));
        }
        Ok(None) => {}
        Err(error) => {
            let _ = error.to_string();
        }
    }

    if let Some(key) = group::parse_sender_key(text) {
        assert!(key.epoch >= 1);
        let _ = format!("{key:?}");
    }
    if let Some(ciphertext) = group::parse_ciphertext(text) {
        let _ = group::associated_data(&ciphertext.conversation_id, &ciphertext.key_id, ciphertext.epoch);
    }

    if let Some(received) = widget::parse_standard(text) {
        assert_eq!(WidgetKind::from_name(received.kind.as_str()), Some(received.kind));
    }
}

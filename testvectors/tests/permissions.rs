//! Our permission policy against the official `pacerelle.permissions.PermissionPolicy`: every
//! scenario `oracle/permissions.py` drove the official policy through is replayed step by step
//! through ours, and each step must produce the same bytes (widgets, updates, answers' outcomes,
//! grant lists, guarded runs) or the same refusal; the randomness the official policy's ids were
//! made from is fed to ours, so ids match too.
//!
//! Refusals are compared through the official message each of our error variants stands for, so
//! a test fails when we refuse for another reason than the official policy. One difference is
//! not exercised by the vectors: an answer id forgotten after `MAX_REMEMBERED_ANSWERS` newer ones
//! is judged afresh rather than reported as a duplicate (the official policy remembers them all),
//! covered by the core's unit tests.

use pacerelle_core::AgentMessage;
use pacerelle_core::Timestamp;
use pacerelle_core::payload::parse_payload;
use pacerelle_core::permissions::{
    NotAuthorized, PermissionAction, PermissionContext, PermissionPolicy, PermissionRequest, PermissionSession,
    RequestError, SessionError, UnknownRequest,
};
use pacerelle_core::pyjson::{Style, dumps};
use pacerelle_core::widget::PermissionScope;
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;

/// Randomness that hands out exactly the bytes the official policy's ids were made from.
struct Recorded(VecDeque<u8>);

impl Recorded {
    fn new(hex: &Value) -> Self {
        let mut bytes = VecDeque::new();
        for chunk in hex.as_array().map(Vec::as_slice).unwrap_or_default() {
            let text = chunk.as_str().expect("hex text");
            for at in (0..text.len()).step_by(2) {
                bytes.push_back(u8::from_str_radix(&text[at..at + 2], 16).expect("hex digits"));
            }
        }
        Recorded(bytes)
    }
}

impl rand::TryRng for Recorded {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            *byte = self.0.pop_front().expect("our policy drew more randomness than the official one");
        }
        Ok(())
    }
}

impl rand::TryCryptoRng for Recorded {}

fn at(value: &Value) -> Timestamp {
    Timestamp::from_millis(value.as_u64().expect("a time in milliseconds"))
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_else(|| panic!("{field} is text")).to_owned()
}

fn parsed(step: &Value, field: &str) -> Value {
    serde_json::from_str(step[field].as_str().unwrap_or_else(|| panic!("{field} is text"))).expect("JSON text")
}

fn python(value: &Value) -> String {
    dumps(value, Style::DEFAULT)
}

fn scope(name: &str) -> PermissionScope {
    match name {
        "once" => PermissionScope::Once,
        "session" => PermissionScope::Session,
        other => panic!("no scope {other}"),
    }
}

/// The official policy's exception for each of our refusals.
fn session_error(error: &SessionError) -> String {
    match error {
        SessionError::BlankField { field } => format!("ValueError: session.{field} must be a non-empty string."),
        SessionError::AlreadyExpired => "ValueError: Permission session must expire in the future.".into(),
        SessionError::OutOfRange => "(no official counterpart: Python cannot hold the time)".into(),
    }
}

fn request_error(error: &RequestError) -> String {
    match error {
        RequestError::SessionEnded => "ValueError: Permission session has ended.".into(),
        RequestError::BlankField { field } => format!("ValueError: {field} must be a non-empty string."),
        RequestError::DuplicateWidgetId { .. } => {
            "ValueError: Permission widget refs must be unique; create a new request.".into()
        }
        RequestError::NoScopes | RequestError::DuplicateScope { .. } => {
            "ValueError: Offer only unique once/session scopes; persistent grants need durable revocation.".into()
        }
        RequestError::AlreadyExpired => "ValueError: Permission request must expire in the future.".into(),
    }
}

fn unknown_request(_: &UnknownRequest) -> String {
    "ValueError: Unknown permission request.".into()
}

fn not_authorized(error: &NotAuthorized) -> String {
    match error {
        NotAuthorized::NoGrant => "PermissionError: No permission grant exists for this request.".into(),
        NotAuthorized::ExpiredOrSessionEnded => {
            "PermissionError: Permission expired or its session ended; request permission again.".into()
        }
        NotAuthorized::NotActive { state } => {
            format!("PermissionError: Permission is {state}; request permission again.")
        }
        NotAuthorized::NotCovered => "PermissionError: Permission does not cover this user, conversation, session, \
                                      action, resource or parameters."
            .into(),
        NotAuthorized::BlankAction { field } => format!("ValueError: {field} must be a non-empty string."),
    }
}

fn action(fields: &Map<String, Value>) -> PermissionAction {
    let get = |field: &str| fields.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
    PermissionAction::new(get("action"), get("resource"))
        .with_parameters(fields.get("parameters").cloned().unwrap_or(Value::Null))
}

fn message(fields: &Value) -> AgentMessage {
    let payload = parse_payload(&text(fields, "payload"));
    AgentMessage {
        id: "m-1".into(),
        conversation_id: text(fields, "conversation_id"),
        from: text(fields, "from"),
        from_device_id: None,
        to: None,
        text: payload.text,
        encrypted: fields["encrypted"].as_bool().expect("encrypted is a bool"),
        sender_identity: None,
        attachments: Vec::new(),
        reply_to_message_id: None,
        widget_response: payload.widget_response,
        widget_update: payload.widget_update,
        raw: Map::new(),
    }
}

/// What our policy produced for `step`, in the fields the official record uses.
fn replay_step(policy: &mut PermissionPolicy, step: &Value) -> Map<String, Value> {
    let now = at(&step["now_ms"]);
    let mut out = Map::new();
    let mut rng = Recorded::new(&step["random_hex"]);
    match step["op"].as_str().expect("an op") {
        "request" => {
            let fields = parsed(step, "request_text");
            let fields = fields.as_object().expect("request fields");
            let get = |field: &str| fields.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
            let mut request = PermissionRequest::new(
                get("conversation_id"),
                get("user_id"),
                action(fields),
                get("title"),
                at(&fields["expires_at_ms"]),
            )
            .body(get("body"))
            .widget_id(get("widget_id"));
            if let Some(scopes) = fields.get("scopes").and_then(Value::as_array) {
                request = request.scopes(scopes.iter().map(|name| scope(name.as_str().expect("scope name"))));
            }
            match policy.create_request(now, request, &mut rng) {
                Ok(widget) => out.insert("widget_text".into(), json!(widget.text())),
                Err(error) => out.insert("error".into(), json!(request_error(&error))),
            };
        }
        "answer" => {
            let result = match policy.receive_response(now, &message(&step["message"])) {
                Ok(decision) => decision.to_json(),
                Err(rejection) => rejection.to_json(),
            };
            out.insert("result_text".into(), json!(python(&result)));
        }
        "update" => {
            match policy.create_widget_update(now, &text(step, "request_id"), &mut rng) {
                Ok(update) => out.insert("update_text".into(), json!(update.text())),
                Err(error) => out.insert("error".into(), json!(unknown_request(&error))),
            };
        }
        "revoke" => {
            out.insert("returned".into(), json!(policy.revoke(&text(step, "grant_id"))));
        }
        "end_session" => policy.end_session(),
        "grants" => {
            let grants: Vec<Value> = policy.grants(now).iter().map(|grant| grant.to_json()).collect();
            out.insert("grants_text".into(), json!(python(&Value::Array(grants))));
        }
        "run" => {
            let fields = parsed(step, "context_text");
            let fields = fields.as_object().expect("context fields");
            let get = |field: &str| fields.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
            let context =
                PermissionContext::new(get("user_id"), get("conversation_id"), get("session_id"), action(fields));
            let mut calls = 0;
            match policy.run_authorized(now, &text(step, "grant_id"), &context, |granted| {
                calls += 1;
                granted
            }) {
                Ok(granted) => out.insert("permitted_text".into(), json!(python(&granted.to_json()))),
                Err(error) => {
                    assert_eq!(calls, 0, "the callback ran although the policy refused");
                    out.insert("error".into(), json!(not_authorized(&error)))
                }
            };
        }
        other => panic!("unknown op {other}"),
    }
    assert!(rng.0.is_empty(), "our policy drew less randomness than the official one");
    out
}

/// Replays every scenario of `vectors`, returning every difference from the official record.
fn replay(vectors: &Value) -> (usize, Vec<String>) {
    assert_eq!(vectors["sdk_version"], "0.1.0a8", "the vectors come from the pinned SDK");
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for case in vectors["cases"].as_array().expect("cases") {
        let name = text(case, "name");
        let session = &case["session"];
        let created = PermissionPolicy::new(
            PermissionSession::new(text(session, "id"), text(session, "label"), at(&session["expires_at_ms"])),
            at(&case["start_ms"]),
        );
        let outcome = match &created {
            Ok(_) => "ok".to_owned(),
            Err(error) => session_error(error),
        };
        checked += 1;
        if outcome != case["created"] {
            mismatches.push(format!("{name}: creating the policy: ours {outcome:?}, official {}", case["created"]));
        }
        let Ok(mut policy) = created else { continue };
        for (index, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
            let ours = replay_step(&mut policy, step);
            checked += 1;
            for (field, value) in &ours {
                if step.get(field) != Some(value) {
                    mismatches.push(format!(
                        "{name}, step {index} ({}): {field}\n  ours:     {value}\n  official: {}",
                        step["op"],
                        step.get(field).unwrap_or(&Value::Null)
                    ));
                }
            }
            for field in
                ["widget_text", "result_text", "update_text", "returned", "grants_text", "permitted_text", "error"]
            {
                if step.get(field).is_some() && !ours.contains_key(field) {
                    mismatches.push(format!("{name}, step {index} ({}): official has {field}, ours not", step["op"]));
                }
            }
        }
    }
    (checked, mismatches)
}

fn assert_replays(vectors: &Value, origin: &str) {
    let (checked, mismatches) = replay(vectors);
    assert!(
        mismatches.is_empty(),
        "{origin}: {} of {checked} steps differ from the official policy:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(checked > 100, "{origin}: only {checked} steps");
    eprintln!("{origin}: {checked} steps match the official policy");
}

#[test]
fn our_policy_replays_every_committed_official_vector() {
    assert_replays(&pacerelle_conformance::load_vectors("vectors/permissions.json"), "vectors/permissions.json");
}

#[test]
fn the_official_policy_produces_the_committed_vectors_now_and_ours_replays_them() {
    let dir = std::env::temp_dir().join(format!("pacerelle-permission-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let fresh = dir.join("permissions.json");
    let script = pacerelle_conformance::vectors_dir().join("oracle").join("permissions.py");
    let output = pacerelle_conformance::python().arg(&script).arg(&fresh).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "the official policy could not be driven:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let live = std::fs::read_to_string(&fresh).expect("the script wrote its vectors");
    std::fs::remove_dir_all(&dir).expect("the temporary folder is removed");
    let committed = std::fs::read_to_string(pacerelle_conformance::vectors_dir().join("vectors/permissions.json"))
        .expect("committed vectors");
    assert!(
        live == committed,
        "vectors/permissions.json is stale: regenerate it with \
         `PYTHONPATH=target/oracle python3 testvectors/oracle/permissions.py`"
    );
    assert_replays(&serde_json::from_str(&live).expect("JSON"), "live official policy");
}

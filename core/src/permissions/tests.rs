//! Unit tests of the permission policy for what the official vectors cannot show: our bounds
//! (answers remembered, times beyond Python's), typed refusals, and the guarded run's order.

use super::*;
use crate::message::WidgetResponse;
use rand::SeedableRng;

const START: u64 = 1_767_225_600_000;
const MINUTE: u64 = 60_000;

fn at(offset: u64) -> Timestamp {
    Timestamp::from_millis(START + offset)
}

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(3)
}

fn policy() -> PermissionPolicy {
    PermissionPolicy::new(PermissionSession::new("s-1", "Session", at(60 * MINUTE)), at(0)).expect("a live session")
}

fn delete() -> PermissionAction {
    PermissionAction::new("delete", "file:/a").with_parameters(json!({"n": 1}))
}

fn ask(policy: &mut PermissionPolicy, id: &str, scopes: &[PermissionScope]) -> PermissionWidget {
    let request = PermissionRequest::new("c-1", "alice", delete(), "Delete?", at(5 * MINUTE))
        .scopes(scopes.iter().copied())
        .widget_id(id);
    policy.create_request(at(0), request, &mut rng()).expect("a valid request")
}

fn answer(widget_ref: &str, answer_id: &str, value: Option<Value>, cancelled: bool) -> AgentMessage {
    AgentMessage {
        id: format!("m-{answer_id}"),
        conversation_id: "c-1".into(),
        from: "alice".into(),
        from_device_id: None,
        to: None,
        text: "Widget response".into(),
        encrypted: true,
        sender_identity: None,
        attachments: Vec::new(),
        reply_to_message_id: None,
        widget_response: Some(WidgetResponse { id: answer_id.into(), widget_ref: widget_ref.into(), value, cancelled }),
        widget_update: None,
        raw: Map::new(),
    }
}

fn grant(widget_ref: &str, answer_id: &str, scope: &str) -> AgentMessage {
    answer(widget_ref, answer_id, Some(json!({"granted": true, "scope": scope})), false)
}

fn context() -> PermissionContext {
    PermissionContext::new("alice", "c-1", "s-1", delete())
}

#[test]
fn the_request_widget_is_the_official_shape() {
    let mut policy = policy();
    let widget = ask(&mut policy, "perm-1", &[PermissionScope::Session, PermissionScope::Once]);
    assert_eq!(widget.id(), "perm-1");
    assert_eq!(
        widget.text(),
        concat!(
            r#"{"type": "widget.standard", "v": 1, "id": "perm-1", "kind": "permission", "#,
            r#""expires_at": "2026-01-01T00:05:00.000Z", "spec": {"title": "Delete?", "scopes": ["session", "once"], "#,
            r#""authorization": {"action": "delete", "resource": "file:/a", "parameters": {"n": 1}, "#,
            r#""expires_at": "2026-01-01T00:05:00.000Z", "session": {"id": "s-1", "label": "Session", "#,
            r#""expires_at": "2026-01-01T01:00:00.000Z"}, "revocable": true, "status": "requested"}}}"#
        )
    );
    // The person's app reads it as an ordinary permission widget.
    let shown = crate::payload::widget::parse_standard(&widget.text()).expect("a standard widget");
    assert_eq!(shown.kind, crate::payload::widget::WidgetKind::Permission);
    assert_eq!(shown.spec["authorization"]["status"], "requested");
}

#[test]
fn fresh_ids_come_from_the_given_randomness() {
    let mut policy = policy();
    let request = || PermissionRequest::new("c-1", "alice", delete(), "Delete?", at(MINUTE));
    let first = policy.create_request(at(0), request(), &mut rng()).expect("made");
    // The same randomness makes the same id, which is then refused as a duplicate.
    assert_eq!(
        policy.create_request(at(0), request(), &mut rng()),
        Err(RequestError::DuplicateWidgetId { id: first.id().to_owned() })
    );
    let id = uuid::Uuid::parse_str(first.id()).expect("a UUID");
    assert_eq!(id.get_version_num(), 4);
    let update = policy.create_widget_update(at(0), first.id(), &mut rng()).expect("known");
    assert_eq!(update.id(), first.id(), "the same randomness, the same id");
    assert_eq!(update.status(), AuthorizationStatus::Requested);
}

#[test]
fn a_once_grant_is_consumed_before_its_callback_and_not_given_back_on_failure() {
    let mut policy = policy();
    ask(&mut policy, "perm-1", &[PermissionScope::Once]);
    assert!(matches!(policy.receive_response(at(1), &grant("perm-1", "r-1", "once")), Ok(Decision::Granted(_))));
    let result = policy.run_authorized(at(2), "perm-1", &context(), |action| {
        assert_eq!(action, delete());
        Err::<(), &str>("the operation failed")
    });
    assert_eq!(result, Ok(Err("the operation failed")));
    assert_eq!(policy.grant(at(3), "perm-1").map(|grant| grant.state), Some(GrantState::Consumed));
    let mut ran = false;
    assert_eq!(
        policy.run_authorized(at(3), "perm-1", &context(), |_| ran = true),
        Err(NotAuthorized::NotActive { state: GrantState::Consumed })
    );
    assert!(!ran);
}

#[test]
fn authorize_hands_over_the_action_as_granted() {
    let mut policy = policy();
    ask(&mut policy, "perm-1", &[PermissionScope::Session]);
    policy.receive_response(at(1), &grant("perm-1", "r-1", "session")).expect("granted");
    // Same parameters, another key order and a caller's copy: the granted action comes back.
    let asked = PermissionAction::new("delete", "file:/a").with_parameters(json!({"n": 1}));
    let context = PermissionContext::new("alice", "c-1", "s-1", asked);
    assert_eq!(policy.authorize(at(2), "perm-1", &context), Ok(delete()));
    assert_eq!(policy.authorize(at(3), "perm-1", &context), Ok(delete()), "a session grant stays");
    let float = PermissionContext::new(
        "alice",
        "c-1",
        "s-1",
        PermissionAction::new("delete", "file:/a").with_parameters(json!({"n": 1.0})),
    );
    assert_eq!(policy.authorize(at(4), "perm-1", &float), Err(NotAuthorized::NotCovered));
}

#[test]
fn answers_remembered_are_bounded() {
    let mut policy = policy();
    ask(&mut policy, "perm-1", &[PermissionScope::Once]);
    let deny = |id: usize| answer("perm-1", &format!("r-{id}"), Some(json!({"granted": false})), false);
    for id in 0..=MAX_REMEMBERED_ANSWERS {
        assert_eq!(policy.receive_response(at(1), &deny(id)), Ok(Decision::Denied { request_id: "perm-1".into() }));
    }
    assert_eq!(policy.requests["perm-1"].answers.len(), MAX_REMEMBERED_ANSWERS);
    // The newest is still a duplicate; the oldest was forgotten and is judged afresh, which
    // repeats the denial and grants nothing.
    assert_eq!(
        policy.receive_response(at(2), &deny(MAX_REMEMBERED_ANSWERS)),
        Ok(Decision::Duplicate { request_id: "perm-1".into() })
    );
    assert_eq!(policy.receive_response(at(2), &deny(0)), Ok(Decision::Denied { request_id: "perm-1".into() }));
    assert_eq!(policy.status(at(2), "perm-1"), Ok(AuthorizationStatus::Denied));
}

#[test]
fn times_python_cannot_hold_are_refused_or_bounded() {
    let far = Timestamp::from_millis(MAX_TIMESTAMP.as_millis() + 1);
    assert_eq!(
        PermissionPolicy::new(PermissionSession::new("s", "l", far), at(0)).map(|_| ()),
        Err(SessionError::OutOfRange)
    );
    let mut policy = PermissionPolicy::new(PermissionSession::new("s", "l", MAX_TIMESTAMP), at(0)).expect("in range");
    let request = PermissionRequest::new("c-1", "alice", delete(), "Delete?", Timestamp::from_millis(u64::MAX));
    let widget = policy.create_request(at(0), request.widget_id("far"), &mut rng()).expect("bounded by the session");
    assert_eq!(widget.payload()["expires_at"], "9999-12-31T23:59:59.999Z");
}

#[test]
fn refusals_are_precise() {
    let mut policy = policy();
    let request = |scopes: Vec<PermissionScope>| {
        PermissionRequest::new("c-1", "alice", delete(), "Delete?", at(MINUTE)).scopes(scopes).widget_id("x")
    };
    assert_eq!(policy.create_request(at(0), request(vec![]), &mut rng()), Err(RequestError::NoScopes));
    assert_eq!(
        policy.create_request(
            at(0),
            request(vec![PermissionScope::Session, PermissionScope::Once, PermissionScope::Session]),
            &mut rng()
        ),
        Err(RequestError::DuplicateScope { scope: PermissionScope::Session })
    );
    let blank =
        PermissionRequest::new("c-1", "alice", PermissionAction::new("delete", "\u{1c}"), "Delete?", at(MINUTE));
    assert_eq!(policy.create_request(at(0), blank, &mut rng()), Err(RequestError::BlankField { field: "resource" }));
    assert_eq!(
        policy.create_widget_update(at(0), "nope", &mut rng()).map(|_| ()),
        Err(UnknownRequest { request_id: "nope".into() })
    );
    assert_eq!(policy.authorize(at(0), "nope", &context()), Err(NotAuthorized::NoGrant));
    assert_eq!(Rejection::ScopeNotOffered.reason(), "scope_not_offered");
    assert_eq!(Rejection::Unencrypted.to_json(), json!({"status": "rejected", "reason": "unencrypted"}));
}

#[test]
fn a_message_without_an_answer_is_unrelated() {
    let mut policy = policy();
    ask(&mut policy, "perm-1", &[PermissionScope::Once]);
    let mut message = grant("perm-1", "r-1", "once");
    message.widget_response = None;
    assert_eq!(policy.receive_response(at(1), &message), Ok(Decision::Unrelated));
    assert_eq!(policy.status(at(1), "perm-1"), Ok(AuthorizationStatus::Requested));
}

#[test]
fn blank_is_python_whitespace() {
    for blank in ["", " ", "\t\n\r\u{b}\u{c}", "\u{1c}\u{1d}\u{1e}\u{1f}", "\u{85}\u{a0}\u{2003}\u{3000}"] {
        assert!(is_blank(blank), "{blank:?}");
    }
    for text in ["a", " a ", "\u{200b}", "\u{0}"] {
        assert!(!is_blank(text), "{text:?}");
    }
}

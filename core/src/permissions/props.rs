//! Property tests of the permission policy: over random sequences of requests, answers (from
//! the right and wrong people, conversations and channels, for offered and unoffered scopes),
//! time passing, revocations and session ends, a callback runs exactly when a small model of
//! the grants, kept here from the inputs alone, holds a live grant covering it, and a `once`
//! grant runs at most once.

use super::*;
use crate::message::WidgetResponse;
use proptest::prelude::*;
use rand::SeedableRng;

const START: u64 = 1_767_225_600_000;
const SESSION_LENGTH: u64 = 10 * 60_000;
/// Two requests at most (each id can be asked once), so that answers and runs often meet one.
const REQUEST_IDS: [&str; 2] = ["p-0", "p-1"];
const PEOPLE: [&str; 2] = ["alice", "bob"];
const CONVERSATIONS: [&str; 2] = ["c-1", "c-2"];
const SESSIONS: [&str; 2] = ["s-1", "s-2"];

/// The actions callers may ask for, with the class of actions each is equal to: the first two
/// differ only in their parameters' key order (the same action), the third only in a number's
/// type (another action).
fn action(index: usize) -> (PermissionAction, usize) {
    let delete = PermissionAction::new("delete", "file:/a");
    match index {
        0 => (delete.with_parameters(json!({"n": 1, "m": "x"})), 0),
        1 => (delete.with_parameters(json!({"m": "x", "n": 1})), 0),
        2 => (delete.with_parameters(json!({"n": 1.0, "m": "x"})), 1),
        _ => (PermissionAction::new("read", "file:/b"), 2),
    }
}

#[derive(Debug, Clone)]
enum Answer {
    Grant(Option<&'static str>),
    Deny,
    Dismiss,
    Malformed,
}

#[derive(Debug, Clone)]
enum Op {
    Request { id: usize, person: usize, conversation: usize, action: usize, scopes: Vec<PermissionScope>, ttl: u64 },
    Answer { id: usize, person: usize, conversation: usize, encrypted: bool, answer_id: u8, answer: Answer },
    Advance(u64),
    Revoke(usize),
    EndSession,
    Run { id: usize, person: usize, conversation: usize, session: usize, action: usize },
}

fn scopes() -> impl Strategy<Value = Vec<PermissionScope>> {
    prop_oneof![
        Just(vec![PermissionScope::Once]),
        Just(vec![PermissionScope::Session]),
        Just(vec![PermissionScope::Once, PermissionScope::Session]),
        Just(vec![PermissionScope::Session, PermissionScope::Once]),
    ]
}

/// How long a request is open: often shorter than the session, so that grants expire alone.
fn ttl() -> impl Strategy<Value = u64> {
    prop_oneof![1..2 * 60_000u64, 1..15 * 60_000u64]
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        6 => prop_oneof![Just(Some("once")), Just(Some("session"))].prop_map(Answer::Grant),
        1 => prop_oneof![Just(Some("forever")), Just(None)].prop_map(Answer::Grant),
        1 => Just(Answer::Deny),
        1 => Just(Answer::Dismiss),
        1 => Just(Answer::Malformed),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly the right person in the right conversation, so that grants happen often.
    let person = prop_oneof![4 => Just(0usize), 1 => Just(1usize)];
    let conversation = prop_oneof![4 => Just(0usize), 1 => Just(1usize)];
    prop_oneof![
        3 => (0..2usize, person.clone(), conversation.clone(), 0..4usize, scopes(), ttl()).prop_map(
            |(id, person, conversation, action, scopes, ttl)| Op::Request { id, person, conversation, action, scopes, ttl }
        ),
        5 => (0..3usize, person.clone(), conversation.clone(), prop::bool::weighted(0.85), 0..4u8, answer()).prop_map(
            |(id, person, conversation, encrypted, answer_id, answer)| Op::Answer {
                id, person, conversation, encrypted, answer_id, answer
            }
        ),
        2 => prop_oneof![0..30_000u64, 0..4 * 60_000u64].prop_map(Op::Advance),
        1 => (0..3usize).prop_map(Op::Revoke),
        1 => Just(Op::EndSession),
        6 => (0..3usize, person, conversation, prop_oneof![5 => Just(0usize), 1 => Just(1usize)], 0..4usize).prop_map(
            |(id, person, conversation, session, action)| Op::Run { id, person, conversation, session, action }
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Pending,
    Denied,
    Granted { scope: PermissionScope, used: bool },
    Revoked,
}

#[derive(Debug)]
struct Asked {
    person: usize,
    conversation: usize,
    class: usize,
    scopes: Vec<PermissionScope>,
    deadline: u64,
    held: Held,
    answers: Vec<u8>,
}

/// What the grants should be, from the inputs alone.
#[derive(Debug, Default)]
struct Model {
    asked: HashMap<usize, Asked>,
    ended: bool,
}

impl Model {
    fn session_live(&self, now: u64) -> bool {
        !self.ended && now < START + SESSION_LENGTH
    }

    fn status(&self, now: u64, asked: &Asked) -> AuthorizationStatus {
        let live = self.session_live(now) && now < asked.deadline;
        let on_time = now < asked.deadline && now < START + SESSION_LENGTH;
        match asked.held {
            Held::Pending if live => AuthorizationStatus::Requested,
            Held::Pending => AuthorizationStatus::Expired,
            Held::Denied => AuthorizationStatus::Denied,
            Held::Granted { used: true, .. } => AuthorizationStatus::Consumed,
            Held::Granted { .. } if on_time => AuthorizationStatus::Granted,
            Held::Granted { .. } => AuthorizationStatus::Expired,
            Held::Revoked => AuthorizationStatus::Revoked,
        }
    }
}

fn answer_message(
    id: usize,
    person: usize,
    conversation: usize,
    encrypted: bool,
    answer_id: u8,
    answer: &Answer,
) -> AgentMessage {
    let (value, cancelled) = match answer {
        Answer::Grant(Some(scope)) => (Some(json!({"granted": true, "scope": scope})), false),
        Answer::Grant(None) => (Some(json!({"granted": true})), false),
        Answer::Deny => (Some(json!({"granted": false})), false),
        Answer::Dismiss => (None, true),
        Answer::Malformed => (Some(json!({"granted": "yes"})), false),
    };
    AgentMessage {
        id: format!("m-{answer_id}"),
        conversation_id: CONVERSATIONS[conversation].into(),
        from: PEOPLE[person].into(),
        from_device_id: None,
        to: None,
        text: "Widget response".into(),
        encrypted,
        sender_identity: None,
        attachments: Vec::new(),
        reply_to_message_id: None,
        widget_response: Some(WidgetResponse {
            id: format!("r-{answer_id}"),
            widget_ref: REQUEST_IDS.get(id).copied().unwrap_or("p-unknown").into(),
            value,
            cancelled,
        }),
        widget_update: None,
        raw: Map::new(),
    }
}

fn check(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let session = PermissionSession::new("s-1", "Session", Timestamp::from_millis(START + SESSION_LENGTH));
    let mut policy = PermissionPolicy::new(session, Timestamp::from_millis(START)).expect("a live session");
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut model = Model::default();
    let mut runs: HashMap<usize, u32> = HashMap::new();
    let mut now = START;
    for op in ops {
        let at = Timestamp::from_millis(now);
        match op {
            Op::Request { id, person, conversation, action: index, scopes, ttl } => {
                let (action, class) = action(index);
                let request = PermissionRequest::new(
                    CONVERSATIONS[conversation],
                    PEOPLE[person],
                    action,
                    "Allow?",
                    Timestamp::from_millis(now + ttl),
                )
                .scopes(scopes.clone())
                .widget_id(REQUEST_IDS[id]);
                let made = policy.create_request(at, request, &mut rng);
                let expected = model.session_live(now) && !model.asked.contains_key(&id);
                prop_assert_eq!(made.is_ok(), expected, "request {} at {}: {:?}", id, now, made);
                if expected {
                    let deadline = (now + ttl).min(START + SESSION_LENGTH);
                    let held = Held::Pending;
                    model
                        .asked
                        .insert(id, Asked { person, conversation, class, scopes, deadline, held, answers: vec![] });
                }
            }
            Op::Answer { id, person, conversation, encrypted, answer_id, answer } => {
                let message = answer_message(id, person, conversation, encrypted, answer_id, &answer);
                let decision = policy.receive_response(at, &message);
                let live = model.session_live(now);
                let ended = model.ended;
                let Some(asked) = model.asked.get_mut(&id) else {
                    prop_assert_eq!(decision, Ok(Decision::Unrelated));
                    continue;
                };
                if !encrypted || person != asked.person || conversation != asked.conversation {
                    prop_assert!(decision.is_err(), "{:?}", decision);
                    continue;
                }
                if asked.answers.contains(&answer_id) {
                    prop_assert!(matches!(decision, Ok(Decision::Duplicate { .. })), "{:?}", decision);
                    continue;
                }
                match answer {
                    Answer::Malformed => prop_assert_eq!(decision, Err(Rejection::InvalidResponse)),
                    Answer::Deny | Answer::Dismiss => {
                        asked.answers.push(answer_id);
                        let request_id = REQUEST_IDS[id].to_owned();
                        let (held, expected) = match asked.held {
                            Held::Granted { .. } | Held::Revoked => (Held::Revoked, Decision::Revoked { request_id }),
                            Held::Pending | Held::Denied => (Held::Denied, Decision::Denied { request_id }),
                        };
                        asked.held = held;
                        prop_assert_eq!(decision, Ok(expected));
                    }
                    Answer::Grant(scope) => {
                        let offered = asked.scopes.iter().copied().find(|offered| Some(offered.as_str()) == scope);
                        match offered {
                            Some(scope) if live && !ended && now < asked.deadline && asked.held == Held::Pending => {
                                asked.answers.push(answer_id);
                                asked.held = Held::Granted { scope, used: false };
                                prop_assert!(matches!(decision, Ok(Decision::Granted(_))), "{:?}", decision);
                            }
                            _ => prop_assert!(decision.is_err(), "{:?}", decision),
                        }
                    }
                }
            }
            Op::Advance(millis) => now += millis,
            Op::Revoke(id) => {
                let revoked = policy.revoke(REQUEST_IDS.get(id).copied().unwrap_or("p-unknown"));
                let asked = model.asked.get_mut(&id);
                let granted = asked.is_some_and(|asked| {
                    let granted = matches!(asked.held, Held::Granted { .. } | Held::Revoked);
                    if granted {
                        asked.held = Held::Revoked;
                    }
                    granted
                });
                prop_assert_eq!(revoked, granted);
            }
            Op::EndSession => {
                policy.end_session();
                model.ended = true;
                for asked in model.asked.values_mut() {
                    if matches!(asked.held, Held::Granted { .. }) {
                        asked.held = Held::Revoked;
                    }
                }
            }
            Op::Run { id, person, conversation, session, action: index } => {
                let (action, class) = action(index);
                let context =
                    PermissionContext::new(PEOPLE[person], CONVERSATIONS[conversation], SESSIONS[session], action);
                let mut ran = 0;
                let result =
                    policy.run_authorized(at, REQUEST_IDS.get(id).copied().unwrap_or("p-unknown"), &context, |_| {
                        ran += 1;
                    });
                let live = model.session_live(now);
                let allowed = model.asked.get_mut(&id).is_some_and(|asked| {
                    let covered = person == asked.person
                        && conversation == asked.conversation
                        && session == 0
                        && class == asked.class
                        && live
                        && now < asked.deadline;
                    match asked.held {
                        Held::Granted { scope, used: false } if covered => {
                            if scope == PermissionScope::Once {
                                asked.held = Held::Granted { scope, used: true };
                            }
                            true
                        }
                        _ => false,
                    }
                });
                prop_assert_eq!(ran, u32::from(allowed), "run {} at {}: {:?}", id, now, result);
                prop_assert_eq!(result.is_ok(), allowed);
                *runs.entry(id).or_default() += ran;
            }
        }
        // The statuses the person would be shown agree with the model after every step.
        let at = Timestamp::from_millis(now);
        for (id, asked) in &model.asked {
            prop_assert_eq!(policy.status(at, REQUEST_IDS[*id]), Ok(model.status(now, asked)), "request {}", id);
        }
    }
    for grant in policy.grants(Timestamp::from_millis(now)) {
        if grant.scope == PermissionScope::Once {
            let id = REQUEST_IDS.iter().position(|known| *known == grant.id).unwrap_or(usize::MAX);
            prop_assert!(
                runs.get(&id).copied().unwrap_or(0) <= 1,
                "once grant {} ran {:?} times",
                grant.id,
                runs.get(&id)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn callbacks_run_exactly_under_a_live_covering_grant(ops in prop::collection::vec(op(), 1..40)) {
        check(ops)?;
    }
}

//! The official SDK's permission policy (`pacerelle.permissions.PermissionPolicy`), with no I/O:
//! ask a person for a bounded, revocable permission, judge their answer, and run a guarded
//! callback only under a live grant that covers it.
//!
//! A [`PermissionPolicy`] lives for one [`PermissionSession`], which expires. Each request is a
//! permission widget whose `spec.authorization` states exactly what is asked (action, resource,
//! parameters, deadline, session), written byte for byte as the official policy writes it. The
//! person's answer ([`AgentMessage::widget_response`]) is checked against the request: it must
//! arrive end-to-end encrypted from the asked person in the asked conversation, before the
//! deadline, choosing a scope that was offered. A `once` grant admits one run and is consumed
//! before the callback starts; a `session` grant holds until its deadline, its revocation or the
//! session's end. Status updates ([`PermissionPolicy::create_widget_update`]) show the person
//! where their grant stands.
//!
//! Time is passed in ([`Timestamp`]); randomness too, where ids are made. Grants live in this
//! value only: a restarted agent starts with none, as the official policy does, and must ask
//! again. A grant admits a callback; it proves nothing about what the callback then did.
//!
//! ```
//! use pacerelle_core::permissions::*;
//! use pacerelle_core::payload::parse_payload;
//! use pacerelle_core::{AgentMessage, Timestamp};
//! use pacerelle_core::widget::PermissionScope;
//! use rand::SeedableRng;
//!
//! let minute = 60_000;
//! let start = Timestamp::from_millis(1_767_225_600_000);
//! let session = PermissionSession::new("s-1", "Deploy session", Timestamp::from_millis(start.as_millis() + 60 * minute));
//! let mut policy = PermissionPolicy::new(session, start)?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//!
//! // Ask: the widget's text is what the agent sends (`agent.send_text(conversation, user, text)`).
//! let deploy = PermissionAction::new("deploy", "service:web").with_parameters(serde_json::json!({"version": "1.2"}));
//! let request = PermissionRequest::new("c-1", "alice", deploy.clone(), "Deploy web 1.2?", Timestamp::from_millis(start.as_millis() + 5 * minute))
//!     .scopes([PermissionScope::Once, PermissionScope::Session])
//!     .widget_id("perm-1");
//! let widget = policy.create_request(start, request, &mut rng)?;
//! assert!(widget.text().starts_with(r#"{"type": "widget.standard", "v": 1, "id": "perm-1", "kind": "permission""#));
//!
//! // Alice answers, encrypted: a once grant.
//! let answer = parse_payload(r#"{"type":"widget.response","id":"r-1","ref":"perm-1","value":{"granted":true,"scope":"once"}}"#);
//! # let message = |from: &str, encrypted: bool| AgentMessage {
//! #     id: "m-1".into(), conversation_id: "c-1".into(), from: from.into(), from_device_id: None, to: None,
//! #     text: answer.text.clone(), encrypted, sender_identity: None, attachments: vec![], reply_to_message_id: None,
//! #     widget_response: answer.widget_response.clone(), widget_update: None, raw: Default::default() };
//! let now = Timestamp::from_millis(start.as_millis() + minute);
//! assert_eq!(policy.receive_response(now, &message("mallory", true)), Err(Rejection::SenderMismatch));
//! let Decision::Granted(grant) = policy.receive_response(now, &message("alice", true))? else { panic!("granted") };
//!
//! // The callback runs once, with the action as granted; the second attempt is refused.
//! let context = PermissionContext::new("alice", "c-1", "s-1", deploy);
//! let ran = policy.run_authorized(now, &grant.id, &context, |action| action.resource.clone())?;
//! assert_eq!(ran, "service:web");
//! assert_eq!(
//!     policy.run_authorized(now, &grant.id, &context, |_| ()),
//!     Err(NotAuthorized::NotActive { state: GrantState::Consumed })
//! );
//! let update = policy.create_widget_update(now, "perm-1", &mut rng)?;
//! assert_eq!(update.status(), AuthorizationStatus::Consumed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod iso;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use iso::MAX_TIMESTAMP;
pub(crate) use iso::format as format_rfc3339;

use crate::message::AgentMessage;
use crate::payload::widget::PermissionScope;
use crate::{Rng, Timestamp, ids, pyjson};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};

/// How many answer ids a request remembers to report replays as duplicates.
///
/// A person can send any number of answers; beyond this many, the oldest are forgotten, so a
/// hostile peer cannot grow the policy without bound. A forgotten answer sent again is judged
/// afresh, which can only repeat a denial (or revocation) or be refused as already decided.
pub const MAX_REMEMBERED_ANSWERS: usize = 32;

/// The session a policy serves: grants never outlive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSession {
    /// Its id (`spec.authorization.session.id`); callbacks name it to run.
    pub id: String,
    /// What the person sees it called.
    pub label: String,
    /// When it ends by itself.
    pub expires_at: Timestamp,
}

impl PermissionSession {
    /// A session `id`, shown as `label`, ending at `expires_at`.
    pub fn new(id: impl Into<String>, label: impl Into<String>, expires_at: Timestamp) -> Self {
        PermissionSession { id: id.into(), label: label.into(), expires_at }
    }
}

/// An operation a permission covers: what, on what, with which parameters.
///
/// Two actions are the same when their action, resource and parameters are, with object keys in
/// any order; numbers keep their type (`1` is not `1.0`), as the official policy compares them.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionAction {
    /// The verb (`delete`, `deploy`).
    pub action: String,
    /// What it acts on, resolved to its identity (a canonical path, a service name).
    pub resource: String,
    /// Every parameter that changes what the operation does; `null` for none.
    pub parameters: Value,
}

impl PermissionAction {
    /// `action` on `resource`, without parameters.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        PermissionAction { action: action.into(), resource: resource.into(), parameters: Value::Null }
    }

    /// The same action with these parameters.
    pub fn with_parameters(mut self, parameters: Value) -> Self {
        self.parameters = parameters;
        self
    }

    /// As the official policy shows it (`dataclasses.asdict`).
    pub fn to_json(&self) -> Value {
        json!({"action": self.action, "resource": self.resource, "parameters": self.parameters})
    }

    /// The identity the official policy compares: sorted, compact JSON of the three fields.
    fn key(&self) -> String {
        pyjson::dumps(&json!([self.action, self.resource, self.parameters]), pyjson::Style::SORTED_COMPACT)
    }

    /// The first field that is blank, if any.
    fn blank_field(&self) -> Option<&'static str> {
        [("action", &self.action), ("resource", &self.resource)]
            .into_iter()
            .find_map(|(name, value)| is_blank(value).then_some(name))
    }
}

/// What to ask a person: built here, judged by [`PermissionPolicy::create_request`].
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRequest {
    conversation_id: String,
    user_id: String,
    action: PermissionAction,
    title: String,
    expires_at: Timestamp,
    body: String,
    scopes: Option<Vec<PermissionScope>>,
    widget_id: String,
}

impl PermissionRequest {
    /// Ask `user_id` in `conversation_id` for `action`, under `title`, until `expires_at` (or the
    /// session's end, if sooner). Only `once` is offered unless [`PermissionRequest::scopes`] says
    /// otherwise.
    pub fn new(
        conversation_id: impl Into<String>,
        user_id: impl Into<String>,
        action: PermissionAction,
        title: impl Into<String>,
        expires_at: Timestamp,
    ) -> Self {
        PermissionRequest {
            conversation_id: conversation_id.into(),
            user_id: user_id.into(),
            action,
            title: title.into(),
            expires_at,
            body: String::new(),
            scopes: None,
            widget_id: String::new(),
        }
    }

    /// Explanatory text (left out when empty).
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// The scopes offered, in this order: each at most once, at least one.
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = PermissionScope>) -> Self {
        self.scopes = Some(scopes.into_iter().collect());
        self
    }

    /// The widget's id (also the request's and the grant's) instead of a fresh UUID; an empty
    /// id means a fresh one, as in the official policy.
    pub fn widget_id(mut self, id: impl Into<String>) -> Self {
        self.widget_id = id.into();
        self
    }
}

/// Where a request stands, as its widget shows it (`spec.authorization.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthorizationStatus {
    /// Waiting for the person.
    Requested,
    /// Granted and live.
    Granted,
    /// A `once` grant, used.
    Consumed,
    /// Refused or dismissed by the person.
    Denied,
    /// Withdrawn after it was granted (by the agent, the person, or the session's end).
    Revoked,
    /// Past its deadline or its session's end, unused.
    Expired,
}

impl AuthorizationStatus {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationStatus::Requested => "requested",
            AuthorizationStatus::Granted => "granted",
            AuthorizationStatus::Consumed => "consumed",
            AuthorizationStatus::Denied => "denied",
            AuthorizationStatus::Revoked => "revoked",
            AuthorizationStatus::Expired => "expired",
        }
    }
}

/// A grant's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantState {
    /// It admits runs.
    Active,
    /// A `once` grant that admitted its run.
    Consumed,
    /// Withdrawn.
    Revoked,
    /// Past its deadline or its session's end.
    Expired,
}

impl GrantState {
    /// Its name as the official policy writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Active => "active",
            GrantState::Consumed => "consumed",
            GrantState::Revoked => "revoked",
            GrantState::Expired => "expired",
        }
    }
}

impl std::fmt::Display for GrantState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person's permission, as the policy holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionGrant {
    /// Its id: the request's (the widget's) id.
    pub id: String,
    /// The request it answers.
    pub request_id: String,
    /// Where it was asked.
    pub conversation_id: String,
    /// Who granted it.
    pub user_id: String,
    /// The session it belongs to.
    pub session_id: String,
    /// `once` or `session`.
    pub scope: PermissionScope,
    /// When the answer was accepted.
    pub authorized_at: Timestamp,
    /// The request's deadline, which the grant does not outlive.
    pub expires_at: Timestamp,
    /// Its state when read.
    pub state: GrantState,
}

impl PermissionGrant {
    /// As the official policy shows it (`dataclasses.asdict`: the same keys, order and times).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "request_id": self.request_id,
            "conversation_id": self.conversation_id,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "scope": self.scope.as_str(),
            "authorized_at": iso_time(self.authorized_at),
            "expires_at": iso_time(self.expires_at),
            "state": self.state.as_str(),
        })
    }
}

/// A permission widget to send: its id and its payload, as the official policy makes them.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionWidget {
    id: String,
    payload: Map<String, Value>,
}

impl PermissionWidget {
    /// The widget's id: the request's and, once granted, the grant's.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The widget (`widget.standard`), keys in the official policy's order.
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// The message text that shows it: `json.dumps` of the official policy's widget, sent as a
    /// message's text (`agent.send_text(conversation, user, widget.text())`).
    pub fn text(&self) -> String {
        pyjson::dumps(&Value::Object(self.payload.clone()), pyjson::Style::DEFAULT)
    }
}

/// A `widget.update` showing a request's status to the person.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    id: String,
    status: AuthorizationStatus,
    payload: Map<String, Value>,
}

impl StatusUpdate {
    /// The update's own id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The status it shows.
    pub fn status(&self) -> AuthorizationStatus {
        self.status
    }

    /// The update (`widget.update`), keys in the official policy's order.
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// The message text that carries it (`json.dumps` of the official policy's update).
    pub fn text(&self) -> String {
        pyjson::dumps(&Value::Object(self.payload.clone()), pyjson::Style::DEFAULT)
    }
}

/// What an accepted answer did.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The message answers no request of this policy (no widget answer, or another widget's).
    Unrelated,
    /// An answer already taken into account, sent again.
    Duplicate {
        /// The request it answers.
        request_id: String,
    },
    /// The person refused (or dismissed) a request not granted.
    Denied {
        /// The request refused.
        request_id: String,
    },
    /// The person refused (or dismissed) a request they had granted: the grant is revoked.
    Revoked {
        /// The request, and grant, revoked.
        request_id: String,
    },
    /// The person granted the request.
    Granted(PermissionGrant),
}

impl Decision {
    /// As the official policy returns it (`{"status": ..., ...}`).
    pub fn to_json(&self) -> Value {
        match self {
            Decision::Unrelated => json!({"status": "unrelated"}),
            Decision::Duplicate { request_id } => json!({"status": "duplicate", "request_id": request_id}),
            Decision::Denied { request_id } => json!({"status": "denied", "request_id": request_id}),
            Decision::Revoked { request_id } => json!({"status": "revoked", "request_id": request_id}),
            Decision::Granted(grant) => json!({"status": "granted", "grant": grant.to_json()}),
        }
    }
}

/// An answer to one of the policy's requests, refused: nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// It did not arrive end-to-end encrypted, so the relay could have written it.
    #[error("the permission answer was not end-to-end encrypted")]
    Unencrypted,
    /// It came from someone else than the person asked, or from another conversation.
    #[error("the permission answer came from another person or conversation than the request's")]
    SenderMismatch,
    /// It has no id, or is neither a dismissal nor a value with a boolean `granted`.
    #[error("the permission answer is malformed")]
    InvalidResponse,
    /// The session ended before the grant arrived.
    #[error("the permission session has ended")]
    SessionEnded,
    /// The grant arrived at or after the request's deadline or the session's expiry.
    #[error("the permission request has expired")]
    Expired,
    /// The request was already granted, denied or revoked.
    #[error("the permission request was already decided")]
    AlreadyDecided,
    /// The grant chose a scope the request did not offer.
    #[error("the permission answer chose a scope that was not offered")]
    ScopeNotOffered,
}

impl Rejection {
    /// The official policy's `reason` for it.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Unencrypted => "unencrypted",
            Rejection::SenderMismatch => "sender_mismatch",
            Rejection::InvalidResponse => "invalid_response",
            Rejection::SessionEnded => "session_ended",
            Rejection::Expired => "expired",
            Rejection::AlreadyDecided => "already_decided",
            Rejection::ScopeNotOffered => "scope_not_offered",
        }
    }

    /// As the official policy returns it (`{"status": "rejected", "reason": ...}`).
    pub fn to_json(self) -> Value {
        json!({"status": "rejected", "reason": self.reason()})
    }
}

/// A policy that cannot be made for this session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session's id or label is empty or only whitespace.
    #[error("session.{field} must be a non-empty string")]
    BlankField {
        /// `id` or `label`.
        field: &'static str,
    },
    /// The session expires later than the official policy can write a time.
    #[error("the permission session expires after 9999-12-31T23:59:59.999Z")]
    OutOfRange,
    /// The session has already expired.
    #[error("the permission session must expire in the future")]
    AlreadyExpired,
}

/// A request the policy refuses to make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The session ended or expired: no new request can be granted.
    #[error("the permission session has ended")]
    SessionEnded,
    /// A required text is empty or only whitespace.
    #[error("{field} must be a non-empty string")]
    BlankField {
        /// `conversation_id`, `user_id`, `title`, `action`, `resource` or `widget_id`.
        field: &'static str,
    },
    /// A request with this widget id already exists; each request needs its own.
    #[error("permission widget id {id} is already used; create a new request")]
    DuplicateWidgetId {
        /// The id.
        id: String,
    },
    /// No scope is offered.
    #[error("a permission request must offer at least one scope")]
    NoScopes,
    /// A scope is offered twice.
    #[error("the permission scope {} is offered twice", scope.as_str())]
    DuplicateScope {
        /// The scope.
        scope: PermissionScope,
    },
    /// Its deadline (or the session's expiry, if sooner) is not in the future.
    #[error("the permission request must expire in the future")]
    AlreadyExpired,
}

/// A status asked of a request the policy never made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission request {request_id}")]
pub struct UnknownRequest {
    /// The id asked about.
    pub request_id: String,
}

/// Why a guarded callback was not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAuthorized {
    /// No grant has this id.
    #[error("no permission grant exists for this request")]
    NoGrant,
    /// The grant's deadline or the session's expiry passed, or the session was ended.
    #[error("the permission expired or its session ended; request permission again")]
    ExpiredOrSessionEnded,
    /// The grant was used (`once`) or revoked.
    #[error("the permission is {state}; request permission again")]
    NotActive {
        /// `consumed` or `revoked`.
        state: GrantState,
    },
    /// The grant is for another person, conversation, session, action, resource or parameters.
    #[error("the permission does not cover this user, conversation, session, action, resource or parameters")]
    NotCovered,
    /// The context's action or resource is empty or only whitespace.
    #[error("{field} must be a non-empty string")]
    BlankAction {
        /// `action` or `resource`.
        field: &'static str,
    },
}

/// Who wants to run what, for [`PermissionPolicy::run_authorized`]: it must match the grant.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionContext {
    /// The person the operation acts for.
    pub user_id: String,
    /// The conversation it was asked in.
    pub conversation_id: String,
    /// The policy's session.
    pub session_id: String,
    /// The operation, with every parameter that changes what it does.
    pub action: PermissionAction,
}

impl PermissionContext {
    /// `action` for `user_id` in `conversation_id`, under session `session_id`.
    pub fn new(
        user_id: impl Into<String>,
        conversation_id: impl Into<String>,
        session_id: impl Into<String>,
        action: PermissionAction,
    ) -> Self {
        PermissionContext {
            user_id: user_id.into(),
            conversation_id: conversation_id.into(),
            session_id: session_id.into(),
            action,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestDecision {
    Pending,
    Granted,
    Denied,
    Revoked,
}

#[derive(Debug)]
struct Request {
    /// `spec.authorization` without its `status`, which each update sets afresh at the end.
    authorization: Map<String, Value>,
    scopes: Vec<PermissionScope>,
    user_id: String,
    conversation_id: String,
    action: PermissionAction,
    action_key: String,
    expires_at: Timestamp,
    decision: RequestDecision,
    answers: VecDeque<String>,
}

impl Request {
    fn remember(&mut self, answer_id: &str) {
        if self.answers.len() == MAX_REMEMBERED_ANSWERS {
            self.answers.pop_front();
        }
        self.answers.push_back(answer_id.to_owned());
    }

    fn authorization(&self, status: AuthorizationStatus) -> Value {
        let mut authorization = self.authorization.clone();
        authorization.insert("status".into(), json!(status.as_str()));
        Value::Object(authorization)
    }
}

/// The permissions of one session: requests, answers, grants and guarded runs.
///
/// Not persisted, on purpose: a restarted agent, or a new session, starts with no grant. Not
/// `Clone` either: two copies would each admit a `once` grant's run. Share one behind a lock.
#[derive(Debug)]
pub struct PermissionPolicy {
    session: PermissionSession,
    requests: HashMap<String, Request>,
    /// In the order granted, which [`PermissionPolicy::grants`] keeps.
    grants: Vec<PermissionGrant>,
    grant_index: HashMap<String, usize>,
    ended: bool,
}

impl PermissionPolicy {
    /// A policy for `session`, which must expire after `now`.
    pub fn new(session: PermissionSession, now: Timestamp) -> Result<Self, SessionError> {
        if is_blank(&session.id) {
            return Err(SessionError::BlankField { field: "id" });
        }
        if is_blank(&session.label) {
            return Err(SessionError::BlankField { field: "label" });
        }
        if session.expires_at > MAX_TIMESTAMP {
            return Err(SessionError::OutOfRange);
        }
        if session.expires_at <= now {
            return Err(SessionError::AlreadyExpired);
        }
        Ok(PermissionPolicy {
            session,
            requests: HashMap::new(),
            grants: Vec::new(),
            grant_index: HashMap::new(),
            ended: false,
        })
    }

    /// The session it serves.
    pub fn session(&self) -> &PermissionSession {
        &self.session
    }

    /// Whether [`PermissionPolicy::end_session`] was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn session_over(&self, now: Timestamp) -> bool {
        self.ended || now >= self.session.expires_at
    }

    /// Makes the permission widget for `request`; send its [`PermissionWidget::text`] to the
    /// person. `rng` makes its id unless the request names one.
    pub fn create_request(
        &mut self,
        now: Timestamp,
        request: PermissionRequest,
        rng: &mut Rng,
    ) -> Result<PermissionWidget, RequestError> {
        if self.session_over(now) {
            return Err(RequestError::SessionEnded);
        }
        for (field, value) in
            [("conversation_id", &request.conversation_id), ("user_id", &request.user_id), ("title", &request.title)]
        {
            if is_blank(value) {
                return Err(RequestError::BlankField { field });
            }
        }
        if let Some(field) = request.action.blank_field() {
            return Err(RequestError::BlankField { field });
        }
        let id = if request.widget_id.is_empty() { ids::uuid_v4(rng) } else { request.widget_id };
        if is_blank(&id) {
            return Err(RequestError::BlankField { field: "widget_id" });
        }
        if self.requests.contains_key(&id) {
            return Err(RequestError::DuplicateWidgetId { id });
        }
        let scopes = request.scopes.unwrap_or_else(|| vec![PermissionScope::Once]);
        if scopes.is_empty() {
            return Err(RequestError::NoScopes);
        }
        if let Some(scope) =
            scopes.iter().enumerate().find_map(|(at, scope)| scopes[..at].contains(scope).then_some(*scope))
        {
            return Err(RequestError::DuplicateScope { scope });
        }
        let deadline = request.expires_at.min(self.session.expires_at);
        if deadline <= now {
            return Err(RequestError::AlreadyExpired);
        }

        let mut session = Map::new();
        session.insert("id".into(), json!(self.session.id));
        session.insert("label".into(), json!(self.session.label));
        session.insert("expires_at".into(), json!(iso_time(self.session.expires_at)));
        let mut authorization = Map::new();
        authorization.insert("action".into(), json!(request.action.action));
        authorization.insert("resource".into(), json!(request.action.resource));
        authorization.insert("parameters".into(), request.action.parameters.clone());
        authorization.insert("expires_at".into(), json!(iso_time(deadline)));
        authorization.insert("session".into(), Value::Object(session));
        authorization.insert("revocable".into(), json!(true));
        let stored = Request {
            authorization,
            scopes,
            user_id: request.user_id,
            conversation_id: request.conversation_id,
            action_key: request.action.key(),
            action: request.action,
            expires_at: deadline,
            decision: RequestDecision::Pending,
            answers: VecDeque::new(),
        };

        let mut spec = Map::new();
        spec.insert("title".into(), json!(request.title));
        spec.insert("scopes".into(), stored.scopes.iter().map(|scope| json!(scope.as_str())).collect());
        spec.insert("authorization".into(), stored.authorization(AuthorizationStatus::Requested));
        if !request.body.is_empty() {
            spec.insert("body".into(), json!(request.body));
        }
        let mut payload = Map::new();
        payload.insert("type".into(), json!("widget.standard"));
        payload.insert("v".into(), json!(1));
        payload.insert("id".into(), json!(id));
        payload.insert("kind".into(), json!("permission"));
        payload.insert("expires_at".into(), json!(iso_time(deadline)));
        payload.insert("spec".into(), Value::Object(spec));

        tracing::debug!(request = %id, "permission requested");
        self.requests.insert(id.clone(), stored);
        Ok(PermissionWidget { id, payload })
    }

    /// Judges `message` as an answer to one of this policy's requests.
    ///
    /// Only what the SDK authenticated counts: the message's sender, conversation and
    /// encryption, never who the answer's value claims to be from. A refusal or dismissal is
    /// accepted at any time (it only takes authority away); a grant only while the request is
    /// pending, before its deadline and the session's end, for a scope it offered.
    pub fn receive_response(&mut self, now: Timestamp, message: &AgentMessage) -> Result<Decision, Rejection> {
        let Some(response) = &message.widget_response else {
            return Ok(Decision::Unrelated);
        };
        let session_over = self.session_over(now);
        let ended = self.ended;
        let Some(request) = self.requests.get_mut(&response.widget_ref) else {
            return Ok(Decision::Unrelated);
        };
        let request_id = response.widget_ref.clone();
        if !message.encrypted {
            tracing::debug!(request = %request_id, "permission answer refused: not encrypted");
            return Err(Rejection::Unencrypted);
        }
        if message.from != request.user_id || message.conversation_id != request.conversation_id {
            tracing::debug!(request = %request_id, "permission answer refused: another sender");
            return Err(Rejection::SenderMismatch);
        }
        if response.id.is_empty() {
            return Err(Rejection::InvalidResponse);
        }
        if request.answers.contains(&response.id) {
            return Ok(Decision::Duplicate { request_id });
        }
        let selection = response.value.as_ref().and_then(Value::as_object);
        let granted = selection.and_then(|selection| selection.get("granted")).and_then(Value::as_bool);
        if !response.cancelled && granted.is_none() {
            return Err(Rejection::InvalidResponse);
        }
        if response.cancelled || granted == Some(false) {
            request.remember(&response.id);
            if matches!(request.decision, RequestDecision::Granted | RequestDecision::Revoked) {
                self.revoke(&request_id);
                tracing::debug!(request = %request_id, "permission revoked by the person");
                return Ok(Decision::Revoked { request_id });
            }
            request.decision = RequestDecision::Denied;
            tracing::debug!(request = %request_id, "permission denied");
            return Ok(Decision::Denied { request_id });
        }
        if ended {
            return Err(Rejection::SessionEnded);
        }
        if session_over || now >= request.expires_at {
            return Err(Rejection::Expired);
        }
        if request.decision != RequestDecision::Pending {
            return Err(Rejection::AlreadyDecided);
        }
        let chosen = selection.and_then(|selection| selection.get("scope")).and_then(Value::as_str);
        let Some(scope) = request.scopes.iter().copied().find(|scope| Some(scope.as_str()) == chosen) else {
            return Err(Rejection::ScopeNotOffered);
        };
        request.remember(&response.id);
        request.decision = RequestDecision::Granted;
        let grant = PermissionGrant {
            id: request_id.clone(),
            request_id: request_id.clone(),
            conversation_id: request.conversation_id.clone(),
            user_id: request.user_id.clone(),
            session_id: self.session.id.clone(),
            scope,
            authorized_at: now,
            expires_at: request.expires_at,
            state: GrantState::Active,
        };
        tracing::debug!(request = %request_id, scope = scope.as_str(), "permission granted");
        self.grant_index.insert(request_id, self.grants.len());
        self.grants.push(grant.clone());
        Ok(Decision::Granted(grant))
    }

    /// Revokes grant `grant_id` (consumed ones too) so it admits no further run; a callback
    /// already running is not stopped. `false` when no grant has that id.
    pub fn revoke(&mut self, grant_id: &str) -> bool {
        let Some(&at) = self.grant_index.get(grant_id) else {
            return false;
        };
        let grant = &mut self.grants[at];
        grant.state = GrantState::Revoked;
        if let Some(request) = self.requests.get_mut(&grant.request_id) {
            request.decision = RequestDecision::Revoked;
        }
        true
    }

    /// Ends the session: every grant is revoked and no request can be made or granted again.
    pub fn end_session(&mut self) {
        self.ended = true;
        let ids: Vec<String> = self.grants.iter().map(|grant| grant.id.clone()).collect();
        for id in ids {
            self.revoke(&id);
        }
        tracing::debug!(session = %self.session.id, "permission session ended");
    }

    fn read_grant(&self, grant: &PermissionGrant, now: Timestamp) -> PermissionGrant {
        let mut grant = grant.clone();
        if grant.state == GrantState::Active && (now >= grant.expires_at || now >= self.session.expires_at) {
            grant.state = GrantState::Expired;
        }
        grant
    }

    /// Every grant, in the order granted, with its state at `now` (`list_grants`).
    pub fn grants(&self, now: Timestamp) -> Vec<PermissionGrant> {
        self.grants.iter().map(|grant| self.read_grant(grant, now)).collect()
    }

    /// Grant `grant_id` with its state at `now`.
    pub fn grant(&self, now: Timestamp, grant_id: &str) -> Option<PermissionGrant> {
        self.grant_index.get(grant_id).map(|&at| self.read_grant(&self.grants[at], now))
    }

    /// Where request `request_id` stands at `now`.
    pub fn status(&self, now: Timestamp, request_id: &str) -> Result<AuthorizationStatus, UnknownRequest> {
        let request =
            self.requests.get(request_id).ok_or_else(|| UnknownRequest { request_id: request_id.to_owned() })?;
        if let Some(grant) = self.grant(now, request_id) {
            return Ok(match grant.state {
                GrantState::Active => AuthorizationStatus::Granted,
                GrantState::Consumed => AuthorizationStatus::Consumed,
                GrantState::Revoked => AuthorizationStatus::Revoked,
                GrantState::Expired => AuthorizationStatus::Expired,
            });
        }
        Ok(match request.decision {
            RequestDecision::Denied => AuthorizationStatus::Denied,
            RequestDecision::Revoked => AuthorizationStatus::Revoked,
            _ if self.session_over(now) || now >= request.expires_at => AuthorizationStatus::Expired,
            _ => AuthorizationStatus::Requested,
        })
    }

    /// A `widget.update` showing request `request_id`'s status at `now`; send its
    /// [`StatusUpdate::text`] to the person. `rng` makes the update's id. It reports the
    /// policy's state, not whether an operation completed.
    pub fn create_widget_update(
        &self,
        now: Timestamp,
        request_id: &str,
        rng: &mut Rng,
    ) -> Result<StatusUpdate, UnknownRequest> {
        let status = self.status(now, request_id)?;
        let request =
            self.requests.get(request_id).ok_or_else(|| UnknownRequest { request_id: request_id.to_owned() })?;
        let id = ids::uuid_v4(rng);
        let mut spec = Map::new();
        spec.insert("authorization".into(), request.authorization(status));
        let mut patch = Map::new();
        patch.insert("spec".into(), Value::Object(spec));
        let mut payload = Map::new();
        payload.insert("type".into(), json!("widget.update"));
        payload.insert("v".into(), json!(1));
        payload.insert("id".into(), json!(id));
        payload.insert("ref".into(), json!(request_id));
        payload.insert("patch".into(), Value::Object(patch));
        Ok(StatusUpdate { id, status, payload })
    }

    /// Checks that grant `grant_id` is live at `now` and covers `context`, and consumes it if
    /// it is a `once` grant: the action as granted, to run now.
    ///
    /// This is [`PermissionPolicy::run_authorized`] for callbacks that cannot run inside it
    /// (an async operation, with the policy behind a lock that must not be held across it): the
    /// grant is checked and consumed before the operation starts, and a failed operation does
    /// not give a `once` grant back.
    pub fn authorize(
        &mut self,
        now: Timestamp,
        grant_id: &str,
        context: &PermissionContext,
    ) -> Result<PermissionAction, NotAuthorized> {
        let &at = self.grant_index.get(grant_id).ok_or(NotAuthorized::NoGrant)?;
        let session_over = self.session_over(now);
        let grant = &mut self.grants[at];
        let request = self.requests.get(&grant.request_id).ok_or(NotAuthorized::NoGrant)?;
        if session_over || now >= request.expires_at {
            return Err(NotAuthorized::ExpiredOrSessionEnded);
        }
        if grant.state != GrantState::Active {
            return Err(NotAuthorized::NotActive { state: grant.state });
        }
        if context.user_id != grant.user_id
            || context.conversation_id != grant.conversation_id
            || context.session_id != grant.session_id
        {
            return Err(NotAuthorized::NotCovered);
        }
        if let Some(field) = context.action.blank_field() {
            return Err(NotAuthorized::BlankAction { field });
        }
        if context.action.key() != request.action_key {
            return Err(NotAuthorized::NotCovered);
        }
        if grant.scope == PermissionScope::Once {
            grant.state = GrantState::Consumed;
        }
        tracing::debug!(grant = %grant.id, scope = grant.scope.as_str(), "permission admitted a run");
        Ok(request.action.clone())
    }

    /// Runs `operation` only if grant `grant_id` is live at `now` and covers `context`,
    /// consuming a `once` grant first; the operation receives the action as granted (use it,
    /// not other data that may have changed since). Nothing runs otherwise.
    pub fn run_authorized<T>(
        &mut self,
        now: Timestamp,
        grant_id: &str,
        context: &PermissionContext,
        operation: impl FnOnce(PermissionAction) -> T,
    ) -> Result<T, NotAuthorized> {
        let action = self.authorize(now, grant_id, context)?;
        Ok(operation(action))
    }
}

/// Whether the official policy calls `value` empty: nothing but Python whitespace, which also
/// counts the four information separators (U+001C to U+001F) that Rust does not.
fn is_blank(value: &str) -> bool {
    value.chars().all(|c| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// A time the policy accepted, written: every time it holds is at most the session's expiry,
/// which [`PermissionPolicy::new`] bounds by [`MAX_TIMESTAMP`].
fn iso_time(at: Timestamp) -> String {
    iso::format(at.min(MAX_TIMESTAMP)).unwrap_or_default()
}

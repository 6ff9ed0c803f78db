//! The HTTP API: routes, authentication, body limits, and JSON answers (errors included).

use crate::error::ApiError;
use crate::server::App;
use crate::socket;
use crate::state::Party;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use pacerelle_core::wire::http::{
    AgentConnectRequest, AgentConnectStarted, BlobUploaded, GroupKeyEnvelope, InstallationToken, OneTimePrekeysBody,
    PrekeyBundleBody, RuntimeToken,
};
use pacerelle_core::wire::person::{
    ConversationCreated, CreateConversation, DistributeGroupKeys, FetchedBundle, PublishIdentity,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Every route of the relay.
pub(crate) fn router(app: App) -> Router {
    let blob_limit = DefaultBodyLimit::max(app.limits.max_blob_bytes);
    Router::new()
        .route("/agent/prekey-bundle", put(publish_bundle))
        .route("/agent/one-time-prekeys", post(add_one_time_prekeys))
        .route("/agent/blobs", post(agent_upload).layer(blob_limit))
        .route("/agent/blobs/{blob_id}", get(agent_download))
        .route("/agent/group-keys", get(agent_group_keys))
        .route("/ws/agent", get(agent_socket))
        .route("/person/conversations", post(create_conversation))
        .route("/person/agents/{agent_id}/prekey-bundle", get(fetch_bundle))
        .route("/person/identity", put(publish_identity))
        .route("/person/blobs", post(person_upload).layer(blob_limit))
        .route("/person/blobs/{blob_id}", get(person_download))
        .route("/person/group-keys", post(distribute_group_keys).get(person_group_keys))
        .route("/person/prekey-bundle", put(publish_person_bundle))
        .route("/person/one-time-prekeys", post(add_person_one_time_prekeys))
        .route("/person/persons/{person_id}/prekey-bundle", get(fetch_person_bundle))
        .route("/ws/person", get(person_socket))
        .route("/agent-connect/requests", post(connect_requests))
        .route("/agent-connect/authorize/{request_id}", get(connect_authorize))
        .route("/agent-connect/token", post(connect_token))
        .route("/agent-connect/runtime-token", post(connect_runtime_token))
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(app.limits.max_json_bytes))
        .with_state(app)
}

type Body = Result<Bytes, BytesRejection>;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

fn agent(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    bearer(headers).and_then(|token| app.lock().agent_by_token(token)).ok_or(ApiError::Unauthorized)
}

fn person(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    bearer(headers).and_then(|token| app.lock().person_by_token(token)).ok_or(ApiError::Unauthorized)
}

/// The body's bytes, or 413/400.
fn bytes(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

/// The body parsed as `T`, or 413/400 with serde's reason.
fn json_body<T: DeserializeOwned>(app: &App, body: Body) -> Result<T, ApiError> {
    let bytes = bytes(body, app.limits.max_json_bytes)?;
    serde_json::from_slice(&bytes).map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))
}

async fn publish_bundle(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let agent = agent(&app, &headers)?;
    let bundle: PrekeyBundleBody = json_body(&app, body)?;
    app.lock().publish_bundle(&agent, bundle);
    Ok(Json(json!({"status": "ok"})))
}

async fn add_one_time_prekeys(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let agent = agent(&app, &headers)?;
    let keys: OneTimePrekeysBody = json_body(&app, body)?;
    let held = app.lock().add_one_time_prekeys(&agent, keys.one_time_prekeys, app.limits.max_one_time_prekeys);
    Ok(Json(json!({"held": held})))
}

fn upload(app: &App, body: Body) -> Result<Json<BlobUploaded>, ApiError> {
    let bytes = bytes(body, app.limits.max_blob_bytes)?;
    let (id, sha256) = app.lock().store_blob(bytes.to_vec());
    Ok(Json(BlobUploaded { id, sha256: Some(sha256) }))
}

fn download(app: &App, blob_id: &str) -> Result<Response, ApiError> {
    let state = app.lock();
    let blob = state.blob(blob_id).ok_or(ApiError::NotFound("blob"))?;
    Ok(([(CONTENT_TYPE, "application/octet-stream")], blob.to_vec()).into_response())
}

async fn agent_upload(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Json<BlobUploaded>, ApiError> {
    agent(&app, &headers)?;
    upload(&app, body)
}

async fn agent_download(
    State(app): State<App>,
    headers: HeaderMap,
    Path(blob_id): Path<String>,
) -> Result<Response, ApiError> {
    agent(&app, &headers)?;
    download(&app, &blob_id)
}

#[derive(Deserialize)]
struct GroupKeysQuery {
    conversation_id: String,
}

async fn agent_group_keys(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<GroupKeysQuery>, QueryRejection>,
) -> Result<Json<Vec<GroupKeyEnvelope>>, ApiError> {
    let agent = agent(&app, &headers)?;
    let Query(query) = query.map_err(|_| ApiError::BadRequest("conversation_id is required".into()))?;
    Ok(Json(app.lock().group_keys_for(&agent, &query.conversation_id)?))
}

async fn create_conversation(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ConversationCreated>, ApiError> {
    let person = person(&app, &headers)?;
    let request: CreateConversation = json_body(&app, body)?;
    let conversation_id = app.lock().create_conversation(&person, request)?;
    Ok(Json(ConversationCreated { conversation_id }))
}

async fn fetch_bundle(
    State(app): State<App>,
    headers: HeaderMap,
    Path(agent_id): Path<String>,
) -> Result<Json<FetchedBundle>, ApiError> {
    person(&app, &headers)?;
    Ok(Json(app.lock().fetch_bundle(&agent_id)?))
}

async fn publish_identity(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Json<Value>, ApiError> {
    let person = person(&app, &headers)?;
    let request: PublishIdentity = json_body(&app, body)?;
    app.lock().publish_identity(&person, request.identity_key);
    Ok(Json(json!({"status": "ok"})))
}

async fn person_upload(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Json<BlobUploaded>, ApiError> {
    person(&app, &headers)?;
    upload(&app, body)
}

async fn person_download(
    State(app): State<App>,
    headers: HeaderMap,
    Path(blob_id): Path<String>,
) -> Result<Response, ApiError> {
    person(&app, &headers)?;
    download(&app, &blob_id)
}

async fn distribute_group_keys(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let person = person(&app, &headers)?;
    let bytes = bytes(body, app.limits.max_json_bytes)?;
    let request: DistributeGroupKeys =
        serde_json::from_slice(&bytes).map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))?;
    let mut state = app.lock();
    // Kept for tests that check no group key crossed the relay in the clear.
    state.observed.push(bytes.to_vec());
    let stored = state.distribute_group_keys(&person, request)?;
    Ok(Json(json!({"stored": stored})))
}

async fn person_group_keys(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<GroupKeysQuery>, QueryRejection>,
) -> Result<Json<Vec<GroupKeyEnvelope>>, ApiError> {
    let person = person(&app, &headers)?;
    let Query(query) = query.map_err(|_| ApiError::BadRequest("conversation_id is required".into()))?;
    Ok(Json(app.lock().group_keys_for(&person, &query.conversation_id)?))
}

async fn publish_person_bundle(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let person = person(&app, &headers)?;
    let bundle: PrekeyBundleBody = json_body(&app, body)?;
    app.lock().publish_person_bundle(&person, bundle);
    Ok(Json(json!({"status": "ok"})))
}

async fn add_person_one_time_prekeys(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let person = person(&app, &headers)?;
    let keys: OneTimePrekeysBody = json_body(&app, body)?;
    let held = app.lock().add_person_one_time_prekeys(&person, keys.one_time_prekeys, app.limits.max_one_time_prekeys);
    Ok(Json(json!({"held": held})))
}

async fn fetch_person_bundle(
    State(app): State<App>,
    headers: HeaderMap,
    Path(person_id): Path<String>,
) -> Result<Json<FetchedBundle>, ApiError> {
    let caller = person(&app, &headers)?;
    Ok(Json(app.lock().fetch_person_bundle(&caller, &person_id)?))
}

#[derive(Deserialize)]
struct SocketQuery {
    token: Option<String>,
    device_id: Option<String>,
}

type Upgrade = Result<axum::extract::WebSocketUpgrade, WebSocketUpgradeRejection>;

async fn agent_socket(
    State(app): State<App>,
    query: Result<Query<SocketQuery>, QueryRejection>,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::Unauthorized)?;
    let agent = query.token.and_then(|token| app.lock().agent_by_token(&token)).ok_or(ApiError::Unauthorized)?;
    let upgrade = upgrade.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    Ok(socket::accept(app, upgrade, Party::Agent(agent), None))
}

async fn person_socket(
    State(app): State<App>,
    query: Result<Query<SocketQuery>, QueryRejection>,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| ApiError::Unauthorized)?;
    let person = query.token.and_then(|token| app.lock().person_by_token(&token)).ok_or(ApiError::Unauthorized)?;
    let upgrade = upgrade.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let device = query.device_id.filter(|device| !device.is_empty());
    Ok(socket::accept(app, upgrade, Party::Person(person), device))
}

// ---- Agent Connect ----

/// Keeps an `/agent-connect/` request as it arrived, for [`crate::RelayHandle::connect_requests`].
fn record(app: &App, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
    let headers = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let request = crate::connect::RecordedRequest {
        method: method.as_str().to_owned(),
        path: uri.path_and_query().map_or_else(|| uri.path().to_owned(), |path| path.as_str().to_owned()),
        headers,
        body: body.to_vec(),
    };
    app.lock().connect.recorded.push(request);
}

async fn connect_requests(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AgentConnectStarted>, ApiError> {
    let bytes = bytes(body, app.limits.max_json_bytes)?;
    record(&app, &method, &uri, &headers, &bytes);
    let key = bearer(&headers).ok_or(ApiError::Unauthorized)?;
    let request: AgentConnectRequest =
        serde_json::from_slice(&bytes).map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))?;
    let mut state = app.lock();
    let request_id = state.connect.start(key, request)?;
    let ttl = state.connect.ttls.request;
    Ok(Json(AgentConnectStarted {
        authorization_url: format!("{}/agent-connect/authorize/{request_id}", app.base_url),
        request_id,
        expires_at: crate::connect::rfc3339(std::time::SystemTime::now() + ttl),
        expires_in: ttl.as_secs(),
    }))
}

/// The owner's approval page, scripted: with [`crate::Approval::Auto`] opening it approves and
/// redirects (303) to the app with the code; with `Manual` the request waits for
/// [`crate::RelayHandle::approve_agent_connect`].
async fn connect_authorize(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(request_id): Path<String>,
) -> Result<Response, ApiError> {
    record(&app, &method, &uri, &headers, &[]);
    let mut state = app.lock();
    match state.connect.approval_of(&request_id) {
        None => Err(ApiError::NotFound("connect request")),
        Some(crate::connect::Approval::Manual) => Err(ApiError::Forbidden("waiting for the owner's approval")),
        Some(crate::connect::Approval::Auto) => {
            let location = state.connect.approve(&request_id)?;
            Ok((StatusCode::SEE_OTHER, [(axum::http::header::LOCATION, location)]).into_response())
        }
    }
}

async fn connect_token(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<InstallationToken>, ApiError> {
    let bytes = bytes(body, app.limits.max_json_bytes)?;
    record(&app, &method, &uri, &headers, &bytes);
    let form_type = pacerelle_core::connect::FORM_CONTENT_TYPE;
    let content_type = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if content_type.split(';').next().map(str::trim) != Some(form_type) {
        return Err(ApiError::BadRequest(format!("invalid_request: the body must be {form_type}")));
    }
    let form = crate::connect::parse_form(&bytes)?;
    let mut state = app.lock();
    let approved = state.connect.exchange(&form)?;
    let agent_id = format!("agent-{}", &crate::connect::secret()[..12]);
    // The agent exists from now on, but no token of it is accepted until a runtime token.
    state.set_agent_token(&agent_id, &crate::connect::secret(), Some(std::time::Instant::now()));
    let conversation = pacerelle_core::wire::person::CreateConversation {
        members: vec![agent_id.clone()],
        group: false,
        conversation_id: None,
    };
    let conversation_id = state.create_conversation(&approved.owner_id, conversation)?;
    tracing::info!(client = %approved.client_id, agent = %agent_id, owner = %approved.owner_id, name = %approved.agent_name, "agent installed");
    let installation = crate::connect::Installation {
        agent_id: agent_id.clone(),
        owner_id: approved.owner_id.clone(),
        conversation_id: conversation_id.clone(),
    };
    let installation_token = state.connect.install(installation);
    Ok(Json(InstallationToken {
        installation_token,
        token_type: "Bearer".into(),
        agent_id,
        owner_id: approved.owner_id,
        conversation_id,
        scope: pacerelle_core::connect::SCOPE.into(),
    }))
}

async fn connect_runtime_token(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RuntimeToken>, ApiError> {
    let bytes = bytes(body, app.limits.max_json_bytes)?;
    record(&app, &method, &uri, &headers, &bytes);
    let mut state = app.lock();
    let installation =
        bearer(&headers).and_then(|token| state.connect.installation(token)).ok_or(ApiError::Unauthorized)?;
    let ttl = state.connect.ttls.runtime_token;
    let agent_token = format!("art_{}", crate::connect::secret());
    state.set_agent_token(&installation.agent_id, &agent_token, Some(std::time::Instant::now() + ttl));
    Ok(Json(RuntimeToken {
        agent_id: installation.agent_id,
        owner_id: installation.owner_id,
        conversation_id: installation.conversation_id,
        agent_token,
        expires_in: ttl.as_secs(),
    }))
}

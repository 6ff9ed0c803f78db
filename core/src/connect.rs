//! Agent Connect, without I/O: builds the three requests a third-party app makes to install an
//! agent for a user (OAuth 2.0 authorization code with PKCE S256, PROTOCOL.md) and parses
//! their answers.
//!
//! The flow, as the official SDK's `begin_agent_connect`, `exchange_agent_connect_code` and
//! `request_agent_runtime_token` run it:
//! 1. [`begin`]: `POST /agent-connect/requests` with the app's connect key. The answer
//!    ([`PendingConnect::finish`]) is a [`ConnectStart`]: the URL where the user approves, and
//!    the PKCE verifier and `state` the caller keeps until the user comes back.
//! 2. [`CodeExchange::request`]: `POST /agent-connect/token`, form-encoded, with the code the
//!    user came back with and the verifier. The answer ([`parse_installation_token`]) is a
//!    long-lived [`InstallationToken`].
//! 3. [`runtime_token_request`]: `POST /agent-connect/runtime-token` with the installation
//!    token. The answer ([`parse_runtime_token`]) is a short-lived [`RuntimeToken`]: the agent's
//!    id and token for `ClientConfig`, or for a running client's `set_token`.
//!
//! Each request is a [`ConnectCall`]: the core's [`HttpRequest`] plus the bearer credential it
//! needs (the connect key, the installation token, or none), since these calls are not made
//! with the agent's own token. A runtime sends it with the HTTP client it already has and
//! hands the [`HttpResponse`] back to the parser.
//!
//! Why the shapes are what they are: the verifier is 64 random bytes in unpadded base64url
//! (86 characters), the `state` 32 (43 characters), exactly what the official SDK draws
//! (`secrets.token_urlsafe`); the token form is encoded as Python's `urlencode` does (space as
//! `+`, only `A-Z a-z 0-9 _ . - ~` left as they are), so that a server sees the same bytes
//! from both SDKs. The parsers are stricter than the official SDK, which coerces whatever it
//! finds with `str()` and `int()`: a field of the wrong JSON type is an error here, named.
//! Secrets (verifier, code, tokens, connect key) are wiped when dropped and never printed by
//! `Debug`.

use crate::Rng;
use crate::wire::http::{HttpMethod, HttpRequest, HttpResponse, RequestId};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// The scope every connect request asks for.
pub const SCOPE: &str = "myagents:agent-connect";
/// The only PKCE challenge method used (and accepted by the development relay).
pub const CHALLENGE_METHOD: &str = "S256";
/// The `grant_type` of the code exchange.
pub const GRANT_TYPE: &str = "authorization_code";
/// Random bytes in a verifier (the official SDK's `secrets.token_urlsafe(64)`).
pub const VERIFIER_RANDOM_BYTES: usize = 64;
/// Characters in a verifier made here: 64 bytes in unpadded base64url.
pub const VERIFIER_LEN: usize = 86;
/// Random bytes in a `state` made here (`secrets.token_urlsafe(32)`): 43 characters.
pub const STATE_RANDOM_BYTES: usize = 32;
/// Characters in a challenge: a SHA-256 digest in unpadded base64url.
pub const CHALLENGE_LEN: usize = 43;
/// Shortest verifier RFC 7636 allows.
pub const MIN_VERIFIER_LEN: usize = 43;
/// Longest verifier RFC 7636 allows.
pub const MAX_VERIFIER_LEN: usize = 128;
/// Largest answer body read; the answers are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest relay error reason kept in a [`ConnectError::Refused`] (in characters).
pub const MAX_REASON_CHARS: usize = 512;
/// `POST`: start a connect request.
pub const REQUESTS_PATH: &str = "/agent-connect/requests";
/// `POST`: exchange the code for an installation token.
pub const TOKEN_PATH: &str = "/agent-connect/token";
/// `POST`: exchange the installation token for a runtime token.
pub const RUNTIME_TOKEN_PATH: &str = "/agent-connect/runtime-token";
/// Content type of the start request.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// Content type of the code exchange.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Which of the three calls an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectStep {
    /// `POST /agent-connect/requests`.
    Begin,
    /// `POST /agent-connect/token`.
    Exchange,
    /// `POST /agent-connect/runtime-token`.
    RuntimeToken,
}

impl std::fmt::Display for ConnectStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectStep::Begin => "POST /agent-connect/requests",
            ConnectStep::Exchange => "POST /agent-connect/token",
            ConnectStep::RuntimeToken => "POST /agent-connect/runtime-token",
        })
    }
}

/// Why an Agent Connect request could not be built, or its answer not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The server answered with an error status.
    #[error("{step} refused (HTTP {status}){}", reason.as_ref().map(|reason| format!(": {reason}")).unwrap_or_default())]
    Refused {
        /// The call.
        step: ConnectStep,
        /// Its status.
        status: u16,
        /// The server's `{"error": ...}`, when it gave one (cut to [`MAX_REASON_CHARS`]).
        reason: Option<String>,
    },
    /// The answer is larger than [`MAX_ANSWER_BYTES`].
    #[error("{step}: answer of {len} bytes exceeds {max}")]
    TooLarge {
        /// The call.
        step: ConnectStep,
        /// The answer's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The answer is not JSON.
    #[error("{step}: answer is not JSON")]
    NotJson {
        /// The call.
        step: ConnectStep,
    },
    /// The answer is JSON but not an object.
    #[error("{step}: answer is not a JSON object")]
    NotAnObject {
        /// The call.
        step: ConnectStep,
    },
    /// A field the answer must have is missing (or `null`).
    #[error("{step}: answer has no `{field}`")]
    MissingField {
        /// The call.
        step: ConnectStep,
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("{step}: `{field}` is not {expected}")]
    WrongType {
        /// The call.
        step: ConnectStep,
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// A field has the right type but an unusable value.
    #[error("{step}: `{field}` {reason}")]
    InvalidField {
        /// The call.
        step: ConnectStep,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A PKCE verifier handed in is not one (RFC 7636: 43 to 128 of `A-Z a-z 0-9 - . _ ~`).
    #[error("the code verifier is not 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    InvalidVerifier,
    /// A credential handed in (connect key, installation token) is empty or cannot travel in
    /// an `Authorization` header (only visible ASCII can). Its value is never repeated.
    #[error("the {what} is empty or not visible ASCII")]
    InvalidCredential {
        /// Which credential.
        what: &'static str,
    },
    /// An input the request needs is empty.
    #[error("`{field}` is empty")]
    EmptyInput {
        /// The input.
        field: &'static str,
    },
    /// The `state` the user came back with is not the one this request was started with: the
    /// answer may be forged, and must not be exchanged.
    #[error("the returned state does not match the one sent")]
    StateMismatch,
}

/// A PKCE S256 pair: the verifier (secret, kept by the caller) and its challenge (sent).
#[derive(Clone)]
pub struct Pkce {
    verifier: Zeroizing<String>,
    challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce").field("verifier", &"<redacted>").field("challenge", &self.challenge).finish()
    }
}

impl Pkce {
    /// A fresh pair: [`VERIFIER_RANDOM_BYTES`] from `rng`, as unpadded base64url.
    pub fn generate(rng: &mut Rng) -> Self {
        let mut bytes = Zeroizing::new([0u8; VERIFIER_RANDOM_BYTES]);
        rng.fill_bytes(bytes.as_mut());
        let verifier = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
        let challenge = challenge_of(&verifier);
        Pkce { verifier, challenge }
    }

    /// The pair for a verifier made elsewhere, checked against RFC 7636's shape.
    pub fn from_verifier(verifier: &str) -> Result<Self, ConnectError> {
        if !is_valid_verifier(verifier) {
            return Err(ConnectError::InvalidVerifier);
        }
        Ok(Pkce { verifier: Zeroizing::new(verifier.to_owned()), challenge: challenge_of(verifier) })
    }

    /// The verifier (secret).
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// The challenge: unpadded base64url of the verifier's SHA-256.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

/// The S256 challenge of `verifier`: unpadded base64url of its SHA-256 (RFC 7636 §4.2).
pub fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` has RFC 7636's shape: 43 to 128 unreserved characters.
pub fn is_valid_verifier(verifier: &str) -> bool {
    (MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&verifier.len()) && verifier.bytes().all(is_unreserved)
}

/// Whether `verifier` is the one `challenge` was made from, compared in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    bool::from(challenge_of(verifier).as_bytes().ct_eq(challenge.as_bytes()))
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Whether `value` can be sent as a bearer credential: non-empty visible ASCII.
fn is_credential(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Random bytes from `rng` as unpadded base64url (Python's `secrets.token_urlsafe(n)`).
fn token_urlsafe(rng: &mut Rng, bytes: usize) -> String {
    let mut raw = Zeroizing::new(vec![0u8; bytes]);
    rng.fill_bytes(raw.as_mut_slice());
    URL_SAFE_NO_PAD.encode(raw.as_slice())
}

/// `application/x-www-form-urlencoded`, as Python's `urllib.parse.urlencode` writes it: space
/// as `+`, `A-Z a-z 0-9 _ . - ~` kept, every other byte as `%XX` (upper case).
pub fn form_urlencode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    fn push(out: &mut String, value: &str) {
        for byte in value.bytes() {
            match byte {
                b' ' => out.push('+'),
                byte if is_unreserved(byte) => out.push(char::from(byte)),
                byte => out.push_str(&format!("%{byte:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (index, (name, value)) in pairs.into_iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        push(&mut out, name);
        out.push('=');
        push(&mut out, value);
    }
    out
}

/// One Agent Connect call: the request, and the bearer credential it is made with (none for
/// the code exchange). The runtime adds the base URL and `User-Agent`, and
/// `Authorization: Bearer <bearer>` when there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectCall {
    /// Which call it is.
    pub step: ConnectStep,
    /// Method, path, content type and body. Its `id` is always `RequestId(0)`: these calls
    /// are answered directly, not through a state machine.
    pub request: HttpRequest,
    bearer: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for ConnectCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectCall")
            .field("step", &self.step)
            .field("request", &self.request)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ConnectCall {
    /// The bearer credential (secret), when the call needs one.
    pub fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref().map(String::as_str)
    }

    /// The body as text (the bodies of these calls are JSON or a form, so UTF-8); it may hold
    /// secrets (the code and verifier of the exchange).
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.request.body).unwrap_or_default()
    }
}

/// What the app says about itself and the agent when it starts a connect request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectApp {
    /// The app's client id, registered with its connect key.
    pub client_id: String,
    /// Where the user is sent back with the code; must be registered for `client_id`.
    pub redirect_uri: String,
    /// The agent's display name.
    pub agent_name: String,
    /// The agent's description (empty by default, as in the official SDK).
    pub agent_description: String,
    /// The `state` to send; `None` (or empty, as the official SDK treats it) draws a random one.
    pub state: Option<String>,
}

impl ConnectApp {
    /// An app with an empty description and a random `state`.
    pub fn new(client_id: impl Into<String>, redirect_uri: impl Into<String>, agent_name: impl Into<String>) -> Self {
        ConnectApp {
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            agent_name: agent_name.into(),
            agent_description: String::new(),
            state: None,
        }
    }

    /// Sets the agent's description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.agent_description = description.into();
        self
    }

    /// Sets the `state` instead of drawing one.
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }
}

/// Builds `POST /agent-connect/requests`: a fresh PKCE pair and `state` from `rng`, the
/// challenge sent with [`SCOPE`] and [`CHALLENGE_METHOD`], authenticated with `connect_key`.
/// Keep the [`PendingConnect`] to read the answer: it holds the verifier and the state.
pub fn begin(
    app: &ConnectApp,
    connect_key: &str,
    rng: &mut Rng,
) -> Result<(ConnectCall, PendingConnect), ConnectError> {
    if !is_credential(connect_key) {
        return Err(ConnectError::InvalidCredential { what: "connect key" });
    }
    for (field, value) in
        [("client_id", &app.client_id), ("redirect_uri", &app.redirect_uri), ("agent_name", &app.agent_name)]
    {
        if value.is_empty() {
            return Err(ConnectError::EmptyInput { field });
        }
    }
    let pkce = Pkce::generate(rng);
    let state = match app.state.as_deref() {
        Some(state) if !state.is_empty() => state.to_owned(),
        _ => token_urlsafe(rng, STATE_RANDOM_BYTES),
    };
    // The official SDK's key order and `json.dumps` layout, so that a server sees the same
    // bytes from both SDKs.
    let mut body = Map::new();
    body.insert("client_id".into(), Value::from(app.client_id.as_str()));
    body.insert("redirect_uri".into(), Value::from(app.redirect_uri.as_str()));
    body.insert("state".into(), Value::from(state.as_str()));
    body.insert("code_challenge".into(), Value::from(pkce.challenge()));
    body.insert("code_challenge_method".into(), Value::from(CHALLENGE_METHOD));
    body.insert("agent_name".into(), Value::from(app.agent_name.as_str()));
    body.insert("agent_description".into(), Value::from(app.agent_description.as_str()));
    body.insert("scope".into(), Value::from(SCOPE));
    let call = ConnectCall {
        step: ConnectStep::Begin,
        request: HttpRequest {
            id: RequestId(0),
            method: HttpMethod::Post,
            path: REQUESTS_PATH.to_owned(),
            content_type: Some(JSON_CONTENT_TYPE),
            body: crate::pyjson::dumps(&Value::Object(body), crate::pyjson::Style::DEFAULT).into_bytes(),
        },
        bearer: Some(Zeroizing::new(connect_key.to_owned())),
    };
    Ok((call, PendingConnect { state, code_verifier: pkce.verifier }))
}

/// A started connect request waiting for its answer: the verifier and `state` it was made with.
#[derive(Clone)]
pub struct PendingConnect {
    state: String,
    code_verifier: Zeroizing<String>,
}

impl std::fmt::Debug for PendingConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConnect").field("state", &self.state).field("code_verifier", &"<redacted>").finish()
    }
}

impl PendingConnect {
    /// The `state` sent.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Reads the answer to the [`begin`] call.
    pub fn finish(self, response: &HttpResponse) -> Result<ConnectStart, ConnectError> {
        let step = ConnectStep::Begin;
        let body = answer_object(step, response)?;
        Ok(ConnectStart {
            request_id: string_field(step, &body, "request_id")?,
            authorization_url: string_field(step, &body, "authorization_url")?,
            expires_at: string_field(step, &body, "expires_at")?,
            expires_in: count_field(step, &body, "expires_in")?,
            state: self.state,
            code_verifier: self.code_verifier,
        })
    }
}

/// A started connect request (the official `AgentConnectStart`): send the user to
/// `authorization_url`; when they come back with a code and a state, check the state
/// ([`ConnectStart::check_state`]) and exchange the code with [`ConnectStart::code_verifier`].
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectStart {
    /// The pending request.
    pub request_id: String,
    /// Where the user approves the installation.
    pub authorization_url: String,
    /// When the request lapses, as the server wrote it (RFC 3339).
    pub expires_at: String,
    /// Seconds until it lapses.
    pub expires_in: u64,
    /// The `state` sent; the user comes back with it.
    pub state: String,
    code_verifier: Zeroizing<String>,
}

impl std::fmt::Debug for ConnectStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectStart")
            .field("request_id", &self.request_id)
            .field("authorization_url", &self.authorization_url)
            .field("expires_at", &self.expires_at)
            .field("expires_in", &self.expires_in)
            .field("state", &self.state)
            .field("code_verifier", &"<redacted>")
            .finish()
    }
}

impl ConnectStart {
    /// The PKCE verifier (secret): keep it until the code is exchanged.
    pub fn code_verifier(&self) -> &str {
        &self.code_verifier
    }

    /// Checks, in constant time, that the user came back with this request's `state`.
    pub fn check_state(&self, returned: &str) -> Result<(), ConnectError> {
        if bool::from(self.state.as_bytes().ct_eq(returned.as_bytes())) {
            Ok(())
        } else {
            Err(ConnectError::StateMismatch)
        }
    }

    /// The code exchange for `code`, with this request's verifier.
    pub fn exchange(&self, app: &ConnectApp, code: &str) -> CodeExchange {
        CodeExchange::new(&app.client_id, &app.redirect_uri, code, &self.code_verifier)
    }
}

/// What `POST /agent-connect/token` sends (the official `exchange_agent_connect_code`'s
/// arguments): the code the user came back with, the verifier, and the app's client id and
/// redirect URI as sent at the start.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeExchange {
    /// The app's client id.
    pub client_id: String,
    /// The redirect URI sent at the start.
    pub redirect_uri: String,
    code: Zeroizing<String>,
    code_verifier: Zeroizing<String>,
}

impl std::fmt::Debug for CodeExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeExchange")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("code", &"<redacted>")
            .field("code_verifier", &"<redacted>")
            .finish()
    }
}

impl CodeExchange {
    /// An exchange of `code` proven by `code_verifier`.
    pub fn new(client_id: impl Into<String>, redirect_uri: impl Into<String>, code: &str, code_verifier: &str) -> Self {
        CodeExchange {
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            code: Zeroizing::new(code.to_owned()),
            code_verifier: Zeroizing::new(code_verifier.to_owned()),
        }
    }

    /// Builds `POST /agent-connect/token`: the form `grant_type`, `client_id`,
    /// `redirect_uri`, `code`, `code_verifier`, in that order, without a bearer.
    pub fn request(&self) -> Result<ConnectCall, ConnectError> {
        if !is_valid_verifier(&self.code_verifier) {
            return Err(ConnectError::InvalidVerifier);
        }
        for (field, value) in
            [("code", self.code.as_str()), ("client_id", &self.client_id), ("redirect_uri", &self.redirect_uri)]
        {
            if value.is_empty() {
                return Err(ConnectError::EmptyInput { field });
            }
        }
        let form = Zeroizing::new(form_urlencode([
            ("grant_type", GRANT_TYPE),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code", self.code.as_str()),
            ("code_verifier", self.code_verifier.as_str()),
        ]));
        Ok(ConnectCall {
            step: ConnectStep::Exchange,
            request: HttpRequest {
                id: RequestId(0),
                method: HttpMethod::Post,
                path: TOKEN_PATH.to_owned(),
                content_type: Some(FORM_CONTENT_TYPE),
                body: form.as_bytes().to_vec(),
            },
            bearer: None,
        })
    }
}

/// An installation (the official `AgentConnectInstallationToken`): the long-lived token that
/// gets runtime tokens, and whom and what it installed.
#[derive(Clone, PartialEq, Eq)]
pub struct InstallationToken {
    /// The token type (`Bearer`).
    pub token_type: String,
    /// The installed agent.
    pub agent_id: String,
    /// The user who installed it.
    pub owner_id: String,
    /// The agent's conversation with its owner.
    pub conversation_id: String,
    /// The granted scope.
    pub scope: String,
    installation_token: Zeroizing<String>,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("token_type", &self.token_type)
            .field("agent_id", &self.agent_id)
            .field("owner_id", &self.owner_id)
            .field("conversation_id", &self.conversation_id)
            .field("scope", &self.scope)
            .field("installation_token", &"<redacted>")
            .finish()
    }
}

impl InstallationToken {
    /// The installation token (secret): store it safely, it gets runtime tokens.
    pub fn installation_token(&self) -> &str {
        &self.installation_token
    }

    /// The runtime-token request for this installation.
    pub fn runtime_token_request(&self) -> Result<ConnectCall, ConnectError> {
        runtime_token_request(&self.installation_token)
    }
}

/// Reads the answer to the code exchange.
pub fn parse_installation_token(response: &HttpResponse) -> Result<InstallationToken, ConnectError> {
    let step = ConnectStep::Exchange;
    let body = answer_object(step, response)?;
    Ok(InstallationToken {
        installation_token: credential_field(step, &body, "installation_token")?,
        token_type: string_field(step, &body, "token_type")?,
        agent_id: string_field(step, &body, "agent_id")?,
        owner_id: string_field(step, &body, "owner_id")?,
        conversation_id: string_field(step, &body, "conversation_id")?,
        scope: string_field(step, &body, "scope")?,
    })
}

/// Builds `POST /agent-connect/runtime-token`: an empty body (labelled as a form, as the
/// official SDK's is), the installation token as bearer.
pub fn runtime_token_request(installation_token: &str) -> Result<ConnectCall, ConnectError> {
    if !is_credential(installation_token) {
        return Err(ConnectError::InvalidCredential { what: "installation token" });
    }
    Ok(ConnectCall {
        step: ConnectStep::RuntimeToken,
        request: HttpRequest {
            id: RequestId(0),
            method: HttpMethod::Post,
            path: RUNTIME_TOKEN_PATH.to_owned(),
            // The official SDK sends an empty body through urllib, which labels any body it is
            // given as a form; a server sees the same headers from both SDKs.
            content_type: Some(FORM_CONTENT_TYPE),
            body: Vec::new(),
        },
        bearer: Some(Zeroizing::new(installation_token.to_owned())),
    })
}

/// A runtime token (the official `AgentConnectRuntimeToken`): what an agent connects with,
/// until it expires. Hand it to `ClientConfig::new(agent_id, agent_token)`, or to a running
/// agent's `set_token`.
#[derive(Clone, PartialEq, Eq)]
pub struct RuntimeToken {
    /// The agent.
    pub agent_id: String,
    /// Its owner.
    pub owner_id: String,
    /// Its conversation with its owner.
    pub conversation_id: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    agent_token: Zeroizing<String>,
}

impl std::fmt::Debug for RuntimeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeToken")
            .field("agent_id", &self.agent_id)
            .field("owner_id", &self.owner_id)
            .field("conversation_id", &self.conversation_id)
            .field("expires_in", &self.expires_in)
            .field("agent_token", &"<redacted>")
            .finish()
    }
}

impl RuntimeToken {
    /// The agent token (secret).
    pub fn agent_token(&self) -> &str {
        &self.agent_token
    }
}

/// Reads the answer to the runtime-token request.
pub fn parse_runtime_token(response: &HttpResponse) -> Result<RuntimeToken, ConnectError> {
    let step = ConnectStep::RuntimeToken;
    let body = answer_object(step, response)?;
    Ok(RuntimeToken {
        agent_id: string_field(step, &body, "agent_id")?,
        owner_id: string_field(step, &body, "owner_id")?,
        conversation_id: string_field(step, &body, "conversation_id")?,
        agent_token: credential_field(step, &body, "agent_token")?,
        expires_in: count_field(step, &body, "expires_in")?,
    })
}

/// The answer's JSON object, or why there is none.
fn answer_object(step: ConnectStep, response: &HttpResponse) -> Result<Map<String, Value>, ConnectError> {
    let len = response.body.len();
    if len > MAX_ANSWER_BYTES {
        return Err(ConnectError::TooLarge { step, len, max: MAX_ANSWER_BYTES });
    }
    if !response.is_success() {
        let reason = response.error_message().map(|reason| reason.chars().take(MAX_REASON_CHARS).collect());
        return Err(ConnectError::Refused { step, status: response.status, reason });
    }
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ConnectError::NotAnObject { step }),
        Err(_) => Err(ConnectError::NotJson { step }),
    }
}

fn field<'a>(step: ConnectStep, body: &'a Map<String, Value>, field: &'static str) -> Result<&'a Value, ConnectError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(ConnectError::MissingField { step, field }),
        Some(value) => Ok(value),
    }
}

fn string_field(step: ConnectStep, body: &Map<String, Value>, name: &'static str) -> Result<String, ConnectError> {
    match field(step, body, name)? {
        Value::String(value) if value.is_empty() => {
            Err(ConnectError::InvalidField { step, field: name, reason: "is empty" })
        }
        Value::String(value) => Ok(value.clone()),
        _ => Err(ConnectError::WrongType { step, field: name, expected: "a string" }),
    }
}

/// A token field: a string that can be sent back as a bearer credential.
fn credential_field(
    step: ConnectStep,
    body: &Map<String, Value>,
    name: &'static str,
) -> Result<Zeroizing<String>, ConnectError> {
    let value = Zeroizing::new(string_field(step, body, name)?);
    if !is_credential(&value) {
        return Err(ConnectError::InvalidField { step, field: name, reason: "is not visible ASCII" });
    }
    Ok(value)
}

fn count_field(step: ConnectStep, body: &Map<String, Value>, name: &'static str) -> Result<u64, ConnectError> {
    match field(step, body, name)? {
        Value::Number(number) => number.as_u64().ok_or(ConnectError::InvalidField {
            step,
            field: name,
            reason: "is not a whole number of seconds",
        }),
        _ => Err(ConnectError::WrongType { step, field: name, expected: "a number" }),
    }
}

#[cfg(test)]
mod tests;

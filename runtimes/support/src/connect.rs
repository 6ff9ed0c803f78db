//! Agent Connect over HTTP, blocking: sends the calls [`pacerelle_core::connect`] builds with
//! the same HTTP client the agent uses (ureq) and reads their answers. The async runtimes run
//! these calls on their blocking pool (`driver::AgentConnect`), as they do the agent's own.

use crate::{HTTP_TIMEOUT, os_rng};
use pacerelle_core::Rng;
use pacerelle_core::connect::{
    self, CodeExchange, ConnectApp, ConnectCall, ConnectError, ConnectStart, ConnectStep, InstallationToken,
    MAX_ANSWER_BYTES, RuntimeToken,
};
use pacerelle_core::wire::{HttpMethod, HttpResponse};

/// Why an Agent Connect call failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentConnectError {
    /// The request could not be built, or the server's answer was a refusal or unusable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The server was not reached, or its answer could not be read.
    #[error("{step}: {reason}")]
    Transport {
        /// The call.
        step: ConnectStep,
        /// The transport's reason.
        reason: String,
    },
}

/// Makes Agent Connect's three calls against one server (`https://api.pacerelle.com`, or the
/// development relay), blocking. The official SDK's `begin_agent_connect`,
/// `exchange_agent_connect_code` and `request_agent_runtime_token`.
///
/// ```no_run
/// use pacerelle_core::connect::ConnectApp;
/// use pacerelle_runtime_support::connect::AgentConnect;
///
/// # fn run() -> Result<(), pacerelle_runtime_support::connect::AgentConnectError> {
/// let connect = AgentConnect::new("https://api.pacerelle.com");
/// let app = ConnectApp::new("my-client", "https://my.app/callback", "Helper");
/// let start = connect.begin("connect-key", &app)?;
/// println!("approve at {}", start.authorization_url);
/// // ... the user comes back to the redirect URI with `code` and `state` ...
/// # let (code, state) = (String::new(), String::new());
/// start.check_state(&state)?;
/// let installation = connect.exchange_code(&start.exchange(&app, &code))?;
/// let runtime = connect.request_runtime_token(installation.installation_token())?;
/// // `ClientConfig::new(runtime.agent_id.clone(), runtime.agent_token())`, or a running
/// // agent's `set_token(runtime.agent_token())` when the previous one expires.
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AgentConnect {
    http: ureq::Agent,
    base_url: String,
}

impl std::fmt::Debug for AgentConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConnect").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl AgentConnect {
    /// Calls against `base_url` (a trailing `/` is ignored, as in the official SDK).
    pub fn new(base_url: &str) -> Self {
        let http = ureq::Agent::config_builder()
            // Refusals carry the server's JSON reason; the core reads them.
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .user_agent(pacerelle_core::config::user_agent())
            .build()
            .into();
        AgentConnect { http, base_url: base_url.trim_end_matches('/').to_owned() }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Starts a connect request with the app's `connect_key` (`POST /agent-connect/requests`),
    /// with a PKCE verifier and `state` from the operating system's generator. The answer
    /// carries the URL to send the user to, and the verifier and state to keep.
    pub fn begin(&self, connect_key: &str, app: &ConnectApp) -> Result<ConnectStart, AgentConnectError> {
        self.begin_with_rng(connect_key, app, &mut *os_rng())
    }

    /// [`AgentConnect::begin`] with randomness of the caller's choosing.
    pub fn begin_with_rng(
        &self,
        connect_key: &str,
        app: &ConnectApp,
        rng: &mut Rng,
    ) -> Result<ConnectStart, AgentConnectError> {
        let (call, pending) = connect::begin(app, connect_key, rng)?;
        let response = self.send(&call)?;
        Ok(pending.finish(&response)?)
    }

    /// Exchanges the code the user came back with for an installation token
    /// (`POST /agent-connect/token`, form-encoded).
    pub fn exchange_code(&self, exchange: &CodeExchange) -> Result<InstallationToken, AgentConnectError> {
        let response = self.send(&exchange.request()?)?;
        Ok(connect::parse_installation_token(&response)?)
    }

    /// Gets a runtime token with an installation token (`POST /agent-connect/runtime-token`).
    pub fn request_runtime_token(&self, installation_token: &str) -> Result<RuntimeToken, AgentConnectError> {
        let response = self.send(&connect::runtime_token_request(installation_token)?)?;
        Ok(connect::parse_runtime_token(&response)?)
    }

    /// Sends one call, with its bearer when it has one; an error status is an `Ok` answer
    /// (the core's parsers read it). The body read stops just past [`MAX_ANSWER_BYTES`], so
    /// that an oversized answer is reported as such without being held whole.
    pub fn send(&self, call: &ConnectCall) -> Result<HttpResponse, AgentConnectError> {
        let step = call.step;
        let transport = |error: ureq::Error| AgentConnectError::Transport { step, reason: error.to_string() };
        let url = format!("{}{}", self.base_url, call.request.path);
        // No secret in this line: the path and size only.
        tracing::debug!(path = %call.request.path, bytes = call.request.body.len(), "Agent Connect request");
        let authorization = call.bearer().map(|bearer| zeroize::Zeroizing::new(format!("Bearer {bearer}")));
        let result = match call.request.method {
            HttpMethod::Get => {
                let mut builder = self.http.get(&url);
                if let Some(authorization) = &authorization {
                    builder = builder.header("Authorization", authorization.as_str());
                }
                builder.call()
            }
            HttpMethod::Post | HttpMethod::Put => {
                let mut builder =
                    if call.request.method == HttpMethod::Post { self.http.post(&url) } else { self.http.put(&url) };
                if let Some(authorization) = &authorization {
                    builder = builder.header("Authorization", authorization.as_str());
                }
                if let Some(content_type) = call.request.content_type {
                    builder = builder.content_type(content_type);
                }
                builder.send(&call.request.body[..])
            }
        };
        let mut response = result.map_err(transport)?;
        let status = response.status().as_u16();
        let limit = u64::try_from(MAX_ANSWER_BYTES).unwrap_or(u64::MAX).saturating_add(1);
        let body = match response.body_mut().with_config().limit(limit).read_to_vec() {
            Ok(body) => body,
            // Past the limit: report it as the oversized answer it is.
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                return Err(ConnectError::TooLarge { step, len: MAX_ANSWER_BYTES + 1, max: MAX_ANSWER_BYTES }.into());
            }
            Err(error) => return Err(transport(error)),
        };
        tracing::debug!(status, bytes = body.len(), "Agent Connect answer");
        Ok(HttpResponse { status, body })
    }
}

//! Agent Connect on the relay: the apps allowed to connect agents, their pending requests, the
//! authorization codes and installations they led to, with every check a real server makes
//! (connect key, registered redirect URI, S256 only, the verifier against the challenge, codes
//! single-use and expiring, client and redirect URI matching at the exchange). No I/O; the HTTP
//! layer calls in with parsed requests.

use crate::error::ApiError;
use pacerelle_core::connect::{
    CHALLENGE_LEN, CHALLENGE_METHOD, GRANT_TYPE, SCOPE, is_valid_verifier, verifier_matches,
};
use pacerelle_core::wire::http::AgentConnectRequest;
use rand::RngExt as _;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq as _;

/// How long a connect request waits for the owner's approval.
pub const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(600);
/// How long an authorization code can be exchanged.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(60);
/// How long a runtime token is accepted.
pub const DEFAULT_RUNTIME_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// How the owner answers a connect request on this relay (the real relay asks them in the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Approval {
    /// Opening the authorization URL approves at once and redirects to the app with the code.
    #[default]
    Auto,
    /// The request waits until the test or program approves it
    /// ([`crate::RelayHandle::approve_agent_connect`]) or denies it.
    Manual,
}

/// A third-party app that may connect agents: its client id, connect key, registered redirect
/// URIs and the owner (a person) who approves its requests.
///
/// ```
/// use pacerelle_relay::{ConnectClient, RelayConfig};
/// let config = RelayConfig::loopback_ephemeral()
///     .person("alice", "alice-token")
///     .connect_client(ConnectClient::new("my-app", "ck_secret", "https://my.app/callback", "alice"));
/// assert_eq!(config.connect_clients["my-app"].owner_id, "alice");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectClient {
    /// The app's client id.
    pub client_id: String,
    /// Its connect key (the bearer of `POST /agent-connect/requests`).
    pub connect_key: String,
    /// The redirect URIs it may use, compared exactly.
    pub redirect_uris: Vec<String>,
    /// The person who approves its requests and owns the agents installed.
    pub owner_id: String,
    /// How requests are approved.
    pub approval: Approval,
}

impl std::fmt::Debug for ConnectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectClient")
            .field("client_id", &self.client_id)
            .field("redirect_uris", &self.redirect_uris)
            .field("owner_id", &self.owner_id)
            .field("approval", &self.approval)
            .finish_non_exhaustive()
    }
}

impl ConnectClient {
    /// An app with one redirect URI, approved automatically.
    pub fn new(
        client_id: impl Into<String>,
        connect_key: impl Into<String>,
        redirect_uri: impl Into<String>,
        owner_id: impl Into<String>,
    ) -> Self {
        ConnectClient {
            client_id: client_id.into(),
            connect_key: connect_key.into(),
            redirect_uris: vec![redirect_uri.into()],
            owner_id: owner_id.into(),
            approval: Approval::Auto,
        }
    }

    /// Registers another redirect URI.
    pub fn redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
        self.redirect_uris.push(redirect_uri.into());
        self
    }

    /// Requests wait for [`crate::RelayHandle::approve_agent_connect`].
    pub fn manual_approval(mut self) -> Self {
        self.approval = Approval::Manual;
        self
    }
}

/// Lifetimes of Agent Connect's requests, codes and runtime tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectTtls {
    /// A request waiting for approval ([`DEFAULT_REQUEST_TTL`]).
    pub request: Duration,
    /// An authorization code ([`DEFAULT_CODE_TTL`]).
    pub code: Duration,
    /// A runtime token ([`DEFAULT_RUNTIME_TOKEN_TTL`]).
    pub runtime_token: Duration,
}

impl Default for ConnectTtls {
    fn default() -> Self {
        ConnectTtls { request: DEFAULT_REQUEST_TTL, code: DEFAULT_CODE_TTL, runtime_token: DEFAULT_RUNTIME_TOKEN_TTL }
    }
}

/// One HTTP request the relay received on an `/agent-connect/` route, as it arrived: for tests
/// that compare what two SDKs send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// The path (and query).
    pub path: String,
    /// Every header, names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

struct PendingRequest {
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    agent_name: String,
    expires_at: Instant,
    approved: bool,
}

struct IssuedCode {
    request_id: String,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    agent_name: String,
    expires_at: Instant,
}

/// An installation: the agent an app installed, and for whom.
#[derive(Clone)]
pub(crate) struct Installation {
    pub(crate) agent_id: String,
    pub(crate) owner_id: String,
    pub(crate) conversation_id: String,
}

/// What a code exchange decided: the installation to create.
pub(crate) struct Approved {
    pub(crate) client_id: String,
    pub(crate) owner_id: String,
    pub(crate) agent_name: String,
}

/// Agent Connect's state.
#[derive(Default)]
pub(crate) struct ConnectState {
    pub(crate) clients: HashMap<String, ConnectClient>,
    pub(crate) ttls: ConnectTtls,
    requests: HashMap<String, PendingRequest>,
    codes: HashMap<String, IssuedCode>,
    /// Installation token → installation.
    installations: HashMap<String, Installation>,
    pub(crate) recorded: Vec<RecordedRequest>,
}

/// A new secret: 32 random bytes, hex.
pub(crate) fn secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn bad(reason: &str) -> ApiError {
    ApiError::BadRequest(reason.to_owned())
}

impl ConnectState {
    /// The client whose connect key this is (every key compared in constant time).
    fn client_by_key(&self, key: &str) -> Option<&ConnectClient> {
        let mut found = None;
        for client in self.clients.values() {
            if bool::from(client.connect_key.as_bytes().ct_eq(key.as_bytes())) {
                found = Some(client);
            }
        }
        found
    }

    /// `POST /agent-connect/requests`: checks and records a request; returns its id.
    pub(crate) fn start(&mut self, connect_key: &str, request: AgentConnectRequest) -> Result<String, ApiError> {
        let client = self.client_by_key(connect_key).ok_or(ApiError::Unauthorized)?;
        if client.client_id != request.client_id {
            return Err(ApiError::Forbidden("the connect key is not this client_id's"));
        }
        if !client.redirect_uris.contains(&request.redirect_uri) {
            return Err(bad("redirect_uri is not registered for this client"));
        }
        if request.code_challenge_method != CHALLENGE_METHOD {
            return Err(bad("code_challenge_method must be S256"));
        }
        let challenge = request.code_challenge.as_bytes();
        if challenge.len() != CHALLENGE_LEN
            || !challenge.iter().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
        {
            return Err(bad("code_challenge is not an unpadded base64url SHA-256"));
        }
        if request.scope != SCOPE {
            return Err(bad("invalid_scope: the scope must be myagents:agent-connect"));
        }
        if request.state.is_empty() {
            return Err(bad("state is empty"));
        }
        if request.agent_name.is_empty() {
            return Err(bad("agent_name is empty"));
        }
        let id = format!("acr_{}", &secret()[..24]);
        self.requests.insert(
            id.clone(),
            PendingRequest {
                client_id: request.client_id,
                redirect_uri: request.redirect_uri,
                state: request.state,
                code_challenge: request.code_challenge,
                agent_name: request.agent_name,
                expires_at: Instant::now() + self.ttls.request,
                approved: false,
            },
        );
        Ok(id)
    }

    /// Whether request `id` is approved by opening its authorization URL.
    pub(crate) fn approval_of(&self, id: &str) -> Option<Approval> {
        let request = self.requests.get(id)?;
        Some(self.clients.get(&request.client_id).map_or(Approval::Manual, |client| client.approval))
    }

    /// The owner approves request `id`: a code is issued, bound to the request's challenge,
    /// client and redirect URI. Returns the redirect location (`redirect_uri?code=...&state=...`).
    pub(crate) fn approve(&mut self, id: &str) -> Result<String, ApiError> {
        let request = self.live_request(id)?;
        if request.approved {
            return Err(ApiError::Conflict("this request was already answered"));
        }
        request.approved = true;
        let code = secret();
        let location = redirect(&request.redirect_uri, &[("code", &code), ("state", &request.state)]);
        let issued = IssuedCode {
            request_id: id.to_owned(),
            client_id: request.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            agent_name: request.agent_name.clone(),
            expires_at: Instant::now() + self.ttls.code,
        };
        self.codes.insert(code, issued);
        Ok(location)
    }

    /// The owner denies request `id`. Returns the redirect location
    /// (`redirect_uri?error=access_denied&state=...`).
    pub(crate) fn deny(&mut self, id: &str) -> Result<String, ApiError> {
        let request = self.live_request(id)?;
        if request.approved {
            return Err(ApiError::Conflict("this request was already answered"));
        }
        let location = redirect(&request.redirect_uri, &[("error", "access_denied"), ("state", &request.state)]);
        self.requests.remove(id);
        Ok(location)
    }

    fn live_request(&mut self, id: &str) -> Result<&mut PendingRequest, ApiError> {
        let now = Instant::now();
        self.requests.retain(|_, request| request.expires_at > now);
        self.requests.get_mut(id).ok_or(ApiError::NotFound("connect request"))
    }

    /// The requests waiting for the owner, oldest first is not promised: ids only.
    pub(crate) fn pending(&self) -> Vec<String> {
        let now = Instant::now();
        let mut ids: Vec<String> = self
            .requests
            .iter()
            .filter(|(_, request)| !request.approved && request.expires_at > now)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// `POST /agent-connect/token`: checks the form and consumes the code (used once, whatever
    /// the outcome, so that a verifier cannot be guessed against it).
    pub(crate) fn exchange(&mut self, form: &[(String, String)]) -> Result<Approved, ApiError> {
        let value = |name: &str| -> Result<&str, ApiError> {
            let mut values = form.iter().filter(|(key, _)| key == name);
            match (values.next(), values.next()) {
                (Some((_, value)), None) => Ok(value),
                (None, _) => Err(ApiError::BadRequest(format!("invalid_request: {name} is missing"))),
                (Some(_), Some(_)) => Err(ApiError::BadRequest(format!("invalid_request: {name} is repeated"))),
            }
        };
        if value("grant_type")? != GRANT_TYPE {
            return Err(bad("unsupported_grant_type: only authorization_code"));
        }
        let (client_id, redirect_uri, code, verifier) =
            (value("client_id")?, value("redirect_uri")?, value("code")?, value("code_verifier")?);
        let issued = self.codes.remove(code).ok_or_else(|| bad("invalid_grant: unknown or already used code"))?;
        if issued.expires_at <= Instant::now() {
            return Err(bad("invalid_grant: the code expired"));
        }
        if issued.client_id != client_id {
            return Err(bad("invalid_grant: the code was issued to another client_id"));
        }
        if issued.redirect_uri != redirect_uri {
            return Err(bad("invalid_grant: redirect_uri differs from the request's"));
        }
        if !is_valid_verifier(verifier) || !verifier_matches(verifier, &issued.code_challenge) {
            return Err(bad("invalid_grant: code_verifier does not match the code_challenge"));
        }
        self.requests.remove(&issued.request_id);
        let owner_id = self.clients.get(client_id).map(|client| client.owner_id.clone()).unwrap_or_default();
        Ok(Approved { client_id: issued.client_id, owner_id, agent_name: issued.agent_name })
    }

    /// Records an installation; returns its token.
    pub(crate) fn install(&mut self, installation: Installation) -> String {
        let token = format!("ait_{}", secret());
        self.installations.insert(token.clone(), installation);
        token
    }

    /// The installation whose token this is (every token compared in constant time).
    pub(crate) fn installation(&self, token: &str) -> Option<Installation> {
        let mut found = None;
        for (candidate, installation) in &self.installations {
            if bool::from(candidate.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(installation.clone());
            }
        }
        found
    }
}

/// `redirect_uri` with `params` appended to its query.
fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{separator}{}", pacerelle_core::connect::form_urlencode(params.iter().copied()))
}

/// Decodes an `application/x-www-form-urlencoded` body into its pairs, in order.
pub(crate) fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    fn decode(part: &str) -> Result<String, ApiError> {
        let malformed = || bad("invalid_request: malformed form encoding");
        let mut bytes = Vec::with_capacity(part.len());
        let mut input = part.bytes();
        while let Some(byte) = input.next() {
            match byte {
                b'+' => bytes.push(b' '),
                b'%' => {
                    let high = input.next().and_then(|byte| char::from(byte).to_digit(16)).ok_or_else(malformed)?;
                    let low = input.next().and_then(|byte| char::from(byte).to_digit(16)).ok_or_else(malformed)?;
                    bytes.push(u8::try_from(high * 16 + low).map_err(|_| malformed())?);
                }
                byte => bytes.push(byte),
            }
        }
        String::from_utf8(bytes).map_err(|_| malformed())
    }
    let text = std::str::from_utf8(body).map_err(|_| bad("invalid_request: the form is not UTF-8"))?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// `at` (a wall-clock time) as RFC 3339 in UTC, to the second.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(SystemTime::UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar, in 400-year eras).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc_3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_661); // 2000-02-29
        assert_eq!(rfc3339(at), "2000-02-29T01:01:01Z");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_599); // last second of 2026
        assert_eq!(rfc3339(at), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn forms_are_decoded_and_malformed_ones_refused() {
        let pairs = parse_form(b"a=1+2&b=%C3%A9%2B&c=&d").expect("valid");
        let expected: Vec<(String, String)> = [("a", "1 2"), ("b", "é+"), ("c", ""), ("d", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, expected);
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(b"a=%C3").is_err());
        assert!(parse_form(b"a=%4").is_err());
    }

    #[test]
    fn redirects_keep_an_existing_query() {
        assert_eq!(redirect("https://a/cb", &[("code", "x y")]), "https://a/cb?code=x+y");
        assert_eq!(redirect("https://a/cb?v=1", &[("code", "c")]), "https://a/cb?v=1&code=c");
    }
}

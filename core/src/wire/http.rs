//! HTTP calls the state machines ask their runtime to make, and the JSON bodies of PROTOCOL.md.
//!
//! The core says *what* to call ([`HttpRequest`]: method, path, body); the runtime adds the base
//! URL, `Authorization: Bearer ...` and `User-Agent`, performs it, and hands back an
//! [`HttpResponse`] under the same [`RequestId`]. Tokens never enter the core.

use serde::{Deserialize, Serialize};

/// Correlates an [`HttpRequest`] with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// HTTP methods the protocol uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
}

impl HttpMethod {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
        }
    }
}

/// A call for the runtime to make against the relay's base URL.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Echoed back with the response.
    pub id: RequestId,
    /// The method.
    pub method: HttpMethod,
    /// Path and query, starting with `/`, already percent-encoded.
    pub path: String,
    /// `Content-Type` of `body`, when there is one.
    pub content_type: Option<&'static str>,
    /// The request body (empty for `GET`).
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpRequest {
    // Bodies may be ciphertext or key material: show their size, not their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What the runtime got back for an [`HttpRequest`].
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse").field("status", &self.status).field("body_len", &self.body.len()).finish()
    }
}

impl HttpResponse {
    /// The relay's `{"error": "..."}` message for a 4xx/5xx answer, if the body has one.
    pub fn error_message(&self) -> Option<String> {
        serde_json::from_slice::<ErrorBody>(&self.body).ok().map(|body| body.error)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The relay's error answer: `{"error": "..."}` with a 4xx/5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A human-readable reason.
    pub error: String,
}

/// `PUT /agent/prekey-bundle`: the agent's published Signal prekey bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrekeyBundleBody {
    /// Signal registration id.
    pub registration_id: u32,
    /// Signal device id (1 for agents).
    pub device_id: u32,
    /// Base64 of the 33-byte identity key.
    pub identity_key: String,
    /// Id of the signed prekey.
    pub signed_prekey_id: u32,
    /// Base64 of the 33-byte signed prekey.
    pub signed_prekey_public: String,
    /// Base64 of its 64-byte XEdDSA signature.
    pub signed_prekey_signature: String,
    /// Id of the Kyber prekey.
    pub kyber_prekey_id: u32,
    /// Base64 of the 1569-byte Kyber-1024 prekey.
    pub kyber_prekey_public: String,
    /// Base64 of its signature.
    pub kyber_prekey_signature: String,
    /// Features this agent speaks, `["history-v1"]`.
    pub protocol_features: Vec<String>,
}

/// One one-time prekey in [`OneTimePrekeysBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePrekey {
    /// Its id.
    pub prekey_id: u32,
    /// Base64 of the 33-byte public key.
    pub public_key: String,
}

/// `POST /agent/one-time-prekeys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePrekeysBody {
    /// The keys, usually 50.
    pub one_time_prekeys: Vec<OneTimePrekey>,
}

/// The answer to `POST /agent/blobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobUploaded {
    /// The blob's id, for `GET /agent/blobs/{id}` and attachment metadata.
    pub id: String,
    /// Hex SHA-256 of the stored ciphertext, when the relay reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One entry of `GET /agent/group-keys?conversation_id=...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupKeyEnvelope {
    /// The group conversation.
    pub conversation_id: String,
    /// The key's id.
    pub key_id: String,
    /// Its epoch (at least 1).
    pub epoch: u64,
    /// The person who distributed it.
    pub sender_id: String,
    /// Their device, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_device_id: Option<String>,
    /// Base64 of the Signal ciphertext carrying the key.
    pub envelope_b64: String,
}

/// `POST /agent-connect/requests` (bearer: the connect key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConnectRequest {
    /// The third-party app's client id.
    pub client_id: String,
    /// Where the user is sent back.
    pub redirect_uri: String,
    /// Opaque anti-forgery state.
    pub state: String,
    /// Unpadded base64url SHA-256 of the PKCE verifier.
    pub code_challenge: String,
    /// Always `S256`.
    pub code_challenge_method: String,
    /// The agent's display name.
    pub agent_name: String,
    /// The agent's description.
    pub agent_description: String,
    /// Always `myagents:agent-connect`.
    pub scope: String,
}

/// The answer to [`AgentConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConnectStarted {
    /// The pending request.
    pub request_id: String,
    /// Where the user approves the installation.
    pub authorization_url: String,
    /// When the request lapses (RFC 3339).
    pub expires_at: String,
    /// Seconds until it lapses.
    pub expires_in: u64,
}

/// The answer to `POST /agent-connect/token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationToken {
    /// The long-lived installation token (a secret).
    pub installation_token: String,
    /// The token type.
    pub token_type: String,
    /// The installed agent.
    pub agent_id: String,
    /// The user who installed it.
    pub owner_id: String,
    /// Its conversation with the owner.
    pub conversation_id: String,
    /// Granted scope.
    pub scope: String,
}

/// The answer to `POST /agent-connect/runtime-token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeToken {
    /// The agent.
    pub agent_id: String,
    /// Its owner.
    pub owner_id: String,
    /// Its conversation with the owner.
    pub conversation_id: String,
    /// The short-lived agent token (a secret).
    pub agent_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("installation_token", &"<redacted>")
            .field("agent_id", &self.agent_id)
            .field("owner_id", &self.owner_id)
            .field("conversation_id", &self.conversation_id)
            .field("scope", &self.scope)
            .finish()
    }
}

impl std::fmt::Debug for RuntimeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeToken")
            .field("agent_id", &self.agent_id)
            .field("agent_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Percent-encodes one path segment or query value (everything but unreserved characters).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_debug_output() {
        let token = RuntimeToken {
            agent_id: "a".into(),
            owner_id: "o".into(),
            conversation_id: "c".into(),
            agent_token: "secret-token".into(),
            expires_in: 60,
        };
        assert!(!format!("{token:?}").contains("secret-token"));
        let installation = InstallationToken {
            installation_token: "secret-install".into(),
            token_type: "bearer".into(),
            agent_id: "a".into(),
            owner_id: "o".into(),
            conversation_id: "c".into(),
            scope: "s".into(),
        };
        assert!(!format!("{installation:?}").contains("secret-install"));
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn error_bodies_are_read() {
        let response = HttpResponse { status: 401, body: br#"{"error":"bad token"}"#.to_vec() };
        assert_eq!(response.error_message().as_deref(), Some("bad token"));
        assert!(!response.is_success());
        assert_eq!(HttpResponse { status: 500, body: b"oops".to_vec() }.error_message(), None);
    }
}

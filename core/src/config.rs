//! Where and as whom a client connects: ids, token, base and WebSocket URLs.
//!
//! Shared by every runtime so that URL rules and defaults are written once. The token is a
//! secret: it never appears in `Debug` output.

/// The public Pacerelle API.
pub const DEFAULT_BASE_URL: &str = "https://api.pacerelle.com";
/// The local development relay's usual address.
pub const DEVELOPMENT_BASE_URL: &str = "http://localhost:8080";

/// Environment variable names the SDK reads.
pub mod env {
    /// The agent's id.
    pub const AGENT_ID: &str = "PACERELLE_AGENT_ID";
    /// The agent's token.
    pub const AGENT_TOKEN: &str = "PACERELLE_AGENT_TOKEN";
    /// Overrides the base URL.
    pub const BASE_URL: &str = "PACERELLE_BASE_URL";
}

/// Why a configuration could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required environment variable is unset or empty.
    #[error("environment variable {0} is not set")]
    MissingVariable(&'static str),
    /// The URL is not `http(s)://...` (or `ws(s)://...` for the WebSocket URL).
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
}

/// How an agent reaches the relay.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's bearer token (secret).
    pub token: String,
    /// `https://api.pacerelle.com` unless overridden; no trailing slash.
    pub base_url: String,
    /// The WebSocket base; derived from `base_url` (`http` → `ws`) unless set.
    pub ws_url: Option<String>,
    /// End-to-end encryption.
    pub e2ee: bool,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("agent_id", &self.agent_id)
            .field("token", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("ws_url", &self.ws_url)
            .field("e2ee", &self.e2ee)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration for `agent_id` with `token` against the public API.
    pub fn new(agent_id: impl Into<String>, token: impl Into<String>) -> Self {
        ClientConfig {
            agent_id: agent_id.into(),
            token: token.into(),
            base_url: DEFAULT_BASE_URL.into(),
            ws_url: None,
            e2ee: false,
        }
    }

    /// Reads `PACERELLE_AGENT_ID`, `PACERELLE_AGENT_TOKEN` and, when set, `PACERELLE_BASE_URL`
    /// through `lookup` (pass `|name| std::env::var(name).ok()`).
    ///
    /// ```
    /// use pacerelle_core::config::ClientConfig;
    /// let vars = [("PACERELLE_AGENT_ID", "a1"), ("PACERELLE_AGENT_TOKEN", "t"), ("PACERELLE_BASE_URL", "http://127.0.0.1:8080/")];
    /// let config = ClientConfig::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))?;
    /// assert_eq!(config.agent_socket_url(), "ws://127.0.0.1:8080/ws/agent?token=t");
    /// # Ok::<(), pacerelle_core::config::ConfigError>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required =
            |name: &'static str| lookup(name).filter(|v| !v.is_empty()).ok_or(ConfigError::MissingVariable(name));
        let config = ClientConfig::new(required(env::AGENT_ID)?, required(env::AGENT_TOKEN)?);
        match lookup(env::BASE_URL).filter(|v| !v.is_empty()) {
            Some(base_url) => config.with_base_url(base_url),
            None => Ok(config),
        }
    }

    /// Reads `PACERELLE_AGENT_ID`, `PACERELLE_AGENT_TOKEN` and, when set, `PACERELLE_BASE_URL`
    /// from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The same configuration against `base_url` (trailing slashes dropped).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Result<Self, ConfigError> {
        let base_url = base_url.into();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::InvalidUrl { url: base_url, reason: "must start with http:// or https://" });
        }
        self.base_url = base_url.trim_end_matches('/').to_owned();
        Ok(self)
    }

    /// The same configuration with an explicit WebSocket base.
    pub fn with_ws_url(mut self, ws_url: impl Into<String>) -> Result<Self, ConfigError> {
        let ws_url = ws_url.into();
        if !(ws_url.starts_with("ws://") || ws_url.starts_with("wss://")) {
            return Err(ConfigError::InvalidUrl { url: ws_url, reason: "must start with ws:// or wss://" });
        }
        self.ws_url = Some(ws_url.trim_end_matches('/').to_owned());
        Ok(self)
    }

    /// The WebSocket base: explicit, or the base URL with `http` replaced by `ws`.
    pub fn ws_base(&self) -> String {
        self.ws_url.clone().unwrap_or_else(|| self.base_url.replacen("http", "ws", 1))
    }

    /// The agent socket's URL, token included (so never log it).
    pub fn agent_socket_url(&self) -> String {
        format!("{}/ws/agent?token={}", self.ws_base(), crate::wire::http::percent_encode(&self.token))
    }

    /// The full URL of a relay path such as `/agent/blobs`.
    pub fn http_url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}

/// The `User-Agent` this SDK sends.
pub fn user_agent() -> String {
    format!("pacerelle-rust-sdk/{}", crate::VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_secrets() {
        let config = ClientConfig::new("a", "s3cret").with_base_url("https://relay.example/").unwrap();
        assert_eq!(config.agent_socket_url(), "wss://relay.example/ws/agent?token=s3cret");
        assert_eq!(config.http_url("/agent/blobs"), "https://relay.example/agent/blobs");
        assert!(!format!("{config:?}").contains("s3cret"));
        let config = config.with_ws_url("ws://127.0.0.1:9/").unwrap();
        assert_eq!(config.agent_socket_url(), "ws://127.0.0.1:9/ws/agent?token=s3cret");
        assert!(ClientConfig::new("a", "t").with_base_url("ftp://x").is_err());
        assert!(ClientConfig::new("a", "t").with_ws_url("http://x").is_err());
        assert_eq!(ClientConfig::new("a", "t").base_url, DEFAULT_BASE_URL);
    }

    #[test]
    fn environment_is_required() {
        assert_eq!(ClientConfig::from_lookup(|_| None), Err(ConfigError::MissingVariable(env::AGENT_ID)));
        let only_id = |name: &str| (name == env::AGENT_ID).then(|| "a".to_owned());
        assert_eq!(ClientConfig::from_lookup(only_id), Err(ConfigError::MissingVariable(env::AGENT_TOKEN)));
    }
}

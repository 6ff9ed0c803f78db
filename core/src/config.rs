//! Where and as whom a client connects: ids, token, base and WebSocket URLs, encryption, and
//! where its state lives.
//!
//! Shared by every runtime so that URL rules, defaults and the environment's variables are
//! written once. The token is a secret: it never appears in `Debug` output or in an error.
//!
//! The environment, as the official SDK's README teaches it:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `PACERELLE_AGENT_ID` | the agent's id (required) |
//! | `PACERELLE_AGENT_TOKEN` | its token (required) |
//! | `PACERELLE_BASE_URL` | the relay, `https://api.pacerelle.com` when unset |
//! | `PACERELLE_E2EE` | `1`/`true` or `0`/`false` (any case); off when unset |
//! | `PACERELLE_STORE_ROOT` | the folder holding `<agent_id>/agent.db`; `~/.myagents` when unset |

use std::path::PathBuf;

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
    /// Turns end-to-end encryption on (`1`, `true`) or off (`0`, `false`), in any case.
    pub const E2EE: &str = "PACERELLE_E2EE";
    /// The folder that holds each agent's store (`<root>/<agent_id>/agent.db`).
    pub const STORE_ROOT: &str = "PACERELLE_STORE_ROOT";
}

/// The folder, under the user's home, that holds agents' stores when no root is configured:
/// the official SDK's (`~/.myagents/<agent_id>/`), so both SDKs keep an agent in one place.
pub const DEFAULT_STORE_FOLDER: &str = ".myagents";

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
    /// An environment variable holds a value the SDK cannot read. The value itself is not
    /// repeated, so that a secret pasted into the wrong variable does not end up in logs.
    #[error("environment variable {variable} is malformed: expected {expected}")]
    MalformedVariable {
        /// The variable.
        variable: &'static str,
        /// What it should hold.
        expected: &'static str,
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
    /// The folder holding the agent's store, `<store_root>/<agent_id>/agent.db`, which the
    /// runtimes' `Client::new` opens; `None` means `~/.myagents` ([`DEFAULT_STORE_FOLDER`]).
    pub store_root: Option<PathBuf>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("agent_id", &self.agent_id)
            .field("token", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("ws_url", &self.ws_url)
            .field("e2ee", &self.e2ee)
            .field("store_root", &self.store_root)
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
            store_root: None,
        }
    }

    /// Reads the configuration through `lookup` (pass `|name| std::env::var(name).ok()`):
    /// `PACERELLE_AGENT_ID` and `PACERELLE_AGENT_TOKEN`, and when set, `PACERELLE_BASE_URL`,
    /// `PACERELLE_E2EE` and `PACERELLE_STORE_ROOT` (see the [module](self)). An empty variable
    /// counts as unset.
    ///
    /// ```
    /// use pacerelle_core::config::ClientConfig;
    /// let vars = [
    ///     ("PACERELLE_AGENT_ID", "a1"),
    ///     ("PACERELLE_AGENT_TOKEN", "t"),
    ///     ("PACERELLE_BASE_URL", "http://127.0.0.1:8080/"),
    ///     ("PACERELLE_E2EE", "1"),
    ///     ("PACERELLE_STORE_ROOT", "/var/lib/agents"),
    /// ];
    /// let config = ClientConfig::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))?;
    /// assert_eq!(config.agent_socket_url(), "ws://127.0.0.1:8080/ws/agent?token=t");
    /// assert!(config.e2ee);
    /// assert_eq!(config.store_root, Some("/var/lib/agents".into()));
    /// # Ok::<(), pacerelle_core::config::ConfigError>(())
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let present = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let required = |name: &'static str| present(name).ok_or(ConfigError::MissingVariable(name));
        let mut config = ClientConfig::new(required(env::AGENT_ID)?, required(env::AGENT_TOKEN)?);
        if let Some(base_url) = present(env::BASE_URL) {
            config = config.with_base_url(base_url)?;
        }
        if let Some(value) = present(env::E2EE) {
            config.e2ee = parse_flag(&value)
                .ok_or(ConfigError::MalformedVariable { variable: env::E2EE, expected: "1, true, 0 or false" })?;
        }
        config.store_root = present(env::STORE_ROOT).map(PathBuf::from);
        Ok(config)
    }

    /// Reads the configuration from the process environment (see [`ClientConfig::from_lookup`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The same configuration with its store under `root` (`<root>/<agent_id>/agent.db`).
    pub fn with_store_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.store_root = Some(root.into());
        self
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

/// `1`/`true` or `0`/`false`, in any case, around blanks (as a `.env` line may leave them).
fn parse_flag(value: &str) -> Option<bool> {
    let value = value.trim();
    if value == "1" || value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value == "0" || value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
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

    /// A lookup over `vars`, with the id and token always set.
    fn lookup(vars: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let mut all = vec![(env::AGENT_ID, "agent-1"), (env::AGENT_TOKEN, "s3cret-token")];
        all.extend_from_slice(vars);
        move |name| all.iter().rev().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    #[test]
    fn config_from_env_defaults() {
        let config = ClientConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(config.agent_id, "agent-1");
        assert_eq!(config.token, "s3cret-token");
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
        assert!(!config.e2ee);
        assert_eq!(config.store_root, None);
        // Empty counts as unset, as a `.env` file with `PACERELLE_E2EE=` means.
        let config = ClientConfig::from_lookup(lookup(&[(env::E2EE, ""), (env::STORE_ROOT, "")])).unwrap();
        assert!(!config.e2ee);
        assert_eq!(config.store_root, None);
    }

    #[test]
    fn config_e2ee_flag_in_any_case() {
        for (value, expected) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("True", true),
            (" 1 ", true),
            ("0", false),
            ("false", false),
            ("FaLsE", false),
        ] {
            let config = ClientConfig::from_lookup(lookup(&[(env::E2EE, value)])).unwrap();
            assert_eq!(config.e2ee, expected, "PACERELLE_E2EE={value:?}");
        }
    }

    #[test]
    fn config_malformed_e2ee_names_the_variable_not_the_value() {
        for value in ["yes", "enabled", "truee", "42", "s3cret-token"] {
            let error = ClientConfig::from_lookup(lookup(&[(env::E2EE, value)])).unwrap_err();
            assert_eq!(error, ConfigError::MalformedVariable { variable: env::E2EE, expected: "1, true, 0 or false" });
            let shown = error.to_string();
            assert!(shown.contains("PACERELLE_E2EE"), "{shown}");
            assert!(!shown.contains(value), "the value {value:?} was echoed: {shown}");
        }
    }

    #[test]
    fn config_store_root_and_base_url() {
        let config = ClientConfig::from_lookup(lookup(&[
            (env::STORE_ROOT, "/srv/agents"),
            (env::BASE_URL, "http://127.0.0.1:8080/"),
        ]))
        .unwrap();
        assert_eq!(config.store_root, Some(PathBuf::from("/srv/agents")));
        assert_eq!(config.base_url, "http://127.0.0.1:8080");
        assert_eq!(ClientConfig::new("a", "t").with_store_root("/tmp/x").store_root, Some(PathBuf::from("/tmp/x")));
        // A malformed base URL is refused, and the token is not in the error.
        let error = ClientConfig::from_lookup(lookup(&[(env::BASE_URL, "relay.example")])).unwrap_err();
        assert!(matches!(error, ConfigError::InvalidUrl { .. }));
        assert!(!error.to_string().contains("s3cret-token"));
    }
}

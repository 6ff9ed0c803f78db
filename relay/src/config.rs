//! What a relay is started with: where it listens, who may connect, and its limits.

use crate::connect::{ConnectClient, ConnectTtls};
use rand::RngExt as _;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Largest JSON request body accepted.
pub const DEFAULT_MAX_JSON_BYTES: usize = 256 * 1024;
/// Largest blob accepted.
pub const DEFAULT_MAX_BLOB_BYTES: usize = 16 * 1024 * 1024;
/// Largest WebSocket frame accepted.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Most one-time prekeys held per agent (the oldest are dropped first beyond it): half of what
/// a Rust agent keeps at most, so that whatever this relay can still hand out, the agent still
/// holds (see the README).
pub const DEFAULT_MAX_ONE_TIME_PREKEYS: usize = pacerelle_core::e2ee::account::MAX_ONE_TIME_PREKEYS / 2;

/// A relay's configuration.
///
/// ```
/// let config = pacerelle_relay::RelayConfig::loopback_ephemeral().agent("echo", "t1").person("alice", "t2");
/// assert_eq!(config.agents["echo"], "t1");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Where to listen; loopback by default.
    pub listen: SocketAddr,
    /// Agents: id → token.
    pub agents: BTreeMap<String, String>,
    /// Persons: id → token.
    pub persons: BTreeMap<String, String>,
    /// Largest JSON body (413 beyond).
    pub max_json_bytes: usize,
    /// Largest blob (413 beyond).
    pub max_blob_bytes: usize,
    /// Largest socket frame (the socket is closed beyond).
    pub max_frame_bytes: usize,
    /// Most one-time prekeys held per agent; the oldest are dropped first beyond it.
    pub max_one_time_prekeys: usize,
    /// Apps that may connect agents (Agent Connect): client id → app.
    pub connect_clients: BTreeMap<String, ConnectClient>,
    /// Lifetimes of Agent Connect's requests, codes and runtime tokens.
    pub connect_ttls: ConnectTtls,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("listen", &self.listen)
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("persons", &self.persons.keys().collect::<Vec<_>>())
            .field("max_json_bytes", &self.max_json_bytes)
            .field("max_blob_bytes", &self.max_blob_bytes)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_one_time_prekeys", &self.max_one_time_prekeys)
            .field("connect_clients", &self.connect_clients.values().collect::<Vec<_>>())
            .field("connect_ttls", &self.connect_ttls)
            .finish()
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            agents: BTreeMap::new(),
            persons: BTreeMap::new(),
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_one_time_prekeys: DEFAULT_MAX_ONE_TIME_PREKEYS,
            connect_clients: BTreeMap::new(),
            connect_ttls: ConnectTtls::default(),
        }
    }
}

impl RelayConfig {
    /// Loopback, on a port the OS picks: for tests and examples.
    pub fn loopback_ephemeral() -> Self {
        RelayConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Self::default() }
    }

    /// Listen on `address`.
    pub fn listen(mut self, address: SocketAddr) -> Self {
        self.listen = address;
        self
    }

    /// Adds an agent.
    pub fn agent(mut self, id: impl Into<String>, token: impl Into<String>) -> Self {
        self.agents.insert(id.into(), token.into());
        self
    }

    /// Adds a person.
    pub fn person(mut self, id: impl Into<String>, token: impl Into<String>) -> Self {
        self.persons.insert(id.into(), token.into());
        self
    }

    /// Lets an app connect agents (Agent Connect), approved as `client.approval` says.
    pub fn connect_client(mut self, client: ConnectClient) -> Self {
        self.connect_clients.insert(client.client_id.clone(), client);
        self
    }

    /// Sets Agent Connect's lifetimes (a zero code lifetime makes every code expired: for tests).
    pub fn connect_ttls(mut self, ttls: ConnectTtls) -> Self {
        self.connect_ttls = ttls;
        self
    }
}

/// Reads an `ID=TOKEN` command-line value (an agent or a person that may connect): both parts
/// non-empty, split at the first `=` so a token may hold more. Shared by `pacerelle-relay` and
/// `pacerelle relay`. The error is a message for the command line; it never repeats the value,
/// which holds a token.
pub fn parse_identity(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .filter(|(id, token)| !id.is_empty() && !token.is_empty())
        .map(|(id, token)| (id.to_owned(), token.to_owned()))
        .ok_or_else(|| "expected ID=TOKEN, both non-empty".to_owned())
}

/// `bytes` random bytes from the operating system, as hex: the ids and tokens of the
/// identities a command line creates when it is given none.
pub fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

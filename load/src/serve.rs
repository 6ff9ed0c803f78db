//! Our agent under load: an encrypted echo agent on its SQLite store, made the way a user
//! makes one (`Client::new` from the SDK's environment), on the runtime it is told.
//!
//! It answers every message with a reply whose text is `Received: <text>`, as the official
//! agent's script does, so both agents do the same work per message. It runs as a child process
//! of the load tool (`pacerelle-load-agent <runtime>`, or the tool itself with `--serve-agent
//! <runtime>`) so that its memory and CPU time, read from `/proc`, are its own.
//!
//! Configuration is the SDK's own environment (`PACERELLE_AGENT_ID`, `PACERELLE_AGENT_TOKEN`,
//! `PACERELLE_BASE_URL`, `PACERELLE_E2EE`, `PACERELLE_STORE_ROOT`), and the receipt cap when
//! the tool preloaded the store ([`crate::preload::MAX_RECEIPTS_ENV`]; otherwise the SDK's
//! default, as a user's agent has).

use crate::drive::ECHO_PREFIX;
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::config::{ClientConfig, ConfigError};
use pacerelle_core::store::DynAgentStore;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The first argument is not a runtime this agent knows.
    #[error("unknown runtime {0:?}: expected tokio, smol, async-std or blocking")]
    UnknownRuntime(String),
    /// No runtime was named.
    #[error("usage: pacerelle-load-agent <tokio|smol|async-std|blocking>")]
    Usage,
    /// The SDK's environment is malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The SDK's client failed.
    #[error(transparent)]
    Client(#[from] pacerelle_tokio::ClientError),
    /// The tokio runtime could not start.
    #[error("cannot start tokio: {0}")]
    Runtime(std::io::Error),
    /// The receipt cap in the environment is not a number.
    #[error("PACERELLE_LOAD_MAX_RECEIPTS: not a number: {0:?}")]
    ReceiptCap(String),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] pacerelle_store_sqlite::StoreError),
    /// No store root was given.
    #[error("PACERELLE_STORE_ROOT is not set")]
    NoStoreRoot,
}

/// The core's configuration and the store, when the tool asked for another receipt cap than the
/// SDK's default (a preloaded store); `None` for the SDK's own `Client::new`.
type Parts = Option<(AgentConfig, Box<dyn DynAgentStore>)>;

fn parts(config: &ClientConfig) -> Result<Parts, ServeError> {
    let Ok(cap) = std::env::var(crate::preload::MAX_RECEIPTS_ENV) else { return Ok(None) };
    let cap: usize = cap.parse().map_err(|_| ServeError::ReceiptCap(cap.clone()))?;
    let root = config.store_root.as_deref().ok_or(ServeError::NoStoreRoot)?;
    let store = pacerelle_store_sqlite::SqliteStore::open_in(root, &config.agent_id)?;
    let agent_config = AgentConfig { max_accepted_receipts: cap, ..AgentConfig::new(config.agent_id.clone()) };
    Ok(Some((agent_config, Box::new(store))))
}

fn rng() -> Box<pacerelle_core::Rng> {
    Box::new(rand::make_rng::<rand::rngs::StdRng>())
}

/// The reply the official agent's script gives to a plain text.
fn echo(text: &str) -> String {
    format!("{ECHO_PREFIX}{text}")
}

fn run_tokio(config: ClientConfig) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let mut client = match parts(&config)? {
            Some((agent_config, store)) => pacerelle_tokio::Client::with_parts(config, agent_config, store, rng())?,
            None => pacerelle_tokio::Client::new(config)?,
        };
        client.on_message(|message, agent| async move {
            agent.reply(&message, echo(&message.text)).await?;
            Ok(())
        });
        client.connect().await?;
        Ok(())
    })
}

fn run_smol(config: ClientConfig) -> Result<(), ServeError> {
    smol::block_on(async move {
        let mut client = match parts(&config)? {
            Some((agent_config, store)) => pacerelle_smol::Client::with_parts(config, agent_config, store, rng())?,
            None => pacerelle_smol::Client::new(config)?,
        };
        client.on_message(|message, agent| async move {
            agent.reply(&message, echo(&message.text)).await?;
            Ok(())
        });
        client.connect().await?;
        Ok(())
    })
}

fn run_async_std(config: ClientConfig) -> Result<(), ServeError> {
    async_std::task::block_on(async move {
        let mut client = match parts(&config)? {
            Some((agent_config, store)) => pacerelle_async_std::Client::with_parts(config, agent_config, store, rng())?,
            None => pacerelle_async_std::Client::new(config)?,
        };
        client.on_message(|message, agent| async move {
            agent.reply(&message, echo(&message.text)).await?;
            Ok(())
        });
        client.connect().await?;
        Ok(())
    })
}

fn run_blocking(config: ClientConfig) -> Result<(), ServeError> {
    let mut client = match parts(&config)? {
        Some((agent_config, store)) => pacerelle_blocking::Client::with_parts(config, agent_config, store, rng())?,
        None => pacerelle_blocking::Client::new(config)?,
    };
    client.on_message(|message, agent| {
        agent.reply(&message, echo(&message.text))?;
        Ok(())
    });
    client.connect()?;
    Ok(())
}

/// Serves as our load agent on `runtime` (`tokio`, `smol`, `async-std` or `blocking`, `None`
/// when none was named) until the process is killed, configured by the SDK's environment.
pub fn serve(runtime: Option<String>) -> Result<(), ServeError> {
    let runtime = runtime.ok_or(ServeError::Usage)?;
    let config = ClientConfig::from_env()?;
    match runtime.as_str() {
        "tokio" => run_tokio(config),
        "smol" => run_smol(config),
        "async-std" => run_async_std(config),
        "blocking" => run_blocking(config),
        _ => Err(ServeError::UnknownRuntime(runtime)),
    }
}

//! The store every runtime's `Client::new` opens: SQLite at `<root>/<agent_id>/agent.db`, the
//! root being `ClientConfig::store_root` (`PACERELLE_STORE_ROOT`) or the official SDK's
//! `~/.myagents`.
//!
//! An agent whose keys and receipts live in memory is a new Signal identity at every restart
//! (every person's session broken, queued messages unreadable) and handles replayed messages
//! twice, so the default is durable, and a store that cannot be opened is an error, never a
//! quiet fallback to memory. Memory is for tests and is asked for by name (`Client::in_memory`).

use crate::ClientError;
use pacerelle_core::config::{ClientConfig, DEFAULT_STORE_FOLDER};
use pacerelle_store_sqlite::{SqliteStore, StoreError};
use std::path::PathBuf;

/// `~/.myagents`, or `None` when the user has no home folder.
pub fn default_store_root() -> Option<PathBuf> {
    std::env::home_dir().filter(|home| !home.as_os_str().is_empty()).map(|home| home.join(DEFAULT_STORE_FOLDER))
}

/// The folder holding `config`'s agent folder: its `store_root`, else [`default_store_root`].
pub fn store_root(config: &ClientConfig) -> Result<PathBuf, ClientError> {
    config.store_root.clone().or_else(default_store_root).ok_or(ClientError::NoStoreRoot)
}

/// Opens (creating if needed) the agent's store in [`store_root`].
pub fn open_store(config: &ClientConfig) -> Result<SqliteStore, ClientError> {
    let root = store_root(config)?;
    let store = SqliteStore::open_in(&root, &config.agent_id).map_err(|error| match error {
        StoreError::InUse(path) => ClientError::StoreInUse(path),
        other => ClientError::StoreOpen { path: root.join(&config.agent_id), source: Box::new(other) },
    })?;
    tracing::info!(path = %store.path().display(), "agent store open");
    Ok(store)
}

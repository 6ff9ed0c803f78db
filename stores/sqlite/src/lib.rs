//! Durable agent state in SQLite: the default store for agents that must survive restarts.
//!
//! The core emits small [`StoreChanges`]; each is applied here in one transaction, so a crash
//! leaves either all of a change or none of it. Tables hold one row per receipt, per device, per
//! prekey and per peer's session record rather than one snapshot, so the cost of a message does
//! not grow with history (the official SDK rewrites one blob per message). A message's session
//! record and its pending receipt land in the same transaction.
//!
//! The database is opened with WAL (readers never block the writer), `synchronous=FULL` (a
//! committed change survives power loss: a receipt must not be lost after the app saw its
//! message), `secure_delete=ON` (deleted pending texts are overwritten, not left in free pages)
//! and an exclusive lock (one process per store, as the official SDK requires). On Unix the file
//! is created readable by its owner only.
//!
//! ```
//! use pacerelle_core::store::{AgentStore, StoreChanges};
//! use pacerelle_store_sqlite::SqliteStore;
//!
//! let dir = std::env::temp_dir().join(format!("pacerelle-doc-{}", std::process::id()));
//! let mut store = SqliteStore::open_in(&dir, "agent-1")?;
//! store.apply(&StoreChanges::default())?;
//! assert!(store.load()?.receipts.is_empty());
//! # drop(store); std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), pacerelle_store_sqlite::StoreError>(())
//! ```
//!
//! # Dependencies
//! rusqlite with its bundled SQLite, so the store works the same on every machine without a
//! system library.

#![forbid(unsafe_code)]

use pacerelle_core::Timestamp;
use pacerelle_core::store::{
    AgentSnapshot, AgentStore, PrekeyKind, Receipt, ReceiptState, SecretBytes, StoreChanges, StoredHistoryKey,
    StoredIdentity,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension as _, params};
use std::path::{Path, PathBuf};

/// The schema this version writes; older files are migrated on open, newer ones refused.
const SCHEMA_VERSION: i64 = 2;

/// The file name inside an agent's folder.
pub const FILE_NAME: &str = "agent.db";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has this store open.
    #[error("store {0} is in use by another process")]
    InUse(PathBuf),
    /// The file was written by a newer version of this SDK.
    #[error("store schema version {found} is newer than this SDK's ({supported})")]
    NewerSchema {
        /// The file's version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// A row holds something this version cannot read.
    #[error("corrupt store row: {0}")]
    Corrupt(String),
    /// The folder could not be created or protected.
    #[error("store folder: {0}")]
    Io(#[from] std::io::Error),
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// An agent's state in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `<root>/<agent_id>/agent.db`.
    pub fn open_in(root: &Path, agent_id: &str) -> Result<Self, StoreError> {
        if agent_id.is_empty() || agent_id.contains(['/', '\\']) || agent_id == "." || agent_id == ".." {
            return Err(StoreError::Corrupt(format!("agent id {agent_id:?} cannot name a folder")));
        }
        let folder = root.join(agent_id);
        create_private_dir(&folder)?;
        Self::open(&folder.join(FILE_NAME))
    }

    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let created = !path.exists();
        let connection = Connection::open(path)?;
        if created {
            restrict_to_owner(path)?;
        }
        let in_use = |error: rusqlite::Error| match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse(path.to_owned()),
            _ => StoreError::Sqlite(error),
        };
        connection.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(in_use)?;
        connection.pragma_update(None, "journal_mode", "WAL").map_err(in_use)?;
        connection.pragma_update(None, "synchronous", "FULL").map_err(in_use)?;
        connection.pragma_update(None, "secure_delete", "ON").map_err(in_use)?;
        // Taking the write lock now makes a second process fail at open, not at its first write.
        connection.execute_batch("BEGIN IMMEDIATE; COMMIT;").map_err(in_use)?;
        let mut store = SqliteStore { connection, path: path.to_owned() };
        store.migrate()?;
        tracing::debug!(path = %store.path.display(), "store open");
        Ok(store)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self.connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { found: version, supported: SCHEMA_VERSION });
        }
        if version < 1 {
            let transaction = self.connection.transaction()?;
            transaction.execute_batch(
                "CREATE TABLE receipts (
                     message_id      TEXT PRIMARY KEY,
                     digest          TEXT NOT NULL,
                     sender          TEXT NOT NULL,
                     conversation_id TEXT NOT NULL,
                     from_device_id  TEXT,
                     pending_text    TEXT,
                     accepted_at     INTEGER,
                     CHECK ((pending_text IS NULL) <> (accepted_at IS NULL))
                 );
                 CREATE TABLE last_devices (
                     person          TEXT NOT NULL,
                     conversation_id TEXT NOT NULL,
                     device_id       TEXT NOT NULL,
                     PRIMARY KEY (person, conversation_id)
                 );
                 PRAGMA user_version = 1;",
            )?;
            transaction.commit()?;
        }
        if version < 2 {
            // End-to-end encryption: the identity (one row), private prekeys, and one session
            // record per peer name.
            let transaction = self.connection.transaction()?;
            transaction.execute_batch(
                "CREATE TABLE identity (
                     singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
                     private_key     BLOB NOT NULL,
                     registration_id INTEGER NOT NULL,
                     prekey_counter  INTEGER
                 );
                 CREATE TABLE prekeys (
                     kind        TEXT NOT NULL,
                     id          INTEGER NOT NULL,
                     private_key BLOB NOT NULL,
                     PRIMARY KEY (kind, id)
                 );
                 CREATE TABLE sessions (
                     peer   TEXT PRIMARY KEY,
                     record BLOB NOT NULL
                 );
                 CREATE TABLE history_keys (
                     conversation_id TEXT PRIMARY KEY,
                     key_id          TEXT NOT NULL,
                     epoch           INTEGER NOT NULL,
                     raw_key         BLOB NOT NULL
                 );
                 PRAGMA user_version = 2;",
            )?;
            transaction.commit()?;
        }
        Ok(())
    }
}

impl AgentStore for SqliteStore {
    type Error = StoreError;

    fn load(&mut self) -> Result<AgentSnapshot, StoreError> {
        let mut snapshot = AgentSnapshot::default();
        let mut statement = self.connection.prepare(
            "SELECT message_id, digest, sender, conversation_id, from_device_id, pending_text, accepted_at FROM receipts",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<i64>>(6)?,
            ))
        })?;
        for row in rows {
            let (message_id, digest, from, conversation_id, from_device_id, pending_text, accepted_at) = row?;
            let state = match (pending_text, accepted_at) {
                (Some(text), None) => ReceiptState::Pending { text },
                (None, Some(at)) => ReceiptState::Accepted {
                    at: Timestamp::from_millis(
                        u64::try_from(at)
                            .map_err(|_| StoreError::Corrupt(format!("receipt {message_id}: negative time")))?,
                    ),
                },
                _ => return Err(StoreError::Corrupt(format!("receipt {message_id}: neither pending nor accepted"))),
            };
            snapshot.receipts.insert(
                message_id.clone(),
                Receipt { message_id, digest, from, conversation_id, from_device_id, sender_identity: None, state },
            );
        }
        let mut statement = self.connection.prepare("SELECT person, conversation_id, device_id FROM last_devices")?;
        let rows = statement.query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))?;
        for row in rows {
            let (key, device) = row?;
            snapshot.last_devices.insert(key, device);
        }
        let identity = self
            .connection
            .query_row("SELECT private_key, registration_id, prekey_counter FROM identity", [], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?, row.get::<_, Option<i64>>(2)?))
            })
            .optional()?;
        if let Some((private_key, registration_id, counter)) = identity {
            let number = |value: i64, what: &str| {
                u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("identity: {what} {value}")))
            };
            snapshot.e2ee.identity = Some(StoredIdentity {
                private_key: SecretBytes::new(private_key),
                registration_id: number(registration_id, "registration id")?,
            });
            snapshot.e2ee.prekey_counter = counter.map(|counter| number(counter, "prekey counter")).transpose()?;
        }
        let mut statement = self.connection.prepare("SELECT kind, id, private_key FROM prekeys")?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, Vec<u8>>(2)?)))?;
        for row in rows {
            let (kind, id, private_key) = row?;
            let kind = PrekeyKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("prekey kind {kind:?}")))?;
            let id = u32::try_from(id).map_err(|_| StoreError::Corrupt(format!("prekey id {id}")))?;
            snapshot.e2ee.prekeys.insert((kind, id), SecretBytes::new(private_key));
        }
        let mut statement = self.connection.prepare("SELECT peer, record FROM sessions")?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)))?;
        for row in rows {
            let (peer, record) = row?;
            snapshot.e2ee.sessions.insert(peer, SecretBytes::new(record));
        }
        let mut statement =
            self.connection.prepare("SELECT conversation_id, key_id, epoch, raw_key FROM history_keys")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?, row.get::<_, Vec<u8>>(3)?))
        })?;
        for row in rows {
            let (conversation, key_id, epoch, raw_key) = row?;
            let epoch = u64::try_from(epoch).map_err(|_| StoreError::Corrupt(format!("history key epoch {epoch}")))?;
            snapshot
                .e2ee
                .history_keys
                .insert(conversation, StoredHistoryKey { key_id, epoch, raw_key: SecretBytes::new(raw_key) });
        }
        Ok(snapshot)
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let transaction = self.connection.transaction()?;
        {
            let mut put = transaction.prepare_cached(
                "INSERT OR REPLACE INTO receipts
                     (message_id, digest, sender, conversation_id, from_device_id, pending_text, accepted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for receipt in &changes.put_receipts {
                let (text, accepted_at) = match &receipt.state {
                    ReceiptState::Pending { text } => (Some(text.as_str()), None),
                    ReceiptState::Accepted { at } => (None, Some(i64::try_from(at.as_millis()).unwrap_or(i64::MAX))),
                };
                put.execute(params![
                    receipt.message_id,
                    receipt.digest,
                    receipt.from,
                    receipt.conversation_id,
                    receipt.from_device_id,
                    text,
                    accepted_at
                ])?;
            }
            let mut remove = transaction.prepare_cached("DELETE FROM receipts WHERE message_id = ?1")?;
            for message_id in &changes.remove_receipts {
                remove.execute(params![message_id])?;
            }
            let mut device = transaction.prepare_cached(
                "INSERT OR REPLACE INTO last_devices (person, conversation_id, device_id) VALUES (?1, ?2, ?3)",
            )?;
            for ((person, conversation_id), device_id) in &changes.put_last_devices {
                device.execute(params![person, conversation_id, device_id])?;
            }
            let e2ee = &changes.e2ee;
            if let Some(identity) = &e2ee.identity {
                transaction.execute(
                    "INSERT OR REPLACE INTO identity (singleton, private_key, registration_id, prekey_counter)
                     VALUES (1, ?1, ?2, (SELECT prekey_counter FROM identity WHERE singleton = 1))",
                    params![identity.private_key.expose(), identity.registration_id],
                )?;
            }
            if let Some(counter) = e2ee.prekey_counter {
                let updated = transaction.execute("UPDATE identity SET prekey_counter = ?1", params![counter])?;
                if updated == 0 {
                    return Err(StoreError::Corrupt("a prekey counter without an identity".to_owned()));
                }
            }
            let mut put = transaction
                .prepare_cached("INSERT OR REPLACE INTO prekeys (kind, id, private_key) VALUES (?1, ?2, ?3)")?;
            for prekey in &e2ee.put_prekeys {
                put.execute(params![prekey.kind.as_str(), prekey.id, prekey.private_key.expose()])?;
            }
            let mut remove = transaction.prepare_cached("DELETE FROM prekeys WHERE kind = ?1 AND id = ?2")?;
            for (kind, id) in &e2ee.remove_prekeys {
                remove.execute(params![kind.as_str(), id])?;
            }
            let mut session =
                transaction.prepare_cached("INSERT OR REPLACE INTO sessions (peer, record) VALUES (?1, ?2)")?;
            for (peer, record) in &e2ee.put_sessions {
                session.execute(params![peer, record.expose()])?;
            }
            let mut history = transaction.prepare_cached(
                "INSERT OR REPLACE INTO history_keys (conversation_id, key_id, epoch, raw_key) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (conversation, key) in &e2ee.put_history_keys {
                let epoch = i64::try_from(key.epoch).unwrap_or(i64::MAX);
                history.execute(params![conversation, key.key_id, epoch, key.raw_key.expose()])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }
}

impl SqliteStore {
    /// How many receipts are held (for diagnostics).
    pub fn receipt_count(&self) -> Result<u64, StoreError> {
        let count: Option<i64> =
            self.connection.query_row("SELECT COUNT(*) FROM receipts", [], |row| row.get(0)).optional()?;
        Ok(count.unwrap_or(0).try_into().unwrap_or(0))
    }
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Creates `folder` (and parents); on Unix the folder itself is owner-only, which also covers
/// SQLite's `-wal` and `-shm` files created inside it.
fn create_private_dir(folder: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

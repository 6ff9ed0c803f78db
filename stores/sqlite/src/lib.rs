//! Durable agent state in SQLite: the default store for agents that must survive restarts.
//!
//! The core emits small [`StoreChanges`]; each is applied here in one transaction, so a crash
//! leaves either all of a change or none of it. A runtime that gathers several (a burst of
//! messages) hands them over together ([`AgentStore::apply_batch`], group commit): they go in
//! one transaction, with one `fsync`, and a crash leaves all of the batch or none of it. Tables hold one row per receipt, per device, per
//! prekey, per peer's session record, per peer identity and per unreadable message rather than
//! one snapshot, so the cost of a message does not grow with history (the official SDK rewrites
//! one blob per message). A message's session record and its pending receipt land in the same
//! transaction. What loads is exactly what [`AgentSnapshot::apply`] makes of the same changes
//! (the in-memory store's semantics); every value is checked on load, and a bad row is reported
//! by table and key ([`StoreError::Corrupt`]).
//!
//! The database is opened with WAL (readers never block the writer), `synchronous=FULL` (a
//! committed change survives power loss: a receipt must not be lost after the app saw its
//! message), and an exclusive lock (one process per store, as the official SDK requires). On
//! Unix the agent's folder, the database and SQLite's `-wal` and `-shm` files are narrowed to
//! their owner every time the store opens, not only when it creates them.
//!
//! # No deleted secret left on disk
//!
//! Deleting a row is not enough for forward secrecy: a used one-time prekey, a session record
//! whose chain keys have moved on, or a pending text once its message is accepted must be gone
//! from the disk, or whoever copies the disk later reads them. Three places keep old bytes:
//! - the row's old place in its page and the pages it freed: `secure_delete=ON` overwrites them
//!   with zeros;
//! - the WAL, which holds every page version written since its last reset, and the database
//!   file, which holds each page's version as of the last checkpoint (so the row as it was
//!   before this change) until the next one;
//! - temporary files: `temp_store=MEMORY` keeps statement journals and sorts in memory.
//!
//! So after every transaction (one change, or a batch of them) that deleted or replaced a
//! secret, the store runs
//! `PRAGMA wal_checkpoint(TRUNCATE)`: the zeroed pages go into the database file, over their old
//! versions, and the WAL is cut to zero bytes. Secrets are private keys (the identity, prekeys),
//! session records, archive keys and group keys, and receipts (a pending text, and the digest of the payload
//! that an accepted receipt keeps), and the frames kept to be sent again (what a handler sent,
//! kept with its accepted receipt, and the outbox; a plaintext agent's frames carry message
//! text). A transaction "deleted or replaced" one when a `DELETE`
//! removed such a row; the store deletes before it inserts to know, so a first session with a
//! peer or a fresh pending receipt costs no checkpoint, while replacing a session record,
//! accepting a pending message, using a one-time prekey, ageing receipts out or removing outbox
//! entries the relay confirmed (one batch per pong) does. Peer
//! identity keys (public), last devices and failure records (ids and reasons, never contents)
//! are not secrets and cost no checkpoint.
//!
//! The price: an encrypted message replaces its peer's session record on arrival and its pending
//! text on acceptance, so it pays two checkpoints (each writes the changed pages into the
//! database file and syncs it, then truncates the WAL, which the next commit grows again); a
//! burst committed as one batch pays them once for the whole batch, not once per message. The
//! crate's `commit_cost` example measures it
//! (`cargo run --release -p pacerelle-store-sqlite --example commit_cost`): where it was first
//! run (ext4 on a virtual disk), a whole message went from about 0.4 ms to about 1.5 ms of
//! commits. The alternative, checkpointing now and then, would leave the last records' chain
//! keys readable on disk for minutes to hours after they were deleted; an agent running
//! unattended must not carry that window, and a millisecond per message is small beside the
//! network. `journal_size_limit=0` is the backstop for runs of changes that erase nothing (or a
//! checkpoint still owed): whenever SQLite restarts the WAL it cuts it back to the transaction
//! being written, so frames of earlier ones do not linger at its end.
//!
//! A checkpoint that fails after its transaction committed is not an error of [`AgentStore::apply`]
//! (the change is durable, and reporting it failed would be false): it is logged and retried
//! after the next change. Opening a store also checkpoints, which clears what a crash left in
//! the WAL. What this cannot reach: copies the file system or the disk keeps on its own
//! (journaling, snapshots, SSD wear levelling); use full-disk encryption against those.
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

mod error;
mod files;
mod import;
mod load;
mod read_only;
mod schema;
#[cfg(test)]
mod tests_flat;

pub use error::{RowProblem, StoreError};
pub use import::{ImportPythonError, OFFICIAL_FILE_NAME, import_python};
pub use read_only::read_identity;

use pacerelle_core::Timestamp;
use pacerelle_core::store::{AgentSnapshot, AgentStore, PeerId, ReceiptState, StoreChanges};
use rusqlite::{Connection, ErrorCode, OptionalExtension as _, Transaction, params};
use std::path::{Path, PathBuf};

/// The file name inside an agent's folder.
pub const FILE_NAME: &str = "agent.db";

/// An agent's state in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    connection: Connection,
    path: PathBuf,
    /// A checkpoint after an erasing transaction did not complete; the next change retries it.
    checkpoint_owed: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) `<root>/<agent_id>/agent.db`; the agent's folder is narrowed
    /// to its owner.
    pub fn open_in(root: &Path, agent_id: &str) -> Result<Self, StoreError> {
        if agent_id.is_empty() || agent_id.contains(['/', '\\']) || agent_id == "." || agent_id == ".." {
            return Err(StoreError::BadAgentId(agent_id.to_owned()));
        }
        let folder = root.join(agent_id);
        files::private_dir(&folder)?;
        Self::open(&folder.join(FILE_NAME))
    }

    /// Opens (creating if needed) the store at `path`; the file and its `-wal` and `-shm`
    /// companions are narrowed to their owner (the folder is left as it is).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        files::private_database(path)?;
        let connection = Connection::open(path)?;
        let in_use = |error: rusqlite::Error| match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse(path.to_owned()),
            _ => StoreError::Sqlite(error),
        };
        // The exclusive lock comes before WAL: SQLite then keeps the WAL index in memory
        // instead of a shared `-shm` file.
        connection.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(in_use)?;
        connection.pragma_update(None, "journal_mode", "WAL").map_err(in_use)?;
        connection.pragma_update(None, "synchronous", "FULL").map_err(in_use)?;
        connection.pragma_update(None, "secure_delete", "ON").map_err(in_use)?;
        connection.pragma_update(None, "journal_size_limit", 0).map_err(in_use)?;
        connection.pragma_update(None, "temp_store", "MEMORY").map_err(in_use)?;
        // Taking the write lock now makes a second process fail at open, not at its first write.
        connection.execute_batch("BEGIN IMMEDIATE; COMMIT;").map_err(in_use)?;
        let mut store = SqliteStore { connection, path: path.to_owned(), checkpoint_owed: false };
        schema::migrate(&mut store.connection)?;
        // Whatever a crash left in the WAL, and the old pages a migration rewrote, go now.
        if !truncate_wal(&store.connection)? {
            store.checkpoint_owed = true;
        }
        tracing::debug!(path = %store.path.display(), "store open");
        Ok(store)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many receipts are held (for diagnostics).
    pub fn receipt_count(&self) -> Result<u64, StoreError> {
        let count: Option<i64> =
            self.connection.query_row("SELECT COUNT(*) FROM receipts", [], |row| row.get(0)).optional()?;
        Ok(count.unwrap_or(0).try_into().unwrap_or(0))
    }

    fn checkpoint(&mut self) {
        match truncate_wal(&self.connection) {
            Ok(true) => self.checkpoint_owed = false,
            Ok(false) => {
                tracing::warn!(path = %self.path.display(), "WAL checkpoint incomplete; retried after the next change");
                self.checkpoint_owed = true;
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "WAL checkpoint failed; retried after the next change");
                self.checkpoint_owed = true;
            }
        }
    }
}

/// Copies the WAL into the database file and truncates it to zero bytes; whether it completed.
fn truncate_wal(connection: &Connection) -> rusqlite::Result<bool> {
    let busy: i64 = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    Ok(busy == 0)
}

impl AgentStore for SqliteStore {
    type Error = StoreError;

    fn load(&mut self) -> Result<AgentSnapshot, StoreError> {
        load::snapshot(&self.connection)
    }

    fn apply(&mut self, changes: &StoreChanges) -> Result<(), StoreError> {
        self.apply_batch(std::slice::from_ref(changes))
    }

    /// Group commit: every change in one transaction, so one `fsync` of the WAL for the batch,
    /// and at most one truncating checkpoint after it (when any change erased a secret). A
    /// failure rolls the whole batch back.
    fn apply_batch(&mut self, batch: &[StoreChanges]) -> Result<(), StoreError> {
        if batch.iter().all(StoreChanges::is_empty) {
            return Ok(());
        }
        // Dropped without `commit` on an error: SQLite rolls back everything written so far.
        let transaction = self.connection.transaction()?;
        let mut erased = false;
        for changes in batch.iter().filter(|changes| !changes.is_empty()) {
            erased |= write(&transaction, changes)?;
        }
        transaction.commit()?;
        if erased || self.checkpoint_owed {
            self.checkpoint();
        }
        Ok(())
    }
}

/// A value for an INTEGER column, or why it cannot be one.
fn integer(
    value: u64,
    table: &'static str,
    key: &dyn std::fmt::Display,
    column: &'static str,
) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::TooLarge { table, key: key.to_string(), column, value })
}

/// How a peer's key is written: the device flag and the device id (empty without a device).
fn peer_key(peer: &PeerId) -> (bool, &str) {
    (peer.device_id.is_some(), peer.device_id.as_deref().unwrap_or(""))
}

/// Writes `changes` in `transaction`, in [`AgentSnapshot::apply`]'s order; returns whether a
/// secret was deleted or replaced (see the module docs).
fn write(transaction: &Transaction<'_>, changes: &StoreChanges) -> Result<bool, StoreError> {
    let mut erased = false;
    {
        // Deleting a pending row first tells whether this put replaces a pending text.
        let mut drop_pending =
            transaction.prepare_cached("DELETE FROM receipts WHERE message_id = ?1 AND pending_text IS NOT NULL")?;
        let mut put = transaction.prepare_cached(
            "INSERT OR REPLACE INTO receipts
                 (message_id, digest, sender, conversation_id, from_device_id, pending_text, accepted_at,
                  sender_identity)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for receipt in &changes.put_receipts {
            let (text, accepted_at) = match &receipt.state {
                ReceiptState::Pending { text } => (Some(text.as_str()), None),
                ReceiptState::Accepted { at } => {
                    (None, Some(integer(at.as_millis(), "receipts", &receipt.message_id, "accepted_at")?))
                }
            };
            erased |= drop_pending.execute(params![receipt.message_id])? > 0;
            put.execute(params![
                receipt.message_id,
                receipt.digest,
                receipt.from,
                receipt.conversation_id,
                receipt.from_device_id,
                text,
                accepted_at,
                receipt.sender_identity.as_ref().map(|key| &key[..]),
            ])?;
        }
        // A sent frame of a plaintext agent holds a message's text: erased like a pending text.
        let mut drop_frames = transaction.prepare_cached("DELETE FROM sent_frames WHERE message_id = ?1")?;
        let mut put_frame = transaction.prepare_cached(
            "INSERT INTO sent_frames (message_id, position, frame_id, frame) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (message_id, frames) in &changes.put_sent_frames {
            erased |= drop_frames.execute(params![message_id])? > 0;
            for (position, sent) in frames.iter().enumerate() {
                let position = integer(position as u64, "sent_frames", message_id, "position")?;
                put_frame.execute(params![message_id, position, sent.id, sent.frame])?;
            }
        }
        let mut remove = transaction.prepare_cached("DELETE FROM receipts WHERE message_id = ?1")?;
        for message_id in &changes.remove_receipts {
            erased |= remove.execute(params![message_id])? > 0;
            erased |= drop_frames.execute(params![message_id])? > 0;
        }
        let mut put_entry =
            transaction.prepare_cached("INSERT OR REPLACE INTO outbox (seq, frame_id, frame) VALUES (?1, ?2, ?3)")?;
        for entry in &changes.put_outbox {
            let seq = integer(entry.seq, "outbox", &entry.seq, "seq")?;
            put_entry.execute(params![seq, entry.sent.id, entry.sent.frame])?;
        }
        let mut remove_entry = transaction.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
        for seq in &changes.remove_outbox {
            let seq = integer(*seq, "outbox", seq, "seq")?;
            erased |= remove_entry.execute(params![seq])? > 0;
        }
    }
    let mut device = transaction.prepare_cached(
        "INSERT OR REPLACE INTO last_devices (person, conversation_id, device_id) VALUES (?1, ?2, ?3)",
    )?;
    for ((person, conversation_id), device_id) in &changes.put_last_devices {
        device.execute(params![person, conversation_id, device_id])?;
    }
    let mut put = transaction.prepare_cached(
        "INSERT OR REPLACE INTO delivery_failures
             (message_id, digest, sender, conversation_id, attempts, reason, first_at, given_up_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for failure in &changes.put_failures {
        let time = |at: Timestamp, column| integer(at.as_millis(), "delivery_failures", &failure.message_id, column);
        let given_up_at = failure.given_up_at.map(|at| time(at, "given_up_at")).transpose()?;
        put.execute(params![
            failure.message_id,
            failure.digest,
            failure.from,
            failure.conversation_id,
            failure.attempts,
            failure.reason,
            time(failure.first_at, "first_at")?,
            given_up_at,
        ])?;
    }
    let mut remove = transaction.prepare_cached("DELETE FROM delivery_failures WHERE message_id = ?1")?;
    for message_id in &changes.remove_failures {
        remove.execute(params![message_id])?;
    }
    // Group keys are secrets: a replaced row counts as erased, so the checkpoint follows.
    let mut drop_group_key = transaction
        .prepare_cached("DELETE FROM group_keys WHERE conversation_id = ?1 AND key_id = ?2 AND epoch = ?3")?;
    let mut put_group_key = transaction
        .prepare_cached("INSERT INTO group_keys (conversation_id, key_id, epoch, raw_key) VALUES (?1, ?2, ?3, ?4)")?;
    for key in &changes.put_group_keys {
        let epoch = integer(key.epoch, "group_keys", &key.key_id, "epoch")?;
        erased |= drop_group_key.execute(params![key.conversation_id, key.key_id, epoch])? > 0;
        put_group_key.execute(params![key.conversation_id, key.key_id, epoch, key.raw_key.expose()])?;
    }
    let e2ee = &changes.e2ee;
    if let Some(identity) = &e2ee.identity {
        erased |= transaction.execute("DELETE FROM identity", [])? > 0;
        transaction.execute(
            "INSERT INTO identity (singleton, private_key, registration_id) VALUES (1, ?1, ?2)",
            params![identity.private_key.expose(), identity.registration_id],
        )?;
    }
    if let Some(counter) = e2ee.prekey_counter {
        transaction.execute(
            "INSERT INTO prekey_state (singleton, prekey_counter) VALUES (1, ?1)
             ON CONFLICT (singleton) DO UPDATE SET prekey_counter = excluded.prekey_counter",
            params![counter],
        )?;
    }
    let mut drop_prekey = transaction.prepare_cached("DELETE FROM prekeys WHERE kind = ?1 AND id = ?2")?;
    let mut put = transaction.prepare_cached("INSERT INTO prekeys (kind, id, private_key) VALUES (?1, ?2, ?3)")?;
    for prekey in &e2ee.put_prekeys {
        erased |= drop_prekey.execute(params![prekey.kind.as_str(), prekey.id])? > 0;
        put.execute(params![prekey.kind.as_str(), prekey.id, prekey.private_key.expose()])?;
    }
    for (kind, id) in &e2ee.remove_prekeys {
        erased |= drop_prekey.execute(params![kind.as_str(), id])? > 0;
    }
    let mut drop_session = transaction.prepare_cached("DELETE FROM sessions WHERE peer = ?1")?;
    let mut session = transaction.prepare_cached("INSERT INTO sessions (peer, record) VALUES (?1, ?2)")?;
    for (peer, record) in &e2ee.put_sessions {
        erased |= drop_session.execute(params![peer])? > 0;
        session.execute(params![peer, record.expose()])?;
    }
    for peer in &e2ee.remove_sessions {
        erased |= drop_session.execute(params![peer])? > 0;
    }
    let mut drop_history = transaction.prepare_cached("DELETE FROM history_keys WHERE conversation_id = ?1")?;
    let mut history = transaction
        .prepare_cached("INSERT INTO history_keys (conversation_id, key_id, epoch, raw_key) VALUES (?1, ?2, ?3, ?4)")?;
    for (conversation, key) in &e2ee.put_history_keys {
        let epoch = integer(key.epoch, "history_keys", conversation, "epoch")?;
        erased |= drop_history.execute(params![conversation])? > 0;
        history.execute(params![conversation, key.key_id, epoch, key.raw_key.expose()])?;
    }
    let mut put = transaction.prepare_cached(
        "INSERT OR REPLACE INTO peer_identities (user_id, has_device, device_id, trusted, pending, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (peer, identity) in &e2ee.put_peer_identities {
        let (has_device, device_id) = peer_key(peer);
        let last_seen = integer(identity.last_seen.as_millis(), "peer_identities", peer, "last_seen")?;
        put.execute(params![
            peer.user_id,
            has_device,
            device_id,
            &identity.trusted[..],
            identity.pending.as_ref().map(|key| &key[..]),
            last_seen,
        ])?;
    }
    let mut remove = transaction
        .prepare_cached("DELETE FROM peer_identities WHERE user_id = ?1 AND has_device = ?2 AND device_id = ?3")?;
    for peer in &e2ee.remove_peer_identities {
        let (has_device, device_id) = peer_key(peer);
        remove.execute(params![peer.user_id, has_device, device_id])?;
    }
    if let Some(at) = e2ee.one_time_published_at {
        transaction.execute(
            "INSERT INTO prekey_state (singleton, one_time_published_at) VALUES (1, ?1)
             ON CONFLICT (singleton) DO UPDATE SET one_time_published_at = excluded.one_time_published_at",
            params![integer(at.as_millis(), "prekey_state", &1, "one_time_published_at")?],
        )?;
    }
    Ok(erased)
}

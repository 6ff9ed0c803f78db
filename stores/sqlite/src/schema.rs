//! The tables, and the migrations that bring a file of any earlier version up to this one.

use crate::StoreError;
use rusqlite::Connection;

/// The schema this version writes; older files are migrated on open, newer ones refused.
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// Brings the file to [`SCHEMA_VERSION`], one transaction per version step, so a crash
/// mid-migration leaves a file of a known version.
pub(crate) fn migrate(connection: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { found: version, supported: SCHEMA_VERSION });
    }
    if version < 1 {
        let transaction = connection.transaction()?;
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
        let transaction = connection.transaction()?;
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
    if version < 3 {
        // Trust and failure. The prekey counter leaves the identity row for a row of its own,
        // beside when one-time prekeys were last published: the core's snapshot holds both
        // independently of the identity, and so must the file.
        //
        // A peer's device is optional and `Some("")` is not `None`; SQLite treats NULLs in a
        // primary key as distinct, so the key carries a flag and an empty text instead.
        let transaction = connection.transaction()?;
        transaction.execute_batch(
            "ALTER TABLE receipts ADD COLUMN sender_identity BLOB;
             CREATE TABLE prekey_state (
                 singleton             INTEGER PRIMARY KEY CHECK (singleton = 1),
                 prekey_counter        INTEGER,
                 one_time_published_at INTEGER
             );
             INSERT INTO prekey_state (singleton, prekey_counter)
                 SELECT 1, prekey_counter FROM identity WHERE prekey_counter IS NOT NULL;
             ALTER TABLE identity DROP COLUMN prekey_counter;
             CREATE TABLE peer_identities (
                 user_id    TEXT NOT NULL,
                 has_device INTEGER NOT NULL,
                 device_id  TEXT NOT NULL,
                 trusted    BLOB NOT NULL,
                 pending    BLOB,
                 last_seen  INTEGER NOT NULL,
                 PRIMARY KEY (user_id, has_device, device_id)
             );
             CREATE TABLE delivery_failures (
                 message_id      TEXT PRIMARY KEY,
                 digest          TEXT NOT NULL,
                 sender          TEXT NOT NULL,
                 conversation_id TEXT NOT NULL,
                 attempts        INTEGER NOT NULL,
                 reason          TEXT NOT NULL,
                 first_at        INTEGER NOT NULL,
                 given_up_at     INTEGER
             );
             PRAGMA user_version = 3;",
        )?;
        transaction.commit()?;
    }
    if version < 4 {
        // No reply lost to a crash: the frames each accepted message's handler sent (one row
        // per frame, going with its receipt), and the outbox of frames sent outside handlers
        // (one row per frame, until the relay is proven to have read it).
        let transaction = connection.transaction()?;
        transaction.execute_batch(
            "CREATE TABLE sent_frames (
                 message_id TEXT NOT NULL,
                 position   INTEGER NOT NULL,
                 frame_id   TEXT NOT NULL,
                 frame      TEXT NOT NULL,
                 PRIMARY KEY (message_id, position)
             );
             CREATE TABLE outbox (
                 seq      INTEGER PRIMARY KEY,
                 frame_id TEXT NOT NULL,
                 frame    TEXT NOT NULL
             );
             PRAGMA user_version = 4;",
        )?;
        transaction.commit()?;
    }
    if version < 5 {
        // Encrypted groups: the keys people distribute, one row per (conversation, key id,
        // epoch); older epochs stay, so late messages under them still open.
        let transaction = connection.transaction()?;
        transaction.execute_batch(
            "CREATE TABLE group_keys (
                 conversation_id TEXT NOT NULL,
                 key_id          TEXT NOT NULL,
                 epoch           INTEGER NOT NULL,
                 raw_key         BLOB NOT NULL,
                 PRIMARY KEY (conversation_id, key_id, epoch)
             );
             PRAGMA user_version = 5;",
        )?;
        transaction.commit()?;
    }
    Ok(())
}

//! Reading an agent's store without changing it, for tools (the `pacerelle verify` command)
//! that look at a store they do not own.
//!
//! [`SqliteStore::open`](crate::SqliteStore::open) creates a missing file, migrates an old one,
//! narrows permissions and takes the exclusive lock: right for the agent, wrong for a tool,
//! which must neither make a store where there was none nor upgrade one an older SDK still
//! runs. Here the file is never created and only read (SQLite's `query_only`), and the folder
//! is left with the files it had; a store whose agent is running
//! (the agent holds the exclusive lock) is [`StoreError::InUse`] rather than read past the lock.

use crate::schema::SCHEMA_VERSION;
use crate::{StoreError, load};
use pacerelle_core::store::StoredIdentity;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;

/// The first schema version with the `identity` table.
const IDENTITY_SINCE: i64 = 2;

/// The agent's identity in the store at `path` (an `agent.db`), read without writing anything:
/// `None` when the agent never ran with end-to-end encryption.
///
/// A missing file is an error ([`StoreError::Sqlite`] with SQLite's `CannotOpen`), never
/// created; a store open in a running agent is [`StoreError::InUse`]; a file from a newer SDK
/// is [`StoreError::NewerSchema`].
pub fn read_identity(path: &Path) -> Result<Option<StoredIdentity>, StoreError> {
    let in_use = |error: rusqlite::Error| match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse(path.to_owned()),
        _ => StoreError::Sqlite(error),
    };
    // Without `SQLITE_OPEN_CREATE`: a missing file is an error, never a new store. Opened for
    // writing, but `query_only` refuses every statement that would write: what a read-only
    // handle cannot do is take the exclusive lock below, or remove on close the `-wal` file
    // SQLite makes to read a WAL database.
    let connection =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    // A running agent never lets go of its lock: waiting for it (rusqlite waits 5 s by default)
    // would only delay the answer.
    connection.busy_timeout(std::time::Duration::ZERO)?;
    connection.pragma_update(None, "query_only", true).map_err(in_use)?;
    // Exclusive locking before the first read keeps SQLite's WAL index in this process's memory:
    // no `-shm` file is made next to the store (the agent runs the same way).
    connection.pragma_update(None, "locking_mode", "EXCLUSIVE").map_err(in_use)?;
    // One read transaction for both reads, so the version checked is the one read.
    connection.execute_batch("BEGIN").map_err(in_use)?;
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(in_use)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { found: version, supported: SCHEMA_VERSION });
    }
    if version < IDENTITY_SINCE {
        return Ok(None);
    }
    let identity = load::identity(&connection).map_err(|error| match error {
        StoreError::Sqlite(error) => in_use(error),
        other => other,
    })?;
    tracing::debug!(path = %path.display(), found = identity.is_some(), "identity read");
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use pacerelle_core::store::{AgentStore as _, SecretBytes, StoreChanges};
    use std::path::PathBuf;

    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pacerelle-read-only-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        names
    }

    fn with_identity(path: &Path) -> SqliteStore {
        let mut store = SqliteStore::open(path).unwrap();
        let mut changes = StoreChanges::default();
        changes.e2ee.identity =
            Some(StoredIdentity { private_key: SecretBytes::new(vec![7; 32]), registration_id: 42 });
        store.apply(&changes).unwrap();
        store
    }

    #[test]
    fn reads_the_identity_and_leaves_the_folder_as_it_was() {
        let dir = folder("identity");
        let path = dir.join("agent.db");
        drop(with_identity(&path));
        let before = listing(&dir);
        let bytes = std::fs::read(&path).unwrap();
        let identity = read_identity(&path).unwrap().expect("an identity");
        assert_eq!((identity.private_key.expose(), identity.registration_id), (&[7u8; 32][..], 42));
        assert_eq!(listing(&dir), before);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_store_without_identity_a_missing_file_and_a_running_agent() {
        let dir = folder("cases");
        let plain = dir.join("plain.db");
        drop(SqliteStore::open(&plain).unwrap());
        assert!(read_identity(&plain).unwrap().is_none());

        let missing = dir.join("missing.db");
        assert!(matches!(read_identity(&missing), Err(StoreError::Sqlite(_))));
        assert!(!missing.exists(), "a missing store must not be created");

        let running = dir.join("running.db");
        let store = with_identity(&running);
        assert!(matches!(read_identity(&running), Err(StoreError::InUse(path)) if path == running));
        drop(store);
        assert!(read_identity(&running).unwrap().is_some());

        let garbage = dir.join("garbage.db");
        std::fs::write(&garbage, b"not a database, not at all, just some bytes to fill a page").unwrap();
        assert!(matches!(read_identity(&garbage), Err(StoreError::Sqlite(_))));
        std::fs::remove_dir_all(&dir).ok();
    }
}

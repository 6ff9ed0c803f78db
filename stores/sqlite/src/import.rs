//! Coming over from the official Python SDK: reads an official agent's `signal.db` and writes
//! what it holds (identity, prekeys, sessions, peers' identities, archive and group keys,
//! receipts) into a store of ours, in one transaction. The decoding is the core's
//! ([`pacerelle_core::import`]); this is the I/O around it.

use crate::{SqliteStore, StoreError};
use pacerelle_core::Timestamp;
use pacerelle_core::import::{ImportError, ImportReport, import_python_snapshot};
use pacerelle_core::store::AgentStore as _;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};
use std::path::{Path, PathBuf};

/// The official agent's store, inside its folder (`<store root>/<agent_id>/`).
pub const OFFICIAL_FILE_NAME: &str = "signal.db";

/// Why an official agent's state could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportPythonError {
    /// There is no `signal.db` where the official agent keeps it.
    #[error("no official agent store at {0}")]
    NotFound(PathBuf),
    /// The file cannot be read as the official agent's store.
    #[error("{path} is not an official agent store: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The store holds no snapshot: the official agent never saved an encrypted state (it ran
    /// without `e2ee=True`, or never started).
    #[error("{0} holds no encrypted agent state")]
    NoState(PathBuf),
    /// What it holds does not decode.
    #[error("{0}")]
    Decode(#[from] ImportError),
    /// Our store already has an identity: importing would replace the agent's keys.
    #[error("{0} already holds an agent identity; import into a new store")]
    TargetInUse(PathBuf),
    /// Our store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Imports official agent `agent_id`, kept under the official SDK's store root
/// `official_root` (`<official_root>/<agent_id>/signal.db`; stop that agent first), into our
/// store at `target` (created if needed; it must not hold an identity yet). Returns what came
/// over.
///
/// Our agent then runs on `target`: `SqliteStore::open(target)`, or with the default layout
/// `target = <root>/<agent_id>/agent.db` ([`crate::FILE_NAME`]), which sits beside the official
/// `signal.db` when both use the same root.
pub fn import_python(official_root: &Path, agent_id: &str, target: &Path) -> Result<ImportReport, ImportPythonError> {
    let source = official_root.join(agent_id).join(OFFICIAL_FILE_NAME);
    if !source.is_file() {
        return Err(ImportPythonError::NotFound(source));
    }
    let unreadable = |error| ImportPythonError::Unreadable { path: source.clone(), source: error };
    let blob: Option<Vec<u8>> = {
        // Read-only: the official store stays exactly as it was, to go back to.
        let connection = Connection::open_with_flags(&source, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(unreadable)?;
        connection
            .query_row("SELECT blob FROM signal_snapshot WHERE id = 1", [], |row| row.get(0))
            .optional()
            .map_err(unreadable)?
    };
    let blob = blob.ok_or_else(|| ImportPythonError::NoState(source.clone()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    let imported = import_python_snapshot(&blob, agent_id, Timestamp::from_millis(now))?;
    let mut store = SqliteStore::open(target)?;
    if store.load()?.e2ee.identity.is_some() {
        return Err(ImportPythonError::TargetInUse(target.to_owned()));
    }
    store.apply(&imported.changes)?;
    tracing::info!(
        sessions = imported.report.sessions.len(),
        not_imported = imported.report.sessions_not_imported.len(),
        "official agent state imported"
    );
    Ok(imported.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacerelle_core::import::python::SnapshotError;

    /// A fresh folder for one test.
    fn folder(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pacerelle-import-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a1")).unwrap();
        dir
    }

    /// An official store holding `blob` (none: the table only), as the official SDK creates it.
    fn official(root: &Path, blob: Option<&[u8]>) {
        let connection = Connection::open(root.join("a1").join(OFFICIAL_FILE_NAME)).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE signal_snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), blob BLOB NOT NULL, \
                 updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
            )
            .unwrap();
        if let Some(blob) = blob {
            connection.execute("INSERT INTO signal_snapshot (id, blob) VALUES (1, ?1)", [blob]).unwrap();
        }
    }

    #[test]
    fn what_is_not_an_official_encrypted_state_is_refused_and_nothing_is_written() {
        let root = folder("refused");
        let target = root.join("ours.db");
        let import = || import_python(&root, "a1", &target);
        assert!(matches!(import(), Err(ImportPythonError::NotFound(path)) if path.ends_with("a1/signal.db")));

        std::fs::write(root.join("a1").join(OFFICIAL_FILE_NAME), b"not a database, long enough to be read").unwrap();
        assert!(matches!(import(), Err(ImportPythonError::Unreadable { .. })));

        std::fs::remove_file(root.join("a1").join(OFFICIAL_FILE_NAME)).unwrap();
        official(&root, None);
        assert!(matches!(import(), Err(ImportPythonError::NoState(_))));

        let _ = std::fs::remove_dir_all(&root);
        let root = folder("damaged");
        let target = root.join("ours.db");
        official(&root, Some(b"{\"kind\": \"pacerelle.python-agent-state\", \"v\": 1, \"agent_id\": \"other\"}"));
        let error = import_python(&root, "a1", &target).unwrap_err();
        assert!(
            matches!(&error, ImportPythonError::Decode(ImportError::Snapshot(SnapshotError::OtherAgent { found, .. })) if found == "other"),
            "{error}"
        );
        assert!(!target.exists(), "no store is made from a state that does not decode");
        let _ = std::fs::remove_dir_all(&root);
    }
}

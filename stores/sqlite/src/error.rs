//! What can go wrong with the store, down to the row and column that could not be read.

use std::path::PathBuf;

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
    /// The agent id cannot be used as a folder name (empty, `.`, `..`, or holding a separator).
    #[error("agent id {0:?} cannot name a folder")]
    BadAgentId(String),
    /// A row holds something this version cannot read.
    #[error("corrupt row in {table} ({key}): {problem}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row's key as stored (message id, prekey kind and id, peer, conversation, ...),
        /// so the row can be found and repaired or deleted.
        key: String,
        /// What is wrong with it.
        problem: RowProblem,
    },
    /// A value in a change does not fit SQLite's signed 64-bit integers (a time or an epoch
    /// past `i64::MAX`); the whole change was refused.
    #[error("{table} ({key}): {column} {value} does not fit a signed 64-bit integer")]
    TooLarge {
        /// The table the value was meant for.
        table: &'static str,
        /// The row's key.
        key: String,
        /// The column.
        column: &'static str,
        /// The value.
        value: u64,
    },
    /// The folder or a file could not be created or narrowed to its owner.
    #[error("store folder: {0}")]
    Io(#[from] std::io::Error),
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What is wrong with a stored row (see [`StoreError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    /// A column holds a value of the wrong SQLite type.
    #[error("{column} holds {found} where {expected} is expected")]
    WrongType {
        /// The column.
        column: &'static str,
        /// The SQLite type expected (`text`, `blob`, `integer`).
        expected: &'static str,
        /// The SQLite type found (`NULL`, `integer`, `real`, `text`, `blob`).
        found: &'static str,
    },
    /// A text column holds bytes that are not UTF-8.
    #[error("{column} is not UTF-8")]
    NotUtf8 {
        /// The column.
        column: &'static str,
    },
    /// An integer is negative or too large for what it counts.
    #[error("{column} {value} is out of range")]
    OutOfRange {
        /// The column.
        column: &'static str,
        /// The value found.
        value: i64,
    },
    /// A key has the wrong length.
    #[error("{column} has {found} bytes, not {expected}")]
    WrongLength {
        /// The column.
        column: &'static str,
        /// The length expected.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The prekey kind is none this version knows.
    #[error("unknown prekey kind")]
    UnknownPrekeyKind,
    /// A receipt has both or neither of a pending text and an acceptance time.
    #[error("a receipt must be either pending (a text) or accepted (a time)")]
    ReceiptState,
    /// A peer's device flag is not 0 or 1, or a peer without a device has a device id.
    #[error("has_device must be 1, or 0 with an empty device_id")]
    PeerDevice,
}

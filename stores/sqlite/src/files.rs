//! Keeping the store's folder and files readable by their owner only, whether this run created
//! them or found them (a file copied in, restored from a backup, or left by an older version).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// SQLite's companion files of the database at `path`: its write-ahead log and its shared
/// memory index.
pub(crate) fn companions(path: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut name = OsString::from(path.as_os_str());
        name.push(suffix);
        PathBuf::from(name)
    };
    [with("-wal"), with("-shm")]
}

/// Creates `folder` (and its parents) if needed, and narrows the folder itself to its owner.
pub(crate) fn private_dir(folder: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)?;
    narrow(folder)
}

/// Creates the database file if needed (owner-only from its first byte, so there is no moment
/// when it is readable by others), and narrows it and its existing companions to their owner.
///
/// SQLite gives a `-wal` or `-shm` file it creates the database file's permissions, so once the
/// database is narrowed, new companions are too; existing ones are narrowed here.
pub(crate) fn private_database(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(path)?);
    narrow(path)?;
    for companion in companions(path) {
        match narrow(&companion) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Removes every permission of the group and of others (never adds one: a folder or file its
/// owner made read-only stays so).
#[cfg(unix)]
fn narrow(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let current = std::fs::metadata(path)?.permissions().mode();
    if current & 0o077 != 0 {
        tracing::debug!(path = %path.display(), mode = format_args!("{:o}", current & 0o777), "narrowing to the owner");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & !0o077))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn narrow(path: &Path) -> std::io::Result<()> {
    // Windows files inherit their folder's access list; there is no mode to narrow. Still
    // report a missing file, as on Unix.
    std::fs::metadata(path).map(drop)
}

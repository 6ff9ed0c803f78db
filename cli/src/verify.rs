//! `pacerelle verify`: prints the verification code of an agent's store, the code the agent
//! shows (`verification_code()`) and people compare with their app's, read from the store
//! without changing it (`pacerelle_store_sqlite::read_identity`) so a stopped agent's store is
//! left exactly as it was.

use crate::CliError;
use pacerelle_core::e2ee::bundle::verification_code;
use pacerelle_core::e2ee::keys::KeyPair;
use pacerelle_store_sqlite::{FILE_NAME, RowProblem, StoreError, read_identity};
use std::path::{Path, PathBuf};

/// `pacerelle verify`'s options.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The store: an `agent.db`, an agent's folder, or a store root holding `<agent>/agent.db`
    /// (then --agent is needed). Default: ~/.myagents.
    #[arg(long, value_name = "PATH", env = "PACERELLE_STORE_ROOT")]
    pub store: Option<PathBuf>,
    /// The agent's id, to find its folder in a store root.
    #[arg(long, value_name = "ID", env = "PACERELLE_AGENT_ID")]
    pub agent: Option<String>,
}

/// Prints the code on stdout.
pub fn run(args: VerifyArgs) -> Result<(), CliError> {
    let store = match args.store {
        Some(store) => store,
        None => pacerelle_runtime_support::durable::default_store_root()
            .ok_or_else(|| CliError::Usage("no --store given and no home folder for ~/.myagents".into()))?,
    };
    let path = database(&store, args.agent.as_deref())?;
    crate::print_line(&code_of(&path)?)
}

/// The verification code of the store at `path` (an `agent.db`).
pub fn code_of(path: &Path) -> Result<String, CliError> {
    let identity = read_identity(path).map_err(|error| match error {
        StoreError::InUse(path) => CliError::StoreInUse(path),
        // Gone since it was looked for: SQLite only says it cannot open it.
        StoreError::Sqlite(_) if !path.exists() => CliError::StoreMissing(path.to_owned()),
        source => CliError::Store { path: path.to_owned(), source },
    })?;
    let identity = identity.ok_or_else(|| CliError::NoIdentity(path.to_owned()))?;
    let private: [u8; 32] = identity.private_key.expose().try_into().map_err(|_| CliError::Store {
        path: path.to_owned(),
        source: StoreError::Corrupt {
            table: "identity",
            key: "1".into(),
            problem: RowProblem::WrongLength {
                column: "private_key",
                expected: 32,
                found: identity.private_key.expose().len(),
            },
        },
    })?;
    Ok(verification_code(&KeyPair::from_private_bytes(private).public().serialize()))
}

/// The `agent.db` that `store` (and `agent`) name.
fn database(store: &Path, agent: Option<&str>) -> Result<PathBuf, CliError> {
    if let Some(agent) = agent
        && (agent.is_empty() || agent.contains(['/', '\\']) || agent == "." || agent == "..")
    {
        return Err(CliError::Usage(format!("agent id {agent:?} cannot name a folder")));
    }
    if store.is_file() {
        return Ok(store.to_owned());
    }
    if !store.is_dir() {
        return Err(CliError::StoreMissing(store.to_owned()));
    }
    // A root holding the agent's folder first, then the agent's own folder.
    let candidates = agent.map(|agent| store.join(agent).join(FILE_NAME)).into_iter().chain([store.join(FILE_NAME)]);
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    match agent {
        Some(agent) => Err(CliError::StoreMissing(store.join(agent).join(FILE_NAME))),
        None => Err(CliError::Usage(format!(
            "{} holds no {FILE_NAME}: give --agent to look for <agent>/{FILE_NAME} in it",
            store.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_found_as_files_folders_and_roots() {
        let root = std::env::temp_dir().join(format!("pacerelle-cli-verify-{}", std::process::id()));
        let folder = root.join("agent-1");
        std::fs::create_dir_all(&folder).unwrap();
        let file = folder.join(FILE_NAME);
        std::fs::write(&file, b"").unwrap();
        assert_eq!(database(&file, None).unwrap(), file);
        assert_eq!(database(&folder, None).unwrap(), file);
        assert_eq!(database(&folder, Some("agent-1")).unwrap(), file);
        assert_eq!(database(&root, Some("agent-1")).unwrap(), file);
        assert!(matches!(database(&root, None), Err(CliError::Usage(_))));
        assert!(
            matches!(database(&root, Some("agent-2")), Err(CliError::StoreMissing(path)) if path == root.join("agent-2").join(FILE_NAME))
        );
        assert!(matches!(database(&root.join("nowhere"), None), Err(CliError::StoreMissing(_))));
        assert!(matches!(database(&root, Some("../agent-1")), Err(CliError::Usage(_))));
        std::fs::remove_dir_all(&root).ok();
    }
}

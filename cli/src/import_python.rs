//! `pacerelle import-python`: moves an agent from the official Python SDK to this one, keeping
//! its identity (the same verification code), its sessions and its conversations. It reads the
//! official agent's `signal.db` without changing it (so going back stays possible) and writes a
//! new store of ours, then prints what came over and what did not.

use crate::CliError;
use pacerelle_store_sqlite::{FILE_NAME, ImportPythonError, OFFICIAL_FILE_NAME, import_python};
use std::path::PathBuf;

/// `pacerelle import-python`'s options.
#[derive(Debug, clap::Args)]
pub struct ImportPythonArgs {
    /// The agent's id (its folder under both store roots).
    #[arg(long, value_name = "ID", env = "PACERELLE_AGENT_ID")]
    pub agent: String,
    /// The official SDK's store root, holding `<agent>/signal.db` (its `store_root`). Default:
    /// ~/.myagents.
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    /// Our store root; the store is written to `<root>/<agent>/agent.db`, which must hold no
    /// identity yet. Default: PACERELLE_STORE_ROOT, else ~/.myagents (beside the official file).
    #[arg(long, value_name = "PATH", env = "PACERELLE_STORE_ROOT")]
    pub store_root: Option<PathBuf>,
}

/// Imports, then prints the report on stdout (one `name: value` line each).
pub fn run(args: ImportPythonArgs) -> Result<(), CliError> {
    let default_root = || {
        pacerelle_runtime_support::durable::default_store_root()
            .ok_or_else(|| CliError::Usage("no store root given and no home folder for ~/.myagents".into()))
    };
    let from = match args.from {
        Some(from) => from,
        None => default_root()?,
    };
    let root = match args.store_root {
        Some(root) => root,
        None => default_root()?,
    };
    if args.agent.is_empty() || args.agent.contains(['/', '\\']) || args.agent.starts_with('.') {
        return Err(CliError::Usage(format!("{:?} is not an agent id", args.agent)));
    }
    // Before anything is created: a mistyped id or --from would otherwise leave an empty agent
    // folder in our store root, which a later run would take for an agent.
    let official = from.join(&args.agent).join(OFFICIAL_FILE_NAME);
    if !official.is_file() {
        return Err(CliError::Import(ImportPythonError::NotFound(official)));
    }
    let folder = root.join(&args.agent);
    crate::create_private_folder(&folder).map_err(|source| CliError::File {
        what: "cannot create",
        path: folder.clone(),
        source,
    })?;
    let target = folder.join(FILE_NAME);
    let report = import_python(&from, &args.agent, &target).map_err(CliError::Import)?;
    let lines = [
        format!("verification-code: {}", report.verification_code),
        format!("store: {}", target.display()),
        format!("sessions: {}", report.sessions.len()),
        format!("sessions-not-imported: {}", report.sessions_not_imported.len()),
        format!("receipts: {}", report.receipts),
        format!("one-time-prekeys: {}", report.one_time_prekeys),
        format!("peer-identities: {}", report.peer_identities),
        format!("history-keys: {}", report.history_keys),
        format!("group-keys: {}", report.group_keys),
    ];
    for line in lines {
        crate::print_line(&line)?;
    }
    for session in &report.sessions_not_imported {
        eprintln!("pacerelle: the session with {} did not come over: {}", session.name, session.error);
    }
    Ok(())
}

//! The agents under load, each a child process of its own with a store in a fresh temporary
//! folder: ours (`pacerelle-load-agent` on one of the four runtimes) or the official Python
//! agent (`testvectors/oracle/official_agent.py`, `e2ee=True`).
//!
//! A child process, so that the memory and CPU time `/proc` reports are the agent's alone,
//! not the people's or the relay's. The official agent's store is always a temporary folder:
//! left to its default (`~/.myagents/`) it would grow from run to run and slow every run down.

use crate::error::LoadError;
use crate::procfs::{self, ProcessSample};
use pacerelle_relay::RelayHandle;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// How long an agent may take from its start to its socket open and its prekeys published:
/// the official agent starts a Python interpreter and generates its keys first.
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// How often readiness and acknowledgements are polled at the relay.
const POLL: Duration = Duration::from_millis(2);

/// How long the official agent may live before its script exits on its own (it is killed at
/// the end of its run long before).
const OFFICIAL_LIFETIME_SECONDS: &str = "86400";

/// An agent the tool can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentKind {
    /// Ours on tokio.
    Tokio,
    /// Ours on smol.
    Smol,
    /// Ours on async-std.
    AsyncStd,
    /// Ours without an async runtime.
    Blocking,
    /// The official Python agent, the baseline.
    Official,
}

impl AgentKind {
    /// Every agent, ours first.
    pub const ALL: [AgentKind; 5] =
        [AgentKind::Tokio, AgentKind::Smol, AgentKind::AsyncStd, AgentKind::Blocking, AgentKind::Official];

    /// Its name on the command line and in reports (the runtime's, or `official`).
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Tokio => "tokio",
            AgentKind::Smol => "smol",
            AgentKind::AsyncStd => "async-std",
            AgentKind::Blocking => "blocking",
            AgentKind::Official => "official",
        }
    }

    /// The agent named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether it is one of ours.
    pub fn is_ours(self) -> bool {
        self != AgentKind::Official
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to start our agent: a program, with the arguments that come before the runtime's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProgram {
    program: PathBuf,
    leading: Vec<String>,
}

impl AgentProgram {
    /// The agent binary `pacerelle-load-agent` at `path`.
    pub fn binary(path: impl Into<PathBuf>) -> Self {
        AgentProgram { program: path.into(), leading: Vec::new() }
    }

    /// The running program itself with `--serve-agent`: the load tool's own copy of the agent,
    /// always built with it (`cargo run` builds only the tool, so a separate agent binary
    /// beside it could be stale or missing).
    pub fn this_program() -> std::io::Result<Self> {
        Ok(AgentProgram { program: std::env::current_exe()?, leading: vec!["--serve-agent".into()] })
    }
}

/// A folder removed, with everything in it, when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new empty folder under the system's temporary folder, named after `label`.
    pub fn new(label: &str) -> Result<Self, LoadError> {
        Self::new_in(&std::env::temp_dir(), label)
    }

    /// A new empty folder under `parent`, named after `label`.
    pub fn new_in(parent: &Path, label: &str) -> Result<Self, LoadError> {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let path = parent.join(format!(
            "pacerelle-load-{label}-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|source| LoadError::TempDir { path: path.clone(), source })?;
        Ok(ScratchDir(path))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Installs the official agent's SDK, if it is not yet (blocking; a pip install the first
/// time). Call it before starting an official agent from async code.
///
/// # Panics
/// When it cannot be installed, as the conformance suite does: a baseline that silently went
/// missing would make every ratio meaningless.
pub fn prepare_official() {
    pacerelle_conformance::oracle_dir();
}

/// A running agent, killed (by its own pid) and its store removed when dropped.
#[derive(Debug)]
pub struct RunningAgent {
    kind: AgentKind,
    agent_id: String,
    child: Child,
    started_in: Duration,
    // Dropped after `child` is killed (see Drop), so the store is never removed under it.
    store: ScratchDir,
}

impl RunningAgent {
    /// Starts `kind` as agent `agent_id` with `token` against `relay` (ours from `ours`), its
    /// store in a new folder under `stores` (ours filled with `preload` first), and waits until the relay holds its socket and its one-time prekeys.
    /// Its stderr goes to ours, so its warnings are seen.
    pub async fn start(
        kind: AgentKind,
        relay: &RelayHandle,
        agent_id: &str,
        token: &str,
        ours: &AgentProgram,
        stores: &Path,
        preload: crate::preload::Preload,
    ) -> Result<Self, LoadError> {
        let store = ScratchDir::new_in(stores, kind.name())?;
        if kind.is_ours() && !preload.is_empty() {
            let started = Instant::now();
            crate::preload::fill(store.path(), agent_id, preload)?;
            tracing::info!(?preload, took = ?started.elapsed(), "store preloaded");
        }
        let base_url = relay.base_url();
        let (program, mut command) = if kind.is_ours() {
            if !ours.program.is_file() {
                return Err(LoadError::AgentBinaryMissing(ours.program.clone()));
            }
            let mut command = Command::new(&ours.program);
            command
                .args(&ours.leading)
                .arg(kind.name())
                .env("PACERELLE_AGENT_ID", agent_id)
                .env("PACERELLE_AGENT_TOKEN", token)
                .env("PACERELLE_BASE_URL", &base_url)
                .env("PACERELLE_E2EE", "1")
                .env("PACERELLE_STORE_ROOT", store.path());
            if !preload.is_empty() {
                command.env(crate::preload::MAX_RECEIPTS_ENV, preload.receipt_cap().to_string());
            }
            (ours.program.clone(), command)
        } else {
            let script = pacerelle_conformance::vectors_dir().join("oracle").join("official_agent.py");
            let mut command = pacerelle_conformance::python();
            command
                .arg(&script)
                .args(["--base-url", &base_url, "--agent-id", agent_id, "--token", token, "--e2ee"])
                .args(["--deadline-seconds", OFFICIAL_LIFETIME_SECONDS])
                .arg("--store-root")
                .arg(store.path());
            (script, command)
        };
        // The official script prints a line per message; nobody reads them here, and a pipe
        // nobody drains would stop it once full.
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        let started = Instant::now();
        let child =
            command.spawn().map_err(|source| LoadError::Spawn { agent: kind.name().into(), program, source })?;
        let mut agent = RunningAgent { kind, agent_id: agent_id.to_owned(), child, started_in: Duration::ZERO, store };
        loop {
            if relay.agent_connections(agent_id) > 0 && !relay.one_time_prekey_ids(agent_id).is_empty() {
                agent.started_in = started.elapsed();
                tracing::info!(agent = %kind, started_in = ?agent.started_in, "agent ready");
                return Ok(agent);
            }
            let exit = agent.child.try_wait().ok().flatten();
            if exit.is_some() || started.elapsed() > START_LIMIT {
                let exit = exit.map(|status| format!(" ({status})")).unwrap_or_default();
                return Err(LoadError::NotReady { agent: kind.name().into(), waited: started.elapsed(), exit });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Which agent this is.
    pub fn kind(&self) -> AgentKind {
        self.kind
    }

    /// From the process's start to its socket open with its prekeys published, as the relay
    /// saw it (within a poll of 2 ms).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Its memory and CPU time so far; fails if it has exited.
    pub fn sample(&mut self) -> Result<ProcessSample, LoadError> {
        self.check_alive()?;
        procfs::sample(self.child.id())
    }

    /// The size of its store on disk now.
    pub fn store_size(&self) -> Result<u64, LoadError> {
        procfs::tree_size(self.store.path())
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), LoadError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(LoadError::AgentExited { agent: self.kind.name().into(), status }),
            _ => Ok(()),
        }
    }

    /// Waits (up to `limit`) until the relay holds nothing unacknowledged for it, so the work of
    /// acknowledging is in its CPU time too. Returns whether it got there.
    pub async fn settle(&mut self, relay: &RelayHandle, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while relay.pending_for_agent(&self.agent_id) > 0 {
            if Instant::now() > until {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
        true
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_named_and_parsed_back() {
        for kind in AgentKind::ALL {
            assert_eq!(AgentKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(AgentKind::parse("python"), None);
        assert_eq!(AgentKind::ALL.iter().filter(|kind| !kind.is_ours()).count(), 1);
    }

    #[test]
    fn a_scratch_dir_is_removed_when_dropped() {
        let dir = ScratchDir::new("test").unwrap();
        let path = dir.path().to_owned();
        std::fs::write(path.join("file"), b"x").unwrap();
        assert!(path.is_dir());
        drop(dir);
        assert!(!path.exists());
    }
}

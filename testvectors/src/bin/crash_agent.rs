//! The agent the crash test (`tests/crash.rs`) kills: an encrypted echo agent made the way a
//! user makes one (`Client::new` from the environment, so on its SQLite store), whose handler
//! leaves a trace on disk of every call, so the test knows what was handled even after SIGKILL.
//!
//! Configuration is the SDK's own environment (`PACERELLE_AGENT_ID`, `PACERELLE_AGENT_TOKEN`,
//! `PACERELLE_BASE_URL`, `PACERELLE_E2EE`, `PACERELLE_STORE_ROOT`) plus:
//! - `PACERELLE_CRASH_LOG`: the handler log, one line per call (`<incarnation> <message id>`),
//!   appended and fsynced on entry, before the handler does anything else;
//! - `PACERELLE_CRASH_INCARNATION`: this run's number, written in every line, so the test can
//!   tell which run of the agent made a call.
//!
//! Each message is answered with a reply to it whose text is `ack:<text>`, and the handler
//! returns right after sending it, as most handlers do (the README's echo among them): the
//! moment between the reply being queued and the acceptance being committed is then as short
//! as it is in real agents, and nothing the test adds gives the socket time to flush first.
//! Logs (warnings and worse unless `RUST_LOG` says otherwise) go to stderr, which the test keeps
//! in a file.

#![forbid(unsafe_code)]

use pacerelle_tokio::{Client, ClientConfig, HandlerError};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
enum CrashAgentError {
    /// A variable the crash test sets is missing.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// The SDK's environment is malformed.
    #[error(transparent)]
    Config(#[from] pacerelle_core::config::ConfigError),
    /// The SDK's client failed.
    #[error(transparent)]
    Client(#[from] pacerelle_tokio::ClientError),
    /// The tokio runtime could not start.
    #[error("cannot start tokio: {0}")]
    Runtime(std::io::Error),
}

/// Appends `line` to the log at `path` and makes it durable before returning: the test reads
/// the log after SIGKILL and must see every call that got this far.
fn append_durably(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    // One write per line: appends of a few bytes do not interleave between handler tasks.
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_all()
}

/// Logs `line` on the blocking pool, so an fsync does not hold up the agent's other tasks.
async fn log(path: Arc<PathBuf>, line: String) -> Result<(), HandlerError> {
    tokio::task::spawn_blocking(move || append_durably(&path, &line)).await??;
    Ok(())
}

fn run() -> Result<(), CrashAgentError> {
    let log_path = Arc::new(PathBuf::from(
        std::env::var_os("PACERELLE_CRASH_LOG").ok_or(CrashAgentError::Missing("PACERELLE_CRASH_LOG"))?,
    ));
    let incarnation = std::env::var("PACERELLE_CRASH_INCARNATION")
        .map_err(|_| CrashAgentError::Missing("PACERELLE_CRASH_INCARNATION"))?;
    let incarnation = Arc::new(incarnation);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CrashAgentError::Runtime)?;
    runtime.block_on(async move {
        let mut client = Client::new(ClientConfig::from_env()?)?;
        client.on_message(move |message, agent| {
            let (log_path, incarnation) = (log_path.clone(), incarnation.clone());
            async move {
                log(log_path, format!("{incarnation} {}", message.id)).await?;
                agent.reply(&message, format!("ack:{}", message.text)).await?;
                Ok(())
            }
        });
        client.connect().await?;
        Ok(())
    })
}

fn main() -> ExitCode {
    pacerelle_runtime_support::logging::log_to_stderr("warn", &[]);
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "crash agent stopped");
            ExitCode::FAILURE
        }
    }
}

//! `pacerelle mcp`: a Model Context Protocol server over stdio, so that a coding agent or an
//! assistant (any MCP host) can reach a person on their phone through this agent, end-to-end
//! encrypted: report progress, ask before doing something risky, take instructions.
//!
//! It runs the agent configured by the environment, as every agent is
//! (`PACERELLE_AGENT_ID`, `PACERELLE_AGENT_TOKEN`, `PACERELLE_BASE_URL`, `PACERELLE_STORE_ROOT`;
//! `PACERELLE_E2EE` defaults to on here, `0` turns it off), on its durable store, connected in
//! the background, and serves MCP on stdin and stdout with the `rmcp` SDK until the host closes
//! stdin. The parts:
//! - [`conversations`]: the agent side: the conversations heard, a bounded message log numbered
//!   by cursors, and the asks waiting for an answer;
//! - [`tools`]: the MCP tools (send a message or a file, ask and wait, progress, read and wait
//!   for messages, save an attachment, the verification code) and the server's handler;
//! - [`resources`]: the conversations and their recent messages as MCP resources.
//!
//! Stdout carries MCP only: logs go to stderr through `tracing`, and never hold a message's
//! text, a file's contents or a token.
//!
//! # Dependencies
//! `rmcp` (the MCP project's own Rust SDK: protocol types, tool macros, the stdio transport) and
//! `schemars` (which rmcp already uses, for the tools' argument schemas), behind the default
//! feature `mcp`. They add `chrono` (schemars' time types, required by rmcp), `futures`,
//! `tokio-util`, `darling`, `ref-cast`, `dyn-clone` and unicode tables; no second version of a
//! crate already in the tree.

pub mod conversations;
pub mod resources;
pub mod tools;

use crate::CliError;
use conversations::Conversations;
use pacerelle_core::config::ClientConfig;
use pacerelle_tokio::{Client, ClientError};
use rmcp::ServiceExt as _;
use std::sync::Arc;

/// The most rmcp may log, whatever `RUST_LOG` or `-v` ask: at debug it prints every request
/// and response, tool arguments and results included (message texts), which must not reach a
/// log. At info it logs the session's start and end, cancellations and errors.
pub(crate) const RMCP_LOG_CAP: &str = "rmcp=info";

/// `pacerelle mcp`'s options: everything else comes from the environment, as for any agent.
#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// Keep the agent's state under this root instead of `PACERELLE_STORE_ROOT` (or
    /// `~/.myagents`).
    #[arg(long, value_name = "PATH")]
    pub store_root: Option<std::path::PathBuf>,
}

/// What `pacerelle mcp --help` shows after the options.
pub(crate) fn after_help() -> String {
    format!(
        "Environment: PACERELLE_AGENT_ID, PACERELLE_AGENT_TOKEN (required), PACERELLE_BASE_URL,
PACERELLE_STORE_ROOT, PACERELLE_E2EE (on unless 0/false).

Tools: {}

Stdout carries MCP only; logs go to stderr.

{}",
        tools::TOOL_NAMES.join(", "),
        crate::EXIT_CODES
    )
}

/// Reads the agent's configuration: the SDK's variables, with encryption on unless
/// `PACERELLE_E2EE` says otherwise.
pub fn config_from(lookup: impl Fn(&str) -> Option<String>) -> Result<ClientConfig, CliError> {
    let config = ClientConfig::from_lookup(|name| match lookup(name) {
        None if name == "PACERELLE_E2EE" => Some("1".to_owned()),
        value => value,
    })
    .map_err(|error| CliError::Usage(error.to_string()))?;
    Ok(config)
}

/// Runs the server until the host closes stdin, or the agent stops for good.
pub fn run(args: McpArgs) -> Result<(), CliError> {
    let mut config = config_from(|name| std::env::var(name).ok())?;
    if let Some(root) = args.store_root {
        config = config.with_store_root(root);
    }
    let runtime = crate::runtime()?;
    let result = runtime.block_on(serve(config));
    // A read of stdin cannot be cancelled: do not wait for it once the work is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

async fn serve(config: ClientConfig) -> Result<(), CliError> {
    let e2ee = config.e2ee;
    let folder = pacerelle_runtime_support::durable::store_root(&config).map_err(store_error)?.join(&config.agent_id);
    let mut client = Client::new(config).map_err(store_error)?;
    // Opened after the store, whose lock says no other process runs this agent.
    let conversations = Arc::new(Conversations::kept_in(&folder));
    let kept = conversations.clone();
    client.on_message(move |message, _agent| {
        let kept = kept.clone();
        async move {
            kept.received(message);
            Ok(())
        }
    });
    let agent = client.handle();
    let mut connected = tokio::spawn(client.connect());
    tracing::info!(agent = %agent.agent_id(), e2ee, "MCP server starting on stdio");
    let server = tools::Server::new(agent.clone(), conversations);
    // The agent may stop for good (a refused token) before the host even initializes.
    let service = tokio::select! {
        service = server.serve(rmcp::transport::stdio_pipes()) => {
            service.map_err(|error| CliError::Mcp(error.to_string()))?
        }
        ended = &mut connected => return agent_ended(ended),
    };
    let cancel = service.cancellation_token();
    let outcome = tokio::select! {
        quit = service.waiting() => {
            tracing::info!(reason = ?quit.as_ref().ok(), "MCP host left");
            Ok(())
        }
        ended = &mut connected => {
            cancel.cancel();
            agent_ended(ended)
        }
    };
    agent.close();
    if !connected.is_finished() {
        // The agent lets go of its store once `connect` returns.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), connected).await;
    }
    outcome
}

/// The agent stopped on its own: only for what retrying cannot fix (a refused token, a failed
/// store).
fn agent_ended(ended: Result<Result<(), ClientError>, tokio::task::JoinError>) -> Result<(), CliError> {
    match ended {
        Ok(Ok(())) => Err(CliError::Client(ClientError::Closed)),
        Ok(Err(ClientError::Unauthorized { status, reason, .. })) => {
            Err(CliError::Unauthorized { status, reason: reason.unwrap_or_default() })
        }
        Ok(Err(error)) => Err(CliError::Client(error)),
        Err(error) => Err(CliError::Runtime(std::io::Error::other(error))),
    }
}

/// A store that could not be opened, with the store's exit code.
fn store_error(error: ClientError) -> CliError {
    match error {
        ClientError::StoreInUse(path) => CliError::StoreInUse(path),
        ClientError::Config(error) => CliError::Usage(error.to_string()),
        other => CliError::Client(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    #[test]
    fn the_rmcp_cap_is_a_directive() {
        assert!(RMCP_LOG_CAP.parse::<tracing_subscriber::filter::Directive>().is_ok());
    }

    #[test]
    fn encryption_is_on_unless_turned_off() {
        let base = [("PACERELLE_AGENT_ID", "a"), ("PACERELLE_AGENT_TOKEN", "t")];
        assert!(config_from(lookup(&base)).unwrap().e2ee);
        let off = [base[0], base[1], ("PACERELLE_E2EE", "0")];
        assert!(!config_from(lookup(&off)).unwrap().e2ee);
        let bad = [base[0], base[1], ("PACERELLE_E2EE", "yes")];
        let error = config_from(lookup(&bad)).unwrap_err();
        assert_eq!(error.exit_code(), crate::exit::USAGE);
        assert!(error.to_string().contains("PACERELLE_E2EE"), "{error}");
        let missing = config_from(lookup(&base[..1])).unwrap_err();
        assert!(missing.to_string().contains("PACERELLE_AGENT_TOKEN"), "{missing}");
    }
}

//! The one place exit codes are defined, and the error every subcommand returns: each variant
//! knows its code, so a script can tell an unreachable relay from a refused token or a bad store
//! without reading the message.

use std::path::PathBuf;

/// The process's exit codes (also in the README's "Command line" section).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Something failed that no other code describes (the runtime could not start, the relay's
    /// socket closed, an unexpected answer).
    pub const FAILURE: u8 = 1;
    /// Bad usage: an unknown flag, a missing or malformed value (clap's own code for these).
    pub const USAGE: u8 = 2;
    /// The relay could not be reached (connection refused, timed out, not HTTP).
    pub const UNREACHABLE: u8 = 3;
    /// The relay refused the token (HTTP 401 or 403).
    pub const UNAUTHORIZED: u8 = 4;
    /// The relay refused a request otherwise (an unknown agent, a conversation with other
    /// members, a malformed request).
    pub const REFUSED: u8 = 5;
    /// An agent store could not be read: missing, without an identity, in use by a running
    /// agent, corrupt, or from a newer SDK.
    pub const STORE: u8 = 6;
    /// A local file or address could not be used: a configuration file that cannot be read or
    /// parsed, an address already in use.
    pub const IO: u8 = 7;
    /// In a scripted chat (stdin not a terminal), at least one line failed: a widget or
    /// attachment that never came, a message that could not be sent, a file that could not be
    /// read or written. Every other line was still carried out.
    pub const SCRIPT: u8 = 8;
}

/// Why a subcommand failed: one line for stderr, and an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A value the parser could not check (a flag combination, a file's contents).
    #[error("{0}")]
    Usage(String),
    /// The relay was not reached.
    #[error("cannot reach the relay at {url}: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The transport's reason.
        reason: String,
    },
    /// The relay refused the token.
    #[error("the relay refused the token (HTTP {status}){}", suffix(reason))]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The relay's reason, when it gave one.
        reason: String,
    },
    /// The relay refused a request for another reason.
    #[error("the relay refused {what} (HTTP {status}){}", suffix(reason))]
    Refused {
        /// What was asked.
        what: &'static str,
        /// The status.
        status: u16,
        /// The relay's reason.
        reason: String,
    },
    /// No store where one was expected.
    #[error("no agent store at {}", .0.display())]
    StoreMissing(PathBuf),
    /// The store holds no identity: its agent never ran with end-to-end encryption.
    #[error("store {} holds no identity: its agent has never run with end-to-end encryption", .0.display())]
    NoIdentity(PathBuf),
    /// The store is open in a running agent.
    #[error("store {} is in use by a running agent: stop it first", .0.display())]
    StoreInUse(PathBuf),
    /// The store could not be read.
    #[error("cannot read the agent store {}: {source}", path.display())]
    Store {
        /// The file.
        path: PathBuf,
        /// The store's reason.
        #[source]
        source: pacerelle_store_sqlite::StoreError,
    },
    /// A local file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// What was being done (`cannot read`, `cannot write`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file could not be used.
    #[error("configuration file {}: {reason}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its values: they hold tokens).
        reason: String,
    },
    /// The relay could not listen.
    #[error(transparent)]
    Listen(pacerelle_relay::RelayError),
    /// The client failed (socket closed, an unexpected answer, a timeout).
    #[error(transparent)]
    Client(#[from] pacerelle_runtime_support::ClientError),
    /// Stdout could not be written (closed, say, by `| head`).
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// Stdin could not be read.
    #[error("cannot read stdin: {0}")]
    Stdin(std::io::Error),
    /// An Agent Connect answer was unusable, or its `state` was not the one sent.
    #[error(transparent)]
    Connect(pacerelle_core::connect::ConnectError),
    /// The official agent's store could not be imported (missing, not one, undecodable), or
    /// ours could not take it (it already holds an identity, or failed).
    #[error(transparent)]
    Import(pacerelle_store_sqlite::ImportPythonError),
    /// The MCP server could not start on stdio.
    #[error("cannot serve MCP on stdio: {0}")]
    Mcp(String),
    /// A scripted chat ran to its end with failed lines (each already reported on stderr).
    #[error("{0} line(s) of the script failed")]
    ScriptFailed(usize),
}

fn suffix(reason: &str) -> String {
    if reason.is_empty() { String::new() } else { format!(": {reason}") }
}

impl CliError {
    /// The exit code this error ends the process with (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Unreachable { .. } => exit::UNREACHABLE,
            CliError::Unauthorized { .. } => exit::UNAUTHORIZED,
            CliError::Refused { .. } => exit::REFUSED,
            CliError::StoreMissing(_)
            | CliError::NoIdentity(_)
            | CliError::StoreInUse(_)
            | CliError::Store { .. }
            | CliError::Import(_) => exit::STORE,
            CliError::File { .. } | CliError::ConfigFile { .. } | CliError::Listen(_) => exit::IO,
            CliError::Client(_)
            | CliError::Stdout(_)
            | CliError::Stdin(_)
            | CliError::Runtime(_)
            | CliError::Connect(_)
            | CliError::Mcp(_) => exit::FAILURE,
            CliError::ScriptFailed(_) => exit::SCRIPT,
        }
    }

    /// The error an HTTP answer of `status` to `what` stands for (`0`: not reached).
    pub fn from_status(url: &str, what: &'static str, status: u16, reason: String) -> Self {
        match status {
            0 => CliError::Unreachable { url: url.to_owned(), reason },
            401 | 403 => CliError::Unauthorized { status, reason },
            _ => CliError::Refused { what, status, reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_statuses_map_to_them() {
        let codes = [
            exit::OK,
            exit::FAILURE,
            exit::USAGE,
            exit::UNREACHABLE,
            exit::UNAUTHORIZED,
            exit::REFUSED,
            exit::STORE,
            exit::IO,
            exit::SCRIPT,
        ];
        let mut sorted = codes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
        let code = |status| CliError::from_status("http://x", "the call", status, String::new()).exit_code();
        assert_eq!((code(0), code(401), code(403), code(404), code(500)), (3, 4, 4, 5, 5));
        assert_eq!(
            CliError::from_status("u", "the conversation", 409, "taken".into()).to_string(),
            "the relay refused the conversation (HTTP 409): taken"
        );
        assert_eq!(
            CliError::Unauthorized { status: 401, reason: String::new() }.to_string(),
            "the relay refused the token (HTTP 401)"
        );
    }
}

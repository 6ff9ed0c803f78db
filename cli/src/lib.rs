//! `pacerelle`, the command line for working with agents: parses the arguments, sets up logging
//! and hands each subcommand to its module.
//!
//! - `pacerelle relay` ([`relay`]): the development relay (`pacerelle-relay`'s library).
//! - `pacerelle chat` ([`chat`]): be a person in the terminal, or in a script, against a relay.
//! - `pacerelle verify` ([`verify`]): an agent store's verification code.
//! - `pacerelle connect` ([`connect`]): Agent Connect, from the approval address to the tokens
//!   written to a private file.
//! - `pacerelle import-python` ([`import_python`]): an official Python agent's store made ours,
//!   keeping its identity, sessions and conversations.
//! - `pacerelle mcp` (`mcp`, default feature `mcp`): an MCP server over stdio, so that an MCP host
//!   (a coding agent, an assistant) reaches a person through the agent.
//!
//! Each subcommand is one module with its clap `Args` and a `run(args) -> Result<(), CliError>`;
//! failures are [`CliError`]s, whose [`CliError::exit_code`] is the process's exit code (all codes
//! in [`error::exit`]). Adding a subcommand is a module, a variant of [`Command`] and an arm in
//! [`run`].
//!
//! Logs go through `tracing` to stderr: warnings by default, `-v` for info, `-vv` for debug,
//! `-vvv` for everything, or `RUST_LOG` (which wins). Nothing logs a token or a message's text.
//!
//! # Dependencies
//! clap (derive, with the `env` feature for flags read from variables such as
//! `PACERELLE_PERSON_TOKEN`; without colours, to keep the build small) parses the command line.
//! Everything else is already in the workspace: tokio runs the relay and the person client,
//! serde and serde_json read the relay's configuration file and write `--json` events. The
//! relay's library reads `ID=TOKEN` values and makes the tokens of identities the relay creates
//! (as its own binary does); the runtime support's `stderr-log` feature prints the logs.
//! `pacerelle mcp` (default feature `mcp`) adds rmcp, the MCP project's Rust SDK, and schemars
//! for its tools' schemas ([`mcp`] lists what they bring).

#![forbid(unsafe_code)]

pub mod chat;
pub mod connect;
pub mod error;
pub mod import_python;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod relay;
pub mod verify;

mod duration;
mod escape;

pub use error::{CliError, exit};

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The exit codes, shown under every `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  other failure (the runtime could not start, the socket closed, an unexpected answer)
  2  bad usage (an unknown flag, a missing or malformed value)
  3  the relay could not be reached
  4  the relay refused the token (HTTP 401/403)
  5  the relay refused a request (unknown agent, conversation with other members, ...)
  6  the agent store could not be read (missing, no identity, in use, corrupt, newer SDK)
  7  a local file or address could not be used (config file, address in use)
  8  a scripted chat had failed lines (each reported on stderr)";

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "pacerelle", version, about = "Work with Pacerelle agents: a development relay, a chat as a person, an agent's verification code, Agent Connect, moving from the Python SDK.", after_help = EXIT_CODES)]
pub struct Cli {
    /// More logs on stderr: -v info, -vv debug, -vvv trace (RUST_LOG, when set, wins).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the development relay (in memory, loopback by default) until Ctrl-C.
    #[command(after_help = EXIT_CODES)]
    Relay(relay::RelayArgs),
    /// Chat with an agent as a person: lines from stdin are messages, the agent's messages go to
    /// stdout.
    #[command(after_help = chat::after_help())]
    Chat(chat::ChatArgs),
    /// Print an agent store's verification code (what people compare with their app's).
    #[command(after_help = EXIT_CODES)]
    Verify(verify::VerifyArgs),
    /// Install an agent with Agent Connect: print the approval address, read back the code,
    /// write the tokens to a file only you can read.
    #[command(after_help = EXIT_CODES)]
    Connect(connect::ConnectArgs),
    /// Make an official Python agent's store ours: same identity, sessions and conversations.
    #[command(name = "import-python", after_help = EXIT_CODES)]
    ImportPython(import_python::ImportPythonArgs),
    /// Serve the Model Context Protocol on stdio as the agent of the environment: an MCP host
    /// sends messages, asks and waits for answers, reads the person's messages.
    #[cfg(feature = "mcp")]
    #[command(after_help = mcp::after_help())]
    Mcp(mcp::McpArgs),
}

/// Runs the process: parses the arguments (clap exits with 0 for `--help` and 2 for bad
/// usage), runs the subcommand, and prints a failure as one line on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli.command) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(error) => {
            eprintln!("pacerelle: {}", escape::one_line(&error.to_string()));
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs one subcommand.
pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Relay(args) => relay::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Connect(args) => connect::run(args),
        Command::ImportPython(args) => import_python::run(args),
        #[cfg(feature = "mcp")]
        Command::Mcp(args) => mcp::run(args),
    }
}

/// Prints `line` on stdout; a closed stdout is an error, not a panic as with `println!`.
pub(crate) fn print_line(line: &str) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).map_err(CliError::Stdout)
}

/// Creates `folder` (and its parents) readable by its owner only, as the agent's own store
/// folders are: it holds keys or tokens.
pub(crate) fn create_private_folder(folder: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

/// A tokio runtime for the subcommands that need one.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(CliError::Runtime)
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    #[cfg(feature = "mcp")]
    let caps = [mcp::RMCP_LOG_CAP];
    #[cfg(not(feature = "mcp"))]
    let caps: [&str; 0] = [];
    pacerelle_runtime_support::logging::log_to_stderr(level, &caps);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}

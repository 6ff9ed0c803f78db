//! The `pacerelle` binary run as a process, one module per subcommand: what it prints, what it
//! does against a real relay and agent, and its exit codes for bad input.

mod chat;
mod connect;
mod help;
mod import_python;
#[cfg(feature = "mcp")]
mod mcp;
mod relay;
mod support;
mod verify;

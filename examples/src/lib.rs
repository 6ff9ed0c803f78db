//! What the examples share: the echo agent's behaviour (the same on every runtime), an
//! embedded relay, and the scripted person who talks to the agent.

#![forbid(unsafe_code)]

pub mod echo;
pub mod script;

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings only, so the transcript stays
/// readable).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

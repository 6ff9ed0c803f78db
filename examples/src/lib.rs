//! What the examples share: the agents' behaviour (echo, the same on every runtime; the
//! operations, booking and poll agents, on tokio), an embedded relay, and the scripted people
//! who talk to the agents.

#![forbid(unsafe_code)]

pub mod booking;
pub mod demo;
pub mod echo;
pub mod ops;
pub mod poll;
pub mod script;

/// Any error, for the examples' `main`s.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether an agent is configured in the environment (`PACERELLE_AGENT_ID`): then the examples
/// serve that relay; otherwise they run their own, with a scripted person.
pub fn configured() -> bool {
    std::env::var_os(pacerelle::core::config::env::AGENT_ID).is_some()
}

/// The exit code for an example's outcome, printing the error.
pub fn exit_code(example: &str, outcome: Result<(), BoxError>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{example}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings only, so the transcript stays
/// readable).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// What a serving echo example prints at start: [`serving_banner_for`] the echo agent.
pub fn serving_banner(runtime: &str, config: &pacerelle::ClientConfig, verification_code: Option<&str>) -> String {
    serving_banner_for("echo", runtime, config, verification_code)
}

/// What a serving example prints at start: the agent, the relay, the runtime, where its state
/// lives, and with end-to-end encryption its verification code, which the person compares with
/// the one their app shows for the agent before trusting it.
pub fn serving_banner_for(
    agent: &str,
    runtime: &str,
    config: &pacerelle::ClientConfig,
    verification_code: Option<&str>,
) -> String {
    let store = match pacerelle_runtime_support::durable::store_root(config) {
        Ok(root) => root.join(&config.agent_id).display().to_string(),
        Err(error) => error.to_string(),
    };
    let mut banner = format!(
        "{agent} agent {} serving {} on {runtime} (Ctrl-C to stop)\nstore: {store}",
        config.agent_id, config.base_url
    );
    match verification_code {
        Some(code) => banner.push_str(&format!("\nend-to-end encrypted; verification code: {code}")),
        None => banner.push_str("\nnot encrypted (PACERELLE_E2EE=1 to encrypt)"),
    }
    banner
}

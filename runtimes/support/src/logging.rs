//! Logs to stderr for the SDK's own programs: the command line, the load tool and the agents
//! the tests run as child processes. A library never installs a subscriber (the program
//! chooses), so this is behind the `stderr-log` feature and no agent's dependency tree pays for
//! tracing-subscriber.

use std::io::IsTerminal as _;

/// Sends this process's `tracing` events to stderr, filtered by `RUST_LOG` when it is set and
/// by `default_filter` (an `EnvFilter` directive such as `"warn"`) otherwise. Colours only when
/// stderr is a terminal, so a test that keeps a child's stderr in a file reads plain text. A
/// second call (a test calling a `main` twice) leaves the first subscriber in place.
///
/// `caps` are directives applied over either (such as `"rmcp=info"`): for a dependency whose
/// verbose levels would log what must never be logged, whatever `RUST_LOG` asks for. A cap that
/// does not parse is ignored.
pub fn log_to_stderr(default_filter: &str, caps: &[&str]) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    for cap in caps {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

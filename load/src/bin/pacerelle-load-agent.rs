//! The agent the load tool measures, as a program of its own: `pacerelle-load-agent <runtime>`
//! (`tokio`, `smol`, `async-std` or `blocking`), an encrypted echo agent on its SQLite store,
//! configured by the SDK's environment (see `pacerelle_load::serve`). Logs (warnings and worse
//! unless `RUST_LOG` says otherwise) go to stderr.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    pacerelle_runtime_support::logging::log_to_stderr("warn", &[]);
    match pacerelle_load::serve::serve(std::env::args().nth(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "load agent stopped");
            ExitCode::FAILURE
        }
    }
}

//! The echo agent, one command: `cargo run --example echo`. It is `echo_tokio` (tokio is the
//! default runtime); `echo_smol`, `echo_async_std` and `echo_blocking` are the same agent on the
//! other runtimes.

#[path = "echo_tokio.rs"]
mod echo_tokio;

fn main() -> std::process::ExitCode {
    echo_tokio::main()
}

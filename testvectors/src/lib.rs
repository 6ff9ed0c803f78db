//! Conformance with the official SDK (`pacerelle` 0.1.0a8 on PyPI), the oracle this SDK is
//! checked against. `README.md` in this folder lists every test and what it proves; in short:
//!
//! - `tests/reference_vectors.rs` checks our codecs against every vector in `vectors/*.json`,
//!   which `oracle/vectors.py` produced from the official SDK's own functions, and regenerates
//!   them with the installed SDK, failing if the committed files are stale;
//! - `tests/official_agent.rs`, `official_group.rs` and `official_attachments.rs` run the
//!   official Python agent ([`official_agent`]) against our relay, or its functions directly,
//!   and converse with it through our person-side client;
//! - `tests/official_runtime.rs`, `native_runtime.rs` and the other `runtime_*` tests load the
//!   official Signal runtime in process (through `pacerelle-official-runtime`, see
//!   [`runtime_library`]) and pair it with our native Signal stack.
//!
//! The oracle is installed by the tests themselves (see [`oracle_dir`]); when it cannot be
//! installed, the tests fail: they never skip.

#![forbid(unsafe_code)]

pub mod official_agent;
pub mod peers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// This crate's folder, where the vectors live.
pub fn vectors_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target folder the oracle is installed under (`$CARGO_TARGET_DIR` or the workspace's).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| vectors_dir().join("..").join("target"))
}

/// Installs the official SDK (once per process; the script itself is idempotent and locked
/// across processes) and returns its folder, for `PYTHONPATH`.
///
/// # Panics
/// When it cannot be installed: conformance must fail loudly, not skip.
pub fn oracle_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("oracle");
        let script = vectors_dir().join("oracle").join("install.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
        assert!(
            output.status.success(),
            "installing the official SDK (the conformance oracle) failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        dir
    })
}

/// The official Signal runtime (`libsignalwrap.so`) inside the installed oracle, for
/// `pacerelle_official_runtime::OfficialRuntime::load`.
///
/// # Panics
/// When the oracle cannot be installed or its wheel lacks the library (conformance fails loudly).
pub fn runtime_library() -> PathBuf {
    let path = oracle_dir().join("agent_gateway_sdk").join("native").join("libsignalwrap.so");
    assert!(path.is_file(), "the official SDK's wheel has no Signal runtime at {}", path.display());
    path
}

/// A `python3` command with the oracle on its path.
pub fn python() -> Command {
    let mut command = Command::new("python3");
    command.env("PYTHONPATH", oracle_dir()).env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// The lines a child process writes to `stdout`, read on a thread of their own so the child
/// never blocks on a full pipe (nor dies of a closed one while the receiver lives).
pub fn read_lines(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Reads the vector file `name` (e.g. `parse_payload.json`).
///
/// # Panics
/// When the file is missing or not JSON.
pub fn load_vectors(name: &str) -> serde_json::Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

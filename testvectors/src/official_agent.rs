//! The official Python agent (`oracle/official_agent.py`) as a child process, for conformance
//! tests that converse with it through our relay.
//!
//! Each agent keeps its Signal state under a folder of its own, removed when the agent is
//! dropped (or under a folder the test names and keeps, to read it afterwards). Left to its
//! default, the official SDK would keep it in `~/.myagents/<agent_id>/`,
//! shared by every run on the machine: its state then grows from run to run, and since the
//! official agent rewrites the whole of it for every message, each run gets slower than the
//! last until a test's deadline passes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the official agent may take to publish its bundle and open its socket.
const START_WAIT: Duration = Duration::from_secs(60);

/// How long the official agent runs before it exits on its own, should a test never drop it.
const LIFETIME_SECONDS: &str = "600";

/// How to start the official agent.
#[derive(Debug, Clone)]
pub struct OfficialAgentConfig {
    base_url: String,
    agent_id: String,
    token: String,
    e2ee: bool,
    store_root: Option<PathBuf>,
}

impl OfficialAgentConfig {
    /// The agent `agent_id`, connecting with `token` to the relay at `base_url`, plaintext.
    pub fn new(base_url: &str, agent_id: &str, token: &str) -> Self {
        OfficialAgentConfig {
            base_url: base_url.into(),
            agent_id: agent_id.into(),
            token: token.into(),
            e2ee: false,
            store_root: None,
        }
    }

    /// With end-to-end encryption (`e2ee=True`).
    pub fn encrypted(mut self) -> Self {
        self.e2ee = true;
        self
    }

    /// Keeps its state under `store_root` (the official SDK's `store_root`: the agent's
    /// `signal.db` is `<store_root>/<agent_id>/signal.db`), which the test owns and which
    /// outlives the agent.
    pub fn store_root(mut self, store_root: &Path) -> Self {
        self.store_root = Some(store_root.to_owned());
        self
    }
}

/// The running official agent, killed (by its own pid) and its store removed when dropped.
pub struct OfficialAgent {
    child: Child,
    lines: mpsc::Receiver<String>,
    handled: Vec<Value>,
    store_root: PathBuf,
    /// Whether the store root is this harness's own, removed with it.
    owns_store: bool,
}

impl OfficialAgent {
    /// Starts the agent and waits until its socket is open.
    ///
    /// # Panics
    /// When python3 cannot run it or it does not report ready within a minute.
    pub fn start(config: &OfficialAgentConfig) -> Self {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let owns_store = config.store_root.is_none();
        let store_root = config.store_root.clone().unwrap_or_else(|| {
            let own = std::env::temp_dir().join(format!(
                "pacerelle-official-agent-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&own);
            own
        });
        std::fs::create_dir_all(&store_root)
            .unwrap_or_else(|error| panic!("creating {}: {error}", store_root.display()));

        let script = crate::vectors_dir().join("oracle").join("official_agent.py");
        let mut command = crate::python();
        command
            .arg(script)
            .args(["--base-url", &config.base_url, "--agent-id", &config.agent_id, "--token", &config.token])
            .args(["--deadline-seconds", LIFETIME_SECONDS])
            .arg("--store-root")
            .arg(&store_root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if config.e2ee {
            command.arg("--e2ee");
        }
        let mut child = command.spawn().expect("python3 runs the official agent");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = crate::read_lines(stdout);
        let agent = OfficialAgent { child, lines, handled: Vec::new(), store_root, owns_store };
        let ready = agent.lines.recv_timeout(START_WAIT).expect("the official agent starts");
        assert_eq!(ready, "READY", "the official agent's first line");
        agent
    }

    /// Where this agent keeps its state (the official SDK's `store_root`).
    pub fn store_root(&self) -> &Path {
        &self.store_root
    }

    /// Every message the agent's handler reported so far, in order.
    pub fn handled(&mut self) -> &[Value] {
        self.drain();
        &self.handled
    }

    /// Waits up to `wait` until the handler has seen a message whose text is `text`; returns its
    /// report.
    ///
    /// # Panics
    /// When it has not within `wait`.
    pub fn wait_handled(&mut self, text: &str, wait: Duration) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            self.drain();
            if let Some(found) = self.handled.iter().find(|event| event["text"] == text) {
                return found.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("the official agent handles {text:?}"));
            self.record(&line);
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.record(&line);
        }
    }

    fn record(&mut self, line: &str) {
        if let Ok(event) = serde_json::from_str::<Value>(line) {
            self.handled.push(event);
        }
    }
}

impl Drop for OfficialAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_store {
            let _ = std::fs::remove_dir_all(&self.store_root);
        }
    }
}

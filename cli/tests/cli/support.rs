//! What the process tests share: the binary with a clean environment, scratch folders, and an
//! encrypted agent (built on the SDK, on a durable store) serving an in-process relay.

use pacerelle_core::agent::OutgoingFile;
use pacerelle_core::widget::{Choice, ChoiceOption, Confirm};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_tokio::{AgentHandle, Client, ClientConfig, ClientError, OutgoingMessage};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const AGENT: &str = "echo";
pub const AGENT_TOKEN: &str = "agent-token";
pub const PERSON: &str = "alice";
pub const PERSON_TOKEN: &str = "alice-token";
/// What the agent sends for `/file`.
pub const REPORT: &[u8] = b"quarterly numbers\nall good\n";

/// Variables the binary reads, removed so the tests' own environment cannot change them.
const VARIABLES: &[&str] = &[
    "PACERELLE_AGENT_ID",
    "PACERELLE_BASE_URL",
    "PACERELLE_CONNECT_KEY",
    "PACERELLE_PERSON_ID",
    "PACERELLE_PERSON_TOKEN",
    "PACERELLE_STORE_ROOT",
    "RUST_LOG",
];

/// The binary, with none of its variables set.
pub fn pacerelle(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pacerelle"));
    command.args(args);
    for variable in VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// Runs the binary to its end with `stdin` as its input.
pub fn run(mut command: Command, stdin: &str) -> Output {
    use std::io::Write as _;
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("the binary starts");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.as_bytes()).expect("stdin takes the script");
    drop(input);
    child.wait_with_output().expect("the binary ends")
}

/// Runs the binary off the async runtime (the relay and the agent keep running on it).
pub async fn run_async(command: Command, stdin: &str) -> Output {
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || run(command, &stdin)).await.expect("the runner thread")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pacerelle-cli-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    dir
}

/// A relay with the agent and the person, on a loopback port.
pub async fn relay() -> RelayHandle {
    Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN))
        .await
        .expect("the relay starts")
}

/// The test agent, serving.
pub struct Agent {
    pub handle: AgentHandle,
    serving: tokio::task::JoinHandle<Result<(), ClientError>>,
}

impl Agent {
    /// An encrypted agent on its SQLite store in `store_root`, connected to `relay` (its prekeys
    /// published, so a person can start a session).
    ///
    /// - `/confirm` → a confirm widget "Ship it?"; `/choice` → a choice "Pick a fruit";
    /// - a widget answer → `You answered <value>` (or `You dismissed <widget>`);
    /// - a message with files → `got <name> <size> bytes: <contents>` for each;
    /// - `/file` → the file `report.txt` ([`REPORT`]);
    /// - other text → `Received: <text>`.
    pub async fn start(relay: &RelayHandle, store_root: &Path) -> Agent {
        let config = ClientConfig { e2ee: true, ..ClientConfig::new(AGENT, AGENT_TOKEN) }
            .with_base_url(relay.base_url())
            .expect("a base URL")
            .with_store_root(store_root);
        let mut client = Client::new(config).expect("the agent's store opens");
        client.on_message(|message, agent| async move {
            let (conversation, from) = (message.conversation_id.clone(), message.from.clone());
            if let Some(answer) = &message.widget_response {
                let said = if answer.cancelled {
                    format!("You dismissed {}", answer.widget_ref)
                } else {
                    format!("You answered {}", answer.value.clone().unwrap_or_default())
                };
                agent.reply(&message, said).await?;
            } else if !message.attachments.is_empty() {
                for attachment in &message.attachments {
                    let bytes = agent.download_attachment(attachment).await?;
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    agent.reply(&message, format!("got {} {} bytes: {text}", attachment.name, bytes.len())).await?;
                }
            } else if message.text == "/confirm" {
                agent.send_widget(&conversation, &from, Confirm::new("Ship it?")).await?;
            } else if message.text == "/choice" {
                let options = [ChoiceOption::new("apple", "Green apple"), ChoiceOption::new("pear", "Pear")];
                agent.send_widget(&conversation, &from, Choice::new("Pick a fruit", options)).await?;
            } else if message.text == "/file" {
                let file = OutgoingFile::new(&conversation, &from, REPORT.to_vec(), "report.txt", "text/plain");
                agent.send_file(file).await?;
            } else {
                agent.send_message(OutgoingMessage::reply(&message, format!("Received: {}", message.text))).await?;
            }
            Ok(())
        });
        let handle = client.handle();
        let serving = tokio::spawn(client.connect());
        // The socket opens only after the prekeys are published.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !handle.is_connected() {
            assert!(Instant::now() < deadline, "the agent did not connect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Agent { handle, serving }
    }

    /// Closes the agent and waits until it has let go of its store.
    pub async fn stop(self) {
        self.handle.close();
        self.serving.await.expect("the agent task").expect("the agent ends cleanly");
    }
}

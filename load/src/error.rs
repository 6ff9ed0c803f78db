//! Why a load run failed: every way an agent can fall short of answering every message, and
//! every way the tool itself can fail to set a run up or report it.

use std::path::PathBuf;
use std::time::Duration;

/// A load run's failure. A run succeeds only when every reply arrived and decrypted.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The relay could not start.
    #[error("the relay could not start: {0}")]
    Relay(#[from] pacerelle_relay::RelayError),
    /// A person client failed (connecting, opening a conversation, sending).
    #[error("person {person}: {source}")]
    Person {
        /// The person's id.
        person: String,
        /// What failed.
        #[source]
        source: pacerelle_tokio::ClientError,
    },
    /// The agent's process could not be started.
    #[error("cannot start the {agent} agent ({program}): {source}")]
    Spawn {
        /// The agent's name.
        agent: String,
        /// The program started.
        program: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Our agent's program is not where it was said to be.
    #[error("no agent program at {0} (build it: cargo build --release -p pacerelle-load)")]
    AgentBinaryMissing(PathBuf),
    /// The agent did not open its socket and publish its prekeys in time.
    #[error("the {agent} agent was not ready within {waited:?}{exit}")]
    NotReady {
        /// The agent's name.
        agent: String,
        /// How long the tool waited.
        waited: Duration,
        /// How the process ended, if it did (empty while it runs).
        exit: String,
    },
    /// The agent's process ended during the run.
    #[error("the {agent} agent exited during the run: {status}")]
    AgentExited {
        /// The agent's name.
        agent: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// No reply (nor anything else) came for this long while replies were still due.
    #[error("conversation {conversation}: {missing} replies still missing after {idle:?} without a reply")]
    Stalled {
        /// The conversation's index.
        conversation: usize,
        /// How many replies had not arrived.
        missing: usize,
        /// How long nothing came.
        idle: Duration,
    },
    /// A reply answered no message this conversation sent, or one already answered.
    #[error("conversation {conversation}: a reply to an unknown or already answered message")]
    UnexpectedReply {
        /// The conversation's index.
        conversation: usize,
    },
    /// A reply was not what the echo gives (the text differs, or it came from someone else).
    #[error("conversation {conversation}: a reply does not echo its message")]
    WrongReply {
        /// The conversation's index.
        conversation: usize,
    },
    /// A reply came in plaintext although the conversation is encrypted.
    #[error("conversation {conversation}: a reply came unencrypted")]
    Unencrypted {
        /// The conversation's index.
        conversation: usize,
    },
    /// A person could not decrypt or read what the agent sent.
    #[error("person {person}: {count} inputs refused (undecryptable or unreadable), the first: {first}")]
    Refused {
        /// The person's id.
        person: String,
        /// How many inputs were refused.
        count: usize,
        /// The first refusal.
        first: pacerelle_core::human::PersonError,
    },
    /// A conversation's task ended abnormally.
    #[error("a conversation's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Reading the agent's process or store failed.
    #[error("reading {path}: {source}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A `/proc` file did not have the expected shape.
    #[error("{path}: unexpected contents ({what})")]
    Proc {
        /// The file.
        path: PathBuf,
        /// What was missing or malformed.
        what: &'static str,
    },
    /// A temporary folder could not be made.
    #[error("creating {path}: {source}")]
    TempDir {
        /// The folder.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The chart could not be drawn or written.
    #[error("chart: {0}")]
    Chart(String),
    /// The plan asks for nothing sensible (no conversations, a zero window or rate).
    #[error("preloading the agent's store: {0}")]
    Preload(String),
    /// The plan cannot be run.
    #[error("invalid plan: {0}")]
    Plan(&'static str),
}

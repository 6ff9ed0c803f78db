//! Durable by default on each runtime (issue 10, item 1): an agent made with the runtime's
//! `Client::new` keeps its state in SQLite under its store root, so a restart keeps its Signal
//! identity and its people's sessions; a store that cannot be opened is an error from
//! `Client::new`, never a fallback to memory.
//!
//! Also configuration from the environment (item 2): `configured_from_the_environment`.
//!
//! The store root is set through `ClientConfig::store_root` (what `PACERELLE_STORE_ROOT` fills)
//! rather than the process environment, which the suite's tests share across threads.

use crate::behaviour::Behaviour;
use crate::cases::base64_decode;
use crate::harness::{Harness, Running};
use crate::waiting::next_message as message;
use pacerelle_core::config::{ClientConfig, ConfigError};
use pacerelle_relay::{Relay, RelayConfig};
use pacerelle_runtime_support::ClientError;
use pacerelle_store_sqlite::{FILE_NAME, SqliteStore};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const AGENT: &str = "durable-agent";
const AGENT_TOKEN: &str = "durable-agent-token";
/// A second agent, without end-to-end encryption.
const PLAIN_AGENT: &str = "durable-plain-agent";
const PLAIN_AGENT_TOKEN: &str = "durable-plain-agent-token";
const PERSON: &str = "ada";
const PERSON_TOKEN: &str = "ada-token";
/// How long anything the agent should do may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long `connect` may take to return after `close`.
const PROMPT: Duration = Duration::from_secs(2);

/// A folder of its own under the system's temporary folder, removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(runtime: &str) -> Self {
        let path = std::env::temp_dir().join(format!("pacerelle-suite-durable-{runtime}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempRoot(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent of `config` on `H` through `Client::new`, connected.
async fn start<H: Harness>(config: &ClientConfig, behaviour: &Behaviour) -> Running {
    let agent = H::start_new(config.clone(), behaviour.clone())
        .unwrap_or_else(|error| panic!("{}: Client::new failed: {error}", H::NAME));
    let deadline = Instant::now() + WAIT;
    while !agent.is_connected() {
        assert!(Instant::now() < deadline, "{}: the agent did not connect", H::NAME);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    agent
}

/// Closes `agent`; `connect` must return `Ok` promptly.
async fn close<H: Harness>(agent: Running) {
    agent.close();
    match agent.finished(PROMPT).await {
        Some(Ok(())) => {}
        Some(Err(error)) => panic!("{}: connect returned {error}", H::NAME),
        None => panic!("{}: connect had not returned {PROMPT:?} after close", H::NAME),
    }
}

/// The person writes `text` to `agent` in `conversation` and gets its echo, linked to it.
async fn converse(person: &PersonClient, conversation: &str, agent: &str, text: &str, name: &str) -> String {
    let sent = person.send_text(conversation, agent, text).expect("the person writes");
    let reply = message(person, &format!("the echo of {text:?}")).await;
    assert_eq!(reply.text, format!("Received: {text}"), "{name}: {text:?} was read");
    assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()), "{name}: linked");
    sent
}

/// The code the person's app derives from the identity key the relay holds for [`AGENT`].
async fn published_code(person: &PersonClient) -> String {
    let bundle = person.fetch_bundle(AGENT).await.expect("the agent's bundle");
    let identity = base64_decode(&bundle.bundle.identity_key).expect("a base64 identity key");
    pacerelle_core::e2ee::bundle::verification_code(&identity)
}

/// An encrypted agent made with `Client::new` and restarted on the same store root keeps its
/// identity (the same verification code, the one its published key gives) and the person's
/// session (the conversation goes on with no new session); while it runs, a second
/// `Client::new` on its store is refused with [`ClientError::StoreInUse`]. A plaintext agent
/// keeps its receipts there too, and a root that cannot hold a folder is
/// [`ClientError::StoreOpen`] from `Client::new`.
pub fn restart_keeps_identity<H: Harness>() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let name = H::NAME;
        let root = TempRoot::new(name);
        let relay = Relay::spawn(
            RelayConfig::loopback_ephemeral()
                .agent(AGENT, AGENT_TOKEN)
                .agent(PLAIN_AGENT, PLAIN_AGENT_TOKEN)
                .person(PERSON, PERSON_TOKEN),
        )
        .await
        .expect("the relay starts");
        let config = ClientConfig {
            e2ee: true,
            ..ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).expect("a base URL")
        }
        .with_store_root(&root.0);
        let behaviour = Behaviour::new();

        let agent = start::<H>(&config, &behaviour).await;
        let code = agent.verification_code().unwrap_or_else(|| panic!("{name}: no verification code with e2ee"));
        let store_file = root.0.join(AGENT).join(FILE_NAME);
        assert!(store_file.is_file(), "{name}: Client::new did not make {}", store_file.display());

        // A second copy of the agent is refused at once, and does not touch the running one.
        match H::start_new(config.clone(), Behaviour::new()) {
            Err(ClientError::StoreInUse(path)) => assert_eq!(path, store_file, "{name}: the store in use"),
            Err(other) => panic!("{name}: a second Client::new on a store in use failed with {other}"),
            Ok(second) => {
                second.close();
                panic!("{name}: a second Client::new opened a store in use")
            }
        }

        let person_config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).encrypted();
        let person = PersonClient::connect(person_config).await.expect("the person connects");
        assert_eq!(published_code(&person).await, code, "{name}: the code is the published key's");
        let conversation = person.create_conversation(&[AGENT], false).await.expect("a conversation");
        let first = converse(&person, &conversation, AGENT, "before the restart", name).await;
        close::<H>(agent).await;

        let agent = start::<H>(&config, &behaviour).await;
        assert_eq!(agent.verification_code(), Some(code.clone()), "{name}: the restart kept the identity");
        assert_eq!(published_code(&person).await, code, "{name}: the relay holds the same identity");
        // The person's session from before the restart still opens the agent's messages and
        // the agent's still opens the person's.
        let second = converse(&person, &conversation, AGENT, "after the restart", name).await;
        assert_eq!(behaviour.calls_for(&first), 1, "{name}: the first message handled once");
        let call = behaviour.call(&second).unwrap_or_else(|| panic!("{name}: the second message not handled"));
        assert!(call.encrypted, "{name}: the message after the restart reached the handler in plaintext");
        close::<H>(agent).await;

        // A plaintext agent keeps its receipts in the same place.
        let plain = ClientConfig::new(PLAIN_AGENT, PLAIN_AGENT_TOKEN)
            .with_base_url(relay.base_url())
            .expect("a base URL")
            .with_store_root(&root.0);
        let agent = start::<H>(&plain, &behaviour).await;
        assert_eq!(agent.verification_code(), None, "{name}: a verification code without e2ee");
        let plain_person = PersonClient::connect(PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()))
            .await
            .expect("the person connects");
        let plain_conversation = plain_person.create_conversation(&[PLAIN_AGENT], false).await.expect("a conversation");
        let sent = converse(&plain_person, &plain_conversation, PLAIN_AGENT, "in plaintext", name).await;
        assert_eq!(behaviour.calls_for(&sent), 1, "{name}: the plaintext message handled once");
        close::<H>(agent).await;
        let receipts = SqliteStore::open_in(&root.0, PLAIN_AGENT)
            .and_then(|store| store.receipt_count())
            .unwrap_or_else(|error| panic!("{name}: the plaintext agent's store: {error}"));
        assert!(receipts >= 1, "{name}: the plaintext agent's receipt is not in its store");

        // A root that is a file cannot hold the agent's folder: an error, not memory.
        let not_a_folder = root.0.join("a-file");
        std::fs::write(&not_a_folder, b"not a folder").expect("a file");
        match H::start_new(config.clone().with_store_root(&not_a_folder), Behaviour::new()) {
            Err(ClientError::StoreOpen { path, .. }) => {
                assert_eq!(path, Path::new(&not_a_folder).join(AGENT), "{name}: the folder it tried")
            }
            Err(other) => panic!("{name}: an unusable root failed with {other}"),
            Ok(agent) => {
                agent.close();
                panic!("{name}: Client::new served from an unusable store root")
            }
        }

        person.close().await;
        plain_person.close().await;
        relay.shutdown().await;
    });
}

/// An agent configured the way the official README teaches, from `PACERELLE_*` variables
/// (`ClientConfig::from_lookup`, which `from_env` reads the process environment with: the
/// suite's tests share that environment, so the variables come from a table here), and made
/// with `Client::new`: `PACERELLE_E2EE=true` encrypts, `PACERELLE_STORE_ROOT` holds its store,
/// and the person converses with it end to end. A malformed or missing variable is a
/// [`ConfigError`] naming it, without its value.
pub fn configured_from_the_environment<H: Harness>() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let name = H::NAME;
        let root = TempRoot::new(&format!("{name}-env"));
        let relay =
            Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN))
                .await
                .expect("the relay starts");
        let base_url = format!("{}/", relay.base_url());
        let root_text = root.0.to_string_lossy().into_owned();
        let variables = |e2ee: &str| {
            let table = [
                ("PACERELLE_AGENT_ID", AGENT.to_owned()),
                ("PACERELLE_AGENT_TOKEN", AGENT_TOKEN.to_owned()),
                ("PACERELLE_BASE_URL", base_url.clone()),
                ("PACERELLE_E2EE", e2ee.to_owned()),
                ("PACERELLE_STORE_ROOT", root_text.clone()),
            ];
            move |variable: &str| table.iter().find(|(name, _)| *name == variable).map(|(_, value)| value.clone())
        };

        let config = ClientConfig::from_lookup(variables("true")).expect("the variables are well formed");
        let behaviour = Behaviour::new();
        let agent = start::<H>(&config, &behaviour).await;
        let code = agent.verification_code().unwrap_or_else(|| panic!("{name}: PACERELLE_E2EE=true did not encrypt"));
        let store_file = root.0.join(AGENT).join(FILE_NAME);
        assert!(store_file.is_file(), "{name}: no store under PACERELLE_STORE_ROOT ({})", store_file.display());
        let person_config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).encrypted();
        let person = PersonClient::connect(person_config).await.expect("the person connects");
        assert_eq!(published_code(&person).await, code, "{name}: the code is the published key's");
        let conversation = person.create_conversation(&[AGENT], false).await.expect("a conversation");
        let sent = converse(&person, &conversation, AGENT, "configured from the environment", name).await;
        let call = behaviour.call(&sent).unwrap_or_else(|| panic!("{name}: the message was not handled"));
        assert!(call.encrypted, "{name}: the message reached the handler unencrypted");
        close::<H>(agent).await;

        let malformed = ClientConfig::from_lookup(variables("yes")).expect_err("PACERELLE_E2EE=yes is refused");
        assert!(
            matches!(malformed, ConfigError::MalformedVariable { variable: "PACERELLE_E2EE", .. }),
            "{name}: {malformed:?}"
        );
        assert!(!malformed.to_string().contains("yes"), "{name}: the error repeats the value: {malformed}");
        let without_token =
            |variable: &str| (variable != "PACERELLE_AGENT_TOKEN").then(|| variables("1")(variable)).flatten();
        let missing = ClientConfig::from_lookup(without_token).expect_err("a missing token is refused");
        assert!(matches!(missing, ConfigError::MissingVariable("PACERELLE_AGENT_TOKEN")), "{name}: {missing:?}");

        person.close().await;
        relay.shutdown().await;
    });
}

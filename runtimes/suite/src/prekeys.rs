//! The prekey lifecycle on each runtime (issue 9, item 5): the encrypted agent is restarted
//! [`RESTARTS`] times over one store against one relay, which keeps its state throughout; then
//! people start sessions from the oldest one-time prekeys the relay holds, and converse.
//!
//! Before, every start made and posted 50 one-time prekeys and the agent kept only the newest
//! 500, while this relay hands out the oldest first: after a dozen restarts the first person got
//! a key the agent had forgotten and could not start a session. Now a start only puts the
//! bundle again, so the relay still holds exactly the first batch, and every key of it opens.
//! (The core's tests cover restarts with time passing, replacing relays and the bounds:
//! `core/src/agent/tests_prekeys.rs`.)
//!
//! `publish_prekey_bundle_on_demand`: the app's own publication through the handle (issue 12,
//! item 4), and the identity key read off the handle.

use crate::behaviour::Behaviour;
use crate::harness::{Harness, Running};
use crate::waiting::next_message as message;
use pacerelle_core::agent::{AgentConfig, PublishError};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::e2ee::bundle::ONE_TIME_PREKEYS;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_runtime_support::ClientError;
/// A store in memory that outlives the agents using it: what a file would be across restarts.
pub(crate) use pacerelle_test::SharedStore;
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use std::time::{Duration, Instant};

/// How many times the agent is restarted: 15 on every runtime (each restart takes a few
/// tens of milliseconds: loading the store and one `PUT`).
pub const RESTARTS: usize = 15;

const AGENT: &str = "prekeys-agent";
const AGENT_TOKEN: &str = "prekeys-agent-token";
/// The people who come after the restarts, each with a session of their own.
const PERSONS: [(&str, &str); 3] = [("ada", "ada-token"), ("grace", "grace-token"), ("edsger", "edsger-token")];
/// How long anything the agent should do may take.
const WAIT: Duration = Duration::from_secs(10);
/// How long `connect` may take to return after `close`.
const PROMPT: Duration = Duration::from_secs(2);

/// The encrypted agent on `H`, over `store`, connected.
async fn start<H: Harness>(relay: &RelayHandle, store: &SharedStore, behaviour: &Behaviour) -> Running {
    let mut config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).expect("a base URL");
    config.e2ee = true;
    let core = AgentConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
        ..AgentConfig::new(AGENT)
    };
    let agent = H::start_with_store(config, core, behaviour.clone(), Box::new(store.clone()));
    let deadline = Instant::now() + WAIT;
    while !agent.is_connected() {
        assert!(Instant::now() < deadline, "{}: the agent did not publish and connect", H::NAME);
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

/// Restarts the agent [`RESTARTS`] times, then people start sessions from the oldest one-time
/// prekeys the relay holds and converse.
pub fn prekeys_survive_restarts<H: Harness>() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let name = H::NAME;
        let mut config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN);
        for (person, token) in PERSONS {
            config = config.person(person, token);
        }
        let relay = Relay::spawn(config).await.expect("the relay starts");
        let store = SharedStore::default();
        let behaviour = Behaviour::new();

        let mut agent = start::<H>(&relay, &store, &behaviour).await;
        let first = relay.one_time_prekey_ids(AGENT);
        assert_eq!(first.len(), ONE_TIME_PREKEYS, "{name}: the first start posts a batch");
        let code = agent.verification_code();
        for restart in 1..=RESTARTS {
            close::<H>(agent).await;
            agent = start::<H>(&relay, &store, &behaviour).await;
            assert_eq!(agent.verification_code(), code, "{name}: restart {restart} kept the identity");
        }
        // The restarts put the bundle and made no one-time prekeys: the relay holds the first
        // batch, oldest first, and the agent every key of it.
        assert_eq!(relay.one_time_prekey_ids(AGENT), first, "{name}: the relay's one-time prekeys");

        for (index, (person, token)) in PERSONS.into_iter().enumerate() {
            let config = PersonClientConfig::new(person, token, relay.base_url()).encrypted();
            let client = PersonClient::connect(config).await.expect("the person connects");
            let conversation = client.create_conversation(&[AGENT], false).await.expect("a conversation");
            for text in [format!("hello from {person}"), format!("{person} again")] {
                let sent = client.send_text(&conversation, AGENT, &text).expect("the person writes");
                let reply = message(&client, &format!("the reply to {person}")).await;
                assert_eq!(reply.text, format!("Received: {text}"), "{name}: {person}'s message was read");
                assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()));
                assert!(reply.encrypted, "{name}: the reply to {person} arrived in plaintext");
                let call = behaviour.call(&sent).unwrap_or_else(|| panic!("{name}: {person}'s message not handled"));
                assert!(call.encrypted, "{name}: {person}'s message reached the handler in plaintext");
            }
            // Their session took the oldest key the relay held, one of the first batch.
            assert_eq!(relay.one_time_prekey_ids(AGENT), first[index + 1..], "{name}: after {person}'s session");
            client.close().await;
        }

        close::<H>(agent).await;
        relay.shutdown().await;
    });
}

const PLAIN_AGENT: &str = "prekeys-plain-agent";
const PLAIN_TOKEN: &str = "prekeys-plain-token";

/// The app asks for a new prekey bundle through the handle (the official
/// `publish_prekey_bundle`): a new batch of one-time prekeys reaches the relay after the first,
/// the identity (and its code, read off the handle's identity key) stays, and a person then
/// starts a session from the new bundle and converses. A plaintext agent refuses.
pub fn publish_prekey_bundle_on_demand<H: Harness>() {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let name = H::NAME;
        let (person, token) = PERSONS[0];
        let config = RelayConfig::loopback_ephemeral()
            .agent(AGENT, AGENT_TOKEN)
            .agent(PLAIN_AGENT, PLAIN_TOKEN)
            .person(person, token);
        let relay = Relay::spawn(config).await.expect("the relay starts");
        let behaviour = Behaviour::new();
        let agent = start::<H>(&relay, &SharedStore::default(), &behaviour).await;
        let first = relay.one_time_prekey_ids(AGENT);
        assert_eq!(first.len(), ONE_TIME_PREKEYS, "{name}: the start's batch");
        let identity = agent.identity_key().unwrap_or_else(|| panic!("{name}: an encrypted agent has an identity key"));
        assert_eq!(
            agent.verification_code(),
            Some(pacerelle_core::e2ee::bundle::verification_code(&identity)),
            "{name}: the code is the identity key's"
        );

        // The handle waits for the relay's answers, fed by the agent's own thread.
        tokio::task::block_in_place(|| agent.publish_prekey_bundle())
            .unwrap_or_else(|error| panic!("{name}: publish_prekey_bundle: {error}"));
        let after = relay.one_time_prekey_ids(AGENT);
        assert_eq!(after.len(), 2 * ONE_TIME_PREKEYS, "{name}: a new batch after the first");
        assert_eq!(after[..ONE_TIME_PREKEYS], first[..], "{name}: the first batch still held, first");
        assert!(after[ONE_TIME_PREKEYS..].iter().all(|id| !first.contains(id)), "{name}: new ids");
        assert_eq!(agent.identity_key(), Some(identity), "{name}: the same identity");

        let config = PersonClientConfig::new(person, token, relay.base_url()).encrypted();
        let client = PersonClient::connect(config).await.expect("the person connects");
        let conversation = client.create_conversation(&[AGENT], false).await.expect("a conversation");
        let sent = client.send_text(&conversation, AGENT, "after the new bundle").expect("the person writes");
        let reply = message(&client, "the reply after the new bundle").await;
        assert_eq!(reply.text, "Received: after the new bundle", "{name}: read with the new bundle's keys");
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()));
        assert!(reply.encrypted, "{name}: the reply arrived in plaintext");
        client.close().await;
        close::<H>(agent).await;

        let config = ClientConfig::new(PLAIN_AGENT, PLAIN_TOKEN).with_base_url(relay.base_url()).expect("a base URL");
        let plain = H::start(config, AgentConfig::new(PLAIN_AGENT), Behaviour::new());
        let deadline = Instant::now() + WAIT;
        while !plain.is_connected() {
            assert!(Instant::now() < deadline, "{name}: the plaintext agent did not connect");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(plain.identity_key().is_none(), "{name}: no identity without encryption");
        match tokio::task::block_in_place(|| plain.publish_prekey_bundle()) {
            Err(ClientError::Publish(PublishError::NotEncrypted)) => {}
            other => panic!("{name}: a plaintext agent's publish_prekey_bundle gave {other:?}"),
        }
        close::<H>(plain).await;
        relay.shutdown().await;
    });
}

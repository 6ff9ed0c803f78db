//! The blocking agent against a relay running on its own runtime: delivery across a dropped
//! connection with a failing handler, sends from another thread, prompt close.

use pacerelle_blocking::{Client, ClientConfig};
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::human::PersonEvent;
use pacerelle_core::store::MemoryStore;
use pacerelle_relay::{BackgroundRelay, RelayConfig};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use rand::SeedableRng;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const AGENT: &str = "agent-1";
const AGENT_TOKEN: &str = "agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
const WAIT: Duration = Duration::from_secs(10);

fn client(base_url: &str) -> Client {
    let config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(base_url).unwrap();
    let core = AgentConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
        ..AgentConfig::new(AGENT)
    };
    Client::with_parts(config, core, Box::new(MemoryStore::new()), Box::new(rand::rngs::StdRng::seed_from_u64(5)))
        .unwrap()
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_failed_handler_gets_the_message_again_after_a_drop_and_other_threads_can_send() {
    let relay = BackgroundRelay::start(
        RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN),
    )
    .unwrap();
    let person_runtime = tokio::runtime::Runtime::new().unwrap();
    let person = person_runtime
        .block_on(PersonClient::connect(PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url())))
        .unwrap();
    let conversation = person_runtime.block_on(person.create_conversation(&[AGENT], false)).unwrap();
    let sent = person.send_text(&conversation, AGENT, "hello").unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let mut client = client(&relay.base_url());
    let seen = calls.clone();
    client.on_message(move |message, agent| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("the first attempt fails".into());
        }
        agent.reply(&message, "handled")?;
        Ok(())
    });
    let agent = client.handle();
    let serving = std::thread::spawn(move || client.connect());

    wait_until("the first attempt", || calls.load(Ordering::SeqCst) == 1);
    relay.disconnect_agent(AGENT);
    let reply = person_runtime.block_on(person.next_message(WAIT)).unwrap();
    assert_eq!((reply.text.as_str(), reply.reply_to_message_id.as_deref()), ("handled", Some(sent.as_str())));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    loop {
        match person_runtime.block_on(person.next_event(WAIT)).unwrap() {
            PersonEvent::Read(receipt) if receipt.message_id == sent => break,
            _ => continue,
        }
    }

    // A send from another thread goes out within a tick.
    wait_until("the agent to be connected", || agent.is_connected());
    agent.send_text(&conversation, PERSON, "from another thread").unwrap();
    let pushed = person_runtime.block_on(person.next_message(WAIT)).unwrap();
    assert_eq!(pushed.text, "from another thread");

    let closing = Instant::now();
    agent.close();
    serving.join().unwrap().unwrap();
    assert!(closing.elapsed() < Duration::from_secs(2), "close took {:?}", closing.elapsed());
    person_runtime.block_on(person.close());
    relay.shutdown();
}

/// Before `connect`, the app's publication is refused; the identity key is there already, and
/// the verification code is its.
#[test]
fn publish_prekey_bundle_before_connect_is_refused_and_the_identity_key_is_read() {
    let config = ClientConfig { e2ee: true, ..ClientConfig::new(AGENT, AGENT_TOKEN) };
    let client = Client::in_memory(config).unwrap();
    let handle = client.handle();
    match handle.publish_prekey_bundle() {
        Err(pacerelle_blocking::ClientError::Publish(pacerelle_core::agent::PublishError::NotStarted)) => {}
        other => panic!("publish before connect gave {other:?}"),
    }
    let key = handle.identity_key().expect("an encrypted agent has an identity key");
    assert_eq!(handle.verification_code(), Some(pacerelle_core::e2ee::bundle::verification_code(&key)));
    let plain = Client::in_memory(ClientConfig::new(AGENT, AGENT_TOKEN)).unwrap();
    assert_eq!(plain.handle().identity_key(), None);
    match plain.handle().publish_prekey_bundle() {
        Err(pacerelle_blocking::ClientError::Publish(pacerelle_core::agent::PublishError::NotEncrypted)) => {}
        other => panic!("a plaintext agent's publish gave {other:?}"),
    }
}

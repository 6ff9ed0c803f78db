//! The tokio agent against a real relay on loopback: delivery across dropped connections,
//! failing handlers, handlers that send, shutdown.

use pacerelle_core::agent::AgentConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_core::human::PersonEvent;
use pacerelle_core::store::MemoryStore;
use pacerelle_core::widget::{Choice, ChoiceOption, Progress};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_tokio::{AgentHandle, Client, ClientConfig, HandlerResult, PersonClient, PersonClientConfig};
use rand::SeedableRng;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const AGENT: &str = "agent-1";
const AGENT_TOKEN: &str = "agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
const WAIT: Duration = Duration::from_secs(10);

async fn relay() -> RelayHandle {
    Relay::spawn(RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN))
        .await
        .unwrap()
}

/// An agent with fast reconnects, seeded randomness, and `handler`.
fn agent<F, Fut>(relay: &RelayHandle, handler: F) -> Client
where
    F: Fn(pacerelle_tokio::AgentMessage, AgentHandle) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).unwrap();
    let core = AgentConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
        ..AgentConfig::new(AGENT)
    };
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(9));
    let mut client = Client::with_parts(config, core, Box::new(MemoryStore::new()), rng).unwrap();
    client.on_message(handler);
    client
}

async fn person(relay: &RelayHandle) -> (PersonClient, String) {
    let person = PersonClient::connect(PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url())).await.unwrap();
    let conversation = person.create_conversation(&[AGENT], false).await.unwrap();
    (person, conversation)
}

async fn read_receipt(person: &PersonClient, message_id: &str) {
    loop {
        match person.next_event(WAIT).await.unwrap() {
            PersonEvent::Read(receipt) if receipt.message_id == message_id => return,
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_arrive_and_a_failed_handler_gets_the_message_again_after_a_drop() {
    let relay = relay().await;
    let (person, conversation) = person(&relay).await;
    // Sent while the agent is offline: the relay queues it.
    let sent = person.send_text(&conversation, AGENT, "while you were away").unwrap();

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let client = agent(&relay, move |message, agent| {
        let seen = seen.clone();
        async move {
            assert_eq!(message.text, "while you were away");
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err("the first attempt fails".into());
            }
            agent.reply(&message, "got it").await?;
            Ok(())
        }
    });
    let handle = client.handle();
    let serving = tokio::spawn(client.connect());

    // The first attempt failed: no acknowledgement. Drop the agent's connection; the relay
    // replays the message on reconnect and the second attempt succeeds.
    tokio::time::timeout(WAIT, async {
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    relay.disconnect_agent(AGENT).await;
    let reply = person.next_message(WAIT).await.unwrap();
    assert_eq!(reply.text, "got it");
    assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()));
    read_receipt(&person, &sent).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Accepted: another drop replays nothing and the handler is not called again.
    relay.disconnect_agent(AGENT).await;
    let again = person.send_text(&conversation, AGENT, "while you were away").unwrap();
    read_receipt(&person, &again).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call for the new message, none for the replayed one");

    handle.close();
    tokio::time::timeout(Duration::from_secs(5), serving).await.unwrap().unwrap().unwrap();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_can_send_several_messages_and_widgets_before_returning() {
    let relay = relay().await;
    let client = agent(&relay, |message, agent| async move {
        for index in 1..=3 {
            agent.reply(&message, format!("part {index}")).await?;
        }
        let options = [ChoiceOption::new("a", "A"), ChoiceOption::new("b", "B")];
        agent.send_widget(&message.conversation_id, &message.from, Choice::new("Pick", options)).await?;
        agent.send_widget(&message.conversation_id, &message.from, Progress::new("Working", 10)).await?;
        Ok(())
    });
    let handle = client.handle();
    let serving = tokio::spawn(client.connect());
    let (person, conversation) = person(&relay).await;
    let sent = person.send_text(&conversation, AGENT, "go").unwrap();
    let mut texts = Vec::new();
    for _ in 0..5 {
        let message = person.next_message(WAIT).await.unwrap();
        texts.push(message.widget.map(|w| w.kind.as_str().to_owned()).unwrap_or(message.text));
    }
    assert_eq!(texts, ["part 1", "part 2", "part 3", "choice", "progress"]);
    read_receipt(&person, &sent).await;
    handle.close();
    tokio::time::timeout(Duration::from_secs(5), serving).await.unwrap().unwrap().unwrap();
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_promptly_even_while_reconnecting() {
    let relay = relay().await;
    let base_url = relay.base_url();
    relay.shutdown().await;
    // Nothing listens any more: the agent keeps retrying with backoff until closed.
    let config = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(base_url).unwrap();
    let client = Client::in_memory(config).unwrap();
    let handle = client.handle();
    let serving = tokio::spawn(client.connect());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!handle.is_connected());
    handle.close();
    tokio::time::timeout(Duration::from_secs(2), serving).await.expect("prompt").unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_ends_connect_at_the_socket() {
    let relay = relay().await;
    let config = ClientConfig::new(AGENT, "wrong").with_base_url(relay.base_url()).unwrap();
    let client = Client::in_memory(config).unwrap();
    let handle = client.handle();
    let outcome = tokio::time::timeout(WAIT, client.connect()).await.expect("connect returns");
    match outcome {
        Err(pacerelle_tokio::ClientError::Unauthorized {
            step: pacerelle_core::agent::AuthStep::Socket,
            status: 401,
            ..
        }) => {}
        other => panic!("expected a refused token, got {other:?}"),
    }
    assert!(!handle.is_connected());
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_prekey_publication_stops_connect_with_the_reason() {
    let relay = relay().await;
    // A token the relay does not know: the bundle upload gets a 401, which retrying cannot fix.
    let config =
        ClientConfig { e2ee: true, ..ClientConfig::new(AGENT, "wrong-token").with_base_url(relay.base_url()).unwrap() };
    let client = Client::in_memory(config).unwrap();
    let outcome = tokio::time::timeout(WAIT, client.connect()).await.expect("connect returns");
    match outcome {
        Err(pacerelle_tokio::ClientError::Unauthorized {
            step: pacerelle_core::agent::AuthStep::Publication(_),
            status: 401,
            ..
        }) => {}
        other => panic!("expected a refused token at publication, got {other:?}"),
    }
    relay.shutdown().await;
}

/// Before `connect` (which publishes first), the app's publication is refused, not started.
#[tokio::test]
async fn publish_prekey_bundle_before_connect_is_refused() {
    let config = ClientConfig { e2ee: true, ..ClientConfig::new(AGENT, AGENT_TOKEN) };
    let client = Client::in_memory(config).unwrap();
    match client.handle().publish_prekey_bundle().await {
        Err(pacerelle_tokio::ClientError::Publish(pacerelle_core::agent::PublishError::NotStarted)) => {}
        other => panic!("publish before connect gave {other:?}"),
    }
    assert!(client.handle().identity_key().is_some());
}

//! No reply lost with the socket, on each runtime (issue 10, item 7): the relay loses what the
//! agent sent after a handler's reply (and cuts the socket, as a crash would), and the reply
//! still reaches the person, once, under its original id; a send outside a handler lost the
//! same way arrives after the reconnection.

use crate::behaviour::Behaviour;
use crate::harness::{Harness, Running};
use crate::waiting::{next_message as message, run, wait_until};
use pacerelle_core::agent::AgentConfig;
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::Backoff;
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use std::time::Duration;

const AGENT: &str = "outbox-agent";
const AGENT_TOKEN: &str = "outbox-agent-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
/// How long anything the agent should do may take.
const WAIT: Duration = Duration::from_secs(10);

/// The ids of the agent's `MSG` frames that crossed the relay (lost ones included) replying to
/// `source`, in order.
fn replies_seen(relay: &RelayHandle, source: &str) -> Vec<String> {
    crate::cases::msg_frames(&relay.observed())
        .into_iter()
        .filter(|frame| frame["reply_to_message_id"] == source)
        .filter_map(|frame| frame["id"].as_str().map(str::to_owned))
        .collect()
}

/// The relay loses the agent's reply and its acknowledgement, then cuts the socket: the agent
/// reconnects, the message is replayed, and the agent sends the same reply again (same id)
/// before acknowledging; the person gets it exactly once, the handler ran once. Then a send
/// outside any handler is lost the same way and arrives after the reconnection.
pub fn no_reply_lost_with_the_socket<H: Harness>() {
    run(async {
        let name = H::NAME;
        let config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN);
        let relay = Relay::spawn(config).await.expect("the relay starts");
        let person_config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device("phone");
        let person = PersonClient::connect(person_config).await.expect("the person connects");
        let conversation = person.create_conversation(&[AGENT], false).await.expect("a conversation");
        let behaviour = Behaviour::new();
        let core = AgentConfig {
            backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
            ..AgentConfig::new(AGENT)
        };
        let client = ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(relay.base_url()).expect("a base URL");
        let agent: Running = H::start(client, core, behaviour.clone());
        wait_until("the agent to connect", || agent.is_connected()).await;

        // The reply and the ACK_READ are lost with the socket.
        relay.lose_agent_frames(AGENT, 2);
        let sent = person.send_text(&conversation, AGENT, "hello").expect("the person sends");
        let reply = message(&person, "the reply sent again").await;
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()), "{name}: answered");
        assert_eq!(reply.text, "Received: hello", "{name}");
        let seen = replies_seen(&relay, &sent);
        assert!(seen.len() >= 2, "{name}: the reply was lost, then sent again: {seen:?}");
        assert!(seen.iter().all(|id| *id == reply.id), "{name}: under its original id: {seen:?}");
        wait_until("the acknowledgement", || relay.pending_for_agent(AGENT) == 0).await;
        assert_eq!(behaviour.calls_for(&sent), 1, "{name}: handled once");
        // Exactly once: the person's next message is the answer to a new message, not a copy.
        let next = person.send_text(&conversation, AGENT, "again").expect("the person sends");
        let answer = message(&person, "the answer to the next message").await;
        assert_eq!(answer.reply_to_message_id.as_deref(), Some(next.as_str()), "{name}: no second copy");

        // A send outside any handler, lost with its socket before the relay read it.
        relay.lose_agent_frames(AGENT, 1);
        let unprompted = agent.send_text(&conversation, PERSON, "unprompted").expect("the agent sends");
        let arrived = message(&person, "the send outside a handler").await;
        assert_eq!((arrived.id.as_str(), arrived.text.as_str()), (unprompted.as_str(), "unprompted"), "{name}");

        agent.close();
        assert!(matches!(agent.finished(WAIT).await, Some(Ok(()))), "{name}: closed cleanly");
        person.close().await;
        relay.shutdown().await;
    });
}

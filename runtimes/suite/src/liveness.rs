//! Honest failures and live connections on each runtime (issue 10, items 3 and 4): a refused
//! token ends `connect` at once, a new token is used from the next connection on, and a
//! half-open connection (a proxy that stops forwarding without closing) is noticed by the
//! keepalive, replaced, and loses or repeats no message.

use crate::behaviour::Behaviour;
use crate::harness::{Harness, Running};
use crate::waiting::{next_message as message, run, wait_until};
use pacerelle_core::agent::{AgentConfig, AuthStep, PublicationStep};
use pacerelle_core::config::ClientConfig;
use pacerelle_core::connection::{Backoff, Keepalive};
use pacerelle_relay::{Relay, RelayConfig, RelayHandle};
use pacerelle_runtime_support::ClientError;
// The test kit's proxy: it freezes WebSocket connections without closing them.
use pacerelle_test::FaultProxy as Proxy;
use pacerelle_tokio::{PersonClient, PersonClientConfig};
use std::time::Duration;

const AGENT: &str = "liveness-agent";
const AGENT_TOKEN: &str = "liveness-agent-token";
const WRONG_TOKEN: &str = "not-the-liveness-token";
const NEW_TOKEN: &str = "liveness-agent-new-token";
const PERSON: &str = "alice";
const PERSON_TOKEN: &str = "alice-token";
/// How long `connect` may take to return: after `close`, or after a refused token. Retrying
/// the refusal with the suite's backoff would take longer than this only if it never stopped.
const PROMPT: Duration = Duration::from_secs(3);
/// The keepalive of the half-open case: short, so that the case takes well under a second.
const KEEPALIVE: Keepalive = Keepalive { interval: Duration::from_millis(200), timeout: Duration::from_millis(500) };

async fn relay() -> RelayHandle {
    let config = RelayConfig::loopback_ephemeral().agent(AGENT, AGENT_TOKEN).person(PERSON, PERSON_TOKEN);
    Relay::spawn(config).await.expect("the relay starts")
}

fn core() -> AgentConfig {
    AgentConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
        keepalive: KEEPALIVE,
        ..AgentConfig::new(AGENT)
    }
}

/// The agent on `H` against `base_url` (the relay's, or a proxy's) with `token`.
fn agent<H: Harness>(base_url: String, token: &str, e2ee: bool, behaviour: &Behaviour) -> Running {
    let mut config = ClientConfig::new(AGENT, token).with_base_url(base_url).expect("a base URL");
    config.e2ee = e2ee;
    H::start(config, core(), behaviour.clone())
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

/// The person and their conversation with the agent.
async fn person(relay: &RelayHandle) -> (PersonClient, String) {
    let config = PersonClientConfig::new(PERSON, PERSON_TOKEN, relay.base_url()).device("phone");
    let person = PersonClient::connect(config).await.expect("the person connects");
    let conversation = person.create_conversation(&[AGENT], false).await.expect("a conversation");
    (person, conversation)
}

/// A wrong token ends `connect` promptly with [`ClientError::Unauthorized`], at the socket for
/// the plaintext agent and at publication for the encrypted one, without the token in the
/// error; a token changed with `set_token` is used from the next connection on.
pub fn a_refused_token_ends_connect_and_a_new_one_is_used<H: Harness>() {
    run(async {
        let name = H::NAME;
        let relay = relay().await;
        let behaviour = Behaviour::new();
        for (e2ee, expected) in [(false, AuthStep::Socket), (true, AuthStep::Publication(PublicationStep::Bundle))] {
            let refused = agent::<H>(relay.base_url(), WRONG_TOKEN, e2ee, &behaviour);
            match refused.finished(PROMPT).await {
                Some(Err(error)) if matches!(error, ClientError::Unauthorized { .. }) => {
                    assert!(!error.to_string().contains(WRONG_TOKEN), "{name}: the token leaked: {error}");
                    let ClientError::Unauthorized { step, status, reason } = error else { unreachable!() };
                    assert_eq!((step, status), (expected, 401), "{name}: where and how it was refused");
                    assert!(reason.is_some_and(|reason| !reason.is_empty()), "{name}: the relay's reason");
                }
                Some(other) => panic!("{name} (e2ee {e2ee}): connect returned {other:?}"),
                None => panic!("{name} (e2ee {e2ee}): connect still retrying a refused token after {PROMPT:?}"),
            }
        }

        // The relay now takes only a new token: the running agent is handed it, and its next
        // connection (after the relay drops this one) succeeds where the old token would end it.
        let (person, conversation) = person(&relay).await;
        let agent = agent::<H>(relay.base_url(), AGENT_TOKEN, false, &behaviour);
        wait_until("the agent to connect", || agent.is_connected()).await;
        relay.add_agent(AGENT, NEW_TOKEN);
        agent.set_token(NEW_TOKEN);
        relay.disconnect_agent(AGENT).await;
        let sent = person.send_text(&conversation, AGENT, "after the new token").expect("the person sends");
        let reply = message(&person, "the reply after reconnecting").await;
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()), "{name}: answered");
        assert_eq!(behaviour.calls_for(&sent), 1, "{name}: handled once");
        assert!(agent.is_connected(), "{name}: connected with the new token");
        close::<H>(agent).await;
        person.close().await;
        relay.shutdown().await;
    });
}

/// The agent reaches the relay through a proxy that then stops forwarding without closing;
/// the person writes meanwhile. With a short keepalive the agent notices the silence,
/// reconnects (through the proxy, whose new connections forward), and the message is handled
/// exactly once and answered; when the frozen connection thaws, nothing comes twice.
pub fn a_half_open_connection_is_noticed_and_replaced<H: Harness>() {
    run(async {
        let name = H::NAME;
        let relay = relay().await;
        let proxy = Proxy::start(relay.addr()).await.expect("the proxy listens");
        let (person, conversation) = person(&relay).await;
        let behaviour = Behaviour::new();
        let agent = agent::<H>(proxy.base_url(), AGENT_TOKEN, false, &behaviour);
        wait_until("the agent to connect through the proxy", || agent.is_connected()).await;

        let mut sent = vec![person.send_text(&conversation, AGENT, "before").expect("the person sends")];
        let reply = message(&person, "the first reply").await;
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent[0].as_str()));
        // (That pongs keep a live connection is the core's test; timing is not asserted here.)
        let connections = proxy.sockets();
        proxy.set_frozen(true);
        sent.push(person.send_text(&conversation, AGENT, "while half-open").expect("the person sends"));
        // The relay wrote it into the frozen connection; the agent notices the silence,
        // reconnects, and the relay replays what was not acknowledged.
        wait_until("the agent to reconnect", || proxy.sockets() > connections).await;
        let reply = message(&person, "the reply to the message sent while half-open").await;
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent[1].as_str()), "{name}: answered");
        wait_until("the acknowledgement", || relay.pending_for_agent(AGENT) == 0).await;

        // The frozen connection thaws: what it held reaches nobody twice.
        proxy.set_frozen(false);
        sent.push(person.send_text(&conversation, AGENT, "after").expect("the person sends"));
        let reply = message(&person, "the last reply").await;
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent[2].as_str()), "{name}: answered");
        wait_until("every acknowledgement", || relay.pending_for_agent(AGENT) == 0).await;
        for id in &sent {
            assert_eq!(behaviour.calls_for(id), 1, "{name}: message {id} handled once");
        }
        assert_eq!(behaviour.calls().len(), sent.len(), "{name}: no other call");
        assert!(agent.is_connected(), "{name}: connected");
        close::<H>(agent).await;
        person.close().await;
        relay.shutdown().await;
    });
}

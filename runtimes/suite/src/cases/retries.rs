//! Handler failures on every runtime (issue 10, item 5): a failed handler is called again on the
//! same connection after a backoff, a bounded number of times, then the message is left pending
//! at the relay and the app hears of it; an agent without a message handler leaves every
//! message pending, as the official SDK does.

use super::*;
use crate::behaviour::Report;
use crate::fail_stop::Disk;
use pacerelle_core::agent::{GaveUp, HandlerRetry};
use pacerelle_core::store::ReceiptState;

/// Three attempts in all, a short backoff (50 ms, then 100 ms).
const RETRY: HandlerRetry =
    HandlerRetry { max_attempts: 3, initial: Duration::from_millis(50), max: Duration::from_millis(100) };

/// The suite's fast reconnects, with [`RETRY`].
fn retrying() -> AgentConfig {
    AgentConfig { handler_retry: RETRY, ..fast_backoff() }
}

/// How many `ACK_READ`s for `message_id` the agent sent the relay.
fn acks_for(relay: &RelayHandle, message_id: &str) -> usize {
    frames_of_type(&relay.observed(), "ACK_READ").iter().filter(|ack| ack["message_id"] == json!(message_id)).count()
}

/// The gave-up reports so far.
fn gave_up(behaviour: &Behaviour) -> Vec<GaveUp> {
    behaviour
        .reports()
        .into_iter()
        .filter_map(|report| match report {
            Report::HandlerGaveUp(report) => Some(report),
            _ => None,
        })
        .collect()
}

/// A handler that fails twice, then succeeds, is called three times on one connection: the
/// reply comes from the third call, the message is acknowledged once, nothing is given up.
pub fn a_failing_handler_is_retried_on_the_same_connection<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent_with::<H>(&behaviour, retrying());
        let sent = world.send(behaviour::FAIL_TWICE);

        let reply = world.inbox.message().await;
        assert_eq!(reply.text, "handled on attempt 3", "{}", H::NAME);
        assert_eq!(reply.reply_to_message_id.as_deref(), Some(sent.as_str()));
        world.inbox.read(&sent).await;
        world.inbox.quiet().await;

        assert_eq!(behaviour.calls_for(&sent), 3, "{}: handler calls", H::NAME);
        assert_eq!(world.relay.agent_connections(AGENT), 1, "{}: retried without reconnecting", H::NAME);
        assert_eq!(acks_for(&world.relay, &sent), 1, "{}: acknowledged once", H::NAME);
        assert_eq!(world.relay.pending_for_agent(AGENT), 0);
        assert_eq!(gave_up(&behaviour), [], "{}: nothing given up", H::NAME);
        world.finish::<H>(agent).await;
    });
}

/// A handler that always fails is called the configured number of times, then the message is
/// reported to `on_handler_gave_up` and left unacknowledged: the relay still holds it, and
/// delivers it again after a reconnection.
pub fn a_handler_that_always_fails_is_given_up_and_left_pending<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let behaviour = Behaviour::new();
        let agent = world.agent_with::<H>(&behaviour, retrying());
        let sent = world.send(behaviour::FAIL_ALWAYS);

        wait_until("the gave-up report", || !gave_up(&behaviour).is_empty()).await;
        let expected = GaveUp { message_id: sent.clone(), attempts: 3, error: "attempt 3 fails".into() };
        assert_eq!(gave_up(&behaviour), [expected], "{}", H::NAME);
        // Longer than the longest backoff: no fourth call comes on this connection.
        world.inbox.quiet().await;
        assert_eq!(behaviour.calls_for(&sent), 3, "{}: handler calls", H::NAME);
        assert_eq!(acks_for(&world.relay, &sent), 0, "{}: a message given up on was acknowledged", H::NAME);
        assert_eq!(world.relay.pending_for_agent(AGENT), 1, "{}: the relay still holds it", H::NAME);
        assert_eq!(world.relay.agent_connections(AGENT), 1);

        // Still the relay's: a reconnection delivers it again, and the count starts afresh.
        world.relay.disconnect_agent(AGENT).await;
        wait_until("the second gave-up report", || gave_up(&behaviour).len() == 2).await;
        assert_eq!(behaviour.calls_for(&sent), 6, "{}: handler calls after the replay", H::NAME);
        assert_eq!(acks_for(&world.relay, &sent), 0);
        world.finish::<H>(agent).await;
    });
}

/// With no message handler set, a message is received (its receipt stored, pending) but neither
/// accepted nor acknowledged: it waits at the relay, and an agent with a handler, started later
/// on the same store, handles it.
pub fn without_a_handler_messages_stay_pending<H: Harness>() {
    run(async {
        let mut world = World::new().await;
        let disk = Disk::new();
        let config =
            || ClientConfig::new(AGENT, AGENT_TOKEN).with_base_url(world.relay.base_url()).expect("a base URL");
        let idle = Behaviour::without_message_handler();
        let agent = H::start_with_store(config(), fast_backoff(), idle.clone(), Box::new(disk.store(None)));
        let sent = world.send("anyone there?");

        let received = || matches!(disk.snapshot().receipts.get(&sent), Some(receipt) if receipt.state == ReceiptState::Pending { text: "anyone there?".into() });
        wait_until("the message's pending receipt", received).await;
        world.inbox.quiet().await;
        assert!(received(), "{}: the receipt is still pending", H::NAME);
        assert_eq!(acks_for(&world.relay, &sent), 0, "{}: acknowledged without a handler", H::NAME);
        assert_eq!(world.relay.pending_for_agent(AGENT), 1, "{}: the relay still holds it", H::NAME);
        close::<H>(agent).await;

        let behaviour = Behaviour::new();
        let agent = H::start_with_store(config(), fast_backoff(), behaviour.clone(), Box::new(disk.store(None)));
        assert_eq!(world.inbox.message().await.text, "Received: anyone there?", "{}", H::NAME);
        world.inbox.read(&sent).await;
        assert_eq!(behaviour.calls_for(&sent), 1);
        assert_eq!(world.relay.pending_for_agent(AGENT), 0);
        world.finish::<H>(agent).await;
    });
}

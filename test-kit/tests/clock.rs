//! The manual clock: what waits for time happens when the test advances the clock, not after a
//! sleep. A handler's retry backoff, a reconnection's backoff, and a permission that expires
//! after ten minutes.

use pacerelle_core::permissions::{Decision, PermissionAction, PermissionPolicy, PermissionRequest, PermissionSession};
use pacerelle_core::widget::PermissionScope;
use pacerelle_runtime_support::os_rng;
use pacerelle_test::{ManualClock, TestAgent, TestRelay, WidgetKind};
use pacerelle_tokio::Client;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn a_handler_retry_waits_for_the_clock() {
    let relay = TestRelay::start();
    let clock = ManualClock::new();
    let mut client = Client::in_memory(relay.agent("flaky")).expect("the agent");
    client.set_clock(clock.shared());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    client.on_message(move |message, agent| {
        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if call == 1 {
                return Err("the first call fails".into());
            }
            agent.reply(&message, format!("Received: {} (call {call})", message.text)).await?;
            Ok(())
        }
    });
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("flaky");

    let sent = alice.say("hello");
    // The default retry waits 1 s: the agent waits for it on the manual clock, and nothing
    // happens until the clock gets there.
    let wait = clock.expect_deadline_within(Duration::from_secs(1));
    assert!(wait > Duration::ZERO, "the retry is ahead");
    alice.expect_nothing_for(Duration::from_millis(100));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no retry before the clock moved");
    clock.advance(wait);
    alice.expect_reply(&sent, "Received: hello (call 2)");
    alice.expect_read(&sent);
    agent.stop();
}

#[test]
fn a_reconnection_backoff_waits_for_the_clock() {
    let relay = TestRelay::start();
    let clock = ManualClock::new();
    let mut client = Client::in_memory(relay.agent("echo")).expect("the agent");
    client.set_clock(clock.shared());
    client.on_message(|message, agent| async move {
        agent.reply(&message, format!("Received: {}", message.text)).await?;
        Ok(())
    });
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("echo");

    relay.drop_agent_socket("echo");
    // The default backoff's first wait is at most 250 ms, on the manual clock.
    let wait = clock.expect_deadline_within(Duration::from_millis(250));
    assert!(!agent.is_connected() && relay.agent_connections("echo") == 1, "no reconnection before the clock moved");
    let sent = alice.say("after the drop");
    clock.advance(wait);
    relay.expect_reconnection("echo", 1);
    alice.expect_reply(&sent, "Received: after the drop");
    agent.stop();
}

#[test]
fn a_permission_expires_when_the_clock_passes_it() {
    let relay = TestRelay::start();
    let clock = ManualClock::new();
    // Permission answers are only taken end-to-end encrypted.
    let mut client = Client::in_memory(relay.encrypted_agent("ops")).expect("the agent");
    client.set_clock(clock.shared());
    let session = PermissionSession::new("work", "Today", clock.now().saturating_add(Duration::from_secs(8 * 3600)));
    let policy = Arc::new(Mutex::new(PermissionPolicy::new(session, clock.now()).expect("a session ending later")));
    client.on_message(move |message, agent| {
        let policy = policy.clone();
        async move {
            let (conversation, person) = (&message.conversation_id, &message.from);
            let lock = || policy.lock().map_err(|_| "poisoned");
            if message.text == "delete" {
                // Ten minutes from now on the agent's clock: the manual one.
                let expires = agent.now().saturating_add(Duration::from_secs(600));
                let action = PermissionAction::new("delete", "/tmp/old.txt");
                let request = PermissionRequest::new(conversation, person, action, "Delete old.txt?", expires)
                    .scopes([PermissionScope::Once]);
                let widget = lock()?.create_request(agent.now(), request, &mut *os_rng())?;
                agent.send_text(conversation, person, widget.text()).await?;
                return Ok(());
            }
            let answer = match lock()?.receive_response(agent.now(), &message) {
                Ok(Decision::Granted(_)) => "granted".to_owned(),
                Ok(other) => format!("{other:?}"),
                Err(rejection) => rejection.reason().to_owned(),
            };
            agent.reply(&message, answer).await?;
            Ok(())
        }
    });
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").encrypted().talks_to("ops");

    alice.say("delete");
    let late = alice.expect_widget(WidgetKind::Permission);
    clock.advance(Duration::from_secs(11 * 60));
    late.grant("once");
    alice.expect_text("expired");

    alice.say("delete");
    let in_time = alice.expect_widget(WidgetKind::Permission);
    clock.advance(Duration::from_secs(9 * 60));
    in_time.grant("once");
    alice.expect_text("granted");
    agent.stop();
}

/// The blocking runtime looks at the clock every tick rather than waiting on it: a retry an hour
/// away runs once the manual clock has moved an hour, within a tick.
#[cfg(feature = "blocking")]
#[test]
fn a_handler_retry_on_the_blocking_runtime_waits_for_the_clock() {
    use pacerelle_core::agent::{AgentConfig, HandlerRetry};

    let relay = TestRelay::start();
    let clock = ManualClock::new();
    let hour = Duration::from_secs(3600);
    let core = AgentConfig {
        handler_retry: HandlerRetry { max_attempts: 2, initial: hour, max: hour },
        ..AgentConfig::new("flaky")
    };
    let store = Box::new(pacerelle_test::SharedStore::new());
    let mut client =
        pacerelle_blocking::Client::with_parts(relay.agent("flaky"), core, store, os_rng()).expect("the agent");
    client.set_clock(clock.shared());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    client.on_message(move |message, agent| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("the first call fails".into());
        }
        agent.reply(&message, "second time lucky")?;
        Ok(())
    });
    let agent = TestAgent::start(client);
    let alice = relay.person("alice").talks_to("flaky");

    let sent = alice.say("hello");
    pacerelle_test::wait_until("the first call", || calls.load(Ordering::SeqCst) == 1);
    alice.expect_nothing_for(Duration::from_millis(100));
    // The failure is settled an instant after the call: advancing until the retry comes covers
    // an advance made just before it was scheduled.
    pacerelle_test::wait_until("the retry after an hour on the manual clock", || {
        clock.advance(hour);
        calls.load(Ordering::SeqCst) == 2
    });
    alice.expect_reply(&sent, "second time lucky");
    agent.stop();
}

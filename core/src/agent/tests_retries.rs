//! Handler failures (issue 10, item 5): a failed message is handed out again on the same
//! connection after a bounded backoff, never to two handler calls at once and never once
//! accepted, then reported and left unacknowledged; all on a virtual clock.

use super::*;
use rand::SeedableRng;
use serde_json::json;

fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

const RETRY: HandlerRetry =
    HandlerRetry { max_attempts: 3, initial: Duration::from_millis(100), max: Duration::from_millis(150) };

fn connected(config: AgentConfig) -> Agent {
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(7));
    let mut agent = Agent::new(config, rng, AgentSnapshot::default()).unwrap();
    agent.start(at(0));
    agent.handle_input(at(1), Input::Connected).unwrap();
    drain(&mut agent);
    agent
}

fn agent() -> Agent {
    connected(AgentConfig { handler_retry: RETRY, ..AgentConfig::new("agent-1") })
}

fn frame(id: &str) -> Input {
    let frame = json!({
        "type": "MSG", "id": id, "conversation_id": "c1", "from": "u1", "to": "agent-1",
        "payload_b64": STANDARD.encode("hello"), "encrypted": false,
    });
    Input::Frame(frame.to_string())
}

fn drain(agent: &mut Agent) -> Vec<Output> {
    std::iter::from_fn(|| agent.poll_output()).collect()
}

fn messages(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(Event::Message(message)) => Some(message.id.clone()),
            _ => None,
        })
        .collect()
}

fn wake(outputs: &[Output]) -> Option<Timestamp> {
    outputs.iter().rev().find_map(|output| match output {
        Output::WakeAt(at) => Some(*at),
        _ => None,
    })
}

fn has_frame(outputs: &[Output]) -> bool {
    outputs.iter().any(|output| matches!(output, Output::Frame(_)))
}

#[test]
fn a_failed_message_is_retried_at_the_backoff_times_then_reported_and_left_pending() {
    let mut agent = agent();
    agent.handle_input(at(10), frame("m1")).unwrap();
    assert_eq!(messages(&drain(&mut agent)), ["m1"]);

    agent.handler_failed("m1", "boom 1", at(20)).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(wake(&outputs), Some(at(120)), "first retry after `initial`: {outputs:?}");
    // A wake-up before the retry is due (another deadline) hands nothing out.
    agent.handle_input(at(119), Input::Timeout).unwrap();
    assert!(messages(&drain(&mut agent)).is_empty());
    agent.handle_input(at(120), Input::Timeout).unwrap();
    let outputs = drain(&mut agent);
    assert_eq!(messages(&outputs), ["m1"]);
    let retried = outputs.iter().find_map(|output| match output {
        Output::Event(Event::Message(message)) => Some(message.text.clone()),
        _ => None,
    });
    assert_eq!(retried.as_deref(), Some("hello"), "handed out again from its stored text");

    agent.handler_failed("m1", "boom 2", at(130)).unwrap();
    // Doubled (200 ms), but capped at `max`.
    assert_eq!(wake(&drain(&mut agent)), Some(at(280)));
    agent.handle_input(at(280), Input::Timeout).unwrap();
    assert_eq!(messages(&drain(&mut agent)), ["m1"]);

    agent.handler_failed("m1", "boom 3", at(290)).unwrap();
    let outputs = drain(&mut agent);
    let report = Event::HandlerGaveUp(GaveUp { message_id: "m1".into(), attempts: 3, error: "boom 3".into() });
    assert!(outputs.contains(&Output::Event(report)), "{outputs:?}");
    assert!(!has_frame(&outputs), "never acknowledged: {outputs:?}");
    assert!(matches!(agent.snapshot().receipts["m1"].state, ReceiptState::Pending { .. }));
    // Bounded: no further attempt, however long the agent waits.
    agent.handle_input(at(100_000), Input::Timeout).unwrap();
    let outputs = drain(&mut agent);
    assert!(messages(&outputs).is_empty() && !has_frame(&outputs), "{outputs:?}");
}

#[test]
fn a_message_is_never_with_two_handler_calls_at_once() {
    let mut agent = agent();
    agent.handle_input(at(10), frame("m1")).unwrap();
    drain(&mut agent);
    // The relay replays it while its first handler call runs: not handed out again.
    agent.handle_input(at(15), frame("m1")).unwrap();
    assert!(messages(&drain(&mut agent)).is_empty());

    agent.handler_failed("m1", "boom", at(20)).unwrap();
    // A second report for the same call schedules nothing more.
    agent.handler_failed("m1", "boom", at(21)).unwrap();
    assert!(drain(&mut agent).iter().all(|output| !matches!(output, Output::Event(_))));
    agent.handle_input(at(120), Input::Timeout).unwrap();
    assert_eq!(messages(&drain(&mut agent)), ["m1"]);
    // The retry's call runs: neither a later wake-up nor a replay hands it out again.
    agent.handle_input(at(500), Input::Timeout).unwrap();
    agent.handle_input(at(501), frame("m1")).unwrap();
    assert!(messages(&drain(&mut agent)).is_empty());
}

#[test]
fn a_message_accepted_meanwhile_is_not_retried() {
    let mut agent = agent();
    agent.handle_input(at(10), frame("m1")).unwrap();
    drain(&mut agent);
    agent.handler_failed("m1", "boom", at(20)).unwrap();
    drain(&mut agent);
    // A replay before the retry is due stands for it, and its handler succeeds.
    agent.handle_input(at(50), frame("m1")).unwrap();
    assert_eq!(messages(&drain(&mut agent)), ["m1"]);
    agent.accept("m1", at(60)).unwrap();
    let outputs = drain(&mut agent);
    assert!(has_frame(&outputs), "acknowledged: {outputs:?}");
    agent.handle_input(at(120), Input::Timeout).unwrap();
    assert!(messages(&drain(&mut agent)).is_empty());
    // A late failure report for an accepted message changes nothing.
    agent.handler_failed("m1", "late", at(130)).unwrap();
    assert!(drain(&mut agent).is_empty());
}

#[test]
fn an_unknown_message_cannot_fail() {
    let mut agent = agent();
    assert_eq!(
        agent.handler_failed("nope", "boom", at(5)),
        Err(AcceptError::UnknownMessage { message_id: "nope".into() })
    );
}

/// A runtime keeping only the last deadline asked for still wakes the agent exactly when the
/// retry is due, with the keepalive's earlier and later deadlines around it.
#[test]
fn the_retry_deadline_and_the_keepalive_share_the_runtimes_one_deadline() {
    let keepalive = Keepalive { interval: Duration::from_millis(40), timeout: Duration::from_millis(1000) };
    let retry = HandlerRetry { max_attempts: 2, initial: Duration::from_millis(130), max: Duration::from_secs(1) };
    let mut agent = connected(AgentConfig { keepalive, handler_retry: retry, ..AgentConfig::new("agent-1") });
    agent.handle_input(at(5), frame("m1")).unwrap();
    drain(&mut agent);
    agent.handler_failed("m1", "boom", at(10)).unwrap();
    // The retry is due at 140; the keepalive asked for 41 on connecting, which comes first.
    let mut deadline = at(41);
    if let Some(asked) = wake(&drain(&mut agent)) {
        deadline = asked;
    }
    let mut handed_out_at = None;
    for _ in 0..20 {
        agent.handle_input(deadline, Input::Timeout).unwrap();
        let outputs = drain(&mut agent);
        if outputs.contains(&Output::Ping) {
            agent.handle_input(deadline, Input::Pong).unwrap();
        }
        if !messages(&outputs).is_empty() {
            handed_out_at = Some(deadline);
            break;
        }
        let next = wake(&outputs).expect("the agent always asks for its next deadline");
        assert!(next <= at(140), "a deadline past the retry hides it: {next:?}");
        deadline = next;
    }
    assert_eq!(handed_out_at, Some(at(140)));
}

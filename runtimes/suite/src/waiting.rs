//! What every case waits with: a tokio runtime of its own for the relay and the people, a
//! condition polled until a deadline, and the person's next message. Deadlines bound a failing
//! case; no case asserts how fast anything was.

use pacerelle_core::human::{PersonEvent, PersonMessage};
use pacerelle_tokio::PersonClient;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a case waits for anything the agent or the relay should do before it fails.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `case` on a two-thread tokio runtime of its own (the relay and the people live there,
/// whatever the runtime under test).
pub(crate) fn run(case: impl Future<Output = ()>) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    runtime.block_on(case);
}

/// Waits until `condition` holds; fails the case, naming `what`, after [`DEADLINE`].
pub(crate) async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next message to `person`; a refused frame or a failed call fails the case at once
/// (rather than as a timeout), as does nothing within [`DEADLINE`].
pub(crate) async fn next_message(person: &PersonClient, waiting_for: &str) -> PersonMessage {
    loop {
        match person.next_event(DEADLINE).await {
            Ok(PersonEvent::Message(message)) => return message,
            Ok(event @ (PersonEvent::Refused(_) | PersonEvent::RequestFailed { .. })) => {
                panic!("waiting for {waiting_for}: {event:?}")
            }
            Ok(_) => {}
            Err(error) => panic!("waiting for {waiting_for}: {error}"),
        }
    }
}

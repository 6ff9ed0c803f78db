//! A test kit for Pacerelle agents: start an in-process relay, add people (encrypted or not, on
//! several devices, in groups), script what they say and how they answer widgets, and assert on
//! what the agent sent, in a few lines, on any of the four runtimes. Faults on demand (a dropped
//! socket, a half-open one, a relay restart, a store that fails at its next write, late or
//! reordered delivery) and a manual clock, so that tests of backoffs and expiries do not sleep.
//!
//! Also reachable as `pacerelle::test` with the facade's `test-kit` feature (as a
//! dev-dependency).
//!
//! ```no_run
//! use pacerelle_test::{TestAgent, TestRelay, WidgetKind};
//! use pacerelle_core::widget::Confirm;
//!
//! let relay = TestRelay::start();
//! // The agent under test, as the app builds it: here on tokio, in memory.
//! let mut client = pacerelle_tokio::Client::in_memory(relay.agent("echo")).unwrap();
//! client.on_message(|message, agent| async move {
//!     if message.text == "deploy" {
//!         agent.send_widget(&message.conversation_id, &message.from, Confirm::new("Deploy now?")).await?;
//!     } else if message.widget_response.is_none() {
//!         agent.reply(&message, format!("Received: {}", message.text)).await?;
//!     }
//!     Ok(())
//! });
//! let agent = TestAgent::start(client);
//!
//! let alice = relay.person("alice").talks_to("echo");
//! let hello = alice.say("hello");
//! alice.expect_reply(&hello, "Received: hello");
//! alice.expect_read(&hello);
//! alice.say("deploy");
//! alice.expect_widget(WidgetKind::Confirm).yes();
//!
//! relay.drop_agent_socket("echo"); // a fault: the agent reconnects, nothing is lost
//! let again = alice.say("still there?");
//! alice.expect_reply(&again, "Received: still there?");
//! agent.stop();
//! ```
//!
//! # What it simulates
//! - **The relay**: [`TestRelay`], the development relay on a loopback port, in process, on a
//!   runtime of the kit's own. [`TestRelay::agent`] registers an agent and gives its
//!   `ClientConfig`; [`TestRelay::encrypted_agent`] the same with end-to-end encryption.
//! - **People**: [`TestRelay::person`] then [`PersonBuilder::encrypted`],
//!   [`PersonBuilder::device`], [`PersonBuilder::talks_to`]; [`PersonBuilder::encrypted_only`]
//!   for a person who accepts only end-to-end encrypted messages of their conversation (sealed
//!   under the group's key in a group); another device of the same person
//!   with [`Person::on_device`]; a group of people and the agent with [`TestRelay::group`]
//!   (end-to-end encrypted when the people are).
//! - **What people do**: [`Person::say`], [`Person::reply`]; widget answers on the [`Widget`]
//!   [`Person::expect_widget`] returns: confirm ([`Widget::yes`], [`Widget::no`]), choice
//!   ([`Widget::choose`]), permission ([`Widget::grant`], [`Widget::refuse`]), form
//!   ([`Widget::fill`]), file picker ([`Widget::pick_files`]), date and time
//!   ([`Widget::pick_datetime`]), any value ([`Widget::answer`]) or a dismissal
//!   ([`Widget::dismiss`]); [`Person::download`] downloads and decrypts a file they received.
//! - **Expectations**, each with a deadline and a message naming what was expected and what
//!   arrived: [`Person::expect_text`], [`Person::expect_reply`], [`Person::expect_widget`],
//!   [`Person::expect_widget_update`], [`Person::expect_read`] (the agent acknowledged),
//!   [`Person::expect_nothing_for`], [`TestRelay::expect_all_acknowledged`],
//!   [`TestRelay::expect_reconnection`], [`TestAgent::stop`] (or [`TestAgent::stop_within`]),
//!   [`TestAgent::expect_stopped`].
//! - **Faults**: [`TestRelay::drop_agent_socket`], [`TestRelay::half_open`] (and
//!   [`TestRelay::thaw`]), [`TestRelay::restart`] (or [`TestRelay::go_down`] and
//!   [`TestRelay::come_back`]), [`TestRelay::delay_to_agent`], [`TestRelay::reorder_to_agent`],
//!   and [`FailingStore`] (any store; its [`FailSwitch::fail_next_write`]); [`SharedStore`] to
//!   restart an agent on what its predecessor stored.
//! - **Time**: [`ManualClock`], given to the agent with its `Client::set_clock`; advancing it
//!   runs the agent's reconnect backoff, keepalive and handler retries, and moves what handlers
//!   read with `AgentHandle::now` (a permission's or widget's expiry).
//! - **Runtimes**: [`TestAgent::start`] serves a client of any runtime ([`ServeAgent`]: tokio
//!   always, smol, async-std and blocking with their features, all on by default) on a thread
//!   of its own.
//!
//! Tests are plain `#[test]` functions: the kit blocks the test's thread while it waits, so
//! do not call it inside an async runtime.
//!
//! # Dependencies
//! The development relay (`pacerelle-relay`, on tokio), the person side of the protocol
//! (`pacerelle-tokio`'s `PersonClient`), the runtimes whose agents it serves, serde_json for
//! widget answers, thiserror for [`FailingStoreError`].

#![forbid(unsafe_code)]

mod agent;
mod clock;
mod person;
mod proxy;
mod relay;
mod store;

pub use agent::{AgentControl, ServeAgent, TestAgent};
pub use clock::ManualClock;
pub use pacerelle_core::human::PersonMessage;
pub use pacerelle_core::widget::WidgetKind;
pub use person::{Person, PersonBuilder, Widget};
pub use proxy::FaultProxy;
pub use relay::TestRelay;
pub use store::{FailSwitch, FailingStore, FailingStoreError, SharedStore};

use std::time::{Duration, Instant};

/// How long the kit waits for anything the agent or the relay should do before it fails the
/// test (per expectation; [`Person::with_deadline`] changes it for one person).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(5);

/// Waits until `condition` holds, looking every few milliseconds.
///
/// # Panics
/// After [`DEADLINE`], naming `what` it waited for.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "pacerelle-test: timed out after {DEADLINE:?} waiting for {what}");
        std::thread::sleep(POLL);
    }
}

/// A message as a failure message shows it.
fn describe(message: &PersonMessage) -> String {
    if let Some(widget) = &message.widget {
        let title = widget.spec.get("title").and_then(serde_json::Value::as_str).unwrap_or("");
        return format!("a {} widget {title:?} (id {})", widget.kind.as_str(), widget.id);
    }
    if let Some(update) = &message.widget_update {
        return format!("an update of widget {}", update.widget_ref);
    }
    let reply = message.reply_to_message_id.as_deref().map(|id| format!(" replying to {id}")).unwrap_or_default();
    format!("the text {:?}{reply}", message.text)
}

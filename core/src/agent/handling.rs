//! Tracks the messages handed to the app's handler until they are accepted: which handler
//! call is in progress, and when a failed one is tried again.
//!
//! It also keeps what each handler call sent ([`SentFrame`]s, with the connection they left
//! on), so that the acceptance can record them and a replay can send them again.
//!
//! A message is in one of two places here: with the handler (an [`Event::Message`] is out and
//! its outcome not yet known) or waiting for its retry. Only the second kind is ever handed out
//! again, so one message never reaches two handler calls at once.
//!
//! [`Event::Message`]: super::Event::Message

use crate::Timestamp;
use crate::message::AgentMessage;
use crate::store::SentFrame;
use std::collections::HashMap;
use std::time::Duration;

/// How a message whose handler failed is tried again, without waiting for a reconnection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandlerRetry {
    /// Handler calls in all (the first included) before the agent gives up on the message: it
    /// stays unacknowledged at the relay and is reported ([`Event::HandlerGaveUp`]). At least 1.
    ///
    /// [`Event::HandlerGaveUp`]: super::Event::HandlerGaveUp
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles with each failure after that.
    pub initial: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
}

impl Default for HandlerRetry {
    /// Five attempts, waiting 1 s, 2 s, 4 s, then 8 s between them (at most 30 s).
    fn default() -> Self {
        HandlerRetry { max_attempts: 5, initial: Duration::from_secs(1), max: Duration::from_secs(30) }
    }
}

impl HandlerRetry {
    /// The wait after the `failures`-th failure (1 for the first).
    fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// A message whose handler failed on every attempt: left unacknowledged at the relay, which
/// delivers it again after a reconnection (reported with [`Event::HandlerGaveUp`]).
///
/// [`Event::HandlerGaveUp`]: super::Event::HandlerGaveUp
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// The message's id.
    pub message_id: String,
    /// Handler calls made.
    pub attempts: u32,
    /// The last call's error, as the app reported it.
    pub error: String,
}

/// Frames one message's handler calls may record (across retries); its further sends go
/// through the durable outbox instead, so an accepted receipt stays small.
pub const MAX_RECORDED_FRAMES: usize = 32;

/// A frame a handler sent, and the connection (its number) it left on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recorded {
    pub(super) sent: SentFrame,
    pub(super) connection: u64,
}

/// A message handed to the app and not yet accepted.
#[derive(Debug)]
struct Handled {
    message: AgentMessage,
    /// Handler calls that failed so far.
    failures: u32,
    /// When it is handed out again; `None` while a handler call is in progress.
    retry_at: Option<Timestamp>,
    /// What its handler calls sent so far, in order.
    sent: Vec<Recorded>,
}

/// What became of a failed handler call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// Handed out again at this time.
    RetryAt(Timestamp),
    /// Given up after this many calls; what its handler calls sent.
    GaveUp(u32, Vec<Recorded>),
    /// The message was not with the handler (accepted meanwhile, or unknown): nothing to do.
    NotHandled,
}

/// The messages with the handler or waiting for a retry, by id.
#[derive(Debug, Default)]
pub(super) struct Handling {
    messages: HashMap<String, Handled>,
}

impl Handling {
    /// Whether `message` may be handed out now (a first delivery, a replay, or a replay of a
    /// message waiting for its retry, which the replay then stands for); records it as being
    /// with the handler. A message already with the handler is not handed out twice.
    pub(super) fn hand_out(&mut self, message: &AgentMessage) -> bool {
        match self.messages.get_mut(&message.id) {
            Some(handled) if handled.retry_at.is_none() => false,
            Some(handled) => {
                handled.retry_at = None;
                true
            }
            None => {
                let handled = Handled { message: message.clone(), failures: 0, retry_at: None, sent: Vec::new() };
                self.messages.insert(message.id.clone(), handled);
                true
            }
        }
    }

    /// Whether a send made for `message_id` can be recorded with it: the message is with the
    /// handler or waiting for its retry, and has recorded fewer than [`MAX_RECORDED_FRAMES`].
    pub(super) fn can_record(&self, message_id: &str) -> bool {
        self.messages.get(message_id).is_some_and(|handled| handled.sent.len() < MAX_RECORDED_FRAMES)
    }

    /// Records a frame sent for `message_id` (see [`Self::can_record`]); `false` if it cannot be.
    pub(super) fn record(&mut self, message_id: &str, recorded: Recorded) -> bool {
        match self.messages.get_mut(message_id) {
            Some(handled) if handled.sent.len() < MAX_RECORDED_FRAMES => {
                handled.sent.push(recorded);
                true
            }
            _ => false,
        }
    }

    /// The handler accepted the message: it is done with. Returns what its calls sent.
    pub(super) fn accepted(&mut self, message_id: &str) -> Vec<Recorded> {
        self.messages.remove(message_id).map(|handled| handled.sent).unwrap_or_default()
    }

    /// The handler failed at `now`: schedules the retry, or gives up (forgetting the message,
    /// so that a later replay starts its count afresh).
    pub(super) fn failed(&mut self, message_id: &str, policy: &HandlerRetry, now: Timestamp) -> Failure {
        let Some(handled) = self.messages.get_mut(message_id).filter(|handled| handled.retry_at.is_none()) else {
            return Failure::NotHandled;
        };
        handled.failures += 1;
        if handled.failures >= policy.max_attempts.max(1) {
            let attempts = handled.failures;
            let sent = self.messages.remove(message_id).map(|handled| handled.sent).unwrap_or_default();
            return Failure::GaveUp(attempts, sent);
        }
        let at = now.saturating_add(policy.delay(handled.failures));
        handled.retry_at = Some(at);
        Failure::RetryAt(at)
    }

    /// The messages whose retry is due at `now`, now with the handler again, in retry order.
    pub(super) fn due(&mut self, now: Timestamp) -> Vec<AgentMessage> {
        let mut due: Vec<(Timestamp, &mut Handled)> = self
            .messages
            .values_mut()
            .filter_map(|handled| handled.retry_at.filter(|at| *at <= now).map(|at| (at, handled)))
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.message.id.cmp(&b.1.message.id)));
        due.into_iter()
            .map(|(_, handled)| {
                handled.retry_at = None;
                handled.message.clone()
            })
            .collect()
    }

    /// The earliest retry, if any waits.
    pub(super) fn next_retry(&self) -> Option<Timestamp> {
        self.messages.values().filter_map(|handled| handled.retry_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_maximum() {
        let policy =
            HandlerRetry { max_attempts: 10, initial: Duration::from_millis(100), max: Duration::from_millis(350) };
        let delays: Vec<_> = (1..=4).map(|failures| policy.delay(failures)).collect();
        let expected = [100, 200, 350, 350].map(Duration::from_millis);
        assert_eq!(delays, expected);
    }
}

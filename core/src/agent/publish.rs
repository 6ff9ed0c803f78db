//! Prekey publication: when the agent makes one-time prekeys ([`mint_reason`]), and the calls
//! that publish them: `PUT /agent/prekey-bundle`, then, when a batch of one-time prekeys was
//! made, `POST /agent/one-time-prekeys`, each retried with backoff until the relay takes it.
//!
//! The bundle is put at every start (the relay may have lost it); one-time prekeys are made
//! only when needed, as [`crate::e2ee::account`] explains. A start that makes none sends the
//! `PUT` alone: the bundle body carries no one-time prekeys, so a relay has nothing to drop
//! because of it, and the keys it holds keep being handed out.
//!
//! The private halves are committed before the first request leaves (the caller pushes the
//! publication's changes first), so a crash after a request cannot strand a message encrypted
//! to keys we no longer hold. A refusal that retrying cannot fix (a 4xx other than 408 and 429:
//! a wrong token, a malformed body) ends the agent with [`super::Event::PublicationFailed`].

use super::{REFILL_AFTER, REPLENISH_AFTER};
use crate::connection::Backoff;
use crate::wire::http::{HttpMethod, HttpRequest, HttpResponse, RequestId};
use crate::{Rng, Timestamp};

/// What [`crate::store::E2eeSnapshot::one_time_published_at`] holds from the moment a batch of
/// one-time prekeys is made until the relay confirms taking it: an agent that restarts before
/// then makes another batch, since the relay may never have had this one. (A confirmation at
/// this very instant is recorded a millisecond later.)
pub const UNCONFIRMED: Timestamp = Timestamp::from_millis(0);

/// Why the agent makes a batch of one-time prekeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintReason {
    /// It never published one.
    NeverPublished,
    /// The relay never confirmed the last batch.
    Unconfirmed,
    /// People used [`REPLENISH_AFTER`] keys of the newest batch.
    Used,
    /// The last batch is older than [`REFILL_AFTER`].
    Refill,
    /// The app asked for a publication (`Agent::publish_prekey_bundle`).
    Requested,
}

impl MintReason {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            MintReason::NeverPublished => "first publication",
            MintReason::Unconfirmed => "the last batch was never confirmed",
            MintReason::Used => "half of the newest batch is used",
            MintReason::Refill => "the last batch is old",
            MintReason::Requested => "the app asked for a new bundle",
        }
    }
}

/// Whether to make a batch of one-time prekeys, given how many of the newest batch were used
/// and when the relay last confirmed a batch. Time-based reasons need `now`; without it (in
/// the middle of handling a message) only use counts.
pub fn mint_reason(used: usize, published_at: Option<Timestamp>, now: Option<Timestamp>) -> Option<MintReason> {
    if used >= REPLENISH_AFTER {
        return Some(MintReason::Used);
    }
    let now = now?;
    match published_at {
        None => Some(MintReason::NeverPublished),
        Some(at) if at == UNCONFIRMED => Some(MintReason::Unconfirmed),
        Some(at) if now.saturating_since(at) >= REFILL_AFTER => Some(MintReason::Refill),
        Some(_) => None,
    }
}

/// When the last batch (confirmed at `published_at`) becomes old enough for a refill.
pub fn refill_due(published_at: Option<Timestamp>) -> Timestamp {
    match published_at {
        Some(at) if at != UNCONFIRMED => at.saturating_add(REFILL_AFTER),
        _ => UNCONFIRMED,
    }
}

/// The time to record when the relay confirmed a batch at `now` (never [`UNCONFIRMED`]).
pub fn confirmed_at(now: Timestamp) -> Timestamp {
    now.max(Timestamp::from_millis(1))
}

/// The two publication calls, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `PUT /agent/prekey-bundle`.
    Bundle,
    /// `POST /agent/one-time-prekeys`.
    OneTimePrekeys,
}

impl Step {
    fn path(self) -> &'static str {
        match self {
            Step::Bundle => "/agent/prekey-bundle",
            Step::OneTimePrekeys => "/agent/one-time-prekeys",
        }
    }

    fn method(self) -> HttpMethod {
        match self {
            Step::Bundle => HttpMethod::Put,
            Step::OneTimePrekeys => HttpMethod::Post,
        }
    }
}

/// What the agent should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Make this call.
    Send(HttpRequest),
    /// Wake up then and call [`Publisher::timeout`].
    RetryAt(Timestamp),
    /// Everything is published: open the socket.
    Done,
    /// The relay refused in a way retrying cannot fix.
    Failed {
        /// The call refused.
        step: Step,
        /// Its status.
        status: u16,
        /// The relay's reason.
        error: String,
    },
    /// Nothing to do (not waiting for this answer).
    Nothing,
}

/// One publication in flight. See the [module docs](self).
#[derive(Debug)]
pub struct Publisher {
    /// The bodies still to send, in order.
    remaining: Vec<(Step, Vec<u8>)>,
    /// Whether it posts one-time prekeys.
    one_time: bool,
    in_flight: Option<RequestId>,
    retry_at: Option<Timestamp>,
    attempt: u32,
    backoff: Backoff,
}

impl Publisher {
    /// A publication of `bundle`, then of `one_time` when a batch was made (JSON bodies).
    pub fn new(bundle: Vec<u8>, one_time: Option<Vec<u8>>, backoff: Backoff) -> Self {
        let mut remaining = vec![(Step::Bundle, bundle)];
        remaining.extend(one_time.map(|body| (Step::OneTimePrekeys, body)));
        Publisher { one_time: remaining.len() > 1, remaining, in_flight: None, retry_at: None, attempt: 0, backoff }
    }

    /// Whether it posts one-time prekeys (so that [`Next::Done`] confirms a batch).
    pub fn posts_one_time_prekeys(&self) -> bool {
        self.one_time
    }

    /// When the call that failed is to be made again, if one is waiting for that.
    pub fn retry_at(&self) -> Option<Timestamp> {
        self.retry_at
    }

    /// Whether everything was published (or refused): a new publication may start.
    pub fn is_finished(&self) -> bool {
        self.remaining.is_empty() && self.in_flight.is_none()
    }

    /// The first call (or [`Next::Done`] when there is nothing to publish).
    pub fn begin(&mut self, id: RequestId) -> Next {
        self.send(id)
    }

    fn send(&mut self, id: RequestId) -> Next {
        let Some((step, body)) = self.remaining.first() else {
            return Next::Done;
        };
        self.in_flight = Some(id);
        Next::Send(HttpRequest {
            id,
            method: step.method(),
            path: step.path().to_owned(),
            content_type: Some("application/json"),
            body: body.clone(),
        })
    }

    /// An answer arrived; `next_id` names the next call if one follows.
    pub fn answer(
        &mut self,
        request: RequestId,
        result: &Result<HttpResponse, String>,
        next_id: RequestId,
        now: Timestamp,
        rng: &mut Rng,
    ) -> Next {
        if self.in_flight != Some(request) {
            return Next::Nothing;
        }
        self.in_flight = None;
        let Some(&(step, _)) = self.remaining.first() else {
            return Next::Nothing;
        };
        let refusal = match result {
            Ok(response) if response.is_success() => None,
            Ok(response) => Some((response.status, response.error_message().unwrap_or_default())),
            Err(error) => Some((0, error.clone())),
        };
        match refusal {
            None => {
                self.remaining.remove(0);
                self.attempt = 0;
                tracing::debug!(?step, "prekeys published");
                self.send(next_id)
            }
            Some((status, error)) if (400..500).contains(&status) && status != 408 && status != 429 => {
                self.remaining.clear();
                Next::Failed { step, status, error }
            }
            Some((status, error)) => {
                let at = now.saturating_add(self.backoff.delay(self.attempt, rng));
                self.attempt = self.attempt.saturating_add(1);
                self.retry_at = Some(at);
                tracing::warn!(?step, status, %error, "prekey publication failed; retrying");
                Next::RetryAt(at)
            }
        }
    }

    /// A deadline passed: retries the call when its time has come.
    pub fn timeout(&mut self, now: Timestamp, id: RequestId) -> Next {
        match self.retry_at {
            Some(at) if now >= at => {
                self.retry_at = None;
                self.send(id)
            }
            _ => Next::Nothing,
        }
    }
}

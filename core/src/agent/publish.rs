//! Prekey publication before the socket opens: `PUT /agent/prekey-bundle`, then
//! `POST /agent/one-time-prekeys`, each retried with backoff until the relay takes it.
//!
//! The private halves are committed before the first request leaves (the caller pushes the
//! publication's changes first), so a crash after a request cannot strand a message encrypted
//! to keys we no longer hold. A refusal that retrying cannot fix (a 4xx other than 408 and 429:
//! a wrong token, a malformed body) ends the agent with [`super::Event::PublicationFailed`].

use crate::connection::Backoff;
use crate::wire::http::{HttpMethod, HttpRequest, HttpResponse, RequestId};
use crate::{Rng, Timestamp};

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
    in_flight: Option<RequestId>,
    retry_at: Option<Timestamp>,
    attempt: u32,
    backoff: Backoff,
}

impl Publisher {
    /// A publication of `bundle` then `one_time` (JSON bodies).
    pub fn new(bundle: Vec<u8>, one_time: Vec<u8>, backoff: Backoff) -> Self {
        Publisher {
            remaining: vec![(Step::Bundle, bundle), (Step::OneTimePrekeys, one_time)],
            in_flight: None,
            retry_at: None,
            attempt: 0,
            backoff,
        }
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

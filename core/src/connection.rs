//! When to open the socket: at start, and again after a drop, with exponential backoff and full
//! jitter so that many agents dropped by one relay restart do not reconnect in lockstep.
//!
//! Both state machines own one [`Connection`]; every runtime follows its [`Directive`]s, so
//! reconnect behaviour is written once and is the same on every executor.

use crate::{Rng, Timestamp};
use std::time::Duration;

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay.
    pub initial: Duration,
    /// The largest ceiling, reached after repeated failures.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(250), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based): uniform in `[0, min(max, initial·2^attempt)]`.
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        let ceiling = self.initial.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX)).min(self.max);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        if ceiling_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rng.next_u64() % (ceiling_ms + 1))
    }
}

/// What the runtime should do about the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Open the socket now.
    Connect,
    /// Call back with a timeout input at this time.
    WakeAt(Timestamp),
    /// Close the socket and stop.
    Close,
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not started.
    Idle,
    /// Asked the runtime to connect; waiting for it to say how that went.
    Connecting,
    /// The socket is open.
    Connected,
    /// Waiting until `retry_at` to try again.
    Waiting {
        /// When to retry.
        retry_at: Timestamp,
    },
    /// Closed for good.
    Closed,
}

/// The connection policy: a small state machine of its own.
#[derive(Debug, Clone)]
pub struct Connection {
    state: ConnectionState,
    failures: u32,
    backoff: Backoff,
}

impl Connection {
    /// A connection not yet started.
    pub fn new(backoff: Backoff) -> Self {
        Connection { state: ConnectionState::Idle, failures: 0, backoff }
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Whether frames can be sent now.
    pub fn is_connected(&self) -> bool {
        self.state == ConnectionState::Connected
    }

    /// Begin: connect at once.
    pub fn start(&mut self) -> Option<Directive> {
        match self.state {
            ConnectionState::Idle => {
                self.state = ConnectionState::Connecting;
                Some(Directive::Connect)
            }
            _ => None,
        }
    }

    /// The socket opened.
    pub fn connected(&mut self) {
        if self.state != ConnectionState::Closed {
            self.state = ConnectionState::Connected;
            self.failures = 0;
        }
    }

    /// The socket failed to open, or dropped: schedule a retry.
    pub fn lost(&mut self, now: Timestamp, rng: &mut Rng) -> Option<Directive> {
        if matches!(self.state, ConnectionState::Closed | ConnectionState::Idle) {
            return None;
        }
        let delay = self.backoff.delay(self.failures, rng);
        self.failures = self.failures.saturating_add(1);
        let retry_at = now.saturating_add(delay);
        self.state = ConnectionState::Waiting { retry_at };
        Some(Directive::WakeAt(retry_at))
    }

    /// Time passed: connect if the retry is due.
    pub fn timeout(&mut self, now: Timestamp) -> Option<Directive> {
        match self.state {
            ConnectionState::Waiting { retry_at } if now >= retry_at => {
                self.state = ConnectionState::Connecting;
                Some(Directive::Connect)
            }
            _ => None,
        }
    }

    /// Stop for good.
    pub fn close(&mut self) -> Option<Directive> {
        if self.state == ConnectionState::Closed {
            return None;
        }
        self.state = ConnectionState::Closed;
        Some(Directive::Close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let backoff = Backoff::default();
        for attempt in 0..40 {
            let ceiling = (250u64 << attempt.min(20)).min(30_000);
            for _ in 0..50 {
                assert!(backoff.delay(attempt, &mut rng).as_millis() as u64 <= ceiling);
            }
        }
        let delays: std::collections::BTreeSet<_> = (0..50).map(|_| backoff.delay(10, &mut rng)).collect();
        assert!(delays.len() > 10, "jitter spreads retries: {delays:?}");
    }

    #[test]
    fn lifecycle() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut connection = Connection::new(Backoff::default());
        assert_eq!(connection.lost(Timestamp::from_millis(0), &mut rng), None, "not started");
        assert_eq!(connection.start(), Some(Directive::Connect));
        assert_eq!(connection.start(), None);
        connection.connected();
        assert!(connection.is_connected());
        let Some(Directive::WakeAt(at)) = connection.lost(Timestamp::from_millis(1000), &mut rng) else {
            panic!("a retry is scheduled")
        };
        assert!(at.as_millis() <= 1250);
        assert_eq!(connection.timeout(Timestamp::from_millis(999)), None);
        assert_eq!(connection.timeout(at), Some(Directive::Connect));
        assert_eq!(connection.close(), Some(Directive::Close));
        assert_eq!(connection.lost(Timestamp::from_millis(2000), &mut rng), None, "closed stays closed");
        connection.connected();
        assert!(!connection.is_connected());
    }
}

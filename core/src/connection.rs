//! When to open the socket: at start, and again after a drop, with exponential backoff and full
//! jitter so that many agents dropped by one relay restart do not reconnect in lockstep.
//!
//! Both state machines own one [`Connection`]; every runtime follows its [`Directive`]s, so
//! reconnect behaviour is written once and is the same on every executor.
//!
//! An open socket can also die without closing: a NAT or proxy that dropped it silently leaves
//! a half-open connection, which reads nothing and never fails. [`Liveness`] notices it the way
//! the official SDK's WebSocket library does: a ping every [`Keepalive::interval`], and a
//! connection that stays silent [`Keepalive::timeout`] after a ping is dead.

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

/// How an open connection is kept alive and found dead. The defaults are the official SDK's
/// (its WebSocket library pings every 20 s and gives up 20 s after an unanswered ping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time between pings, from the moment the socket opened.
    pub interval: Duration,
    /// How long after a ping the connection may stay silent (no pong, no frame) before it is
    /// treated as dead.
    pub timeout: Duration,
}

/// The official SDK's ping interval.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// The official SDK's pong timeout.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive { interval: DEFAULT_PING_INTERVAL, timeout: DEFAULT_PING_TIMEOUT }
    }
}

/// What [`Liveness::check`] found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessCheck {
    /// Nothing yet.
    Alive,
    /// Send a ping frame now.
    Ping,
    /// A ping went unanswered for [`Keepalive::timeout`]: give the socket up and reconnect.
    Dead,
}

/// The keepalive clock of one open connection.
///
/// Pings follow a fixed schedule from the moment the socket opened rather than being pushed
/// back by traffic: anything heard only ever moves the earliest deadline later, so a runtime
/// that keeps a single deadline never needs a new one when a frame arrives (it wakes early at
/// worst, and asks again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    keepalive: Keepalive,
    next_ping: Timestamp,
    /// When the ping still unanswered was sent.
    unanswered: Option<Timestamp>,
}

impl Liveness {
    /// The clock of a socket that opened at `now`.
    pub fn new(keepalive: Keepalive, now: Timestamp) -> Self {
        Liveness { keepalive, next_ping: now.saturating_add(keepalive.interval), unanswered: None }
    }

    /// Something arrived on the socket (a pong, a ping, a frame): it is alive.
    pub fn heard(&mut self) {
        self.unanswered = None;
    }

    /// The earliest time [`Liveness::check`] has something to do.
    pub fn deadline(&self) -> Timestamp {
        match self.unanswered {
            Some(sent) => self.next_ping.min(sent.saturating_add(self.keepalive.timeout)),
            None => self.next_ping,
        }
    }

    /// What is due at `now`. A dead connection takes precedence over a ping.
    pub fn check(&mut self, now: Timestamp) -> LivenessCheck {
        if let Some(sent) = self.unanswered
            && now >= sent.saturating_add(self.keepalive.timeout)
        {
            return LivenessCheck::Dead;
        }
        if now >= self.next_ping {
            // A ping missed by a late wake-up is not sent twice: the next one is an interval
            // after this one.
            self.next_ping = now.saturating_add(self.keepalive.interval);
            // The first unanswered ping is the one the timeout counts from.
            self.unanswered.get_or_insert(now);
            return LivenessCheck::Ping;
        }
        LivenessCheck::Alive
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

    /// The socket failed to open, or dropped: schedule a retry. Ignored while a retry is
    /// already scheduled (a socket given up as dead is not lost twice).
    pub fn lost(&mut self, now: Timestamp, rng: &mut Rng) -> Option<Directive> {
        if matches!(self.state, ConnectionState::Closed | ConnectionState::Idle | ConnectionState::Waiting { .. }) {
            return None;
        }
        let delay = self.backoff.delay(self.failures, rng);
        self.failures = self.failures.saturating_add(1);
        let retry_at = now.saturating_add(delay);
        self.state = ConnectionState::Waiting { retry_at };
        Some(Directive::WakeAt(retry_at))
    }

    /// When the scheduled retry is due, if one is.
    pub fn retry_at(&self) -> Option<Timestamp> {
        match self.state {
            ConnectionState::Waiting { retry_at } => Some(retry_at),
            _ => None,
        }
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
        assert_eq!(connection.lost(Timestamp::from_millis(1001), &mut rng), None, "already waiting");
        assert_eq!(connection.retry_at(), Some(at));
        assert_eq!(connection.timeout(Timestamp::from_millis(999)), None);
        assert_eq!(connection.timeout(at), Some(Directive::Connect));
        assert_eq!(connection.close(), Some(Directive::Close));
        assert_eq!(connection.lost(Timestamp::from_millis(2000), &mut rng), None, "closed stays closed");
        connection.connected();
        assert!(!connection.is_connected());
    }

    #[test]
    fn liveness_pings_on_schedule_and_finds_silence_dead() {
        let keepalive = Keepalive { interval: Duration::from_secs(20), timeout: Duration::from_secs(20) };
        let t = |secs: u64| Timestamp::from_millis(secs * 1000);
        let mut live = Liveness::new(keepalive, t(100));
        assert_eq!(live.deadline(), t(120));
        assert_eq!(live.check(t(119)), LivenessCheck::Alive);
        assert_eq!(live.check(t(120)), LivenessCheck::Ping);
        assert_eq!(live.deadline(), t(140), "the next ping and the timeout coincide");
        live.heard();
        assert_eq!(live.check(t(139)), LivenessCheck::Alive);
        assert_eq!(live.check(t(140)), LivenessCheck::Ping);
        // Silence from here: the ping at 160 does not restart the timeout of the one at 140.
        assert_eq!(live.check(t(159)), LivenessCheck::Alive);
        assert_eq!(live.check(t(160)), LivenessCheck::Dead);
    }

    #[test]
    fn liveness_deadline_is_the_earliest_and_hearing_never_brings_it_forward() {
        let keepalive = Keepalive { interval: Duration::from_secs(5), timeout: Duration::from_secs(12) };
        let t = |secs: u64| Timestamp::from_millis(secs * 1000);
        let mut live = Liveness::new(keepalive, t(0));
        assert_eq!(live.check(t(5)), LivenessCheck::Ping);
        assert_eq!(live.deadline(), t(10), "the next ping comes before the timeout");
        assert_eq!(live.check(t(10)), LivenessCheck::Ping);
        assert_eq!(live.check(t(15)), LivenessCheck::Ping);
        assert_eq!(live.deadline(), t(17), "the first ping's timeout comes before the next ping");
        let before = live.deadline();
        live.heard();
        assert!(live.deadline() >= before);
        assert_eq!(live.check(t(17)), LivenessCheck::Alive);
        // A late wake-up sends one ping, not the ones it missed.
        assert_eq!(live.check(t(100)), LivenessCheck::Ping);
        assert_eq!(live.deadline(), t(105));
        assert_eq!(live.check(t(112)), LivenessCheck::Dead);
    }
}

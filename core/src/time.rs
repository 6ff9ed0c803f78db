//! Time as the caller tells it: the core never reads a clock.

use std::time::Duration;

/// A point in time, in milliseconds since the Unix epoch, as given by the caller.
///
/// The core only compares and adds timestamps, so any monotonic millisecond count works; runtimes
/// use wall-clock time because receipt ages are persisted across restarts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// This time as RFC 3339 in UTC with milliseconds (`2026-01-01T00:00:00.123Z`), as the
    /// official SDK writes times on the wire; `None` past year 9999, which Python's `datetime`
    /// cannot hold ([`crate::permissions::MAX_TIMESTAMP`]).
    ///
    /// ```
    /// use pacerelle_core::Timestamp;
    /// assert_eq!(Timestamp::from_millis(951_782_400_000).to_rfc3339().as_deref(), Some("2000-02-29T00:00:00.000Z"));
    /// ```
    pub fn to_rfc3339(self) -> Option<String> {
        crate::permissions::format_rfc3339(self)
    }

    /// A timestamp `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This timestamp moved forward by `duration`, saturating at the far future.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// How long after `earlier` this is; zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

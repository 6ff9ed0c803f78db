//! The metrics every runtime reports, named once: the names (with their type, labels and
//! meaning) and the functions that record them, through the [`metrics`] facade.
//!
//! Why a facade: the SDK records, the app chooses where the figures go. Nothing is kept or
//! exported until the app installs a recorder (an exporter such as `metrics-exporter-prometheus`);
//! without one, recording costs a check of a global. Every figure is recorded from the shared
//! [`crate::state::AgentState`], so the tokio, smol, async-std and blocking clients report the same.
//!
//! Labels carry ids of kinds, never contents: no message text, token, key, peer or agent id
//! (which would also make the series unbounded).

use pacerelle_core::agent::UndeliverableReason;
use std::time::Duration;

/// `pacerelle_messages_handled_total` (counter, no labels): messages whose handler succeeded
/// and whose acceptance was committed, so that they are acknowledged to the relay.
pub const MESSAGES_HANDLED_TOTAL: &str = "pacerelle_messages_handled_total";

/// `pacerelle_messages_failed_total` (counter, no labels): handler runs that failed (an error
/// or a panic); the message stays unacknowledged, to be delivered again.
pub const MESSAGES_FAILED_TOTAL: &str = "pacerelle_messages_failed_total";

/// `pacerelle_messages_retried_total` (counter, no labels): messages handed to the handler
/// again after a failed run of it in this process.
pub const MESSAGES_RETRIED_TOTAL: &str = "pacerelle_messages_retried_total";

/// `pacerelle_messages_undeliverable_total` (counter, label `reason`): messages acknowledged
/// without being handed to the handler, by [`REASON_LABEL`] (see [`undeliverable_reason`]).
pub const MESSAGES_UNDELIVERABLE_TOTAL: &str = "pacerelle_messages_undeliverable_total";

/// `pacerelle_reconnects_total` (counter, no labels): connection attempts after the first one
/// of a client (after a lost, dead or refused connection).
pub const RECONNECTS_TOTAL: &str = "pacerelle_reconnects_total";

/// `pacerelle_store_commit_seconds` (histogram, no labels, seconds): how long each store
/// commit took (one transaction: receipts, sessions, keys; with group commit, one per batch of
/// changes, however many messages it holds).
pub const STORE_COMMIT_SECONDS: &str = "pacerelle_store_commit_seconds";

/// The label of [`MESSAGES_UNDELIVERABLE_TOTAL`].
pub const REASON_LABEL: &str = "reason";

/// Every metric name, for an app that describes or filters them.
pub const ALL: [&str; 6] = [
    MESSAGES_HANDLED_TOTAL,
    MESSAGES_FAILED_TOTAL,
    MESSAGES_RETRIED_TOTAL,
    MESSAGES_UNDELIVERABLE_TOTAL,
    RECONNECTS_TOTAL,
    STORE_COMMIT_SECONDS,
];

/// The `reason` label of an undeliverable message: `plaintext`, `encrypted_without_e2ee`,
/// `untrusted_identity` or `unreadable`. A fixed set, so that the series stay bounded and
/// nothing of the message (its peer, its error text) reaches the metrics.
pub fn undeliverable_reason(reason: &UndeliverableReason) -> &'static str {
    match reason {
        UndeliverableReason::Plaintext => "plaintext",
        UndeliverableReason::EncryptedWithoutE2ee => "encrypted_without_e2ee",
        UndeliverableReason::UntrustedIdentity { .. } => "untrusted_identity",
        UndeliverableReason::Unreadable { .. } => "unreadable",
    }
}

/// Describes every metric to the installed recorder (units and help text, for exporters that
/// show them). Optional: call it once after installing a recorder.
pub fn describe() {
    metrics::describe_counter!(MESSAGES_HANDLED_TOTAL, "Messages handled and accepted (acknowledged to the relay).");
    metrics::describe_counter!(MESSAGES_FAILED_TOTAL, "Handler runs that failed; the message stays unacknowledged.");
    metrics::describe_counter!(MESSAGES_RETRIED_TOTAL, "Messages handed to the handler again after a failed run.");
    metrics::describe_counter!(
        MESSAGES_UNDELIVERABLE_TOTAL,
        "Messages acknowledged without being handed over, by reason."
    );
    metrics::describe_counter!(RECONNECTS_TOTAL, "Connection attempts after the first one.");
    metrics::describe_histogram!(STORE_COMMIT_SECONDS, metrics::Unit::Seconds, "Duration of each store commit.");
}

pub(crate) fn message_handled() {
    metrics::counter!(MESSAGES_HANDLED_TOTAL).increment(1);
}

pub(crate) fn message_failed() {
    metrics::counter!(MESSAGES_FAILED_TOTAL).increment(1);
}

pub(crate) fn message_retried() {
    metrics::counter!(MESSAGES_RETRIED_TOTAL).increment(1);
}

pub(crate) fn message_undeliverable(reason: &UndeliverableReason) {
    metrics::counter!(MESSAGES_UNDELIVERABLE_TOTAL, REASON_LABEL => undeliverable_reason(reason)).increment(1);
}

pub(crate) fn reconnect() {
    metrics::counter!(RECONNECTS_TOTAL).increment(1);
}

pub(crate) fn store_commit(took: Duration) {
    metrics::histogram!(STORE_COMMIT_SECONDS).record(took.as_secs_f64());
}

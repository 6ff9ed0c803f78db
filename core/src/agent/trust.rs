//! The agent's trust model: whose identity key speaks for a peer, what a new one does, and what
//! the app hears when a message is refused.
//!
//! The relay is not trusted. A peer (a person, on a device when frames name one) is known by the
//! identity key of the first session it started (trust on first use); the Signal session itself
//! proves every later message came from that key. Evidence of a change is the SDK's own, not the
//! relay's word: a message that decrypts under a session whose identity key is not the trusted
//! one. Then [`super::TrustPolicy`] decides: deliver and trust the newcomer (as Signal's apps
//! do), or refuse until the app trusts it ([`super::Agent::trust_identity`]). The relay's own
//! `IDENTITY_CHANGED` frame is passed on as a hint and changes nothing.
//!
//! Where the official SDK differs: it hands plaintext (`encrypted: false`) messages to an
//! encrypted agent's handler and accepts any new identity key silently; this SDK refuses the
//! first and reports the second (see `SECURITY.md`).

use crate::store::{IdentityKeyBytes, PeerId, StoredPeerIdentity};
use crate::{Timestamp, e2ee::bundle::verification_code};
use std::collections::BTreeMap;

/// Peers (person and device) whose identity keys are kept per person; past it, the person's
/// least recently heard device is forgotten, so forged device ids cannot grow the state without
/// bound.
pub const MAX_DEVICES_PER_PERSON: usize = 64;

/// The fingerprint people compare to check an identity key: SHA-256 of the 33-byte key,
/// upper-case hex in groups of four, the format of the agent's own verification code.
///
/// ```
/// use pacerelle_core::agent::SafetyNumber;
/// let number = SafetyNumber::of(&[0x05; 33]);
/// assert_eq!(number.as_str().len(), 79); // 16 groups of 4, 15 spaces
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// The safety number of a serialized identity key.
    pub fn of(identity_key: &IdentityKeyBytes) -> Self {
        SafetyNumber(verification_code(identity_key))
    }

    /// The grouped hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who says a peer's identity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSource {
    /// A message decrypted under a session with another identity key than the trusted one:
    /// the SDK's own evidence.
    Session,
    /// The relay's `IDENTITY_CHANGED` frame: a hint, unauthenticated; nothing was changed.
    Relay,
}

/// A peer's identity key changed (or the relay says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityChange {
    /// The person (or agent), and their device when frames name one. The relay's frame names
    /// no device.
    pub peer: PeerId,
    /// The safety number trusted until now (`None` from the relay, which does not say).
    pub previous: Option<SafetyNumber>,
    /// The safety number that spoke (`None` from the relay).
    pub current: Option<SafetyNumber>,
    /// Who says so.
    pub source: ChangeSource,
    /// Whether `current` is now trusted (the default policy) or waits for
    /// [`super::Agent::trust_identity`] (under [`super::TrustPolicy::Pinned`]).
    pub trusted: bool,
}

impl IdentityChange {
    /// The relay's announcement that `peer_id`'s key changed.
    pub fn from_relay(peer_id: String) -> Self {
        IdentityChange {
            peer: PeerId { user_id: peer_id, device_id: None },
            previous: None,
            current: None,
            source: ChangeSource::Relay,
            trusted: false,
        }
    }
}

/// Why a message was acknowledged without being handed to the app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UndeliverableReason {
    /// A plaintext message reached an agent with end-to-end encryption, which only takes
    /// plaintext when [`super::AgentConfig::accept_plaintext`] says so: anyone who can write
    /// frames could have written it.
    #[error("plaintext message refused by an end-to-end encrypted agent")]
    Plaintext,
    /// An end-to-end encrypted message reached an agent without end-to-end encryption.
    #[error("end-to-end encrypted message, but this agent runs without e2ee")]
    EncryptedWithoutE2ee,
    /// It came from an identity key the app has not trusted (under
    /// [`super::TrustPolicy::Pinned`]).
    #[error("sent from identity {safety_number}, which is not trusted for {peer}")]
    UntrustedIdentity {
        /// The peer it claims to be.
        peer: PeerId,
        /// The identity that spoke.
        safety_number: SafetyNumber,
    },
    /// It could not be read in [`super::AgentConfig::max_delivery_attempts`] deliveries
    /// (tampered, no session, a key already dropped, a frame the SDK refuses, ...).
    #[error("unreadable after {attempts} deliveries: {error}")]
    Unreadable {
        /// Deliveries tried.
        attempts: u32,
        /// Why the last one failed.
        error: String,
    },
}

/// A message the agent acknowledged (so the relay stops delivering it) but did not hand to the
/// app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undeliverable {
    /// The relay's message id.
    pub message_id: String,
    /// The sender the frame named (not proven: the message could not be read).
    pub from: String,
    /// The conversation the frame named.
    pub conversation_id: String,
    /// Why.
    pub reason: UndeliverableReason,
}

/// Why an identity could not be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// No refused identity waits for this peer.
    #[error("no untrusted identity is waiting for {0}")]
    NothingPending(PeerId),
}

/// What the identity check says of a message that decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Deliver; store this record (first use, or last seen moved on, or a trusted change).
    Deliver(StoredPeerIdentity),
    /// Refuse; store this record (the newcomer waits as pending).
    Refuse(StoredPeerIdentity),
}

/// Checks the identity key that spoke for `peer` against what is known, under `pinned` or not.
/// Returns the verdict and the change to report, if the key is not the trusted one.
pub(super) fn check(
    known: Option<&StoredPeerIdentity>,
    peer: &PeerId,
    spoke: IdentityKeyBytes,
    pinned: bool,
    now: Timestamp,
) -> (Verdict, Option<IdentityChange>) {
    let Some(known) = known else {
        return (Verdict::Deliver(StoredPeerIdentity { trusted: spoke, pending: None, last_seen: now }), None);
    };
    if known.trusted == spoke {
        return (Verdict::Deliver(StoredPeerIdentity { last_seen: now, ..known.clone() }), None);
    }
    let change = IdentityChange {
        peer: peer.clone(),
        previous: Some(SafetyNumber::of(&known.trusted)),
        current: Some(SafetyNumber::of(&spoke)),
        source: ChangeSource::Session,
        trusted: !pinned,
    };
    // Reported once per newcomer: a pinned peer whose newcomer keeps writing is not announced
    // again for every refused message.
    let announce = !pinned || known.pending != Some(spoke);
    let change = announce.then_some(change);
    if pinned {
        (Verdict::Refuse(StoredPeerIdentity { pending: Some(spoke), ..known.clone() }), change)
    } else {
        (Verdict::Deliver(StoredPeerIdentity { trusted: spoke, pending: None, last_seen: now }), change)
    }
}

/// The devices of `user` beyond [`MAX_DEVICES_PER_PERSON`], least recently heard first, that
/// must go so that `keep` fits.
pub(super) fn devices_beyond_cap(
    identities: &BTreeMap<PeerId, StoredPeerIdentity>,
    user: &str,
    keep: &PeerId,
) -> Vec<PeerId> {
    let mut theirs: Vec<(&PeerId, Timestamp)> = identities
        .iter()
        .filter(|(peer, _)| peer.user_id == user && *peer != keep)
        .map(|(peer, stored)| (peer, stored.last_seen))
        .collect();
    // One slot is `keep`'s.
    let excess = (theirs.len() + 1).saturating_sub(MAX_DEVICES_PER_PERSON);
    theirs.sort_by_key(|(peer, seen)| (*seen, (*peer).clone()));
    theirs.into_iter().take(excess).map(|(peer, _)| peer.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::new("alice", Some("phone"))
    }

    #[test]
    fn first_use_is_trusted_and_the_same_key_stays_trusted() {
        let (verdict, change) = check(None, &peer(), [5; 33], false, Timestamp::from_millis(1));
        assert_eq!(
            verdict,
            Verdict::Deliver(StoredPeerIdentity {
                trusted: [5; 33],
                pending: None,
                last_seen: Timestamp::from_millis(1)
            })
        );
        assert_eq!(change, None);
        let known = StoredPeerIdentity { trusted: [5; 33], pending: None, last_seen: Timestamp::from_millis(1) };
        for pinned in [false, true] {
            let (verdict, change) = check(Some(&known), &peer(), [5; 33], pinned, Timestamp::from_millis(9));
            assert!(matches!(verdict, Verdict::Deliver(stored) if stored.last_seen == Timestamp::from_millis(9)));
            assert_eq!(change, None);
        }
    }

    #[test]
    fn a_new_key_is_trusted_after_the_event_by_default_and_held_back_when_pinned() {
        let known = StoredPeerIdentity { trusted: [5; 33], pending: None, last_seen: Timestamp::from_millis(1) };
        let (verdict, change) = check(Some(&known), &peer(), [6; 33], false, Timestamp::from_millis(2));
        assert!(matches!(&verdict, Verdict::Deliver(stored) if stored.trusted == [6; 33] && stored.pending.is_none()));
        let change = change.expect("reported");
        assert_eq!(change.previous, Some(SafetyNumber::of(&[5; 33])));
        assert_eq!(change.current, Some(SafetyNumber::of(&[6; 33])));
        assert!(change.trusted);
        assert_eq!(change.source, ChangeSource::Session);

        let (verdict, change) = check(Some(&known), &peer(), [6; 33], true, Timestamp::from_millis(2));
        let Verdict::Refuse(stored) = verdict else { panic!("refused") };
        assert_eq!((stored.trusted, stored.pending), ([5; 33], Some([6; 33])));
        assert!(!change.expect("reported").trusted);
        // The same newcomer again: refused, not announced twice.
        let (verdict, change) = check(Some(&stored), &peer(), [6; 33], true, Timestamp::from_millis(3));
        assert!(matches!(verdict, Verdict::Refuse(_)));
        assert_eq!(change, None);
    }

    #[test]
    fn the_least_recently_heard_devices_go_beyond_the_cap() {
        let mut identities = BTreeMap::new();
        for index in 0..MAX_DEVICES_PER_PERSON {
            let stored = StoredPeerIdentity {
                trusted: [5; 33],
                pending: None,
                last_seen: Timestamp::from_millis(100 - index as u64),
            };
            identities.insert(PeerId::new("alice", Some(format!("d{index}"))), stored.clone());
            identities.insert(PeerId::new("bob", Some(format!("d{index}"))), stored);
        }
        let newcomer = PeerId::new("alice", Some("new"));
        let evicted = devices_beyond_cap(&identities, "alice", &newcomer);
        let expected = format!("d{}", MAX_DEVICES_PER_PERSON - 1);
        assert_eq!(evicted, vec![PeerId::new("alice", Some(expected.as_str()))]);
        let known = PeerId::new("alice", Some("d0"));
        assert!(devices_beyond_cap(&identities, "alice", &known).is_empty());
    }
}

//! Coming over from the official Python SDK: an encrypted Python agent's state, decoded natively
//! and turned into this SDK's store changes, so that the agent keeps its identity (the same
//! verification code), its prekeys, its sessions (SPQR included) and its conversations.
//!
//! Pure decoding and mapping, no I/O: the caller reads the official agent's `signal.db` (the
//! `signal_snapshot` row; `pacerelle_store_sqlite::import_python` does) and applies the
//! [`Imported::changes`] to its store in one commit. The parts:
//! - [`python`]: the official agent's JSON snapshot around the runtime's export;
//! - [`export`]: the runtime's export (`signal_store_export`), a container whose layout was
//!   worked out by experiment;
//! - [`signal`]: libsignal's records inside it, mapped onto our keys and sessions; the SPQR state
//!   of each session goes through `pacerelle_spqr::State::from_upstream`.
//!
//! Every session comes over, whatever phase its SPQR state stands in; a session that does not
//! decode (a damaged record) is left out and named in [`ImportReport::sessions_not_imported`],
//! the rest still coming over. What else does not come over, and why (each is counted in the
//! [`ImportReport`]):
//! - the runtime's record of which base keys used which Kyber prekey (libsignal refuses a
//!   second session from the same one): this SDK refuses such a replay by its own index of base
//!   keys, built from the sessions it holds, so the record has no counterpart; counted in
//!   [`ImportReport::kyber_uses_not_kept`];
//! - skipped message keys, receiving chains and previous sessions beyond this SDK's caps, and
//!   skipped keys stored without their seed: [`ImportReport::dropped`];
//! - receipts whose sender the snapshot does not say (no reply context):
//!   [`ImportReport::receipts_not_imported`];
//! - the official agent's list of devices whose messages opened only under the conversation's
//!   session name (clients older than device names), to which it then answers under that name:
//!   this SDK keeps no such list, it answers under the device's session when it holds one and
//!   the conversation's otherwise ([`ImportReport::legacy_device_sessions_not_kept`]).

pub mod export;
pub mod python;
pub mod signal;

use crate::e2ee::bundle::verification_code;
use crate::e2ee::keys::PublicKey;
use crate::store::{
    E2eeChanges, PeerId, PrekeyKind, Receipt, ReceiptState, SecretBytes, StoreChanges, StoredGroupKey,
    StoredHistoryKey, StoredIdentity, StoredPeerIdentity, StoredPrekey,
};
use crate::time::Timestamp;
use export::{ExportError, RuntimeExport};
use python::{PythonSnapshot, SnapshotError};
use signal::{Dropped, SignalRecordError};

/// Why a Python agent's state cannot be imported at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The JSON snapshot around the export.
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    /// The runtime's export.
    #[error("{0}")]
    Export(#[from] ExportError),
    /// The identity key pair.
    #[error("the identity: {0}")]
    Identity(SignalRecordError),
    /// A prekey.
    #[error("{} prekey {id}: {error}", kind.as_str())]
    Prekey {
        /// Its kind.
        kind: PrekeyKind,
        /// The id the runtime filed it under.
        id: u32,
        /// Why.
        error: SignalRecordError,
    },
}

/// A session that did not come over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionNotImported {
    /// The runtime's name for the peer.
    pub name: String,
    /// Why.
    pub error: SignalRecordError,
}

/// What an import brought over, and what it left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// The agent's verification code (the same as the official agent showed).
    pub verification_code: String,
    /// Its registration id.
    pub registration_id: u32,
    /// One-time prekeys (unused ones: the runtime deletes a used one).
    pub one_time_prekeys: usize,
    /// Signed prekeys.
    pub signed_prekeys: usize,
    /// Kyber prekeys.
    pub kyber_prekeys: usize,
    /// The peer names whose sessions came over, sorted.
    pub sessions: Vec<String>,
    /// Sessions that did not.
    pub sessions_not_imported: Vec<SessionNotImported>,
    /// Peers' identity keys kept.
    pub peer_identities: usize,
    /// Trusted identities whose name is not a person's session name, left out.
    pub peer_identities_not_imported: usize,
    /// Conversations' archive keys.
    pub history_keys: usize,
    /// Group keys.
    pub group_keys: usize,
    /// Message receipts (accepted and pending), so that no message is handled twice.
    pub receipts: usize,
    /// Receipts left out: the snapshot does not say who sent them.
    pub receipts_not_imported: usize,
    /// Last devices per (person, conversation).
    pub last_devices: usize,
    /// Recorded Kyber prekey uses, which have no counterpart here (see the module docs).
    pub kyber_uses_not_kept: usize,
    /// Device names the official agent answered under their conversation's session name (see
    /// the module docs), not kept.
    pub legacy_device_sessions_not_kept: usize,
    /// What the sessions held beyond this SDK's caps.
    pub dropped: Dropped,
}

/// An imported state: the store changes that write it (apply them in one commit to an empty
/// store), and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// What to apply.
    pub changes: StoreChanges,
    /// What came over.
    pub report: ImportReport,
}

/// The person, conversation and device a session name (`human:{user}:{conversation}` or
/// `human:{user}:{conversation}:device:{device}`) names, read from the right as the agent does.
fn person_of(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let rest = name.strip_prefix("human:")?;
    let (rest, device) = match rest.rsplit_once(":device:") {
        Some((rest, device)) => (rest, Some(device)),
        None => (rest, None),
    };
    let (user, conversation) = rest.rsplit_once(':')?;
    Some((user, conversation, device))
}

/// Converts the official agent `agent_id`'s snapshot `blob` (its `signal.db` row) into this
/// SDK's store changes; `now` dates the peer identities it keeps.
pub fn import_python_snapshot(blob: &[u8], agent_id: &str, now: Timestamp) -> Result<Imported, ImportError> {
    let snapshot = PythonSnapshot::parse(blob, agent_id)?;
    let export = RuntimeExport::parse(&snapshot.signal)?;
    let identity = signal::identity(&export.identity.record).map_err(ImportError::Identity)?;
    let identity_key: PublicKey = identity.public();
    let mut report = ImportReport {
        verification_code: verification_code(&identity_key.serialize()),
        registration_id: export.registration_id,
        ..ImportReport::default()
    };
    let mut e2ee = E2eeChanges {
        identity: Some(StoredIdentity {
            private_key: SecretBytes::new(identity.private_bytes().to_vec()),
            registration_id: export.registration_id,
        }),
        ..E2eeChanges::default()
    };
    let mut highest_id = snapshot.last_prekey_id.unwrap_or(0);
    let mut put = |kind, id: u32, private: Vec<u8>| {
        highest_id = highest_id.max(id);
        e2ee.put_prekeys.push(StoredPrekey { kind, id, private_key: SecretBytes::new(private) });
    };
    let prekey_error = |kind, id| move |error| ImportError::Prekey { kind, id, error };
    for entry in &export.one_time_prekeys {
        let (_, pair) = signal::prekey(&entry.record).map_err(prekey_error(PrekeyKind::OneTime, entry.id))?;
        put(PrekeyKind::OneTime, entry.id, pair.private_bytes().to_vec());
    }
    for entry in &export.signed_prekeys {
        let (_, pair) = signal::prekey(&entry.record).map_err(prekey_error(PrekeyKind::Signed, entry.id))?;
        put(PrekeyKind::Signed, entry.id, pair.private_bytes().to_vec());
    }
    for entry in &export.kyber_prekeys {
        let (_, pair) = signal::kyber_prekey(&entry.record).map_err(prekey_error(PrekeyKind::Kyber, entry.id))?;
        put(PrekeyKind::Kyber, entry.id, pair.private_bytes().to_vec());
    }
    report.one_time_prekeys = export.one_time_prekeys.len();
    report.signed_prekeys = export.signed_prekeys.len();
    report.kyber_prekeys = export.kyber_prekeys.len();
    report.kyber_uses_not_kept = export.kyber_uses.iter().map(|used| used.base_keys.len()).sum();
    // New batches are numbered after every id held, so they never collide with one.
    e2ee.prekey_counter = Some(highest_id);

    for entry in &export.sessions {
        match signal::session_record(&entry.record, &identity_key) {
            Ok((record, dropped)) => {
                report.dropped = Dropped {
                    receiver_chains: report.dropped.receiver_chains + dropped.receiver_chains,
                    skipped_keys: report.dropped.skipped_keys + dropped.skipped_keys,
                    previous_sessions: report.dropped.previous_sessions + dropped.previous_sessions,
                };
                report.sessions.push(entry.name.clone());
                e2ee.put_sessions.push((entry.name.clone(), SecretBytes::new(record.to_bytes().to_vec())));
            }
            Err(error) => {
                tracing::warn!(peer = %entry.name, %error, "a session of the official agent does not come over");
                report.sessions_not_imported.push(SessionNotImported { name: entry.name.clone(), error });
            }
        }
    }
    report.sessions.sort();

    let mut peers = std::collections::BTreeMap::new();
    for trusted in &export.trusted {
        let key: Option<[u8; 33]> = trusted.key.as_slice().try_into().ok();
        match (person_of(&trusted.name), key.filter(|key| PublicKey::deserialize(key).is_ok())) {
            (Some((user, _, device)), Some(key)) => {
                peers.insert(
                    PeerId::new(user, device),
                    StoredPeerIdentity { trusted: key, pending: None, last_seen: now },
                );
            }
            _ => report.peer_identities_not_imported += 1,
        }
    }
    report.peer_identities = peers.len();
    e2ee.put_peer_identities = peers.into_iter().collect();

    report.history_keys = snapshot.history_keys.len();
    e2ee.put_history_keys = snapshot
        .history_keys
        .iter()
        .map(|key| {
            let stored = StoredHistoryKey {
                key_id: key.key_id.clone(),
                epoch: key.epoch,
                raw_key: SecretBytes::new(key.raw_key.to_vec()),
            };
            (key.conversation_id.clone(), stored)
        })
        .collect();

    let mut changes = StoreChanges { e2ee, ..StoreChanges::default() };
    report.group_keys = snapshot.group_keys.len();
    changes.put_group_keys = snapshot
        .group_keys
        .iter()
        .map(|key| StoredGroupKey {
            conversation_id: key.conversation_id.clone(),
            key_id: key.key_id.clone(),
            epoch: key.epoch,
            raw_key: SecretBytes::new(key.raw_key.to_vec()),
        })
        .collect();
    for receipt in &snapshot.receipts {
        let Some((from, conversation_id, from_device_id)) = receipt.context.clone() else {
            report.receipts_not_imported += 1;
            continue;
        };
        let state = match &receipt.pending_text {
            Some(text) => ReceiptState::Pending { text: text.clone() },
            None => ReceiptState::Accepted { at: receipt.accepted_at_millis.map_or(now, Timestamp::from_millis) },
        };
        changes.put_receipts.push(Receipt {
            message_id: receipt.message_id.clone(),
            digest: receipt.digest.clone(),
            from,
            conversation_id,
            from_device_id,
            sender_identity: None,
            state,
        });
    }
    report.receipts = changes.put_receipts.len();
    report.last_devices = snapshot.last_devices.len();
    report.legacy_device_sessions_not_kept = snapshot.legacy_device_sessions.len();
    changes.put_last_devices = snapshot.last_devices.clone();
    Ok(Imported { changes, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_read_from_the_right() {
        assert_eq!(person_of("human:u1:c1"), Some(("u1", "c1", None)));
        assert_eq!(person_of("human:u:1:c1:device:phone"), Some(("u:1", "c1", Some("phone"))));
        assert_eq!(person_of("agent:a"), None);
        assert_eq!(person_of("human:nobody"), None);
    }
}

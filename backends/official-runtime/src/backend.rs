//! The official runtime behind the core's [`SignalBackend`] seam, so an agent (or a person's
//! client) can encrypt with it instead of the native implementation.
//!
//! Persistence: the runtime keeps its state in one opaque snapshot, which goes into the store as
//! a reserved session record ([`SNAPSHOT_RECORD`]) rewritten after every change, next to the
//! names of the peers it holds sessions with ([`PEERS_RECORD`]) and its public identity key
//! ([`IDENTITY_RECORD`]); the prekey counter is the store's own. Publication follows the
//! official SDK: 50 bundles from the runtime under one signed prekey id, whose last signed and
//! Kyber prekeys are published with all 50 one-time prekeys.

use crate::{OfficialRuntime, PrekeyBundle, RuntimeError, RuntimeStore};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_core::Rng;
use pacerelle_core::e2ee::backend::{BackendError, Published, SignalBackend};
use pacerelle_core::e2ee::bundle::{MAX_PREKEY_ID, ONE_TIME_PREKEYS, PROTOCOL_FEATURES, PrekeyIds, PublicationError};
use pacerelle_core::e2ee::pqxdh::PeerBundle;
use pacerelle_core::store::{E2eeChanges, E2eeSnapshot, SecretBytes};
use pacerelle_core::wire::http::{OneTimePrekey, OneTimePrekeysBody, PrekeyBundleBody};
use std::collections::BTreeSet;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The session record holding the runtime's snapshot.
pub const SNAPSHOT_RECORD: &str = "official-runtime:snapshot";
/// The session record holding the peers' names, one per line.
pub const PEERS_RECORD: &str = "official-runtime:peers";
/// The session record holding the public identity key.
pub const IDENTITY_RECORD: &str = "official-runtime:identity";

/// An account kept by the official runtime. See the [module docs](self).
pub struct RuntimeBackend {
    store: RuntimeStore,
    identity: [u8; 33],
    peers: BTreeSet<String>,
    ids: PrekeyIds,
}

impl std::fmt::Debug for RuntimeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBackend")
            .field("store", &self.store.local_name())
            .field("peers", &self.peers.len())
            .finish()
    }
}

fn other(operation: &'static str, error: RuntimeError) -> BackendError {
    BackendError::Other { operation, reason: error.to_string() }
}

impl RuntimeBackend {
    /// The account stored in `snapshot` (as written by earlier changes), or a new one named
    /// `local_name` with the changes that store it.
    pub fn load_or_create(
        runtime: &Arc<OfficialRuntime>,
        local_name: &str,
        snapshot: &E2eeSnapshot,
        rng: &mut Rng,
    ) -> Result<(Self, E2eeChanges), RuntimeError> {
        let stored = |name: &str| snapshot.sessions.get(name).map(SecretBytes::expose);
        if let (Some(state), Some(identity)) = (stored(SNAPSHOT_RECORD), stored(IDENTITY_RECORD)) {
            let identity: [u8; 33] = identity.try_into().map_err(|_| RuntimeError::InvalidInput)?;
            let peers = stored(PEERS_RECORD)
                .map(|names| String::from_utf8_lossy(names).lines().map(str::to_owned).collect())
                .unwrap_or_default();
            let ids = PrekeyIds::after(snapshot.prekey_counter.unwrap_or(0));
            let store = runtime.import_store(local_name, state)?;
            return Ok((RuntimeBackend { store, identity, peers, ids }, E2eeChanges::default()));
        }
        let mut store = runtime.new_store(local_name)?;
        let ids = PrekeyIds::random(rng);
        // The runtime tells its identity key only with a bundle: make one under the ids the
        // first publication will use (and overwrite).
        let next = ids.last().saturating_add(1).min(MAX_PREKEY_ID);
        let probe = store.generate_prekey_bundle(next, next, next)?;
        let identity: [u8; 33] = probe.identity_key.as_slice().try_into().map_err(|_| RuntimeError::InvalidInput)?;
        let backend = RuntimeBackend { store, identity, peers: BTreeSet::new(), ids };
        let mut changes = backend.persist().map_err(|_| RuntimeError::InvalidInput)?;
        changes.prekey_counter = Some(ids.last());
        changes.put_sessions.push((IDENTITY_RECORD.to_owned(), SecretBytes::new(identity.to_vec())));
        Ok((backend, changes))
    }

    /// The changes that store the runtime's current state.
    fn persist(&self) -> Result<E2eeChanges, BackendError> {
        let snapshot = self.store.export().map_err(|error| other("export", error))?;
        let peers: Vec<&str> = self.peers.iter().map(String::as_str).collect();
        Ok(E2eeChanges {
            put_sessions: vec![
                (SNAPSHOT_RECORD.to_owned(), SecretBytes::new(snapshot.to_vec())),
                (PEERS_RECORD.to_owned(), SecretBytes::new(peers.join("\n").into_bytes())),
            ],
            ..Default::default()
        })
    }
}

impl SignalBackend for RuntimeBackend {
    fn identity_key(&self) -> [u8; 33] {
        self.identity
    }

    fn publish(&mut self, _rng: &mut Rng) -> Result<Published, BackendError> {
        let first = self.ids.last();
        let last = first.checked_add(1 + ONE_TIME_PREKEYS as u32).filter(|last| *last <= MAX_PREKEY_ID);
        let last = last.ok_or(PublicationError::IdsExhausted)?;
        let signed_id = first + 1;
        let mut bundle: Option<PrekeyBundle> = None;
        let mut one_time_prekeys = Vec::with_capacity(ONE_TIME_PREKEYS);
        for prekey_id in (signed_id + 1)..=last {
            let made =
                self.store.generate_prekey_bundle(prekey_id, signed_id, signed_id).map_err(|e| other("publish", e))?;
            one_time_prekeys.push(OneTimePrekey { prekey_id, public_key: STANDARD.encode(&made.prekey_public) });
            bundle = Some(made);
        }
        let bundle = bundle.ok_or(PublicationError::IdsExhausted)?;
        let body = PrekeyBundleBody {
            registration_id: bundle.registration_id,
            device_id: bundle.device_id,
            identity_key: STANDARD.encode(&bundle.identity_key),
            signed_prekey_id: bundle.signed_prekey_id,
            signed_prekey_public: STANDARD.encode(&bundle.signed_prekey_public),
            signed_prekey_signature: STANDARD.encode(&bundle.signed_prekey_signature),
            kyber_prekey_id: bundle.kyber_prekey_id,
            kyber_prekey_public: STANDARD.encode(&bundle.kyber_prekey_public),
            kyber_prekey_signature: STANDARD.encode(&bundle.kyber_prekey_signature),
            protocol_features: PROTOCOL_FEATURES.iter().map(|feature| (*feature).to_owned()).collect(),
        };
        self.ids = PrekeyIds::after(last);
        let mut changes = self.persist()?;
        changes.prekey_counter = Some(last);
        Ok((changes, body, OneTimePrekeysBody { one_time_prekeys }))
    }

    fn has_session(&self, peer: &str) -> bool {
        self.peers.contains(peer)
    }

    fn start_session(&mut self, peer: &str, bundle: &PeerBundle, _rng: &mut Rng) -> Result<E2eeChanges, BackendError> {
        // The runtime's binding always takes a one-time prekey (observed): without one there is
        // nothing it can do.
        let (prekey_id, prekey) = bundle.one_time_prekey.ok_or(BackendError::Other {
            operation: "start_session",
            reason: "the runtime needs a one-time prekey".into(),
        })?;
        let runtime_bundle = PrekeyBundle {
            registration_id: bundle.registration_id,
            device_id: bundle.device_id,
            prekey_id,
            prekey_public: prekey.serialize().to_vec(),
            signed_prekey_id: bundle.signed_prekey_id,
            signed_prekey_public: bundle.signed_prekey.serialize().to_vec(),
            signed_prekey_signature: bundle.signed_prekey_signature.clone(),
            kyber_prekey_id: bundle.kyber_prekey_id,
            kyber_prekey_public: bundle.kyber_prekey.clone(),
            kyber_prekey_signature: bundle.kyber_prekey_signature.clone(),
            identity_key: bundle.identity_key.serialize().to_vec(),
        };
        self.store.process_prekey_bundle(peer, &runtime_bundle).map_err(|e| other("start_session", e))?;
        self.peers.insert(peer.to_owned());
        self.persist()
    }

    fn encrypt(
        &mut self,
        peer: &str,
        plaintext: &[u8],
        _rng: &mut Rng,
    ) -> Result<(Vec<u8>, E2eeChanges), BackendError> {
        let framed = self.store.encrypt(peer, plaintext).map_err(|e| other("encrypt", e))?;
        Ok((framed, self.persist()?))
    }

    fn decrypt(
        &mut self,
        peers: &[&str],
        framed: &[u8],
        _rng: &mut Rng,
    ) -> Result<(Zeroizing<Vec<u8>>, String, E2eeChanges), BackendError> {
        let mut first_error = None;
        for peer in peers {
            match self.store.decrypt(peer, framed) {
                Ok(plaintext) => {
                    self.peers.insert((*peer).to_owned());
                    return Ok((plaintext, (*peer).to_owned(), self.persist()?));
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(other("decrypt", first_error.unwrap_or(RuntimeError::Protocol)))
    }

    fn discard(&mut self, changes: &E2eeChanges, committed: &E2eeSnapshot) -> Result<(), BackendError> {
        if !changes.put_sessions.iter().any(|(name, _)| name == SNAPSHOT_RECORD) {
            return Ok(());
        }
        // The runtime's whole state is one snapshot: the committed one comes back whole.
        let state = committed.sessions.get(SNAPSHOT_RECORD).ok_or(BackendError::Other {
            operation: "discard",
            reason: "no committed runtime snapshot to go back to".into(),
        })?;
        let runtime = Arc::clone(self.store.runtime());
        self.store = runtime.import_store(self.store.local_name(), state.expose()).map_err(|e| other("discard", e))?;
        self.peers = committed
            .sessions
            .get(PEERS_RECORD)
            .map(|names| String::from_utf8_lossy(names.expose()).lines().map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(())
    }
}

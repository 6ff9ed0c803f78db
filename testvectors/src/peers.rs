//! The two kinds of Signal peer the conformance tests pair up: the official runtime (loaded once
//! per process) and a native party built on `pacerelle_core::e2ee::account::Account` whose state
//! lives in an in-memory store it can restart from, plus the conversions between their bundles.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pacerelle_core::e2ee::account::{Account, PqFactory};
use pacerelle_core::e2ee::keys::PublicKey;
use pacerelle_core::e2ee::pqxdh::PeerBundle;
use pacerelle_core::store::E2eeSnapshot;
use pacerelle_official_runtime::{OfficialRuntime, PrekeyBundle};
use std::sync::{Arc, OnceLock};

/// The official runtime, installed with the oracle and loaded once per test process.
///
/// # Panics
/// When it cannot be installed or loaded: conformance fails loudly.
pub fn runtime() -> Arc<OfficialRuntime> {
    static RUNTIME: OnceLock<Arc<OfficialRuntime>> = OnceLock::new();
    Arc::clone(RUNTIME.get_or_init(|| {
        let path = crate::runtime_library();
        assert_eq!(path, pacerelle_official_runtime::default_library_path(crate::oracle_dir()));
        OfficialRuntime::load(&path).unwrap_or_else(|error| panic!("loading {}: {error}", path.display()))
    }))
}

/// A native party: an account and the store its changes go to, so it can restart from it.
pub struct NativePeer {
    /// The account.
    pub account: Account,
    /// Everything it has committed.
    pub store: E2eeSnapshot,
    pq: PqFactory,
}

impl NativePeer {
    /// A fresh party whose new sessions get `pq`.
    pub fn new(pq: PqFactory, rng: &mut pacerelle_core::Rng) -> Self {
        let mut store = E2eeSnapshot::default();
        let (account, changes) = Account::load_or_create(&store, pq, rng).expect("a fresh account");
        store.apply(&changes);
        NativePeer { account, store, pq }
    }

    /// Commits `changes`, as a runtime applies `Output::Persist`.
    pub fn commit(&mut self, changes: &pacerelle_core::store::E2eeChanges) {
        self.store.apply(changes);
    }

    /// Drops the in-memory account and loads it again from the store (a process restart).
    pub fn restart(&mut self, rng: &mut pacerelle_core::Rng) {
        let (account, changes) = Account::load_or_create(&self.store, self.pq, rng).expect("the stored account loads");
        assert!(changes.is_empty(), "a restart creates nothing new");
        self.account = account;
    }

    /// Publishes (private halves committed first) and returns the bundle a runtime would fetch,
    /// with the one-time prekey at `one_time_index`.
    pub fn publish_for_runtime(&mut self, one_time_index: usize, rng: &mut pacerelle_core::Rng) -> PrekeyBundle {
        let (changes, bundle, one_time) = self.account.publish(rng).expect("a publication");
        self.commit(&changes);
        let decode = |text: &str| STANDARD.decode(text).expect("our own base64");
        let chosen = &one_time.one_time_prekeys[one_time_index];
        PrekeyBundle {
            registration_id: bundle.registration_id,
            device_id: bundle.device_id,
            prekey_id: chosen.prekey_id,
            prekey_public: decode(&chosen.public_key),
            signed_prekey_id: bundle.signed_prekey_id,
            signed_prekey_public: decode(&bundle.signed_prekey_public),
            signed_prekey_signature: decode(&bundle.signed_prekey_signature),
            kyber_prekey_id: bundle.kyber_prekey_id,
            kyber_prekey_public: decode(&bundle.kyber_prekey_public),
            kyber_prekey_signature: decode(&bundle.kyber_prekey_signature),
            identity_key: decode(&bundle.identity_key),
        }
    }
}

/// A runtime-made bundle as our initiator takes it.
///
/// # Panics
/// When the runtime's keys do not parse (they always do: the runtime's own tests say so).
pub fn peer_bundle(bundle: &PrekeyBundle) -> PeerBundle {
    let key = |bytes: &[u8]| PublicKey::deserialize(bytes).expect("a runtime key");
    PeerBundle {
        registration_id: bundle.registration_id,
        device_id: bundle.device_id,
        identity_key: key(&bundle.identity_key),
        signed_prekey_id: bundle.signed_prekey_id,
        signed_prekey: key(&bundle.signed_prekey_public),
        signed_prekey_signature: bundle.signed_prekey_signature.clone(),
        kyber_prekey_id: bundle.kyber_prekey_id,
        kyber_prekey: bundle.kyber_prekey_public.clone(),
        kyber_prekey_signature: bundle.kyber_prekey_signature.clone(),
        one_time_prekey: Some((bundle.prekey_id, key(&bundle.prekey_public))),
    }
}

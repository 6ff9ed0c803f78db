//! Importing an official agent's store on any input: the runtime's export format (`AGSP`,
//! length-prefixed libsignal records) and the Python agent's JSON snapshot around it must never
//! panic, allocate without bound, or produce a state the agent could not load.
//!
//! The input is tried as a bare runtime export, then as a whole snapshot. Properties of a
//! snapshot that imports:
//! - it carries the agent's identity, and the report's verification code is that identity's;
//! - the changes apply to an empty store, and every session the report names is in them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_core::Timestamp;
use pacerelle_core::e2ee::bundle::verification_code;
use pacerelle_core::e2ee::keys::KeyPair;
use pacerelle_core::import::export::RuntimeExport;
use pacerelle_core::import::import_python_snapshot;
use pacerelle_core::store::AgentSnapshot;

fuzz_target!(|data: &[u8]| {
    let _ = RuntimeExport::parse(data);
    let Ok(imported) = import_python_snapshot(data, "agent-1", Timestamp::from_millis(0)) else { return };
    let identity = imported.changes.e2ee.identity.as_ref().expect("an imported agent has its identity");
    let private: [u8; 32] = identity.private_key.expose().try_into().expect("a 32-byte private key");
    let code = verification_code(&KeyPair::from_private_bytes(private).public().serialize());
    assert_eq!(imported.report.verification_code, code);
    let mut snapshot = AgentSnapshot::default();
    snapshot.apply(&imported.changes);
    for name in &imported.report.sessions {
        assert!(snapshot.e2ee.sessions.contains_key(name), "{name}");
    }
});

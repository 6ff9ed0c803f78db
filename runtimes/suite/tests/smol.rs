//! The behaviour suite on smol (see the crate docs for the cases).

pacerelle_runtime_suite::behaviour_suite!(pacerelle_runtime_suite::harness::Smol);

#[test]
fn wss_attempts_a_rustls_handshake() {
    pacerelle_runtime_suite::transport::wss_attempts_a_rustls_handshake::<pacerelle_smol::Smol>(smol::block_on);
}

//! The behaviour suite on tokio (see the crate docs for the cases).

pacerelle_runtime_suite::behaviour_suite!(pacerelle_runtime_suite::harness::Tokio);

#[test]
fn wss_attempts_a_rustls_handshake() {
    pacerelle_runtime_suite::transport::wss_attempts_a_rustls_handshake::<pacerelle_tokio::Tokio>(|connecting| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(connecting)
    });
}

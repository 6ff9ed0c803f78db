//! The behaviour suite on async-std (see the crate docs for the cases).

pacerelle_runtime_suite::behaviour_suite!(pacerelle_runtime_suite::harness::AsyncStd);

#[test]
fn wss_attempts_a_rustls_handshake() {
    pacerelle_runtime_suite::transport::wss_attempts_a_rustls_handshake::<pacerelle_async_std::AsyncStd>(
        async_std::task::block_on,
    );
}

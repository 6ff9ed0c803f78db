//! Checks of an async runtime's transport that the behaviour cases, all over plain `ws://` on
//! loopback, cannot make.

use pacerelle_runtime_support::driver::{Runtime, WsError};
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;

type Connecting<R> = Pin<Box<dyn Future<Output = Result<<R as Runtime>::Socket, WsError>> + Send>>;

/// `wss://` goes through rustls (ring, webpki roots): against a loopback endpoint that is not
/// TLS, the handshake is attempted and fails with a TLS or I/O error, rather than the client
/// refusing the scheme or rustls finding no crypto provider. `block_on` drives the runtime.
pub fn wss_attempts_a_rustls_handshake<R: Runtime>(block_on: fn(Connecting<R>) -> Result<R::Socket, WsError>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("wss://127.0.0.1:{}/ws/agent", listener.local_addr().expect("its address").port());
    // Never joined: if the client failed before connecting, it would wait forever.
    std::thread::spawn(move || {
        // Answer the ClientHello with something that is not TLS.
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let outcome = block_on(Box::pin(async move { R::connect(&url).await }));
    match outcome {
        Err(WsError::Io(_) | WsError::Tls(_)) => {}
        Err(other) => panic!("expected a TLS or I/O error, got {other}"),
        Ok(_) => panic!("a handshake with a non-TLS endpoint succeeded"),
    }
}

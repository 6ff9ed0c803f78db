//! The WebSocket plumbing both clients share: open with a timeout, a writer task fed by a
//! channel, text frames out of the reader, and an optional deadline to sleep until.

use futures_util::{SinkExt, StreamExt};
use pacerelle_runtime_support as support;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The reading half of an open socket.
pub(crate) type Reader = futures_util::stream::SplitStream<Socket>;

/// Opens `url` and starts its writer task; `None` (after logging why) when it fails. Dropping
/// the returned sender closes the socket.
pub(crate) async fn open(url: &str) -> Option<(Reader, UnboundedSender<Message>)> {
    let attempt = tokio::time::timeout(support::CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await;
    let socket = match attempt {
        Ok(Ok((socket, _response))) => socket,
        // The URL carries the token: log the error alone.
        Ok(Err(error)) => {
            tracing::warn!(%error, "connect failed");
            return None;
        }
        Err(_) => {
            tracing::warn!("connect timed out");
            return None;
        }
    };
    let (mut sink, stream) = socket.split();
    let (writer, mut outgoing) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if let Err(error) = sink.send(message).await {
                tracing::debug!(%error, "write failed");
                break;
            }
        }
        let _ = sink.close().await;
    });
    tracing::info!("connected");
    Some((stream, writer))
}

/// The next text frame; `None` when the socket closed or failed. Pends forever without a socket.
pub(crate) async fn next_frame(reader: &mut Option<Reader>) -> Option<String> {
    let Some(stream) = reader else {
        return std::future::pending().await;
    };
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => return Some(text.as_str().to_owned()),
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "read failed");
                return None;
            }
        }
    }
}

/// Sleeps until `wake`; pends forever without one.
pub(crate) async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

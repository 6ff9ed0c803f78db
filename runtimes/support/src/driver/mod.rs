//! The async driver every executor shares: the loop that owns the socket and the timer and
//! carries out the core's outputs, the handler task, the agent's handle and the person's
//! client, written once against the small [`Runtime`] trait. An adapter (`pacerelle-tokio`,
//! `pacerelle-smol`, `pacerelle-async-std`) is an implementation of that trait — how to open a
//! WebSocket, spawn a task, sleep, and run blocking work — plus type aliases:
//!
//! ```
//! use pacerelle_runtime_support::driver::{self, Message, WsError};
//! use std::pin::Pin;
//! use std::task::{Context, Poll};
//! # pub struct Closed;
//! # impl futures_util::Stream for Closed {
//! #     type Item = Result<Message, WsError>;
//! #     fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> { Poll::Ready(None) }
//! # }
//! # impl futures_util::Sink<Message> for Closed {
//! #     type Error = WsError;
//! #     fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> { Poll::Ready(Ok(())) }
//! #     fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), WsError> { Ok(()) }
//! #     fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> { Poll::Ready(Ok(())) }
//! #     fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> { Poll::Ready(Ok(())) }
//! # }
//!
//! /// My executor, as the driver needs it.
//! pub struct MyExecutor;
//!
//! impl driver::Runtime for MyExecutor {
//!     type Socket = Closed; // the executor's WebSocket client
//!     async fn connect(_url: &str) -> Result<Closed, WsError> {
//!         Ok(Closed)
//!     }
//!     fn spawn(_task: impl Future<Output = ()> + Send + 'static) {}
//!     async fn sleep(_duration: std::time::Duration) {}
//!     async fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
//!         work()
//!     }
//! }
//!
//! /// Agents on my executor.
//! pub type Client = driver::Client<MyExecutor>;
//! pub type PersonClient = driver::PersonClient<MyExecutor>;
//! ```
//!
//! Why a trait rather than one adapter per executor written out: before this module the tokio
//! and blocking handles were near copies, and two more executors would have made four copies
//! of the rules that matter (outputs carried out in order under the core's lock, the lock never
//! held across an `.await`, accept only after the handler returned `Ok`). The rules now live
//! in one place and an executor is about sixty lines.
//!
//! # Keepalive and refusals
//! The core decides when to ping and when a silent socket is dead; the loop carries it out: it
//! writes the ping frames, reports pongs (and the relay's own pings) as proof of life, drops a
//! socket the core gave up on without waiting for a close handshake the peer will never answer,
//! and reports a handshake answered with an HTTP status (a refused token) with that status and
//! body, so that the core can end the agent instead of retrying. The socket's URL is built at
//! each connection, so a token changed meanwhile is used from the next one.
//!
//! # Dependencies
//! futures-util (streams, sinks, `catch_unwind`, abortable tasks) and futures-channel
//! (unbounded and oneshot channels) are executor-neutral, so the same driver runs on tokio,
//! smol and async-std.

mod agent;
mod connect;
mod person;

pub use agent::{AgentHandle, Client};
pub use connect::AgentConnect;
pub use person::{PersonClient, PersonClientConfig};
/// A WebSocket error.
pub use tungstenite::Error as WsError;
/// A WebSocket message (tungstenite's, shared by every executor's WebSocket client).
pub use tungstenite::Message;
/// A WebSocket handshake request.
pub use tungstenite::handshake::client::Request as WsRequest;

/// The handshake request for a `ws://` or `wss://` URL, and the host and port its TCP stream
/// goes to: for runtimes that open that stream themselves, to turn Nagle's algorithm off. (Left
/// on, a small frame written right after another waits for the peer's delayed acknowledgement:
/// tens of milliseconds per reply.)
pub fn socket_address(url: &str) -> Result<(WsRequest, String, u16), WsError> {
    use tungstenite::client::IntoClientRequest as _;
    let request = url.into_client_request()?;
    let uri = request.uri();
    let host = uri.host().ok_or(WsError::Url(tungstenite::error::UrlError::NoHostName))?;
    // An IPv6 literal comes bracketed in the URL, bare in a socket address.
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    Ok((request, host, port))
}

use crate::state::MAX_BURST;
use crate::{CONNECT_TIMEOUT, ClientError};
use futures_channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_util::future::Either;
use futures_util::stream::SplitStream;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use pacerelle_core::Timestamp;
use pacerelle_core::wire::http::HttpResponse;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

/// What an executor provides to the driver. Implemented by a unit type in each adapter crate.
pub trait Runtime: Send + Sync + 'static {
    /// An open WebSocket: a stream of incoming messages and a sink for outgoing ones.
    type Socket: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Send + Unpin + 'static;

    /// Opens a WebSocket to `url` (`ws://` or `wss://`): TCP, TLS with rustls when asked for,
    /// and the handshake. The driver bounds it with [`CONNECT_TIMEOUT`].
    fn connect(url: &str) -> impl Future<Output = Result<Self::Socket, WsError>> + Send;

    /// Runs `task` in the background; it is never awaited (the driver signals its end itself).
    fn spawn(task: impl Future<Output = ()> + Send + 'static);

    /// Resolves after `duration`, on the executor's timer.
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send + 'static;

    /// Runs `work` (blocking I/O: the HTTP calls) off the executor's threads, on its blocking
    /// pool, so that it never stalls the sockets and timers of other tasks.
    fn unblock<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> + Send;
}

/// How long a client that stops waits for its socket's writer to send what was queued before
/// the stop, and the close frame: a peer that stopped reading cannot hold it up longer.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Resolves once the writer of a socket has written everything queued on it and closed it
/// (or gave up on a broken socket).
pub(crate) type Written = oneshot::Receiver<()>;

/// Waits, at most [`FLUSH_TIMEOUT`], until the last socket's writer is done (`written`, from
/// [`socket_loop`]), after its sender was dropped. Why: a program usually returns once its
/// client stopped, and an executor that shuts down then would drop frames still queued (a
/// reply written just before a close or a store failure) and the close frame.
pub(crate) async fn written_out<R: Runtime>(written: Option<Written>) {
    if let Some(written) = written
        && timeout::<R, _>(FLUSH_TIMEOUT, written).await.is_none()
    {
        tracing::debug!("socket writer still busy; not waiting longer");
    }
}

/// Waits for `future` at most `limit`.
pub(crate) async fn timeout<R: Runtime, T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let sleep = pin!(R::sleep(limit));
    let future = pin!(future);
    match futures_util::future::select(future, sleep).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(((), _)) => None,
    }
}

/// Waits for `future` at most `limit`, failing with [`ClientError::TimedOut`] for `what`.
pub(crate) async fn within<R: Runtime, T>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = T>,
) -> Result<T, ClientError> {
    timeout::<R, T>(limit, future).await.ok_or(ClientError::TimedOut(what))
}

/// What a state machine asks the socket loop to do.
#[derive(Debug)]
pub(crate) enum Control {
    Connect,
    WakeAt(Timestamp),
    /// Drop the open socket (dead) without reporting its loss; reported as
    /// [`SocketEvent::Abandoned`] so that its writer is dropped too.
    Abandon,
    Close,
}

/// What the socket loop tells the state machine.
pub(crate) enum SocketEvent {
    /// The socket opened; frames go to this writer (dropping it closes the socket).
    Opened(UnboundedSender<Message>),
    /// The socket could not be opened.
    Failed,
    /// The handshake was answered with an HTTP error status instead of an upgrade.
    Refused(HttpResponse),
    /// A pong arrived: the socket is alive, and the relay read what was written before the
    /// ping it answers.
    Pong,
    /// The peer's ping (or another control frame) arrived: the socket is alive, nothing more.
    Ping,
    /// The socket was dropped as told ([`Control::Abandon`]).
    Abandoned,
    /// Text frames arrived: one, or several that were already buffered together (at most
    /// [`MAX_BURST`]), in the order read.
    Frames(Vec<String>),
    /// The socket closed or failed.
    Lost,
    /// The deadline passed.
    Timeout,
}

/// One socket, one timer, one control queue: waits for whichever comes first and reports it to
/// `on`, until told to close (or every control sender is gone). Both the agent and the person
/// run this loop; each feeds what it hears to its own state machine. Deadlines are read on
/// `clock`. Returns the last socket's [`Written`], if one opened.
///
/// A text frame is reported with the text frames already read behind it (without waiting for
/// more), so that the agent feeds a burst to its core at once and commits it in one
/// transaction (group commit, [`crate::state`]).
pub(crate) async fn socket_loop<R: Runtime>(
    clock: &dyn crate::Clock,
    url: impl Fn() -> String,
    control: &mut UnboundedReceiver<Control>,
    mut on: impl FnMut(SocketEvent),
) -> Option<Written> {
    enum Next {
        Control(Option<Control>),
        Read(Option<Result<Message, WsError>>),
        Frames(Vec<String>),
        Timer,
    }
    let mut reader: Option<SplitStream<R::Socket>> = None;
    // What the socket gave after a burst of text frames (a pong, a close, its end): reported
    // next, so that it keeps its place after them.
    let mut unread: Option<Option<Result<Message, WsError>>> = None;
    let mut timer: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    // Commands that came while the socket was opening, carried out after.
    let mut held: VecDeque<Control> = VecDeque::new();
    let mut written = None;
    loop {
        // Controls first: a close is never starved by a chatty socket.
        let next = std::future::poll_fn(|cx| {
            if let Some(command) = held.pop_front() {
                return Poll::Ready(Next::Control(Some(command)));
            }
            if let Poll::Ready(command) = control.poll_next_unpin(cx) {
                return Poll::Ready(Next::Control(command));
            }
            if let Some(read) = unread.take() {
                return Poll::Ready(Next::Read(read));
            }
            if let Some(stream) = reader.as_mut()
                && let Poll::Ready(read) = stream.poll_next_unpin(cx)
            {
                let Some(Ok(Message::Text(first))) = read else {
                    return Poll::Ready(Next::Read(read));
                };
                let mut frames = vec![first.as_str().to_owned()];
                // Polled with the loop's own context: a `Pending` here leaves the task woken
                // when more arrives, as the poll above would.
                while frames.len() < MAX_BURST {
                    match stream.poll_next_unpin(cx) {
                        Poll::Ready(Some(Ok(Message::Text(text)))) => frames.push(text.as_str().to_owned()),
                        Poll::Ready(other) => {
                            unread = Some(other);
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
                return Poll::Ready(Next::Frames(frames));
            }
            if let Some(sleep) = timer.as_mut()
                && sleep.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Next::Timer);
            }
            Poll::Pending
        })
        .await;
        match next {
            Next::Control(Some(Control::Connect)) => {
                // Opening can take up to CONNECT_TIMEOUT (a relay that accepts the connection
                // and never answers): a close meanwhile ends the loop at once.
                // Built at each connection: the token may have changed since the last one.
                let url = url();
                let mut opening = pin!(open::<R>(&url));
                let opened = loop {
                    match futures_util::future::select(opening.as_mut(), control.next()).await {
                        Either::Left((opened, _)) => break opened,
                        Either::Right((Some(Control::Close) | None, _)) => return written,
                        Either::Right((Some(command), _)) => held.push_back(command),
                    }
                };
                match opened {
                    Ok((stream, writer, done)) => {
                        reader = Some(stream);
                        unread = None;
                        written = Some(done);
                        on(SocketEvent::Opened(writer));
                    }
                    Err(Some(refusal)) => on(SocketEvent::Refused(refusal)),
                    Err(None) => on(SocketEvent::Failed),
                }
            }
            Next::Control(Some(Control::WakeAt(at))) => {
                // A clock of its own (a test's) wakes the deadline itself; real time waits on
                // the executor's timer.
                timer = Some(clock.wake_at(at).unwrap_or_else(|| Box::pin(R::sleep(clock.until(at)))));
            }
            Next::Control(Some(Control::Abandon)) => {
                // Dropping the reader here and the writer in `on` closes the TCP connection
                // without waiting for a peer that no longer answers.
                reader = None;
                unread = None;
                on(SocketEvent::Abandoned);
            }
            Next::Control(Some(Control::Close) | None) => break,
            Next::Frames(frames) => on(SocketEvent::Frames(frames)),
            Next::Read(Some(Ok(Message::Text(text)))) => on(SocketEvent::Frames(vec![text.as_str().to_owned()])),
            Next::Read(Some(Ok(Message::Close(_))) | None) => {
                tracing::info!("connection lost");
                reader = None;
                on(SocketEvent::Lost);
            }
            Next::Read(Some(Ok(Message::Pong(_)))) => on(SocketEvent::Pong),
            Next::Read(Some(Ok(Message::Ping(_) | Message::Frame(_)))) => on(SocketEvent::Ping),
            Next::Read(Some(Ok(_))) => {}
            Next::Read(Some(Err(error))) => {
                tracing::info!(%error, "connection lost");
                reader = None;
                on(SocketEvent::Lost);
            }
            Next::Timer => {
                timer = None;
                on(SocketEvent::Timeout);
            }
        }
    }
    written
}

/// A socket opened: its reading half, its writer, and when the writer is done.
type Opened<S> = (SplitStream<S>, UnboundedSender<Message>, Written);

/// Opens `url` and starts its writer task. Fails (after logging why) with the relay's answer
/// when it refused the handshake with an HTTP status, or `None` when it was not reached.
/// Dropping the returned sender closes the socket, after what was queued on it; the
/// [`Written`] resolves then.
async fn open<R: Runtime>(url: &str) -> Result<Opened<R::Socket>, Option<HttpResponse>> {
    let socket = match timeout::<R, _>(CONNECT_TIMEOUT, R::connect(url)).await {
        Some(Ok(socket)) => socket,
        Some(Err(WsError::Http(response))) => {
            let status = response.status().as_u16();
            tracing::warn!(status, "socket handshake refused");
            return Err(Some(HttpResponse { status, body: response.body().clone().unwrap_or_default() }));
        }
        // The URL carries the token: log the error alone.
        Some(Err(error)) => {
            tracing::warn!(%error, "connect failed");
            return Err(None);
        }
        None => {
            tracing::warn!("connect timed out");
            return Err(None);
        }
    };
    let (mut sink, stream) = socket.split();
    let (writer, mut outgoing) = mpsc::unbounded::<Message>();
    let (done, written) = oneshot::channel::<()>();
    // A task of its own, so that frames are queued without awaiting (the core's lock is held
    // while they are produced) and written in order.
    R::spawn(async move {
        while let Some(message) = outgoing.next().await {
            if let Err(error) = sink.send(message).await {
                tracing::debug!(%error, "write failed");
                break;
            }
        }
        let _ = sink.close().await;
        drop(done);
    });
    tracing::info!("connected");
    Ok((stream, writer, written))
}

/// Queues `text` as a text frame on `writer`; `false` when the socket is gone.
pub(crate) fn write(writer: Option<&UnboundedSender<Message>>, text: String) -> bool {
    writer.is_some_and(|writer| writer.unbounded_send(Message::text(text)).is_ok())
}

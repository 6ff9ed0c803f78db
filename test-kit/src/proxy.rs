//! The network between an agent and the relay, with faults: a TCP proxy on loopback, one per
//! agent, through which the agent reaches the relay (its sockets and its HTTP calls).
//!
//! Why a proxy rather than hooks in the relay: the agent under test must see what a real
//! network does to it (a socket that goes silent without closing, connections refused while
//! the relay is down, frames late or out of order), through its own socket code, on whatever
//! runtime it runs. Only WebSocket connections (answered `101`) are frozen, delayed or
//! reordered; HTTP calls pass through untouched.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// How often a frozen connection looks whether it was thawed or cut.
const FROZEN_POLL: Duration = Duration::from_millis(5);

/// What happens to frames on their way to the agent.
#[derive(Debug, Default)]
struct Shaping {
    /// Each data frame waits this long before it is written (in order: a slow link).
    delay: Duration,
    /// The next this many data frames are held, then written in reverse order.
    reorder: usize,
}

/// One proxied connection.
struct Connection {
    /// A WebSocket (its upgrade was answered `101`), as opposed to an HTTP call.
    socket: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    tasks: [AbortHandle; 2],
}

impl Connection {
    fn cut(&self) {
        // Dropping both halves closes the TCP connection: the agent reads its end.
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Default)]
struct Shared {
    down: AtomicBool,
    sockets: AtomicUsize,
    shaping: Mutex<Shaping>,
    connections: Mutex<Vec<Connection>>,
}

impl Shared {
    fn connections(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn shaping(&self) -> MutexGuard<'_, Shaping> {
        self.shaping.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A TCP proxy on loopback in front of a relay, whose WebSocket connections can be frozen
/// (half-open), cut, delayed or reordered: what [`crate::TestRelay`] puts in front of each
/// agent. Public for harnesses that run their own relay inside a tokio runtime (the behaviour
/// suite); tests of agents use [`crate::TestRelay`]'s faults instead. Dropping it cuts every
/// connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

impl FaultProxy {
    /// Listens on a loopback port and forwards to `upstream`. Call it inside a tokio runtime,
    /// which runs the proxy's tasks.
    ///
    /// # Errors
    /// When no loopback port can be had.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // Down: the connection is closed at once, as a relay that is not listening
                // (the agent's handshake fails and it retries with backoff).
                if accepting.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let socket = Arc::new(AtomicBool::new(false));
                let frozen = Arc::new(AtomicBool::new(false));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = tokio::spawn(upstream_copy(client_read, server_write, frozen.clone()));
                let down = tokio::spawn(downstream(
                    server_read,
                    client_write,
                    Downstream { socket: socket.clone(), frozen: frozen.clone(), shared: accepting.clone() },
                ));
                let mut connections = accepting.connections();
                // Forget connections whose both directions ended.
                connections.retain(|connection| connection.tasks.iter().any(|task| !task.is_finished()));
                connections.push(Connection { socket, frozen, tasks: [up.abort_handle(), down.abort_handle()] });
            }
        });
        Ok(FaultProxy { addr, shared, accept: accept.abort_handle() })
    }

    /// `http://{addr}`: the base URL to give the agent instead of the relay's.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// WebSocket connections made through it so far (HTTP calls not counted).
    pub fn sockets(&self) -> usize {
        self.shared.sockets.load(Ordering::SeqCst)
    }

    /// Freezes (or thaws) every WebSocket open now: frozen, it forwards nothing either way and
    /// never closes. Connections made later forward normally.
    pub fn set_frozen(&self, frozen: bool) {
        for connection in self.shared.connections().iter() {
            if connection.socket.load(Ordering::SeqCst) {
                connection.frozen.store(frozen, Ordering::SeqCst);
            }
        }
    }

    /// Down: every connection cut, new ones closed at once. Up: connections forwarded again.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.cut_all();
        }
    }

    /// Delays every frame to the agent by `delay` (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.shaping().delay = delay;
    }

    /// Holds the next `frames` data frames to the agent, then writes them in reverse order.
    pub fn reorder_next(&self, frames: usize) {
        self.shared.shaping().reorder = frames;
    }

    fn cut_all(&self) {
        for connection in self.shared.connections().drain(..) {
            connection.cut();
        }
    }
}

/// Copies the agent's bytes to the relay while not frozen.
async fn upstream_copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        thawed(&frozen).await;
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        thawed(&frozen).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Waits while `frozen`.
async fn thawed(frozen: &AtomicBool) {
    while frozen.load(Ordering::SeqCst) {
        tokio::time::sleep(FROZEN_POLL).await;
    }
}

struct Downstream {
    socket: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

/// Copies the relay's bytes to the agent: the HTTP answer as it comes, then, on a WebSocket,
/// frame by frame, delayed or reordered as the shaping says.
async fn downstream(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, this: Downstream) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut upgraded: Option<bool> = None;
    let mut held: VecDeque<Vec<u8>> = VecDeque::new();
    'copy: loop {
        thawed(&this.frozen).await;
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        thawed(&this.frozen).await;
        pending.extend_from_slice(&buffer[..read]);
        if upgraded.is_none() {
            let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") else { continue };
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            let socket = head.starts_with(b"HTTP/1.1 101");
            upgraded = Some(socket);
            if socket {
                this.socket.store(true, Ordering::SeqCst);
                this.shared.sockets.fetch_add(1, Ordering::SeqCst);
            }
            if to.write_all(&head).await.is_err() {
                break;
            }
        }
        if upgraded == Some(false) {
            // An HTTP call: bytes as they come.
            if to.write_all(&pending).await.is_err() {
                break;
            }
            pending.clear();
            continue;
        }
        while let Some(length) = frame_length(&pending) {
            let frame: Vec<u8> = pending.drain(..length).collect();
            // Text and binary frames are shaped; control frames (ping, pong, close) are not.
            let data = matches!(frame[0] & 0x0f, 0x1 | 0x2);
            let (delay, reorder) = {
                let shaping = this.shared.shaping();
                (shaping.delay, shaping.reorder)
            };
            if data && reorder > 0 {
                held.push_back(frame);
                if held.len() < reorder {
                    continue;
                }
                this.shared.shaping().reorder = 0;
                while let Some(frame) = held.pop_back() {
                    if to.write_all(&frame).await.is_err() {
                        break 'copy;
                    }
                }
                continue;
            }
            if data && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if to.write_all(&frame).await.is_err() {
                break 'copy;
            }
        }
    }
    let _ = to.shutdown().await;
}

/// The length of the WebSocket frame at the start of `bytes`, once it is all there (RFC 6455,
/// section 5.2).
fn frame_length(bytes: &[u8]) -> Option<usize> {
    let second = *bytes.get(1)?;
    let mask: usize = if second & 0x80 != 0 { 4 } else { 0 };
    let (header, payload): (usize, usize) = match second & 0x7f {
        126 => (4, usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]))),
        127 => {
            let length: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
            (10, usize::try_from(u64::from_be_bytes(length)).unwrap_or(usize::MAX))
        }
        short => (2, usize::from(short)),
    };
    let total = header.saturating_add(mask).saturating_add(payload);
    (bytes.len() >= total).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::frame_length;

    #[test]
    fn frame_lengths_are_read_from_each_header_form() {
        assert_eq!(frame_length(&[0x81]), None);
        assert_eq!(frame_length(&[0x81, 0x03, b'a', b'b']), None);
        assert_eq!(frame_length(&[0x81, 0x03, b'a', b'b', b'c', 0x81]), Some(5));
        let mut medium = vec![0x81, 126, 0x01, 0x00];
        medium.resize(4 + 256, b'x');
        assert_eq!(frame_length(&medium), Some(260));
        let masked = [0x81, 0x81, 1, 2, 3, 4, b'x'];
        assert_eq!(frame_length(&masked), Some(7));
        let huge = [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        assert_eq!(frame_length(&huge), None);
    }
}

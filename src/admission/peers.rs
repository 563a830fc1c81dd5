//! Admission before authentication, per source address: accepting never
//! stops; each address may have a few handshakes pending (each with a short
//! timeout) and a bounded number of connections open, and a connection on
//! which the peer says nothing for a while is closed. An idle or slow peer
//! costs itself, not the others. Running out of file descriptors backs off
//! instead of spinning.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::{Instant, Sleep},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::sync::lock;

/// Handshakes pending from one address unless configured: a client opening
/// a pool of connections at once is served, a peer holding many open
/// without a word is not.
pub const DEFAULT_HANDSHAKES_PER_ADDRESS: u32 = 32;
/// Connections open from one address unless configured (a NAT of many
/// gateways, a busy fan-out tier).
pub const DEFAULT_CONNECTIONS_PER_ADDRESS: u32 = 256;
/// How long a new connection has to complete its TLS handshake (or, in
/// plaintext, to send its first bytes).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a peer may send nothing before its connection is closed
/// (HTTP/2 peers answer the server's keepalive pings well within it).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Handshakes pending from all addresses together: bounds the memory of a
/// distributed flood (beyond it, new connections are closed at once).
const MAX_PENDING: u32 = 4096;
/// Accepted connections waiting for the server to take them.
const QUEUE: usize = 256;
/// Pauses after a failed accept (file descriptors run out, say): doubled per
/// failure in a row, up to the most.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What one address may hold.
#[derive(Debug, Clone, Copy)]
pub struct PeerLimits {
    pub handshakes_per_address: u32,
    pub connections_per_address: u32,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            handshakes_per_address: DEFAULT_HANDSHAKES_PER_ADDRESS,
            connections_per_address: DEFAULT_CONNECTIONS_PER_ADDRESS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// What each address holds now.
#[derive(Default)]
struct Table {
    by_address: HashMap<IpAddr, Held>,
    pending: u32,
}

#[derive(Default, Clone, Copy)]
struct Held {
    pending: u32,
    open: u32,
}

/// The addresses of one listener and what they hold.
struct Peers {
    limits: PeerLimits,
    table: Mutex<Table>,
}

/// What a place is counted as.
#[derive(Clone, Copy)]
enum Kind {
    Pending,
    Open,
}

/// A counted place, given back when dropped.
struct Place {
    peers: Arc<Peers>,
    addr: IpAddr,
    kind: Kind,
}

impl Peers {
    fn take(self: &Arc<Self>, addr: IpAddr, kind: Kind) -> Option<Place> {
        let mut table = lock(&self.table);
        let held = table.by_address.get(&addr).copied().unwrap_or_default();
        let room = match kind {
            Kind::Pending => held.pending < self.limits.handshakes_per_address && table.pending < MAX_PENDING,
            Kind::Open => held.open < self.limits.connections_per_address,
        };
        if !room {
            return None;
        }
        let held = table.by_address.entry(addr).or_default();
        match kind {
            Kind::Pending => held.pending += 1,
            Kind::Open => held.open += 1,
        }
        if matches!(kind, Kind::Pending) {
            table.pending += 1;
        }
        Some(Place {
            peers: self.clone(),
            addr,
            kind,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut table = lock(&self.peers.table);
        if matches!(self.kind, Kind::Pending) {
            table.pending -= 1;
        }
        if let Some(held) = table.by_address.get_mut(&self.addr) {
            match self.kind {
                Kind::Pending => held.pending -= 1,
                Kind::Open => held.open -= 1,
            }
            if held.pending == 0 && held.open == 0 {
                table.by_address.remove(&self.addr);
            }
        }
    }
}

/// Accepted plaintext connections, once they have sent their first bytes.
pub fn incoming(listener: TcpListener, limits: PeerLimits) -> ReceiverStream<io::Result<Tracked<TcpStream>>> {
    accept(listener, limits, |stream: TcpStream| async move {
        stream.readable().await?;
        Ok(stream)
    })
}

/// Accepted connections after `handshake` (TLS), each run on its own task
/// under the handshake timeout; a failed one is logged at debug level.
pub fn accept<IO, H, F>(
    listener: TcpListener,
    limits: PeerLimits,
    handshake: H,
) -> ReceiverStream<io::Result<Tracked<IO>>>
where
    IO: Send + 'static,
    H: Fn(TcpStream) -> F + Send + Sync + 'static,
    F: Future<Output = io::Result<IO>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let peers = Arc::new(Peers {
        limits,
        table: Mutex::default(),
    });
    let handshake = Arc::new(handshake);
    tokio::spawn(async move {
        let mut backoff = ACCEPT_BACKOFF;
        loop {
            // The server stopped reading connections: stop accepting.
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, ?backoff, "accept failed; pausing");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
            };
            backoff = ACCEPT_BACKOFF;
            let Some(pending) = peers.take(peer.ip(), Kind::Pending) else {
                tracing::debug!(%peer, "too many handshakes pending from this address; closed");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (peers, handshake, tx) = (peers.clone(), handshake.clone(), tx.clone());
            tokio::spawn(async move {
                let done = tokio::time::timeout(limits.handshake_timeout, handshake(stream)).await;
                drop(pending);
                let io = match done {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "handshake timed out"),
                };
                let Some(open) = peers.take(peer.ip(), Kind::Open) else {
                    return tracing::debug!(%peer, "too many connections from this address; closed");
                };
                let _ = tx.send(Ok(Tracked::new(io, open, limits.idle_timeout))).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// A connection counted against its address, closed when its peer has
/// sent nothing for the idle timeout. Reads only count; the timer is
/// re-armed when it fires after reads (not on every read, which would take
/// the timer driver's lock per frame).
pub struct Tracked<IO> {
    io: IO,
    _open: Place,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    /// Reads since the connection opened, and as of the timer's arming.
    reads: u64,
    armed_at: u64,
}

impl<IO> Tracked<IO> {
    fn new(io: IO, open: Place, idle_timeout: Duration) -> Self {
        Self {
            io,
            _open: open,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            reads: 0,
            armed_at: 0,
        }
    }
}

impl<IO: Connected> Connected for Tracked<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Poll::Ready(read) = Pin::new(&mut this.io).poll_read(cx, buf) {
            this.reads += 1;
            return Poll::Ready(read);
        }
        // Waiting for the peer: the timer, re-armed while reads came since.
        while this.idle.as_mut().poll(cx).is_ready() {
            if this.reads == this.armed_at {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer sent nothing for the idle timeout",
                )));
            }
            this.armed_at = this.reads;
            let deadline = Instant::now() + this.idle_timeout;
            this.idle.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_at_its_caps_leaves_room_for_others_and_gets_places_back() {
        let peers = Arc::new(Peers {
            limits: PeerLimits {
                handshakes_per_address: 2,
                connections_per_address: 1,
                ..PeerLimits::default()
            },
            table: Mutex::default(),
        });
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = peers.take(a, Kind::Pending).unwrap();
        let _second = peers.take(a, Kind::Pending).unwrap();
        assert!(peers.take(a, Kind::Pending).is_none(), "a third handshake");
        assert!(peers.take(b, Kind::Pending).is_some(), "another address");
        let open = peers.take(a, Kind::Open).unwrap();
        assert!(peers.take(a, Kind::Open).is_none(), "a second connection");
        drop((first, open));
        assert!(peers.take(a, Kind::Pending).is_some() && peers.take(a, Kind::Open).is_some());
        assert_eq!(lock(&peers.table).pending, 1, "dropped places are given back");
        assert_eq!(
            lock(&peers.table).by_address.len(),
            1,
            "an address holding nothing is forgotten"
        );
    }
}

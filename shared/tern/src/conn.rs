//! Limits on client connections, for the runtime's server and the local router alike.
//!
//! hyper enforces none of these by default (its timer is not set), and hyper-util's automatic
//! HTTP/1 / HTTP/2 detection reads the first bytes with no deadline at all. So:
//!
//! - **head deadline**: a connection must deliver a whole request head within the header-read
//!   timeout: from accept for the first request (detection included), from its first byte for
//!   the next ones on a kept-alive connection. A slow or silent client is disconnected.
//! - **idle deadline** (HTTP/1.1): a kept-alive connection with no request in flight is closed
//!   after the idle timeout. The default (120 s) is above the 90 s after which the Go transport
//!   in queue-proxy drops its own idle HTTP/1.1 connections, so queue-proxy closes them first (a
//!   function closing first races with a request queue-proxy is sending on it).
//! - **HTTP/2**: once its first request has arrived, an h2c connection has no deadline of ours.
//!   Its frames (window updates, pings, settings) flow between requests, so "bytes without a
//!   request" means nothing there; queue-proxy's h2c transport keeps connections without an idle
//!   timeout, and a close of ours would not be a GOAWAY, so it would race with the next request.
//!   A peer that went away is found by HTTP/2 pings instead ([`ConnLimits::builder`]).
//! - **header size**: a head larger than the limit gets a 431 problem ([`too_large`]); the
//!   parsers' own buffers are twice the limit, and a head beyond that gets hyper's bare 431.
//!
//! [`Watched`] wraps the socket and enforces the deadlines; [`InFlight`] is how the service tells
//! it a request is running (from its head until its response body is done).

use crate::config::{ConfigError, Env};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The connection limits; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// `TERN_HEADER_READ_TIMEOUT` (default 10s).
    pub header_read_timeout: Duration,
    /// `TERN_IDLE_TIMEOUT` (default 120s).
    pub idle_timeout: Duration,
    /// `TERN_MAX_HEADER_BYTES` (default 65536, what Google's load balancers pass; at least 1024).
    pub max_header_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 64 * 1024,
        }
    }
}

impl ConnLimits {
    /// Reads the three settings, each validated (non-zero; header size at least 1024).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let limits = Self {
            header_read_timeout: env.or("TERN_HEADER_READ_TIMEOUT", d.header_read_timeout)?,
            idle_timeout: env.or("TERN_IDLE_TIMEOUT", d.idle_timeout)?,
            max_header_bytes: env.or("TERN_MAX_HEADER_BYTES", d.max_header_bytes)?,
        };
        for (var, zero) in [
            (
                "TERN_HEADER_READ_TIMEOUT",
                limits.header_read_timeout.is_zero(),
            ),
            ("TERN_IDLE_TIMEOUT", limits.idle_timeout.is_zero()),
        ] {
            if zero {
                return Err(ConfigError::new(var, "must be more than 0s"));
            }
        }
        if limits.max_header_bytes < 1024 {
            return Err(ConfigError::new(
                "TERN_MAX_HEADER_BYTES",
                format!("must be at least 1024, got {}", limits.max_header_bytes),
            ));
        }
        Ok(limits)
    }

    /// A server connection builder (HTTP/1.1 and h2c) with hyper's timer and these limits.
    pub fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut b = auto::Builder::new(TokioExecutor::new());
        let buf = (self.max_header_bytes * 2).max(8192);
        b.http1()
            .timer(TokioTimer::new())
            // Bounds each head after the first (whose deadline is [`Watched`]'s), kept-alive
            // waiting included; the idle deadline is [`Watched`]'s too, so this is the longer.
            .header_read_timeout(self.idle_timeout + self.header_read_timeout)
            .max_buf_size(buf);
        b.http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(60)))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_header_list_size(u32::try_from(buf).unwrap_or(u32::MAX));
        b
    }
}

/// Whether a request head is larger than `limit` bytes (names, values and their separators).
pub fn too_large(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        > limit
}

/// Counts the requests running on one connection, and those ever started.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    running: AtomicUsize,
    started: AtomicU64,
}

impl InFlight {
    /// A request has started; it ends when the guard is dropped (keep it in the response body,
    /// [`Guarded`]).
    pub fn start(&self) -> InFlightGuard {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        self.0.started.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.running.load(Ordering::SeqCst) > 0
    }

    fn started(&self) -> u64 {
        self.0.started.load(Ordering::SeqCst)
    }
}

/// A running request; see [`InFlight::start`].
#[derive(Debug)]
pub struct InFlightGuard(Arc<Counts>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that ends its request's [`InFlightGuard`] when it is done or dropped.
#[derive(Debug)]
pub struct Guarded<B> {
    inner: B,
    guard: Option<InFlightGuard>,
}

impl<B> Guarded<B> {
    /// `inner`, holding `guard` until it ends.
    pub fn new(inner: B, guard: InFlightGuard) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Guarded<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.guard = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// A request is running.
    Busy,
    /// Kept alive, nothing arriving.
    Idle,
    /// An HTTP/2 connection past its first request: no deadline of ours.
    Free,
}

/// The HTTP/2 connection preface's first bytes.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// A client connection with the head and idle deadlines.
#[derive(Debug)]
pub struct Watched<IO> {
    io: IO,
    limits: ConnLimits,
    in_flight: InFlight,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    /// The first bytes the client sent (to tell HTTP/2 from HTTP/1.1), until there are enough.
    opening: Vec<u8>,
    h2: bool,
    /// Requests started when last looked at (one may start and end between two reads).
    seen: u64,
}

impl<IO> Watched<IO> {
    /// Watches `io`, accepted just now; the service marks its requests with the returned
    /// [`InFlight`].
    pub fn new(io: IO, limits: ConnLimits) -> (Self, InFlight) {
        let in_flight = InFlight::default();
        let w = Self {
            io,
            limits,
            in_flight: in_flight.clone(),
            phase: Phase::Head,
            deadline: Box::pin(tokio::time::sleep(limits.header_read_timeout)),
            opening: Vec::new(),
            h2: false,
            seen: 0,
        };
        (w, in_flight)
    }

    fn expire_in(&mut self, d: Duration) {
        self.deadline.as_mut().reset(Instant::now() + d);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.phase == Phase::Free {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let started = this.in_flight.started();
        let new_request = started != this.seen;
        this.seen = started;
        if this.h2 && (new_request || this.in_flight.busy()) {
            this.phase = Phase::Free;
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if this.in_flight.busy() {
            this.phase = Phase::Busy;
        } else {
            if this.phase == Phase::Busy || new_request {
                this.phase = Phase::Idle;
                let idle = this.limits.idle_timeout;
                this.expire_in(idle);
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                let what = match this.phase {
                    Phase::Head => "no complete request head within the header-read timeout",
                    _ => "idle for longer than the idle timeout",
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
            }
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        let fresh = &buf.filled()[before..];
        if this.opening.len() < H2_PREFACE.len() && !fresh.is_empty() {
            let want = H2_PREFACE.len() - this.opening.len();
            this.opening
                .extend_from_slice(&fresh[..fresh.len().min(want)]);
            this.h2 = this.opening.len() == H2_PREFACE.len() && this.opening == H2_PREFACE;
        }
        if this.phase == Phase::Idle && !fresh.is_empty() {
            this.phase = Phase::Head;
            let head = this.limits.header_read_timeout;
            this.expire_in(head);
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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
    fn settings_are_validated() {
        let ok = ConnLimits::from_env(&Env::from_pairs([
            ("TERN_HEADER_READ_TIMEOUT", "5s"),
            ("TERN_MAX_HEADER_BYTES", "8192"),
        ]))
        .unwrap();
        assert_eq!(ok.header_read_timeout, Duration::from_secs(5));
        assert_eq!(ok.idle_timeout, Duration::from_secs(120));
        assert_eq!(ok.max_header_bytes, 8192);
        for (var, value) in [
            ("TERN_HEADER_READ_TIMEOUT", "0s"),
            ("TERN_IDLE_TIMEOUT", "10"),
            ("TERN_MAX_HEADER_BYTES", "100"),
        ] {
            let err = ConnLimits::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn header_size_counts_names_and_values() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "b".repeat(100).parse().unwrap());
        assert!(!too_large(&h, 107));
        assert!(too_large(&h, 106));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_at_the_head_deadline_an_idle_one_later() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limits = ConnLimits {
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            max_header_bytes: 1024,
        };
        // Nothing sent: cut after 2 s.
        let (server, _client) = tokio::io::duplex(64);
        let (mut w, _) = Watched::new(server, limits);
        let t0 = Instant::now();
        let err = w.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t0.elapsed().as_secs(), 2);

        // A request ran and finished: the idle deadline (30 s) applies, then a new head's (2 s)
        // from its first byte.
        let (server, mut client) = tokio::io::duplex(64);
        let (mut w, in_flight) = Watched::new(server, limits);
        let guard = in_flight.start();
        client.write_all(b"G").await.unwrap();
        assert_eq!(w.read(&mut [0u8; 8]).await.unwrap(), 1);
        drop(guard);
        let t0 = Instant::now();
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = w.read(&mut buf).await.unwrap();
            (n, w.read(&mut buf).await.unwrap_err().kind())
        });
        tokio::time::sleep(Duration::from_secs(29)).await;
        client.write_all(b"E").await.unwrap();
        let (n, kind) = reading.await.unwrap();
        assert_eq!((n, kind), (1, io::ErrorKind::TimedOut));
        assert_eq!(t0.elapsed().as_secs(), 31);

        // HTTP/2: the preface and its first request within the head deadline, then no deadline:
        // frames between requests and long quiet are both fine.
        let (server, mut client) = tokio::io::duplex(64);
        let (mut w, in_flight) = Watched::new(server, limits);
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(w.read(&mut buf).await.unwrap(), 24);
        drop(in_flight.start()); // a request that began and ended between two reads
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            w.read(&mut buf).await
        });
        tokio::time::sleep(Duration::from_secs(600)).await;
        client.write_all(b"W").await.unwrap();
        assert_eq!(reading.await.unwrap().unwrap(), 1);
    }
}

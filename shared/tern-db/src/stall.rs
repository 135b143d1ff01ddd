//! Connections to a server that stops answering are closed, not waited on.
//!
//! A PostgreSQL that hangs (frozen, partitioned, its host overloaded) keeps its TCP connections
//! open: the kernel acknowledges every byte, so neither the driver nor TCP keepalives notice, and
//! `statement_timeout` is enforced by the very server that stopped. A request holding such a
//! connection would wait until the request timeout. Every pooled connection is therefore made
//! here, over a socket that watches its own traffic: once bytes were written and nothing at all
//! came back for `DB_STALL_TIMEOUT` (default `DB_STATEMENT_TIMEOUT` + 2 s, so a query the server
//! is still running is never cut), the socket fails, the driver fails every query waiting on it
//! (a transient error: 503 with `Retry-After`), and the pool drops the connection.
//!
//! The watch is below TLS, on the bytes as sent: it knows nothing of the protocol, only that the
//! server owes an answer. An idle connection owes nothing and is never timed out.

use deadpool_postgres::Connect;
use futures::future::BoxFuture;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Error, NoTls};

/// Makes connections over [`Watched`] sockets; `tls` as for `tokio_postgres::Config::connect`.
pub(crate) struct WatchedConnect<T> {
    pub(crate) tls: T,
    /// `None`: never time out (the migrate job, which waits on a lock for as long as it takes).
    pub(crate) stall: Option<Duration>,
    /// `DB_AUTH=iam`: each connection's password is the identity's current access token.
    pub(crate) iam: Option<crate::iam::IamToken>,
}

impl<T> Connect for WatchedConnect<T>
where
    T: MakeTlsConnect<Watched> + Clone + Sync + Send + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Watched>>::Future: Send,
{
    fn connect(
        &self,
        pg: &Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), Error>> {
        let mut pg = pg.clone();
        let mut tls = self.tls.clone();
        let stall = self.stall;
        let iam = self.iam.clone();
        Box::pin(async move {
            if let Some(iam) = iam {
                match iam.current().await {
                    Ok(token) => {
                        pg.password(token);
                    }
                    Err(e) => return failed(&pg, io::Error::other(e)).await,
                }
            }
            let ports = pg.get_ports();
            let mut last = None;
            for (i, host) in pg.get_hosts().iter().enumerate() {
                let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
                let (socket, name) = match host {
                    Host::Tcp(h) => (
                        TcpStream::connect((h.as_str(), port)).await.map(|s| {
                            let _ = s.set_nodelay(true);
                            Socket::Tcp(s)
                        }),
                        h.clone(),
                    ),
                    Host::Unix(dir) => (
                        UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                            .await
                            .map(Socket::Unix),
                        String::new(),
                    ),
                };
                let result = match socket {
                    Ok(socket) => {
                        let stream = Watched::new(socket, stall);
                        let tls = tls
                            .make_tls_connect(&name)
                            .map_err(|e| io::Error::other(e.into()));
                        match tls {
                            Ok(t) => match pg.connect_raw(stream, t).await {
                                Ok((client, conn)) => Ok((client, spawn(conn))),
                                Err(e) => Err(e),
                            },
                            Err(e) => failed(&pg, e).await,
                        }
                    }
                    // The driver's own error type has no public constructor: let it report the
                    // failure as it would have, from a socket that fails at once.
                    Err(e) => failed(&pg, e).await,
                };
                match result {
                    Ok(done) => return Ok(done),
                    Err(e) => last = Some(e),
                }
            }
            match last {
                Some(e) => Err(e),
                None => failed(&pg, io::Error::other("no host to connect to")).await,
            }
        })
    }
}

fn spawn<S>(conn: tokio_postgres::Connection<Watched, S>) -> tokio::task::JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "database connection closed");
        }
    })
}

/// The driver's error for a connection that could not be made.
async fn failed(pg: &Config, e: io::Error) -> Result<(Client, tokio::task::JoinHandle<()>), Error> {
    let stream = Watched::new(Socket::Failed(Some(e)), None);
    let (client, conn) = pg.connect_raw(stream, NoTls).await?;
    // Unreachable in practice: the socket fails before the handshake can succeed.
    Ok((client, spawn(conn)))
}

/// What a [`Watched`] socket wraps.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A connection that could not be made: fails every read and write with this error.
    Failed(Option<io::Error>),
}

/// A socket that fails once the server owes an answer for longer than its limit.
pub(crate) struct Watched {
    socket: Socket,
    limit: Option<Duration>,
    /// Armed while the server owes an answer: bytes were written, none read since.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    fn new(socket: Socket, limit: Option<Duration>) -> Self {
        Self {
            socket,
            limit,
            deadline: None,
        }
    }

    fn stalled(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the database sent nothing for {} ms while a reply was due (DB_STALL_TIMEOUT)",
                self.limit.unwrap_or_default().as_millis()
            ),
        )
    }

    fn failure(e: &mut Option<io::Error>) -> io::Error {
        e.take()
            .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Failed(e) => Poll::Ready(Err(Self::failure(e))),
        };
        match polled {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    // The server is answering: nothing is owed until the next write.
                    self.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(d) = &mut self.deadline
                    && d.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(self.stalled()));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, data),
            Socket::Failed(e) => Poll::Ready(Err(Self::failure(e))),
        };
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
            && self.deadline.is_none()
            && let Some(limit) = self.limit
        {
            let mut deadline = Box::pin(tokio::time::sleep_until(Instant::now() + limit));
            // Register the timer with this task now: the driver may not poll a read again
            // before the server answers, and a server that never answers must still wake it.
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(self.stalled()));
            }
            self.deadline = Some(deadline);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Failed(e) => Poll::Ready(Err(Self::failure(e))),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Failed(_) => Poll::Ready(Ok(())),
        }
    }
}

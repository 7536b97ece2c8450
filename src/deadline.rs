//! A write deadline for accepted connections: a peer that stops reading is cut off.
//!
//! A client that stops reading (a frozen tab, a process stopped with `SIGSTOP`, a deliberate slow
//! reader) leaves the server's writes pending once the kernel's send buffer is full. Everything the
//! server still wants to tell it piles up in front: the socket's packet buffer (bounded at 1024
//! packets) and whatever the writer holds. [`WriteDeadline`] fails a write that has made no progress for
//! the configured time with `TimedOut`, which ends the connection: hyper (HTTP) or the WebSocket
//! (socket.io, which then runs the socket's disconnect) frees what it held. Each such cut is counted in
//! `chatroom_slow_consumer_disconnects_total`.
//!
//! Reads have no deadline: an idle reader (a socket waiting for chat) is normal, and the header timeout
//! and Engine.IO heartbeats deal with silent peers. Once a write has timed out, reads fail too, so the
//! task reading the connection (the WebSocket's) lets it go at once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::metrics::Counter;

/// A stream whose writes (and flushes) fail after `timeout` without progress.
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Running while a write is pending; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    cut: Counter,
    /// The deadline passed: reads fail too, so whoever waits on the connection lets it go.
    tripped: bool,
    /// The task waiting to read, woken when the deadline passes.
    reader: Option<Waker>,
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner`; cuts are counted in `cut`. A zero `timeout` turns the deadline off.
    pub fn new(inner: S, timeout: Duration, cut: Counter) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
            cut,
            tripped: false,
            reader: None,
        }
    }

    /// Turns a pending write into a timeout once the deadline passed; clears it on progress.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if self.tripped {
            return Poll::Ready(Err(timed_out()));
        }
        if poll.is_ready() || self.timeout.is_zero() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.tripped = true;
        self.cut.inc();
        tracing::debug!(?timeout, "cut off a connection that stopped reading");
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        Poll::Ready(Err(timed_out()))
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the peer stopped reading")
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.tripped {
            return Poll::Ready(Err(timed_out()));
        }
        if !self.timeout.is_zero()
            && !self
                .reader
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.reader = Some(cx.waker().clone());
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_peer_that_stops_reading_is_cut_off_and_one_that_reads_is_not() {
        let cut = Counter::default();
        let (near, mut far) = tokio::io::duplex(1024);
        let mut stream = WriteDeadline::new(near, Duration::from_millis(200), cut.clone());
        // The far end reads: 64 KiB pass through a 1 KiB pipe.
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 64 * 1024];
            far.read_exact(&mut got).await.unwrap();
            far
        });
        stream.write_all(&vec![7; 64 * 1024]).await.unwrap();
        let _far = reader.await.unwrap();
        assert_eq!(cut.get(), 0);
        // Now it stops reading: the write fails within the deadline, and is counted once.
        let error = stream.write_all(&vec![7; 64 * 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(stream.write_all(b"more").await.is_err());
        let mut byte = [0; 1];
        assert!(stream.read(&mut byte).await.is_err(), "reads fail too");
        assert_eq!(cut.get(), 1);
    }
}

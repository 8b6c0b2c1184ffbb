//! A connection's socket with two clocks: the idle timeout (no request in flight and
//! no bytes) and the send timeout (a write the client does not take).
//!
//! The clocks live in the I/O rather than in a watchdog task so that they cost
//! nothing until the socket would block, and so that hyper sees an ordinary I/O error
//! and closes the connection its usual way.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::clients::Activity;

pub(crate) struct WatchedIo<T> {
    inner: T,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    send_timeout: Duration,
    idle: Option<Pin<Box<Sleep>>>,
    send: Option<Pin<Box<Sleep>>>,
}

impl<T> WatchedIo<T> {
    pub(crate) fn new(
        inner: T,
        activity: Arc<Activity>,
        idle_timeout: Duration,
        send_timeout: Duration,
    ) -> Self {
        activity.touch();
        Self {
            inner,
            activity,
            idle_timeout,
            send_timeout,
            idle: None,
            send: None,
        }
    }

    /// `Ready(Err)` once the write has waited for the send timeout.
    fn poll_send_clock(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let send_timeout = self.send_timeout;
        let clock = self
            .send
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(send_timeout)));
        ready!(clock.as_mut().poll(cx));
        metrics::counter!("http_connections_closed_total", "reason" => "send_timeout").increment(1);
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client took no data for {send_timeout:?}"),
        ))
    }

    fn wrote(&mut self, result: &io::Result<usize>) {
        self.send = None;
        if matches!(result, Ok(n) if *n > 0) {
            self.activity.touch();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.activity.touch();
                }
                self.idle = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                // While a request is in flight silence is normal (a held blocking
                // reload, a client reading a long response): only the send clock runs.
                if self.activity.in_flight() > 0 {
                    self.idle = None;
                    return Poll::Pending;
                }
                let deadline = self.activity.last() + self.idle_timeout;
                let clock = self
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if clock.deadline() != deadline {
                    clock.as_mut().reset(deadline);
                }
                if clock.as_mut().poll(cx).is_ready() || deadline <= Instant::now() {
                    metrics::counter!("http_connections_closed_total", "reason" => "idle")
                        .increment(1);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection closed",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                self.wrote(&result);
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_send_clock(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                self.wrote(&result);
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_send_clock(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(result) => {
                self.send = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_send_clock(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => self.poll_send_clock(cx).map(Err),
        }
    }
}

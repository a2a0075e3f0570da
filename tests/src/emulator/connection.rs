//! Connections that the emulator can cut: a handler drops its own connection without answering
//! (the `p_drop` fault), and stopping the emulator closes every open one, idle keep-alives included.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Kill switch of one connection, shared by its stream and its requests.
#[derive(Debug, Default)]
struct Control {
    killed: AtomicBool,
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
}

impl Control {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.read_waker.wake();
        self.write_waker.wake();
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// Handed to handlers as `ConnectInfo`: the connection's kill switch.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    control: Arc<Control>,
}

impl ConnHandle {
    /// Closes the connection: nothing more is read or written, so a response being prepared is
    /// never sent and the client sees the connection end without an answer.
    pub(crate) fn kill(&self) {
        self.control.kill();
    }
}

impl Connected<IncomingStream<'_, ControlledListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, ControlledListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The live connections of one listener, so that stopping the emulator can close them all.
#[derive(Debug, Default)]
pub(crate) struct ConnRegistry {
    stopped: AtomicBool,
    live: Mutex<Vec<Weak<Control>>>,
}

impl ConnRegistry {
    fn register(&self, control: &Arc<Control>) {
        if self.stopped.load(Ordering::SeqCst) {
            control.kill();
        }
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        // Prune closed connections now and then, keeping registration O(1) amortised.
        if live.len() >= 64 && live.len().is_power_of_two() {
            live.retain(|weak| weak.strong_count() > 0);
        }
        live.push(Arc::downgrade(control));
    }

    /// Closes every connection, now and later.
    pub(crate) fn kill_all(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let live = std::mem::take(&mut *self.live.lock().unwrap_or_else(PoisonError::into_inner));
        for control in live.iter().filter_map(Weak::upgrade) {
            control.kill();
        }
    }
}

/// A TCP listener whose connections carry a kill switch.
pub(crate) struct ControlledListener {
    inner: TcpListener,
    registry: Arc<ConnRegistry>,
}

impl ControlledListener {
    pub(crate) fn new(inner: TcpListener, registry: Arc<ConnRegistry>) -> Self {
        ControlledListener { inner, registry }
    }
}

impl Listener for ControlledListener {
    type Io = ControlledStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _peer)) => {
                    // A reply written as two segments (head, then body) must not wait for
                    // the client's delayed ACK (~40 ms); nor may the one-byte drip.
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "emulator could not set TCP_NODELAY");
                    }
                    let control = Arc::new(Control::default());
                    self.registry.register(&control);
                    let handle = ConnHandle {
                        control: control.clone(),
                    };
                    return (
                        ControlledStream {
                            inner: stream,
                            control,
                        },
                        handle,
                    );
                }
                // Out of descriptors or a connection reset before accept: wait a little, retry.
                Err(error) => {
                    tracing::debug!(%error, "emulator accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Not an address (axum only needs one for `Serve::local_addr`, which the emulator does not
    /// use): a fresh, unconnected handle once the socket is known to be bound.
    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()?;
        Ok(ConnHandle {
            control: Arc::new(Control::default()),
        })
    }
}

/// A TCP stream that fails every read and write once its connection is killed.
pub(crate) struct ControlledStream {
    inner: TcpStream,
    control: Arc<Control>,
}

impl ControlledStream {
    /// Whether `TCP_NODELAY` is set on the socket.
    #[cfg(test)]
    pub(crate) fn nodelay(&self) -> io::Result<bool> {
        self.inner.nodelay()
    }
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut by the emulator",
    )
}

impl AsyncRead for ControlledStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.control.read_waker.register(cx.waker());
        if this.control.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ControlledStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.control.write_waker.register(cx.waker());
        if this.control.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.control.write_waker.register(cx.waker());
        if this.control.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.control.is_killed() {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

//! The accepted client socket, tuned for many small responses.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection that tells HTTP/2 it has no vectored writes.
///
/// h2 keeps any DATA frame of 256 bytes or more out of its write buffer when
/// the socket can write vectored, and must flush it before it can queue the
/// next frame. A unary response is HEADERS, one DATA frame of a few hundred
/// bytes and trailers, so every response cost two `writev`s (and the client two
/// wake-ups), and responses ready together could not share one. Without
/// vectored writes h2 copies DATA frames under 1 KiB into its buffer, and
/// everything ready goes out in one `write` (measured: ~2 syscalls per `get`
/// became well under one). Frames of 1 KiB or more go out apart; responses
/// up to 12 KiB are cut into smaller frames for that reason (see [`super::frames`]).
pub struct ClientSocket(TcpStream);

impl ClientSocket {
    pub fn new(stream: TcpStream) -> Self {
        Self(stream)
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    // poll_write_vectored and is_write_vectored keep their defaults: one buffer
    // at a time, and "not vectored", which is the point of this type.
}

//! The bench's gRPC transport: the generated tonic client over a bare h2
//! connection, or over tonic's `Channel`.
//!
//! The bench's client shares the two cores with the server and the
//! database, so what it spends per call is counted against the RPC side.
//! tonic's `Channel` hands each request to a buffer task, then to hyper's
//! client, which sends it over a channel to its dispatch task, spawns a task
//! that waits for the response, and pipes the body from another task when
//! the stream has no send capacity yet, which it never has before the
//! connection task opens it. So a unary request left in two writes, HEADERS
//! then DATA (and an empty DATA that ends the stream), and the server read
//! it in two. A unary request is whole when it is sent, so [`H2Channel`]
//! queues its HEADERS and DATA on the h2 stream one after the other, from
//! the caller's task: they usually leave in one write (strace: ~0.85 writes
//! per add-value, against ~1.7 over `Channel`), with no task in between.
//! `--client channel` measures with tonic's `Channel`, for comparison.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USER_AGENT: &str = concat!("contactsd-bench/", env!("CARGO_PKG_VERSION"));

/// Which client the bench's RPC side calls through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// The generated client over a bare h2 connection (see the module).
    H2,
    /// The generated client over tonic's `Channel` (hyper's client).
    Channel,
}

/// One HTTP/2 connection to the server, of either kind; clones share it.
#[derive(Clone)]
pub enum Transport {
    H2(H2Channel),
    Channel(Channel),
}

impl Transport {
    pub async fn connect(addr: &Uri, kind: ClientKind) -> Result<Self, BoxError> {
        Ok(match kind {
            ClientKind::H2 => Self::H2(H2Channel::connect(addr).await?),
            ClientKind::Channel => Self::Channel(Channel::builder(addr.clone()).connect().await?),
        })
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for Transport {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            // Fails fast on a broken connection. No backpressure: calls go
            // out on clones (see `H2Channel::call`), and the bench bounds
            // the calls in flight itself.
            Self::H2(h2) => h2.send.poll_ready(cx).map_err(Into::into),
            Self::Channel(channel) => channel.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match self {
            Self::H2(h2) => {
                let call = h2.call(request);
                Box::pin(async move { Ok(call.await?.map(tonic::body::Body::new)) })
            }
            Self::Channel(channel) => {
                let call = channel.call(request);
                Box::pin(async move { call.await.map_err(Into::into) })
            }
        }
    }
}

/// One bare h2 connection; clones share it. Unlike `Channel` it does not
/// reconnect: a bench whose server went away reports the failed calls and
/// is run again. Requests are collected whole before they are sent, which
/// suits this API (no RPC streams its request).
#[derive(Clone)]
pub struct H2Channel {
    send: h2::client::SendRequest<Bytes>,
    scheme: Scheme,
    authority: Authority,
}

impl H2Channel {
    pub async fn connect(addr: &Uri) -> Result<Self, BoxError> {
        let (Some(scheme), Some(authority)) = (addr.scheme(), addr.authority()) else {
            return Err("the address needs a scheme and a host".into());
        };
        if scheme != &Scheme::HTTP {
            return Err("this client speaks plain-text HTTP/2 only (http://)".into());
        }
        let tcp = TcpStream::connect(host_and_port(authority)).await?;
        tcp.set_nodelay(true)?;
        // hyper's client settings, so the two clients differ only in how
        // they hand a request to the connection.
        let (send, connection) = h2::client::Builder::new()
            .initial_max_send_streams(100)
            .initial_window_size(2 << 20)
            .initial_connection_window_size(5 << 20)
            .max_frame_size(16 << 10)
            .max_header_list_size(16 << 10)
            .max_send_buffer_size(1 << 20)
            .enable_push(false)
            .handshake(tcp)
            .await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("contactsd-bench: an HTTP/2 connection ended: {error}");
            }
        });
        Ok(Self {
            send: send.ready().await?,
            scheme: scheme.clone(),
            authority: authority.clone(),
        })
    }

    /// Sends on a clone of the connection's handle, which h2 lets open a
    /// stream without waiting for the previous one to open; the server's
    /// stream limit still holds on the wire (streams beyond it wait in h2's
    /// queue).
    fn call(
        &self,
        request: http::Request<tonic::body::Body>,
    ) -> impl Future<Output = Result<http::Response<ResponseBody>, BoxError>> + Send + 'static {
        let mut send = self.send.clone();
        let (scheme, authority) = (self.scheme.clone(), self.authority.clone());
        async move {
            let (mut parts, body) = request.into_parts();
            // tonic's generated client sets the path; the origin is the transport's.
            let mut uri = parts.uri.into_parts();
            uri.scheme = Some(scheme);
            uri.authority = Some(authority);
            parts.uri = Uri::from_parts(uri)?;
            // tonic's `Channel` adds one too, so the server decodes as many headers.
            parts
                .headers
                .entry(http::header::USER_AGENT)
                .or_insert(HeaderValue::from_static(USER_AGENT));
            // Unary requests: the one message is ready at once.
            let data = body.collect().await?.to_bytes();
            let (response, mut stream) =
                send.send_request(http::Request::from_parts(parts, ()), data.is_empty())?;
            if !data.is_empty() {
                stream.send_data(data, true)?;
            }
            let response = response.await?;
            Ok(response.map(|recv| ResponseBody {
                recv,
                data_done: false,
            }))
        }
    }
}

/// A response's DATA, then its trailers (where gRPC puts the status).
pub struct ResponseBody {
    recv: h2::RecvStream,
    data_done: bool,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Read: let the server send as much again.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(end_or(error)),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(end_or(error)),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}

/// Where to connect for `authority`. An IPv6 host comes in brackets
/// (`[::1]`), which a socket address has not.
fn host_and_port(authority: &Authority) -> (&str, u16) {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host, authority.port_u16().unwrap_or(80))
}

/// A reset with NO_ERROR ends the body normally: the server sent its whole
/// response and asks the client to stop sending (RFC 9113, section 8.1).
/// hyper's client treats it the same way.
fn end_or(error: h2::Error) -> Option<Result<Frame<Bytes>, h2::Error>> {
    (error.reason() != Some(h2::Reason::NO_ERROR)).then_some(Err(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_connect_without_their_brackets_and_ports_default_to_80() {
        let at = |a: &'static str| Authority::from_static(a);
        assert_eq!(host_and_port(&at("[::1]:50051")), ("::1", 50051));
        assert_eq!(host_and_port(&at("127.0.0.1:50051")), ("127.0.0.1", 50051));
        assert_eq!(host_and_port(&at("localhost")), ("localhost", 80));
    }
}

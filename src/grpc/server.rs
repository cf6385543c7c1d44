//! Serving: HTTP/2 connections straight from hyper to the services.
//!
//! tonic's `transport::Server` puts a stack of general layers in front of every
//! call (connection info stored in the request's extensions, a boxed service,
//! error recovery, an axum router, two re-boxings of the response body): about
//! 8.6k instructions and five allocations per call, 9% of the server's
//! instructions per GetContact (callgrind). This module keeps what of it the
//! service uses: the routing by service name, the client's `grpc-timeout`, a
//! span per call when debugging, and a graceful shutdown that lets every
//! connection finish its calls.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::util::BoxCloneSyncService;
use tower_service::Service;

use super::frames::{self, Pieces};
use super::socket::ClientSocket;
use super::watch;

type BoxFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// A service that is not on the hot path (health, reflection), boxed.
pub type Boxed = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// Every service, found by the name at the start of the request's path.
#[derive(Clone)]
pub struct Router {
    contacts: watch::Routes,
    others: Vec<(&'static str, Boxed)>,
}

impl Router {
    pub fn new(contacts: watch::Routes) -> Self {
        Self {
            contacts,
            others: Vec::new(),
        }
    }

    /// Adds a service other than `contacts.v1.ContactsService`.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.others
            .push((S::NAME, BoxCloneSyncService::new(service)));
        self
    }

    fn route(&self, request: http::Request<Body>) -> BoxFuture {
        let path = request.uri().path();
        // "/package.Service/Method"
        let service = path
            .strip_prefix('/')
            .and_then(|path| path.split_once('/'))
            .map_or("", |(service, _)| service);
        if service == <watch::Routes as NamedService>::NAME {
            return self.contacts.clone().call(request);
        }
        match self.others.iter().find(|(name, _)| *name == service) {
            Some((_, other)) => other.clone().call(request),
            None => Box::pin(std::future::ready(Ok(Status::unimplemented(format!(
                "unknown service {service:?}"
            ))
            .into_http()))),
        }
    }
}

impl hyper::service::Service<http::Request<Incoming>> for Router {
    type Response = http::Response<Pieces<Body>>;
    type Error = Infallible;
    type Future = Call;

    fn call(&self, request: http::Request<Incoming>) -> Call {
        let span = tracing::debug_span!("rpc", path = %request.uri().path());
        // As tonic's server: past the client's deadline the call is dropped
        // (and its work with it) and CANCELLED is sent, if the client is
        // still there to read it.
        let deadline = grpc_timeout(request.headers()).map(|t| Box::pin(tokio::time::sleep(t)));
        let inner = {
            let _entered = span.enter();
            self.route(request.map(Body::new))
        };
        Call {
            inner,
            deadline,
            span,
        }
    }
}

/// One call: the routed service's response, cut into frames (see [`frames`]).
pub struct Call {
    inner: BoxFuture,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    span: tracing::Span,
}

impl Future for Call {
    type Output = Result<http::Response<Pieces<Body>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.span.enter();
        if let Poll::Ready(response) = this.inner.as_mut().poll(cx) {
            return Poll::Ready(response.map(frames::cut));
        }
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            let status = Status::cancelled("Timeout expired");
            return Poll::Ready(Ok(frames::cut(status.into_http())));
        }
        Poll::Pending
    }
}

/// The client's deadline (`grpc-timeout: 1500m`), if it sent a valid one.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let unit = value.chars().last()?;
    let amount = &value[..value.len() - unit.len_utf8()];
    // The spec allows at most 8 digits.
    if amount.is_empty() || amount.len() > 8 {
        return None;
    }
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 3600),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// How long to wait after a failed accept before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves HTTP/2 connections from `incoming` until `shutdown` completes,
/// then stops accepting (the listening socket closes) and lets every
/// connection finish the calls it has, refusing new ones.
pub async fn serve(
    incoming: impl Stream<Item = std::io::Result<ClientSocket>>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(TokioTimer::new());
    // No limit on streams per connection, as under tonic's server: a client
    // holding more watches than a limit on one connection would see the rest
    // wait forever, since watches do not end. (hyper's limit on resets caused
    // by a client's protocol errors stays on, where tonic turned it off.)
    http2.max_concurrent_streams(None);
    let graceful = GracefulShutdown::new();
    {
        let mut incoming = std::pin::pin!(incoming);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let socket = tokio::select! {
                () = &mut shutdown => break,
                accepted = incoming.next() => match accepted {
                    Some(Ok(socket)) => socket,
                    // Most often a full file table: wait for calls to end and
                    // free some rather than spin on the error.
                    Some(Err(error)) => {
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                        }
                    }
                    None => break,
                },
            };
            let connection = http2.serve_connection(TokioIo::new(socket), router.clone());
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "connection ended with an error");
                }
            });
        }
    }
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(value: &str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", value.parse().unwrap());
        grpc_timeout(&headers)
    }

    #[test]
    fn a_grpc_timeout_is_read_in_every_unit() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("9n"), Some(Duration::from_nanos(9)));
    }

    #[test]
    fn a_malformed_grpc_timeout_is_ignored() {
        for value in ["", "m", "5", "5x", "123456789m", "-5m", "1.5S"] {
            assert_eq!(timeout(value), None, "{value:?}");
        }
    }
}

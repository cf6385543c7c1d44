//! WatchContacts on a route of its own, so that a change goes out as bytes
//! encoded once and shared by every watcher sending the same event.
//!
//! With a thousand watchers, building and encoding each event per watcher
//! was a fifth of the server's fan-out work. The generated service encodes
//! whatever message its handler yields, so this route serves the same method,
//! with the same request and wire format, through a codec that writes
//! pre-encoded bytes; every other method goes to the generated service.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message;
use prost::bytes::{BufMut, Bytes};
use tonic::body::Body;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, ServerStreamingService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstDecoder;

use super::ContactsApi;
use super::convert::event_to_pb;
use crate::domain::ReadMask;
use crate::feed::Item;
use crate::pb;
use crate::pb::contacts_service_server::ContactsServiceServer;

const WATCH_PATH: &str = "/contacts.v1.ContactsService/WatchContacts";

/// A `ContactEvent`, encoded.
pub struct EncodedEvent(Bytes);

pub(crate) type EncodedStream =
    Pin<Box<dyn futures::Stream<Item = Result<EncodedEvent, Status>> + Send>>;

/// The event a watcher sends for `item`: the shared encoding when the event
/// carries no contact and the watcher's cursor is the one all live watchers
/// of the site share, its own encoding otherwise.
pub(crate) fn encode_event(item: Item, include: bool, mask: ReadMask) -> EncodedEvent {
    if let Item::Change(event, None) = &item
        && !include
    {
        let bytes = event
            .encoded
            .get_or_init(|| encode(&event_to_pb(&item, false, mask)));
        return EncodedEvent(bytes.clone());
    }
    EncodedEvent(encode(&event_to_pb(&item, include, mask)))
}

fn encode(event: &pb::ContactEvent) -> Bytes {
    event.encode_to_vec().into()
}

/// Writes pre-encoded events; reads requests as protobuf.
#[derive(Default)]
struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = EncodedEvent;
    type Decode = pb::WatchContactsRequest;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<pb::WatchContactsRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(super::codec::buffers())
    }
}

struct BytesEncoder;

impl Encoder for BytesEncoder {
    type Item = EncodedEvent;
    type Error = Status;

    fn encode(&mut self, item: EncodedEvent, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item.0);
        Ok(())
    }
}

struct WatchMethod(Arc<ContactsApi>);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl ServerStreamingService<pb::WatchContactsRequest> for WatchMethod {
    type Response = EncodedEvent;
    type ResponseStream = EncodedStream;
    type Future = BoxFuture<Result<Response<EncodedStream>, Status>>;

    fn call(&mut self, request: Request<pb::WatchContactsRequest>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move { Ok(Response::new(api.watch_encoded(request).await?)) })
    }
}

/// `contacts.v1.ContactsService`: WatchContacts here, the rest generated.
#[derive(Clone)]
pub struct Routes {
    api: Arc<ContactsApi>,
    generated: ContactsServiceServer<ContactsApi>,
}

impl Routes {
    pub fn new(api: ContactsApi) -> Self {
        let api = Arc::new(api);
        Self {
            generated: ContactsServiceServer::from_arc(api.clone()),
            api,
        }
    }
}

impl NamedService for Routes {
    const NAME: &'static str = <ContactsServiceServer<ContactsApi> as NamedService>::NAME;
}

impl tower_service::Service<http::Request<Body>> for Routes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != WATCH_PATH {
            return self.generated.call(request);
        }
        let method = WatchMethod(self.api.clone());
        Box::pin(async move {
            Ok(Grpc::new(WatchCodec)
                .server_streaming(method, request)
                .await)
        })
    }
}

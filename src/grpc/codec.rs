//! The protobuf codec of the generated service and client: tonic's prost
//! codec, with buffers sized for this API's messages.
//!
//! tonic's default starts every call with an 8 KiB buffer for the request and
//! another for the response. This API's requests are a few hundred bytes and
//! a typical contact is under a kibibyte, so each call paid for two large
//! allocations it never filled: with glibc, 8 KiB is past the per-thread
//! cache (at most 1,032 bytes) and, from 1,001 bytes up, a request the cache
//! cannot serve makes the allocator consolidate its free lists first
//! (`malloc_consolidate` was 1.3% of the server's CPU during `get`). The
//! buffers now start at 1,000 bytes, under both limits. A larger message
//! grows its buffer: a request's to its exact size once its length is read,
//! a response's by doubling (a page of 500 contacts takes a few more
//! reallocations than it did from 8 KiB).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Where each call's buffers start (why 1,000: see the module comment).
const BUFFER_SIZE: usize = 1000;
/// tonic's default: how much a stream batches before it hands bytes to HTTP/2.
const YIELD_THRESHOLD: usize = 32 * 1024;

pub(crate) fn buffers() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

/// Named in `build.rs` (`codec_path`), so every method generated from our
/// protos uses it (the server's WatchContacts goes through `watch.rs`).
#[derive(Debug, Clone)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(buffers())
    }
}

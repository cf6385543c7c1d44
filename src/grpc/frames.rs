//! Response bodies cut into DATA frames that h2 copies into its write buffer.
//!
//! h2 copies a DATA frame under 1 KiB into its write buffer, beside the
//! HEADERS and trailers ready with it, but writes a larger one apart (see
//! [`super::socket`]): the buffer up to the frame, then the frame, then,
//! once that is out, the trailers. So a unary response of 1 KiB or more,
//! which a contact with a few more values than the seeded ones already is,
//! cost three writes instead of one, and its client as many wake-ups:
//! GetContact ran ~20% slower with 25 tags per contact than with 10 (where
//! the response stays under 1 KiB), while 25 and 40 tags ran alike. Cut
//! into pieces under 1 KiB (zero-copy slices of the encoded message), the
//! frame is copied into h2's 16 KiB buffer and the whole response goes out
//! in one write. Larger bodies (a listing page) keep h2's own handling,
//! where one write of the frame beats copying it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The largest piece: under h2's 1 KiB limit for copying a DATA frame.
const PIECE: usize = 1_000;
/// The largest frame cut into pieces. Its pieces, the response's HEADERS
/// and trailers, and whatever else is waiting fit in h2's 16 KiB buffer.
const CUT_UP_TO: usize = 12 * 1024;

/// The response, its body cut into pieces under 1 KiB where that saves writes.
pub fn cut<B>(response: http::Response<B>) -> http::Response<Pieces<B>> {
    response.map(|body| Pieces {
        body,
        rest: Bytes::new(),
    })
}

/// A body whose DATA frames over 1,000 bytes, up to 12 KiB, come out in
/// pieces of at most 1,000.
pub struct Pieces<B> {
    body: B,
    /// What is left of the frame being cut.
    rest: Bytes,
}

impl<B> Pieces<B> {
    fn piece(&mut self) -> Frame<Bytes> {
        let n = self.rest.len().min(PIECE);
        Frame::data(self.rest.split_to(n))
    }
}

impl<B> Body for Pieces<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if !self.rest.is_empty() {
            return Poll::Ready(Some(Ok(self.piece())));
        }
        let frame = match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        match frame.into_data() {
            Ok(data) if data.len() > PIECE && data.len() <= CUT_UP_TO => {
                self.rest = data;
                Poll::Ready(Some(Ok(self.piece())))
            }
            Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Err(frame) => Poll::Ready(Some(Ok(frame))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.body.size_hint();
        let rest = self.rest.len() as u64;
        // Upper first: `set_lower` asserts the new lower bound is within it.
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint.set_lower(hint.lower() + rest);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::poll_fn;

    /// A body of the given frames, which knows its exact size, as a whole
    /// message does.
    struct Frames(Vec<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready((!self.0.is_empty()).then(|| Ok(self.0.remove(0))))
        }

        fn size_hint(&self) -> SizeHint {
            let data = self.0.iter().filter_map(Frame::data_ref).map(Bytes::len);
            SizeHint::with_exact(data.sum::<usize>() as u64)
        }
    }

    async fn frame_sizes(sizes: &[usize]) -> Vec<Option<usize>> {
        let mut frames: Vec<_> = sizes
            .iter()
            .map(|&n| Frame::data(Bytes::from(vec![7u8; n])))
            .collect();
        frames.push(Frame::trailers(http::HeaderMap::new()));
        let mut body = cut(http::Response::new(Frames(frames))).into_body();
        let mut out = Vec::new();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            out.push(frame.unwrap().into_data().ok().map(|d| d.len()));
        }
        out
    }

    #[tokio::test]
    async fn frames_of_a_kilobyte_or_more_come_out_in_pieces_under_a_kilobyte_with_every_byte() {
        assert_eq!(
            frame_sizes(&[2_500]).await,
            [Some(1_000), Some(1_000), Some(500), None]
        );
    }

    #[tokio::test]
    async fn the_size_hint_counts_what_is_left_of_a_frame_being_cut() {
        let whole = Frame::data(Bytes::from(vec![7u8; 2_500]));
        let mut body = cut(http::Response::new(Frames(vec![whole]))).into_body();
        assert_eq!(body.size_hint().exact(), Some(2_500));
        poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert_eq!(body.size_hint().exact(), Some(1_500));
    }

    #[tokio::test]
    async fn small_and_large_frames_pass_whole_and_in_order() {
        assert_eq!(
            frame_sizes(&[300, 1_000, 20_000, 1_001]).await,
            [
                Some(300),
                Some(1_000),
                Some(20_000),
                Some(1_000),
                Some(1),
                None
            ]
        );
    }
}

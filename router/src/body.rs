//! Response bodies: the router's own short texts, and workers' bodies
//! streamed through with guards that end when the body ends.

use bonus_ids::RequestId;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Every response body the router sends (and a [`crate::LocalWorker`]'s).
pub type RouterBody = BoxBody<Bytes, hyper::Error>;

/// A body that holds `guard` until it is dropped: counters of in-flight
/// work then stay up while the response streams, not only until its head.
pub(crate) struct Guarded<G, B = RouterBody> {
    inner: B,
    _guard: G,
}

impl<G: Send + Sync + Unpin + 'static> Guarded<G> {
    pub(crate) fn wrap(inner: RouterBody, guard: G) -> RouterBody {
        Guarded::new(inner, guard).boxed()
    }
}

impl<G, B> Guarded<G, B> {
    pub(crate) fn new(inner: B, guard: G) -> Self {
        Guarded {
            inner,
            _guard: guard,
        }
    }
}

impl<G: Unpin, B: Body + Unpin> Body for Guarded<G, B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body of fixed bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> RouterBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A router-made answer: `text/plain`, one line, and the request id.
pub(crate) fn text(
    status: http::StatusCode,
    request_id: RequestId,
    message: &str,
) -> http::Response<RouterBody> {
    let mut response = http::Response::new(full(format!("{message}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    insert_request_id(headers, request_id);
    response
}

/// Sets `x-bonus-request-id`.
pub(crate) fn insert_request_id(headers: &mut http::HeaderMap, request_id: RequestId) {
    // 32 hex digits are always a valid header value.
    if let Ok(value) = http::HeaderValue::from_bytes(&request_id.hex_digits()) {
        headers.insert(crate::forward::REQUEST_ID, value);
    }
}

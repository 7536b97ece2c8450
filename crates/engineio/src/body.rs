//! The response body and future of the service: the inner service's, or one of ours.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

pin_project! {
    /// A response body: the inner service's, or a small one of ours.
    #[project = BodyProj]
    pub enum ResponseBody<B> {
        /// A body the layer wrote.
        Own {
            #[pin]
            body: Full<Bytes>,
        },
        /// The inner service's body.
        Inner {
            #[pin]
            body: B,
        },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn own(data: impl Into<Bytes>) -> Self {
        ResponseBody::Own {
            body: Full::new(data.into()),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            BodyProj::Own { body } => body.poll_frame(cx).map_err(|never| match never {}),
            BodyProj::Inner { body } => body.poll_frame(cx),
        }
    }
    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Own { body } => body.is_end_stream(),
            ResponseBody::Inner { body } => body.is_end_stream(),
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Own { body } => body.size_hint(),
            ResponseBody::Inner { body } => body.size_hint(),
        }
    }
}

type BoxFuture<B> = Pin<Box<dyn Future<Output = Response<ResponseBody<B>>> + Send>>;

pin_project! {
    /// The future of a request: the inner service's, or the layer's own handling.
    #[project = FutProj]
    pub enum ResponseFuture<F, B> {
        /// Not an Engine.IO request.
        Inner {
            #[pin]
            future: F,
        },
        /// An Engine.IO request.
        Own {
            future: BoxFuture<B>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn own(
        future: impl Future<Output = Response<ResponseBody<B>>> + Send + 'static,
    ) -> Self {
        ResponseFuture::Own {
            future: Box::pin(future),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FutProj::Inner { future } => future
                .poll(cx)
                .map(|res| res.map(|r| r.map(|body| ResponseBody::Inner { body }))),
            FutProj::Own { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

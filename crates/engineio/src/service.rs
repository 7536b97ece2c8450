//! The tower and hyper services: Engine.IO requests on the configured path are answered here, others go
//! to the inner service.

use std::{
    convert::Infallible,
    fmt,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use engineioxide_core::TransportType;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use hyper::service::Service as HyperSvc;
use tower_service::Service as TowerSvc;

pub use crate::body::{ResponseBody, ResponseFuture};
use crate::request::Query;
pub use crate::request::RequestError;
use crate::{config::EngineIoConfig, engine::Engine, handler::EngineIoHandler, polling, ws};

/// Answers Engine.IO requests on the configured path and hands every other request to `S`.
pub struct EngineIoService<H: EngineIoHandler, S = NotFoundService> {
    inner: S,
    engine: Arc<Engine<H>>,
}

impl<H: EngineIoHandler> EngineIoService<H, NotFoundService> {
    /// A service with the default settings that answers `404` outside its path.
    pub fn new(handler: Arc<H>) -> Self {
        Self::with_config(handler, EngineIoConfig::default())
    }
    /// A service with `config` that answers `404` outside its path.
    pub fn with_config(handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self::with_config_inner(NotFoundService, handler, config)
    }
}

impl<H: EngineIoHandler, S: Clone> EngineIoService<H, S> {
    /// A service with the default settings in front of `inner`.
    pub fn with_inner(inner: S, handler: Arc<H>) -> Self {
        Self::with_config_inner(inner, handler, EngineIoConfig::default())
    }
    /// A service with `config` in front of `inner`.
    pub fn with_config_inner(inner: S, handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self {
            inner,
            engine: Arc::new(Engine::new(handler, config)),
        }
    }
    /// A make-service for hyper's and tower's servers.
    pub fn into_make_service(self) -> MakeEngineIoService<H, S> {
        MakeEngineIoService::new(self)
    }
}

impl<H: EngineIoHandler, S> EngineIoService<H, S> {
    /// How many sessions are open.
    pub fn sessions(&self) -> usize {
        self.engine.len()
    }
    /// Closes every session with [`crate::DisconnectReason::ClosingServer`].
    pub fn close_all(&self) {
        self.engine.close_all();
    }
}

impl<H: EngineIoHandler, S: Clone> Clone for EngineIoService<H, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<H: EngineIoHandler, S> fmt::Debug for EngineIoService<H, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineIoService").finish_non_exhaustive()
    }
}

fn is_engine_path(path: &str, req_path: &str) -> bool {
    let base = req_path.trim_end_matches('/');
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest == "/")
}

impl<H, ReqBody, ResBody, S> TowerSvc<Request<ReqBody>> for EngineIoService<H, S>
where
    H: EngineIoHandler,
    ReqBody: Body + Send + Unpin + fmt::Debug + 'static,
    ReqBody::Error: fmt::Debug,
    ReqBody::Data: Send,
    ResBody: Body + Send + 'static,
    S: TowerSvc<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if is_engine_path(req.uri().path(), &self.engine.config.req_path) {
            ResponseFuture::own(handle(self.engine.clone(), req))
        } else {
            ResponseFuture::Inner {
                future: self.inner.call(req),
            }
        }
    }
}

impl<H, ReqBody, ResBody, S> HyperSvc<Request<ReqBody>> for EngineIoService<H, S>
where
    H: EngineIoHandler,
    ReqBody: Body + Send + Unpin + fmt::Debug + 'static,
    ReqBody::Error: fmt::Debug,
    ReqBody::Data: Send,
    ResBody: Body + Send + 'static,
    S: HyperSvc<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn call(&self, req: Request<ReqBody>) -> Self::Future {
        if is_engine_path(req.uri().path(), &self.engine.config.req_path) {
            ResponseFuture::own(handle(self.engine.clone(), req))
        } else {
            ResponseFuture::Inner {
                future: self.inner.call(req),
            }
        }
    }
}

/// A WebSocket connection whose HTTP handshake was already done elsewhere.
impl<St, H, S> TowerSvc<(St, Request<()>)> for EngineIoService<H, S>
where
    H: EngineIoHandler,
    St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Response = ();
    type Error = RequestError;
    type Future = Ready<Result<(), RequestError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (conn, req): (St, Request<()>)) -> Self::Future {
        ready(spawn_raw_ws(self.engine.clone(), conn, req))
    }
}

/// A WebSocket connection whose HTTP handshake was already done elsewhere.
impl<St, H, S> HyperSvc<(St, Request<()>)> for EngineIoService<H, S>
where
    H: EngineIoHandler,
    St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Response = ();
    type Error = RequestError;
    type Future = Ready<Result<(), RequestError>>;

    fn call(&self, (conn, req): (St, Request<()>)) -> Self::Future {
        ready(spawn_raw_ws(self.engine.clone(), conn, req))
    }
}

fn spawn_raw_ws<H, St>(
    engine: Arc<Engine<H>>,
    conn: St,
    req: Request<()>,
) -> Result<(), RequestError>
where
    H: EngineIoHandler,
    St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let q = Query::parse(&req, &engine.config)?;
    let (parts, ()) = req.into_parts();
    tokio::spawn(ws::run(engine, conn, q.protocol, q.sid, parts));
    Ok(())
}

#[cfg(feature = "__test_harness")]
#[doc(hidden)]
impl<H: EngineIoHandler, S> EngineIoService<H, S> {
    /// Runs a WebSocket session over `conn` (socketioxide's tests).
    pub fn ws_init<C>(
        &self,
        conn: C,
        protocol: engineioxide_core::ProtocolVersion,
        sid: Option<engineioxide_core::Sid>,
        req_data: http::request::Parts,
    ) -> impl std::future::Future<Output = Result<(), RequestError>> + 'static
    where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let engine = self.engine.clone();
        async move {
            ws::run(engine, conn, protocol, sid, req_data).await;
            Ok(())
        }
    }
}

/// Makes an [`EngineIoService`] per connection (a clone of one).
#[derive(Debug)]
pub struct MakeEngineIoService<H: EngineIoHandler, S> {
    svc: EngineIoService<H, S>,
}

impl<H: EngineIoHandler, S> MakeEngineIoService<H, S> {
    /// Wraps `svc`.
    pub fn new(svc: EngineIoService<H, S>) -> Self {
        Self { svc }
    }
}

impl<H: EngineIoHandler, S: Clone, T> TowerSvc<T> for MakeEngineIoService<H, S> {
    type Response = EngineIoService<H, S>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: T) -> Self::Future {
        ready(Ok(self.svc.clone()))
    }
}

/// The inner service of a standalone [`EngineIoService`]: `404` for everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotFoundService;

fn not_found() -> Response<http_body_util::Empty<Bytes>> {
    let mut res = Response::new(http_body_util::Empty::new());
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}

impl<ReqBody> TowerSvc<Request<ReqBody>> for NotFoundService {
    type Response = Response<http_body_util::Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _req: Request<ReqBody>) -> Self::Future {
        ready(Ok(not_found()))
    }
}

impl<ReqBody> HyperSvc<Request<ReqBody>> for NotFoundService {
    type Response = Response<http_body_util::Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn call(&self, _req: Request<ReqBody>) -> Self::Future {
        ready(Ok(not_found()))
    }
}

async fn handle<H, ReqBody, B>(
    engine: Arc<Engine<H>>,
    req: Request<ReqBody>,
) -> Response<ResponseBody<B>>
where
    H: EngineIoHandler,
    ReqBody: Body + Send + Unpin + 'static,
    ReqBody::Error: fmt::Debug,
    ReqBody::Data: Send,
{
    let q = match Query::parse(&req, &engine.config) {
        Ok(q) => q,
        Err(e) => return e.response(),
    };
    let res = match (q.transport, req.method()) {
        (TransportType::Polling, &Method::GET) => match q.sid {
            None => Ok(polling::open(&engine, &q, req)),
            Some(sid) => polling::poll(&engine, &q, sid).await,
        },
        (TransportType::Polling, &Method::POST) => match q.sid {
            Some(sid) => polling::post(&engine, &q, sid, req).await,
            None => Err(RequestError::BadHandshakeMethod),
        },
        (TransportType::Websocket, &Method::GET) => ws::accept(&engine, &q, req),
        (TransportType::Polling, _) if q.sid.is_none() => Err(RequestError::BadHandshakeMethod),
        _ => Err(RequestError::BadRequest),
    };
    res.unwrap_or_else(RequestError::response)
}

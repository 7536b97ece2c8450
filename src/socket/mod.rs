//! The Socket.IO adapter: a thin layer between socketioxide and the realtime core.
//!
//! * [`connect`] mounts the default namespace and identifies connecting sockets (dialect, token).
//! * [`inbox`] handles each socket's events in order, through the event table of
//!   `routes/websocket.rs` ([`router::EventRouter`]: `on`, `event_exists`, `call`), with typed
//!   payloads ([`payloads`]).
//! * [`engine`] configures the Socket.IO engine (packet, frame and buffer limits).
//! * [`handlers`] are the events' handlers; [`Ctx`] is a handler's view of one socket.
//! * [`auth::SocketAuthenticatable`] binds sockets to users (laravel-swoole's `Authenticatable`).
//! * [`compat`] is the tower layer in front of socketioxide that makes old clients work (Engine.IO 3
//!   polling framing, the `io` session cookie, origin checks).

pub mod auth;
pub mod compat;
pub mod connect;
pub mod ctx;
pub mod engine;
pub mod handlers;
pub mod inbox;
pub mod payloads;
pub mod router;

pub use connect::mount;
pub use ctx::Ctx;
pub use router::EventRouter;

//! chatroom: a real-time chat server speaking Socket.IO, a drop-in backend for the webchat Vue clients.
//!
//! # Layout
//! * [`routes`]   – route tables only (`routes/api.rs`, `routes/web.rs`, `routes/websocket.rs`), Laravel-style.
//! * [`api`]      – axum handlers: extract, call a service, shape the reply for the client's envelope.
//! * [`services`] – business logic over sea-orm; no framework types.
//! * [`socket`]   – Socket.IO for both clients: event router, socket auth, the Pusher, old-client compat.
//! * [`auth`]     – the `Authenticatable` contract, signed tokens, password hashing.
//! * [`app`]      – builds the router and middleware stack, serves it, shuts down gracefully.
//! * [`config`]   – flags and environment variables; [`state`] – what handlers share.
//! * [`error`]    – the one error type; [`db`] – connection and migrations.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
#[path = "../routes/mod.rs"]
pub mod routes;
pub mod services;
pub mod socket;
pub mod state;
pub mod telemetry;
pub mod text;

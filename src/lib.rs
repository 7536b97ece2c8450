//! chatroom: a real-time chat server speaking Socket.IO, a drop-in backend for the webchat Vue clients.
//!
//! # Layout
//! * [`routes`]   – route tables only (`routes/api.rs`, `routes/web.rs`, `routes/websocket.rs`), Laravel-style.
//! * [`api`]      – axum handlers: extract, call a service, shape the reply for the client's envelope.
//! * [`socket`]   – the Socket.IO adapter: the engine's configuration, connect, the event table run
//!   for each socket, event handlers, socket auth, old-client compat.
//! * [`realtime`] – the transport-neutral core both adapters call, through [`realtime::Realtime`]:
//!   where a token becomes a user ([`realtime::identity`]), where a user enters a room
//!   ([`realtime::membership`]), where a socket's event is admitted and handled in order
//!   ([`realtime::inbox`]), where a message is taken down ([`realtime::moderation`]); posting
//!   messages (writer and announcer), presence, unread counts, the Pusher.
//! * [`services`] – business logic over sea-orm; no framework types.
//! * [`wire`]     – the JSON shapes clients read, over both transports.
//! * [`auth`]     – the `Authenticatable` contract, tokens, passwords, where requests carry credentials,
//!   same-site checks.
//! * [`app`]      – builds the router and middleware stack, serves it, shuts down gracefully.
//! * [`config`]   – flags and environment variables, by area (HTTP, store, auth, realtime, uploads,
//!   cluster); [`state`] – what handlers share; [`admin`] – the `chatroom admin` command.
//! * [`error`]    – the one error type; [`db`] – connection and migrations.
//! * [`listener`] – the accept loop: connection caps, header timeout, client addresses;
//!   [`deadline`] – the write deadline that cuts off clients that stop reading;
//!   [`proxy`] – trusted proxies; [`metrics`] – counters and gauges for `/metrics`; [`sys`] – the
//!   process's file-descriptor limit and count.

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod deadline;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod realtime;
#[path = "../routes/mod.rs"]
pub mod routes;
pub mod services;
pub mod socket;
pub mod state;
pub mod sys;
pub mod telemetry;
pub mod text;
pub mod wire;

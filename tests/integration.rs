//! chatroom's one integration-test binary: every test starts the real server on 127.0.0.1:0 with a
//! database of its own and talks to it over real HTTP (`api`) and real sockets (`websocket`); `cluster`
//! starts two server processes sharing PostgreSQL and Redis.
//!
//! Set `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test` to run the same suite on PostgreSQL
//! (each test then gets a fresh database); otherwise each test gets a fresh SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cluster;
mod common;
mod durability;
mod hardening;
mod websocket;

//! HTTP handlers. Each is glue: extract, call a service, shape the reply for its client.
//!
//! Two clients share this API. The v3 client (hua1995116/webchat) uses `/api/user/*`, `/api/message/*`,
//! `/api/friend/*` and the `{errno, data}` envelope; the Laravel-era client (the LaravelS tutorial) uses
//! `/api/register`, `/api/login`, `/api/history/message`, `/api/robot` and the `{errno, user, message}`
//! envelope. Both post uploads to `/api/file/*`. [`envelope`] turns errors into each client's shape.

pub mod admin;
pub mod envelope;
pub mod extract;
pub mod files;
pub mod friends;
pub mod health;
pub mod legacy;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod robot;
pub mod session;
pub mod users;
pub mod web;

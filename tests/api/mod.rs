//! The HTTP API of both web clients, through real HTTP.

mod files;
mod friends;
mod legacy;
mod messages;
mod operators;
mod robot;
mod server;
mod users;

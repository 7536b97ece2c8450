//! Socket.IO end to end: the v3 dialect with an Engine.IO 4 client (rust_socketio) and raw clients,
//! the Laravel-era dialect with raw Engine.IO 3 clients, and the realtime core's guarantees.

mod core;
mod laravel;
mod v3;

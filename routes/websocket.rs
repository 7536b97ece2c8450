//! Socket events, Laravel-style (`routes/websocket.php`): this file holds the table only; the
//! handlers live in `src/socket/handlers.rs`, their payloads in `src/socket/payloads.rs`.

use crate::socket::handlers;
use crate::socket::router::EventRouter;

/// Every event chatroom understands, for both clients.
pub fn routes() -> EventRouter {
    EventRouter::new()
        .on("connect", handlers::connect)
        .on("disconnect", handlers::disconnect)
        .on("login", handlers::login)
        .on("room", handlers::room)
        .on("roomout", handlers::roomout)
        .on("message", handlers::message)
        .on("recall", handlers::recall)
        .on("sync", handlers::sync)
}

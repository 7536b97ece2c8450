//! Route tables, Laravel-style: `api` is `routes/api.php`, `web` is `routes/web.php`. These files hold
//! tables only; the handlers live in `src/api`.

pub mod api;
pub mod web;
pub mod websocket;

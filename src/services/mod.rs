//! Business logic over the database. Nothing here knows about HTTP or sockets: functions take a
//! connection and plain values, and return [`crate::error::AppError`].

pub mod friends;
pub mod history;
pub mod limiter;
pub mod messages;
pub mod moderation;
pub mod robot;
pub mod rooms;
pub mod sessions;
pub mod unread;
pub mod uploads;
pub mod users;
pub mod writer;

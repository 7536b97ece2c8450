//! Binding sockets to users: the socket side of [`crate::auth::Authenticatable`], after
//! laravel-swoole's `Authenticatable` trait. What binding means (the user's list of sockets, who is
//! online, leaving every room on unbinding) is the realtime core's rule
//! ([`crate::realtime::membership`]); a handler only says when.

use super::Ctx;
use crate::auth::UserId;
use crate::realtime::Binding;

/// What a socket can do about who it acts for.
pub trait SocketAuthenticatable {
    /// Binds the socket as `binding` says, unbinding it from anyone else first.
    fn login_using(&self, binding: Binding);
    /// Unbinds the socket: it leaves every room it is in and is anonymous afterwards.
    fn logout(&self);
    /// The bound user's id.
    fn user_id(&self) -> Option<UserId>;
}

impl SocketAuthenticatable for Ctx {
    fn login_using(&self, binding: Binding) {
        self.realtime().bind(&self.socket, &self.conn, binding);
    }

    fn logout(&self) {
        self.realtime().unbind(&self.socket, &self.conn);
    }

    fn user_id(&self) -> Option<UserId> {
        self.conn.user_id()
    }
}

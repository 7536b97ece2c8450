//! Binding sockets to users: the socket side of [`crate::auth::Authenticatable`], after
//! laravel-swoole's `Authenticatable` trait.
//!
//! A bound socket is in the socket.io room of its user (`uid:<id>`, one per dialect), so all of a
//! user's sockets, on every device, are one target ([`SocketAuthenticatable::to_user_id`]). Binding
//! also registers the user as online; unbinding leaves every room first.

use entity::user;

use super::Ctx;
use crate::auth::{Authenticatable, UserId};
use crate::error::AppError;
use crate::realtime::pusher::user_channel;
use crate::realtime::{Binding, Pusher, Target};
use crate::services::users::Author;

/// What a socket can do about who it acts for.
pub trait SocketAuthenticatable {
    /// Binds the socket as `binding` says, unbinding it from anyone else first.
    fn login_using(&self, binding: Binding);
    /// Binds the socket to the user with this id. Returns false if there is no such user.
    fn login_using_id(&self, id: UserId) -> impl Future<Output = Result<bool, AppError>> + Send;
    /// Unbinds the socket: it leaves every room it is in and is anonymous afterwards.
    fn logout(&self);
    /// The bound user's id.
    fn user_id(&self) -> Option<UserId>;
    /// Whether `id` has a bound socket (on this node).
    fn is_user_id_online(&self, id: UserId) -> bool;
    /// Every socket of these users.
    fn to_user_id(&self, ids: &[UserId]) -> Target;
}

impl SocketAuthenticatable for Ctx {
    fn login_using(&self, binding: Binding) {
        match self.conn.user_id() {
            Some(id) if id == binding.author.id => {
                // Same user: keep the rooms, refresh the profile and the token.
                self.realtime().presence().refresh(&binding.author);
                self.conn.set_binding(Some(binding));
                return;
            }
            Some(_) => self.logout(),
            None => {}
        }
        let id = binding.author.id;
        self.socket.join(user_channel(id, self.conn.dialect));
        self.realtime().presence().connect(&binding.author);
        tracing::debug!(sid = %self.socket.id, user = id, "socket bound");
        self.conn.set_binding(Some(binding));
    }

    async fn login_using_id(&self, id: UserId) -> Result<bool, AppError> {
        match user::Model::find_by_auth_id(&self.state.db, id).await? {
            Some(user) => {
                self.login_using(Binding {
                    author: Author::from(&user),
                    token: None,
                    token_hash: None,
                });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn logout(&self) {
        for room in self.conn.rooms() {
            self.leave(&room);
        }
        if let Some(binding) = self.conn.set_binding(None) {
            let id = binding.author.id;
            self.socket.leave(user_channel(id, self.conn.dialect));
            if self.realtime().presence().disconnect(id) {
                self.realtime().unread().forget(id);
            }
            tracing::debug!(sid = %self.socket.id, user = id, "socket unbound");
        }
    }

    fn user_id(&self) -> Option<UserId> {
        self.conn.user_id()
    }

    fn is_user_id_online(&self, id: UserId) -> bool {
        self.realtime().is_user_id_online(id)
    }

    fn to_user_id(&self, ids: &[UserId]) -> Target {
        Pusher::to_user_id(ids)
    }
}

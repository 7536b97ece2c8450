//! Binding sockets to users: the socket side of [`crate::auth::Authenticatable`], after
//! laravel-swoole's `Authenticatable` trait.
//!
//! A bound socket is in the socket.io room of its user (`uid:<id>`), so all of a user's sockets, on
//! every device, are one target ([`SocketAuthenticatable::to_user_id`]). Binding also registers the
//! user as online in presence; unbinding leaves every room first.

use entity::user;

use super::Ctx;
use super::pusher::{Target, user_channel};
use crate::auth::{Authenticatable, UserId};
use crate::error::AppError;
use crate::services::presence::Member;

/// What a socket can do about who it acts for.
pub trait SocketAuthenticatable {
    /// Binds the socket to `user`, unbinding it from anyone else first.
    fn login_using(&self, user: user::Model) -> impl Future<Output = ()> + Send;
    /// Binds the socket to the user with this id. Returns false if there is no such user.
    fn login_using_id(&self, id: UserId) -> impl Future<Output = Result<bool, AppError>> + Send;
    /// Unbinds the socket: it leaves every room it is in and is anonymous afterwards.
    fn logout(&self) -> impl Future<Output = ()> + Send;
    /// The bound user's id.
    fn user_id(&self) -> Option<UserId>;
    /// Whether `id` has a bound socket.
    fn is_user_id_online(&self, id: UserId) -> bool;
    /// Every socket of these users.
    fn to_user_id(&self, ids: &[UserId]) -> Target;
}

impl From<&user::Model> for Member {
    fn from(u: &user::Model) -> Self {
        Self {
            id: u.auth_id(),
            name: u.auth_name().to_owned(),
            src: u.avatar.clone(),
        }
    }
}

impl SocketAuthenticatable for Ctx {
    async fn login_using(&self, user: user::Model) {
        match self.conn.user_id() {
            Some(id) if id == user.auth_id() => {
                // Same user: keep the binding, refresh the profile.
                self.conn.set_user(Some(user));
                return;
            }
            Some(_) => self.logout().await,
            None => {}
        }
        self.socket.join(user_channel(user.auth_id()));
        self.state.realtime.presence().connect(Member::from(&user));
        tracing::debug!(sid = %self.socket.id, user = user.auth_id(), "socket bound");
        self.conn.set_user(Some(user));
    }

    async fn login_using_id(&self, id: UserId) -> Result<bool, AppError> {
        match user::Model::find_by_auth_id(&self.state.db, id).await? {
            Some(user) => {
                self.login_using(user).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn logout(&self) {
        for room in self.conn.rooms() {
            self.leave(&room).await;
        }
        if let Some(user) = self.conn.set_user(None) {
            self.socket.leave(user_channel(user.auth_id()));
            self.state.realtime.presence().disconnect(user.auth_id());
            tracing::debug!(sid = %self.socket.id, user = user.auth_id(), "socket unbound");
        }
    }

    fn user_id(&self) -> Option<UserId> {
        self.conn.user_id()
    }

    fn is_user_id_online(&self, id: UserId) -> bool {
        self.state.realtime.presence().is_online(id)
    }

    fn to_user_id(&self, ids: &[UserId]) -> Target {
        Target::Users(ids.to_vec())
    }
}

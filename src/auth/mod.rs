//! Authentication: who a request or a socket acts for.
//!
//! * [`Authenticatable`] is the contract an account model fulfils (Laravel's contract of the same name);
//!   the socket side (binding a socket to a user) builds on it.
//! * [`token`] issues and verifies the signed, expiring tokens clients carry.
//! * [`password`] hashes and checks passwords with bcrypt, off the async runtime.
//! * [`request`] finds the token and the browser's socket session in a request, for both transports.
//! * [`origin`] decides which browser pages may act on this server.

pub mod origin;
pub mod password;
pub mod request;
pub mod token;

use entity::user;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};

/// A user id as clients see it: decimal digits, never a `-` (private room ids join two of them with `-`).
pub type UserId = i64;

/// Anything that can log in.
pub trait Authenticatable: Clone + Send + Sync + 'static {
    /// The id tokens are issued for.
    fn auth_id(&self) -> UserId;
    /// The name shown to other users.
    fn auth_name(&self) -> &str;
    /// Loads the account a token names, if it still exists.
    fn find_by_auth_id<C: ConnectionTrait>(
        db: &C,
        id: UserId,
    ) -> impl Future<Output = Result<Option<Self>, DbErr>> + Send;
}

impl Authenticatable for user::Model {
    fn auth_id(&self) -> UserId {
        self.id
    }

    fn auth_name(&self) -> &str {
        &self.name
    }

    fn find_by_auth_id<C: ConnectionTrait>(
        db: &C,
        id: UserId,
    ) -> impl Future<Output = Result<Option<Self>, DbErr>> + Send {
        user::Entity::find_by_id(id).one(db)
    }
}

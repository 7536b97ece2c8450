//! Friendships: one click makes two users friends of each other.

use chrono::Utc;
use entity::{friend, user};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionSession, TransactionTrait,
};

use crate::auth::UserId;
use crate::error::{AppError, ResultExt};

/// A friendship as seen from one side: the row and the friend's account.
pub type FriendEntry = (friend::Model, user::Model);

/// Makes `user` and `friend` friends of each other (both directions, atomically).
///
/// # Errors
/// [`AppError::Invalid`] for oneself, [`AppError::NotFound`] for an unknown friend,
/// [`AppError::Conflict`] if they are already friends.
pub async fn add<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    user: UserId,
    friend: UserId,
) -> Result<(), AppError> {
    if user == friend {
        return Err(AppError::invalid("咱不开玩笑，放过自己吧🤣"));
    }
    if user::Entity::find_by_id(friend).one(db).await?.is_none() {
        return Err(AppError::NotFound("用户不存在".into()));
    }
    let already = || AppError::Conflict("您已经添加过该好友，请勿重复添加".into());
    if are_friends(db, user, friend).await? {
        return Err(already());
    }
    let now = Utc::now();
    let txn = db.begin().await?;
    for (a, b) in [(user, friend), (friend, user)] {
        friend::ActiveModel {
            user_id: Set(a),
            friend_id: Set(b),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .on_unique(already)?;
    }
    txn.commit().await?;
    Ok(())
}

/// Whether `user` counts `other` as a friend.
///
/// # Errors
/// Database failures.
pub async fn are_friends<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    other: UserId,
) -> Result<bool, AppError> {
    Ok(friend::Entity::find()
        .filter(friend::Column::UserId.eq(user))
        .filter(friend::Column::FriendId.eq(other))
        .one(db)
        .await?
        .is_some())
}

/// `user`'s friends, in the order they were added.
///
/// # Errors
/// Database failures.
pub async fn list<C: ConnectionTrait>(db: &C, user: UserId) -> Result<Vec<FriendEntry>, AppError> {
    let rows = friend::Entity::find()
        .filter(friend::Column::UserId.eq(user))
        .order_by_asc(friend::Column::Id)
        .find_also_related(user::Entity)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(row, friend)| Some((row, friend?)))
        .collect())
}

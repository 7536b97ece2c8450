//! Unread counts, derived from what each user has read: one row per user and room holding the id of
//! the last message they saw. The count is the number of messages after it (for a room the user never
//! opened: messages posted since they signed up). Nothing is ever incremented in the database, so
//! concurrent senders cannot make the numbers drift.

use std::collections::HashMap;

use chrono::Utc;
use entity::{message, read_state, user};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect, Set, TransactionTrait,
};

use crate::auth::UserId;
use crate::error::AppError;

/// Unread messages of `user` in each of `rooms`.
///
/// # Errors
/// Database failures.
pub async fn counts<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    rooms: &[String],
) -> Result<HashMap<String, u64>, AppError> {
    let marks: HashMap<String, i64> = read_state::Entity::find()
        .filter(read_state::Column::UserId.eq(user))
        .filter(read_state::Column::RoomId.is_in(rooms.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.room_id, r.last_read_message_id))
        .collect();
    let mut signed_up = None;
    let mut counts = HashMap::with_capacity(rooms.len());
    for room in rooms {
        let mut query = message::Entity::find()
            .filter(message::Column::RoomId.eq(room.as_str()))
            .filter(message::Column::SenderId.ne(user))
            .filter(message::Column::Removed.is_null());
        query = match marks.get(room) {
            Some(last) => query.filter(message::Column::Id.gt(*last)),
            None => {
                if signed_up.is_none() {
                    let account = user::Entity::find_by_id(user).one(db).await?;
                    signed_up = Some(account.map_or_else(Utc::now, |u| u.created_at));
                }
                query.filter(message::Column::CreatedAt.gt(signed_up.unwrap_or_else(Utc::now)))
            }
        };
        counts.insert(room.clone(), query.count(db).await?);
    }
    Ok(counts)
}

/// The id of the newest message in `room` (0 when it is empty).
///
/// # Errors
/// Database failures.
pub async fn latest_id<C: ConnectionTrait>(db: &C, room: &str) -> Result<i64, AppError> {
    let id: Option<Option<i64>> = message::Entity::find()
        .select_only()
        .column_as(message::Column::Id.max(), "latest")
        .filter(message::Column::RoomId.eq(room))
        .into_tuple()
        .one(db)
        .await?;
    Ok(id.flatten().unwrap_or(0))
}

/// Records that `user` has read `room` up to message `last`. Never moves the mark backwards.
///
/// # Errors
/// Database failures.
pub async fn mark_read<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    room: &str,
    last: i64,
) -> Result<(), AppError> {
    let row = read_state::ActiveModel {
        user_id: Set(user),
        room_id: Set(room.to_owned()),
        last_read_message_id: Set(last),
        updated_at: Set(Utc::now()),
        ..Default::default()
    };
    let on_conflict = OnConflict::columns([read_state::Column::UserId, read_state::Column::RoomId])
        .update_columns([
            read_state::Column::LastReadMessageId,
            read_state::Column::UpdatedAt,
        ])
        .action_and_where(
            Expr::col((read_state::Entity, read_state::Column::LastReadMessageId)).lt(Expr::col((
                Alias::new("excluded"),
                read_state::Column::LastReadMessageId,
            ))),
        )
        .to_owned();
    let result = read_state::Entity::insert(row)
        .on_conflict(on_conflict)
        .exec_without_returning(db)
        .await;
    match result {
        Ok(_) | Err(sea_orm::DbErr::RecordNotInserted) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Records many read marks (user, room, last message seen; `None`: the room's newest) in one
/// transaction. Never moves a mark backwards.
///
/// # Errors
/// Database failures.
pub async fn mark_read_many<C>(
    db: &C,
    marks: &[(UserId, String, Option<i64>)],
) -> Result<(), AppError>
where
    C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>,
{
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for (_, room, last) in marks {
        if last.is_none() && !newest.contains_key(room.as_str()) {
            newest.insert(room, latest_id(db, room).await?);
        }
    }
    let txn = db.begin().await?;
    for (user, room, last) in marks {
        let last = last.unwrap_or_else(|| newest.get(room.as_str()).copied().unwrap_or(0));
        mark_read(&txn, *user, room, last).await?;
    }
    txn.commit().await?;
    Ok(())
}

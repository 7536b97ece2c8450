//! Stored messages: history pages, counts, and the "hot users" ranking.

use chrono::Utc;
use entity::{message, user};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};

use crate::auth::UserId;
use crate::error::AppError;
use crate::services::rooms::Room;

/// Messages per history page, as both clients expect.
pub const PAGE_SIZE: u64 = 20;

/// A message with its sender's account.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub message: message::Model,
    pub sender: user::Model,
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Image,
}

impl Kind {
    /// The v3 client's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "img",
        }
    }
}

/// A message about to be stored. Its fields are already validated and escaped.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender: UserId,
    pub room: Room,
    pub kind: Kind,
    pub body: String,
    pub image: String,
    pub client_id: Option<String>,
}

/// Stores one message.
///
/// # Errors
/// Database failures (including a repeated `(sender, client_id)`).
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    new: NewMessage,
    sender: user::Model,
) -> Result<StoredMessage, AppError> {
    let message = message::ActiveModel {
        sender_id: Set(new.sender),
        room_id: Set(new.room.id()),
        room_type: Set(new.room.kind().to_owned()),
        kind: Set(new.kind.as_str().to_owned()),
        body: Set(new.body),
        image: Set(new.image),
        client_id: Set(new.client_id),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(StoredMessage { message, sender })
}

/// The newest `limit` messages of `room` older than `before` (all when `None`), oldest first.
///
/// # Errors
/// Database failures.
pub async fn recent<C: ConnectionTrait>(
    db: &C,
    room: &str,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<StoredMessage>, AppError> {
    let mut query = message::Entity::find().filter(message::Column::RoomId.eq(room));
    if let Some(before) = before {
        query = query.filter(message::Column::Id.lt(before));
    }
    let rows = query
        .order_by_desc(message::Column::Id)
        .limit(limit)
        .find_also_related(user::Entity)
        .all(db)
        .await?;
    Ok(with_senders(rows).into_iter().rev().collect())
}

/// A page counted from the newest message: skips the `offset` newest, returns the next `limit`, oldest first.
///
/// # Errors
/// Database failures.
pub async fn page_from_newest<C: ConnectionTrait>(
    db: &C,
    room: &str,
    offset: u64,
    limit: u64,
) -> Result<Vec<StoredMessage>, AppError> {
    let rows = message::Entity::find()
        .filter(message::Column::RoomId.eq(room))
        .order_by_desc(message::Column::Id)
        .offset(offset)
        .limit(limit)
        .find_also_related(user::Entity)
        .all(db)
        .await?;
    Ok(with_senders(rows).into_iter().rev().collect())
}

/// How many messages `room` holds.
///
/// # Errors
/// Database failures.
pub async fn count<C: ConnectionTrait>(db: &C, room: &str) -> Result<u64, AppError> {
    Ok(message::Entity::find()
        .filter(message::Column::RoomId.eq(room))
        .count(db)
        .await?)
}

/// The `limit` users with the most messages in the group rooms, with their counts, most first.
/// Private conversations are not counted: how much two people talk is nobody else's business.
///
/// # Errors
/// Database failures.
pub async fn hot_senders<C: ConnectionTrait>(
    db: &C,
    group_rooms: &[String],
    limit: u64,
) -> Result<Vec<(user::Model, i64)>, AppError> {
    let counts: Vec<(i64, i64)> = message::Entity::find()
        .select_only()
        .column(message::Column::SenderId)
        .column_as(Expr::col(message::Column::Id).count(), "n")
        .filter(message::Column::RoomId.is_in(group_rooms.iter().cloned()))
        .group_by(message::Column::SenderId)
        .order_by_desc(Expr::col(message::Column::Id).count())
        .order_by_asc(message::Column::SenderId)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(counts.iter().map(|(id, _)| *id)))
        .all(db)
        .await?;
    Ok(counts
        .into_iter()
        .filter_map(|(id, n)| users.iter().find(|u| u.id == id).map(|u| (u.clone(), n)))
        .collect())
}

fn with_senders(rows: Vec<(message::Model, Option<user::Model>)>) -> Vec<StoredMessage> {
    rows.into_iter()
        .filter_map(|(message, sender)| {
            Some(StoredMessage {
                message,
                sender: sender?,
            })
        })
        .collect()
}

//! Stored messages: composing, storing, history pages, replay after a reconnect, counts, and the
//! "hot users" ranking. A removed message (`removed` set) is in none of them.

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
use crate::services::users::Author;

/// Messages per history page, as both clients expect.
pub const PAGE_SIZE: u64 = 20;

/// A stored message with its room and its sender's public profile.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub message: message::Model,
    pub room: Room,
    pub author: Author,
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

/// Longest client id accepted (the v3 client sends a 36-character UUID).
const MAX_CLIENT_ID: usize = 64;
/// Longest image URL accepted.
const MAX_IMAGE_URL: usize = 2048;

/// Builds a message from what a client sent: checks that `sender` may post to `room`, that there is
/// text or a picture, that the text has at most `max_chars` characters, that the picture is one of ours
/// or an http(s) URL, and escapes the text for HTML.
///
/// # Errors
/// [`AppError::Forbidden`] for someone else's private room, [`AppError::Invalid`] for the rest.
pub fn compose(
    sender: UserId,
    room: Room,
    text: &str,
    image: &str,
    client_id: Option<String>,
    max_chars: usize,
) -> Result<NewMessage, AppError> {
    if !room.admits(sender) {
        return Err(AppError::Forbidden("不能向这个房间发送消息".into()));
    }
    let image = image.trim();
    if text.trim().is_empty() && image.is_empty() {
        return Err(AppError::invalid("消息不能为空"));
    }
    if text.chars().count() > max_chars {
        return Err(AppError::Invalid(format!("消息不能超过{max_chars}个字")));
    }
    if !image.is_empty() && !acceptable_image(image) {
        return Err(AppError::invalid("图片地址无效"));
    }
    let client_id = client_id.filter(|c| !c.is_empty());
    if client_id
        .as_ref()
        .is_some_and(|c| c.len() > MAX_CLIENT_ID || !c.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(AppError::invalid("clientId 无效"));
    }
    Ok(NewMessage {
        sender,
        room,
        kind: if image.is_empty() {
            Kind::Text
        } else {
            Kind::Image
        },
        body: crate::text::escape_html(text),
        image: image.to_owned(),
        client_id,
    })
}

/// A picture URL is acceptable if it points into our upload store, or is a plain http(s) (or
/// protocol-relative) URL without characters that could break out of an attribute.
fn acceptable_image(url: &str) -> bool {
    if url.len() > MAX_IMAGE_URL
        || url.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\')
        })
    {
        return false;
    }
    if crate::services::uploads::UploadStore::owns_url(url) {
        return true;
    }
    let rest = ["https://", "http://", "//"].iter().find_map(|scheme| {
        url.get(..scheme.len())
            .filter(|p| p.eq_ignore_ascii_case(scheme))
            .map(|p| &url[p.len()..])
    });
    rest.is_some_and(|r| {
        r.split(['/', '?', '#'])
            .next()
            .is_some_and(|host| !host.is_empty())
    })
}

impl NewMessage {
    /// The row to insert for this message, stamped now.
    pub fn to_row(&self) -> message::ActiveModel {
        message::ActiveModel {
            sender_id: Set(self.sender),
            room_id: Set(self.room.id()),
            room_type: Set(self.room.kind().to_owned()),
            kind: Set(self.kind.as_str().to_owned()),
            body: Set(self.body.clone()),
            image: Set(self.image.clone()),
            client_id: Set(self.client_id.clone()),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
    }

    /// Whether `row` holds this same message (a resend), rather than another one that happens to
    /// carry the same client id.
    pub fn is_same_as(&self, row: &message::Model) -> bool {
        row.sender_id == self.sender
            && row.room_id == self.room.id()
            && row.body == self.body
            && row.image == self.image
    }
}

/// Stores one message.
///
/// # Errors
/// Database failures (including a repeated `(sender, client_id)`).
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    new: NewMessage,
    author: Author,
) -> Result<StoredMessage, AppError> {
    let message = new.to_row().insert(db).await?;
    Ok(StoredMessage {
        message,
        room: new.room,
        author,
    })
}

/// The newest `limit` messages of `room` older than `before` (all when `None`), oldest first.
///
/// # Errors
/// Database failures.
pub async fn recent<C: ConnectionTrait>(
    db: &C,
    room: &Room,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<StoredMessage>, AppError> {
    let mut query = message::Entity::find()
        .filter(message::Column::RoomId.eq(room.id()))
        .filter(message::Column::Removed.is_null());
    if let Some(before) = before {
        query = query.filter(message::Column::Id.lt(before));
    }
    let rows = query
        .order_by_desc(message::Column::Id)
        .limit(limit)
        .find_also_related(user::Entity)
        .all(db)
        .await?;
    Ok(with_authors(room, rows).into_iter().rev().collect())
}

/// The messages of `room` newer than `after`, oldest first, if there are at most `limit` of them;
/// `None` when there are more (the caller should reload the newest page instead).
///
/// # Errors
/// Database failures.
pub async fn since<C: ConnectionTrait>(
    db: &C,
    room: &Room,
    after: i64,
    limit: u64,
) -> Result<Option<Vec<StoredMessage>>, AppError> {
    let rows = message::Entity::find()
        .filter(message::Column::RoomId.eq(room.id()))
        .filter(message::Column::Removed.is_null())
        .filter(message::Column::Id.gt(after))
        .order_by_asc(message::Column::Id)
        .limit(limit + 1)
        .find_also_related(user::Entity)
        .all(db)
        .await?;
    if rows.len() as u64 > limit {
        return Ok(None);
    }
    Ok(Some(with_authors(room, rows)))
}

/// A page counted from the newest message: skips the `offset` newest, returns the next `limit`, oldest first.
///
/// # Errors
/// Database failures.
pub async fn page_from_newest<C: ConnectionTrait>(
    db: &C,
    room: &Room,
    offset: u64,
    limit: u64,
) -> Result<Vec<StoredMessage>, AppError> {
    // SQL offsets are signed 64-bit: one past that holds no rows (and would panic in the binder).
    if i64::try_from(offset).is_err() || i64::try_from(limit).is_err() {
        return Ok(Vec::new());
    }
    let rows = message::Entity::find()
        .filter(message::Column::RoomId.eq(room.id()))
        .filter(message::Column::Removed.is_null())
        .order_by_desc(message::Column::Id)
        .offset(offset)
        .limit(limit)
        .find_also_related(user::Entity)
        .all(db)
        .await?;
    Ok(with_authors(room, rows).into_iter().rev().collect())
}

/// How many messages `room` holds.
///
/// # Errors
/// Database failures.
pub async fn count<C: ConnectionTrait>(db: &C, room: &str) -> Result<u64, AppError> {
    Ok(message::Entity::find()
        .filter(message::Column::RoomId.eq(room))
        .filter(message::Column::Removed.is_null())
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
        .filter(message::Column::Removed.is_null())
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

fn with_authors(
    room: &Room,
    rows: Vec<(message::Model, Option<user::Model>)>,
) -> Vec<StoredMessage> {
    rows.into_iter()
        .filter_map(|(message, sender)| {
            Some(StoredMessage {
                message,
                room: room.clone(),
                author: Author::from(&sender?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Room {
        Room::Group("room1".into())
    }

    #[test]
    fn compose_escapes_and_bounds_text() {
        let m = compose(1, group(), "<b>你好</b>🎉", "", Some("c1".into()), 200).unwrap();
        assert_eq!(m.body, "&lt;b&gt;你好&lt;/b&gt;🎉");
        assert_eq!(m.kind, Kind::Text);
        assert!(compose(1, group(), &"字".repeat(200), "", None, 200).is_ok());
        assert!(matches!(
            compose(1, group(), &"字".repeat(201), "", None, 200),
            Err(AppError::Invalid(_))
        ));
        assert!(matches!(
            compose(1, group(), "  ", "", None, 200),
            Err(AppError::Invalid(_))
        ));
    }

    #[test]
    fn compose_checks_rooms_images_and_client_ids() {
        let private = crate::services::rooms::private_room(2, 3);
        assert!(matches!(
            compose(1, private.clone(), "hi", "", None, 200),
            Err(AppError::Forbidden(_))
        ));
        assert!(compose(2, private, "hi", "", None, 200).is_ok());
        for ok in [
            "static/files/abc.png?width=10&height=20",
            "/static/files/abc.png",
            "https://example.com/a.png",
            "//cdn.example.com/a.png",
        ] {
            assert_eq!(
                compose(1, group(), "", ok, None, 200).unwrap().kind,
                Kind::Image,
                "{ok}"
            );
        }
        for bad in [
            "data:image/png;base64,AAAA",
            "javascript:alert(1)",
            "https://",
            "https://x.com/a.png\" onerror=\"x",
            "ftp://x.com/a.png",
        ] {
            assert!(compose(1, group(), "", bad, None, 200).is_err(), "{bad}");
        }
        assert!(compose(1, group(), "hi", "", Some("x".repeat(65)), 200).is_err());
        assert!(compose(1, group(), "hi", "", Some("a b".into()), 200).is_err());
    }
}

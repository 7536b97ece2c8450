//! `messages`: every stored chat message, group and private.
use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261125_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .if_not_exists()
                    // Increasing with creation: clients page history by "ids older than this one".
                    .col(big_pk_auto(Messages::Id))
                    .col(big_integer(Messages::SenderId))
                    // `room1`/`room2`, or `<larger id>-<smaller id>` for a private room.
                    .col(string_len(Messages::RoomId, 64))
                    .col(string_len(Messages::RoomType, 16))
                    .col(string_len(Messages::Kind, 16))
                    .col(text(Messages::Body))
                    .col(string_len(Messages::Image, 1024))
                    // The client's own id for the message, which makes a resend idempotent.
                    .col(string_len_null(Messages::ClientId, 64))
                    .col(timestamp_with_time_zone(Messages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_sender")
                            .from(Messages::Table, Messages::SenderId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_room_id")
                    .table(Messages::Table)
                    .col(Messages::RoomId)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_messages_sender_client_id")
                    .table(Messages::Table)
                    .col(Messages::SenderId)
                    .col(Messages::ClientId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Messages::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    SenderId,
    RoomId,
    RoomType,
    Kind,
    Body,
    Image,
    ClientId,
    CreatedAt,
}

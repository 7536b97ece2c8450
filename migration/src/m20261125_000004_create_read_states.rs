//! `read_states`: per user and room, the newest message id the user has seen.
//!
//! Unread counts are derived from it (messages in the room with a larger id), so they can never drift the
//! way the seed's incremented counters did.
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
                    .table(ReadStates::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ReadStates::Id))
                    .col(big_integer(ReadStates::UserId))
                    .col(string_len(ReadStates::RoomId, 64))
                    .col(big_integer(ReadStates::LastReadMessageId))
                    .col(timestamp_with_time_zone(ReadStates::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_read_states_user")
                            .from(ReadStates::Table, ReadStates::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_read_states_user_room")
                    .table(ReadStates::Table)
                    .col(ReadStates::UserId)
                    .col(ReadStates::RoomId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ReadStates::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ReadStates {
    Table,
    Id,
    UserId,
    RoomId,
    LastReadMessageId,
    UpdatedAt,
}

//! `friends`: one row per direction of a friendship.
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
                    .table(Friends::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Friends::Id))
                    .col(big_integer(Friends::UserId))
                    .col(big_integer(Friends::FriendId))
                    .col(timestamp_with_time_zone(Friends::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_friends_user")
                            .from(Friends::Table, Friends::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_friends_friend")
                            .from(Friends::Table, Friends::FriendId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_friends_pair")
                    .table(Friends::Table)
                    .col(Friends::UserId)
                    .col(Friends::FriendId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Friends::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Friends {
    Table,
    Id,
    UserId,
    FriendId,
    CreatedAt,
}

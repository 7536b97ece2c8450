//! `users`: accounts shared by both web clients.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Users::Id))
                    // Display and login name; unique because the v3 client looks users up by name.
                    .col(string_len_uniq(Users::Name, 64))
                    // Only accounts made by the Laravel-era client have one (it signs in by e-mail).
                    .col(string_len_null(Users::Email, 255).unique_key())
                    .col(string_len(Users::PasswordHash, 255))
                    .col(string_len(Users::Avatar, 512))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    Name,
    Email,
    PasswordHash,
    Avatar,
    CreatedAt,
    UpdatedAt,
}

//! `revoked_tokens`: ids (`jti`) of signed tokens withdrawn before their expiry, e.g. by logout.
//!
//! A row is only needed until the token would have expired anyway; expired rows are pruned.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RevokedTokens::Table)
                    .if_not_exists()
                    .col(string_len(RevokedTokens::Jti, 64).primary_key())
                    .col(big_integer(RevokedTokens::UserId))
                    .col(timestamp_with_time_zone(RevokedTokens::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_revoked_tokens_expires_at")
                    .table(RevokedTokens::Table)
                    .col(RevokedTokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RevokedTokens::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum RevokedTokens {
    Table,
    Jti,
    UserId,
    ExpiresAt,
}

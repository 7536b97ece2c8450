//! What operators need (issue 18): a role per user, a removal mark per message, and the audit trail.
//!
//! * `users.role`: `member` or `admin`; granted and revoked with `chatroom admin grant|revoke NAME`.
//! * `users.banned_until`, `users.ban_reason`: a ban in force until then (a permanent ban ends in the
//!   year 9999); `users.tokens_after`: tokens issued before it are refused (a ban revokes them all).
//! * `messages.removed`: who took a message down (`admin` or `author`); `NULL` while it stands. A
//!   removed message keeps its row (so a client resending it gets its old id back instead of posting it
//!   again) but loses its text and picture, and no history shows it.
//! * `audit_entries`: every admin action and every recall, refused attempts included.
//! * `rooms`: the group rooms, in the order clients list them (`position`); `--rooms` seeds the first
//!   ones, admins create more at runtime and archive them (`archived_at`: history readable, no new
//!   messages).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(string_len(Users::Role, 16).default("member"))
                    .to_owned(),
            )
            .await?;
        for column in [
            ColumnDef::new(Users::BannedUntil)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(Users::BanReason)
                .string_len(255)
                .null()
                .to_owned(),
            ColumnDef::new(Users::TokensAfter)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(string_len_null(Messages::Removed, 16))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEntries::Table)
                    .if_not_exists()
                    .col(big_integer(AuditEntries::Id).auto_increment().primary_key())
                    .col(timestamp_with_time_zone(AuditEntries::At))
                    .col(big_integer_null(AuditEntries::ActorId))
                    .col(string_len(AuditEntries::Actor, 64))
                    .col(string_len(AuditEntries::Action, 32))
                    .col(string_len(AuditEntries::Target, 128))
                    .col(text(AuditEntries::Reason))
                    .col(string_len_null(AuditEntries::Refused, 255))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Rooms::Table)
                    .if_not_exists()
                    .col(string_len(Rooms::Id, 32).primary_key())
                    .col(string_len(Rooms::Name, 255))
                    .col(big_integer(Rooms::Position))
                    .col(timestamp_with_time_zone(Rooms::CreatedAt))
                    .col(timestamp_with_time_zone_null(Rooms::ArchivedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Rooms::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuditEntries::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .drop_column(Messages::Removed)
                    .to_owned(),
            )
            .await?;
        for column in [
            Users::Role,
            Users::BannedUntil,
            Users::BanReason,
            Users::TokensAfter,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Role,
    BannedUntil,
    BanReason,
    TokensAfter,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Removed,
}

#[derive(DeriveIden)]
enum AuditEntries {
    Table,
    Id,
    At,
    ActorId,
    Actor,
    Action,
    Target,
    Reason,
    Refused,
}

#[derive(DeriveIden)]
enum Rooms {
    Table,
    Id,
    Name,
    Position,
    CreatedAt,
    ArchivedAt,
}

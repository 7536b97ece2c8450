//! Schema migrations for chatroom, portable across SQLite and PostgreSQL.
//!
//! Only the portable subset of SQL is used (64-bit integer keys, `timestamptz`/text timestamps, plain
//! indexes), and foreign keys are declared inline because SQLite cannot add them later.

// `MigrationTrait` is declared with `&SchemaManager` (an elided lifetime) through `async_trait`; the
// implementations must spell it the same way to match.
#![allow(elided_lifetimes_in_paths)]

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_users;
mod m20261125_000002_create_messages;
mod m20261125_000003_create_friends;
mod m20261125_000004_create_read_states;
mod m20261125_000005_create_revoked_tokens;
mod m20261204_000006_operators;

/// Every migration, in the order it must run.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_users::Migration),
            Box::new(m20261125_000002_create_messages::Migration),
            Box::new(m20261125_000003_create_friends::Migration),
            Box::new(m20261125_000004_create_read_states::Migration),
            Box::new(m20261125_000005_create_revoked_tokens::Migration),
            Box::new(m20261204_000006_operators::Migration),
        ]
    }
}

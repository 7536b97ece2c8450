//! A group room: seeded from `--rooms`, created and archived by admins at runtime.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rooms")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The name clients show (HTML-escaped).
    pub name: String,
    /// Where clients list it, and the Laravel-era client's number for it (1-based order).
    pub position: i64,
    pub created_at: DateTimeUtc,
    /// Set when archived: its history stays readable, new messages are refused.
    pub archived_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

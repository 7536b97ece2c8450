//! One line of the audit trail: an admin action or a recall, done or refused.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_entries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub at: DateTimeUtc,
    /// The acting user; `None` for the `chatroom admin` command.
    pub actor_id: Option<i64>,
    /// The acting user's name, or `console` for the command.
    pub actor: String,
    pub action: String,
    /// The message id, room id or user name the action touched.
    pub target: String,
    #[sea_orm(column_type = "Text")]
    pub reason: String,
    /// Why it was refused; `None` when it was done.
    pub refused: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

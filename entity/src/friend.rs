//! One direction of a friendship: `user_id` counts `friend_id` as a friend.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "friends")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub friend_id: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::FriendId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    Friend,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Friend.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

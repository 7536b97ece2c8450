//! The entities under their conventional names.
pub use super::audit_entry::Entity as AuditEntry;
pub use super::friend::Entity as Friend;
pub use super::message::Entity as Message;
pub use super::read_state::Entity as ReadState;
pub use super::revoked_token::Entity as RevokedToken;
pub use super::room::Entity as RoomRow;
pub use super::user::Entity as User;

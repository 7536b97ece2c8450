//! sea-orm entities of chatroom's tables. Behaviour (validation, hashing, authentication) lives in the
//! app crate's services, so these stay plain mirrors of the migrations.

pub mod audit_entry;
pub mod friend;
pub mod message;
pub mod prelude;
pub mod read_state;
pub mod revoked_token;
pub mod room;
pub mod user;

//! `chatroom admin grant|revoke NAME`: the operator's command, run beside the server on the same
//! database. Roles are read from the database on every request, so the change holds from the user's
//! next request; the command is written to the audit trail as done by `console`.

use crate::config::{AdminAction, StoreSettings};
use crate::error::AppError;
use crate::services::moderation::{self, Actor, Audit};

/// Runs `action` against the database of `store`; returns the line to print.
///
/// # Errors
/// An unknown user (with a message naming it), or a database that cannot be reached.
pub async fn run(store: &StoreSettings, action: &AdminAction) -> anyhow::Result<String> {
    // Connecting migrates, so a fresh data directory works too (and a server started later finds
    // the schema up to date).
    let db = crate::db::connect(store.database_url.expose(), 1, store.wal_limit).await?;
    let (name, admin, verb) = match action {
        AdminAction::Grant { name } => (name, true, "grant"),
        AdminAction::Revoke { name } => (name, false, "revoke"),
    };
    let outcome = moderation::set_role(&db, name, admin).await;
    if !matches!(&outcome, Err(e) if e.is_internal()) {
        moderation::record(
            &db,
            Audit {
                actor: &Actor::Console,
                action: verb,
                target: name,
                reason: "",
                refused: outcome.as_ref().err(),
            },
        )
        .await?;
    }
    db.close().await.ok();
    match outcome {
        Ok(user) if admin => Ok(format!("{} (id {}) is now an admin", user.name, user.id)),
        Ok(user) => Ok(format!(
            "{} (id {}) is no longer an admin",
            user.name, user.id
        )),
        Err(AppError::NotFound(_)) => anyhow::bail!("no user is named {name:?}"),
        Err(e) => Err(e.into()),
    }
}

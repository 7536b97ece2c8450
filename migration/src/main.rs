//! `cargo run -p migration -- <command>`: apply or inspect chatroom's schema by hand.
//!
//! Commands: `status` (which migrations are applied), `up` (apply the pending ones), `down` (revert the
//! last one), `fresh` (drop every table and apply all: destroys data). The database is `DATABASE_URL`
//! (e.g. `sqlite://data/chatroom.db?mode=rwc` or `postgres://user@host/db`). The server applies pending
//! migrations itself at start; this is for operators and for development.

use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::Database;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let command = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "status".to_owned());
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL to the database to migrate")?;
    let db = Database::connect(url.as_str()).await?;
    match command.as_str() {
        "status" => {
            for migration in Migrator::get_migration_with_status(&db).await? {
                println!("{:<45} {}", migration.name(), migration.status());
            }
        }
        "up" => Migrator::up(&db, None).await?,
        "down" => Migrator::down(&db, Some(1)).await?,
        "fresh" => Migrator::fresh(&db).await?,
        other => {
            return Err(format!("unknown command {other:?}: status, up, down or fresh").into());
        }
    }
    Ok(())
}

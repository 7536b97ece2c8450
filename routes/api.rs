//! The HTTP API of both web clients, one line per endpoint.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

use crate::api::envelope::{Legacy, V3};
use crate::api::{admin, files, friends, legacy, messages, robot, users};
use crate::state::AppState;

/// Largest JSON or form body the API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The largest body an upload route reads for files of up to `upload_limit` bytes: the file plus
/// room for the form around it.
pub fn upload_body_limit(upload_limit: usize) -> usize {
    upload_limit + 64 * 1024
}

/// Every `/api` route. Upload routes accept bodies up to `upload_limit` bytes (plus form overhead).
pub fn router(upload_limit: usize) -> Router<AppState> {
    let uploads = DefaultBodyLimit::max(upload_body_limit(upload_limit));
    Router::new()
        // v3 client (hua1995116/webchat), webchat-contract.md §1.3
        .route("/api/user/signup", post(users::signup))
        .route("/api/user/signin", post(users::signin))
        .route("/api/user/logout", post(users::logout::<V3>))
        .route("/api/user/me", get(users::me))
        .route("/api/user/vipuser", get(users::vip))
        .route("/api/user/search", get(users::search))
        .route("/api/user/getInfo", get(users::info))
        .route("/api/message/history/byUser", get(messages::by_user))
        .route("/api/message/v2/history", get(messages::history))
        .route("/api/message/getHot", get(messages::hot))
        .route("/api/message/robotapi", get(robot::ask))
        .route("/api/friend/add", post(friends::add))
        .route("/api/friend/list", post(friends::list))
        .route("/api/rooms", get(messages::rooms))
        // Laravel-era client (nonfu/webchat), seed-design.md §1.9
        .route("/api/register", post(legacy::register))
        .route("/api/login", post(legacy::login))
        .route("/api/logout", post(users::logout::<Legacy>))
        .route("/api/user", get(legacy::user))
        .route("/api/history/message", get(legacy::history))
        .route("/api/robot", get(robot::ask))
        // Both clients
        .route(
            "/api/file/uploadimg",
            post(files::upload_image).layer(uploads),
        )
        .route("/api/file/avatar", post(files::avatar).layer(uploads))
        // Operators (issue 18): every path under /api/admin/ is for admins only
        .nest("/api/admin", admin_router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// `/api/admin/`: unknown paths and methods answer through the admin check too.
fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/messages/{id}", delete(admin::remove_message))
        .route("/users/{name}/ban", post(admin::ban).delete(admin::unban))
        .route("/rooms", post(admin::create_room))
        .route("/rooms/{roomid}", delete(admin::archive_room))
        .route("/audit", get(admin::audit))
        .fallback(admin::unknown)
        .method_not_allowed_fallback(admin::unknown)
}

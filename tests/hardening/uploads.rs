//! Defect 6, uploads (D5, U8): a per-user quota of uploads per hour and of bytes on disk, on both
//! upload endpoints and both clients, including the Laravel-era upload that posts a picture message.

use chatroom::metrics::Refusal;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::{TestApp, TestUser, images, read};

/// A PNG of `len` bytes whose header declares `width` × `height` (the rest is filler a browser would
/// try to inflate).
fn png_of(width: u32, height: u32, len: usize) -> Vec<u8> {
    let mut bytes = images::png_claiming(width, height);
    bytes.resize(len, 0x5a);
    bytes
}

/// Posts `bytes` to every upload path: v3 picture, v3 avatar, and the Laravel-era picture message.
async fn upload_everywhere(
    app: &TestApp,
    v3_user: &TestUser,
    legacy: &TestUser,
    bytes: &[u8],
) -> Vec<Value> {
    let mut replies = Vec::new();
    for path in ["/api/file/uploadimg", "/api/file/avatar"] {
        let request = app.post(path).bearer_auth(&v3_user.token);
        let (_, reply) = read(
            request
                .multipart(form(bytes.to_vec()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        replies.push(reply);
    }
    let legacy_form = form(bytes.to_vec())
        .text("api_token", legacy.token.clone())
        .text("roomid", "1");
    let (_, reply) = read(
        app.post("/api/file/uploadimg")
            .multipart(legacy_form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    replies.push(reply);
    replies
}

fn form(bytes: Vec<u8>) -> Form {
    Form::new().part(
        "file",
        Part::bytes(bytes)
            .file_name("a.png")
            .mime_str("image/png")
            .unwrap(),
    )
}

/// A v3 upload to `path` (`uploadimg` or `avatar`).
async fn v3(app: &TestApp, path: &str, user: &TestUser) -> (u16, Value) {
    read(
        app.post(path)
            .bearer_auth(&user.token)
            .multipart(form(images::png()))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A Laravel-era picture message: `uploadimg` with `api_token` and `roomid` in the form.
async fn legacy_picture(app: &TestApp, user: &TestUser) -> (u16, Value) {
    let form = form(images::png())
        .text("api_token", user.token.clone())
        .text("roomid", "1");
    read(
        app.post("/api/file/uploadimg")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn uploads_per_hour_are_limited_per_user_on_every_endpoint() {
    let app = TestApp::spawn_with(|s| s.uploads.per_hour = 3).await;
    let v3_user = app.signup("uploader").await;
    let (_, reply) = v3(&app, "/api/file/uploadimg", &v3_user).await;
    assert_eq!(reply["errno"], 0);
    let (_, reply) = v3(&app, "/api/file/avatar", &v3_user).await;
    assert_eq!(reply["errno"], 0);
    let (_, reply) = v3(&app, "/api/file/uploadimg", &v3_user).await;
    assert_eq!(reply["errno"], 0);
    let (_, me) = app.get_v3("/api/user/me", Some(&v3_user.token)).await;
    let avatar = me["data"]["src"].clone();
    for path in ["/api/file/uploadimg", "/api/file/avatar"] {
        let (status, reply) = v3(&app, path, &v3_user).await;
        assert_eq!(
            (status, reply["errno"].as_i64()),
            (429, Some(1)),
            "{path}: {reply}"
        );
        assert_eq!(reply["data"], "每小时最多上传 3 张图片，请稍后再试");
    }
    assert_eq!(app.upload_files().len(), 3);
    let (_, me) = app.get_v3("/api/user/me", Some(&v3_user.token)).await;
    assert_eq!(
        me["data"]["src"], avatar,
        "the refused avatar changed nothing"
    );

    // The Laravel-era client's picture messages, which used to bypass every limit.
    let legacy = app.register_legacy("pics@example.com").await;
    for _ in 0..3 {
        let (status, reply) = legacy_picture(&app, &legacy).await;
        assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    }
    let (status, reply) = legacy_picture(&app, &legacy).await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"errno": 1, "message": "每小时最多上传 3 张图片，请稍后再试"})
        )
    );
    assert_eq!(
        app.count("messages").await,
        3,
        "no message for the refused picture"
    );
    assert_eq!(app.upload_files().len(), 6);
    assert_eq!(app.state.metrics.refusals(Refusal::UploadRate), 3);
}

#[tokio::test]
async fn parallel_uploads_cannot_get_past_the_hourly_limit() {
    let app = TestApp::spawn_with(|s| s.uploads.per_hour = 3).await;
    let user = app.signup("burst").await;
    let replies =
        futures_util::future::join_all((0..12).map(|_| v3(&app, "/api/file/uploadimg", &user)))
            .await;
    let stored = replies.iter().filter(|(_, r)| r["errno"] == 0).count();
    assert_eq!(stored, 3, "{replies:?}");
    assert!(
        replies
            .iter()
            .all(|(s, r)| r["errno"] == 0 || (*s == 429 && r["errno"] == 1))
    );
    assert_eq!(app.upload_files().len(), 3);
}

#[tokio::test]
async fn disk_space_per_user_is_bounded() {
    let size = images::png().len() as u64;
    let app = TestApp::spawn_with(move |s| s.uploads.quota_bytes = 2 * size + size / 2).await;
    let user = app.signup("hoarder").await;
    for _ in 0..2 {
        let (_, reply) = v3(&app, "/api/file/uploadimg", &user).await;
        assert_eq!(reply["errno"], 0, "{reply}");
    }
    for path in ["/api/file/uploadimg", "/api/file/avatar"] {
        let (status, reply) = v3(&app, path, &user).await;
        assert_eq!(
            (status, reply["errno"].as_i64()),
            (507, Some(1)),
            "{path}: {reply}"
        );
        assert!(
            reply["data"]
                .as_str()
                .unwrap()
                .starts_with("图片空间已用完"),
            "{reply}"
        );
    }
    // The Laravel-era envelope, and other users are unaffected.
    let legacy = app.register_legacy("full@example.com").await;
    for _ in 0..2 {
        let (_, reply) = legacy_picture(&app, &legacy).await;
        assert_eq!(reply["errno"], 0);
    }
    let (status, reply) = legacy_picture(&app, &legacy).await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(1)), "{reply}");
    assert_eq!(app.count("messages").await, 2);
    assert_eq!(
        app.upload_files().len(),
        4,
        "nothing left of refused uploads"
    );
    assert_eq!(app.state.metrics.refusals(Refusal::UploadStorage), 3);
}

/// Issue 20 item 4: a picture whose decoded size is out of proportion (the hostile pass's 190 KB PNG
/// declaring 16384×3051, about 200 MB for every viewer to decode; over 40 MP; a 1:30 strip; a 30 MP
/// canvas in 100 KB) is refused on every upload path, and nothing is stored, posted or changed; a
/// phone-sized photo still goes through everywhere.
#[tokio::test]
async fn pictures_out_of_proportion_are_refused_on_every_upload_path() {
    let app = TestApp::spawn().await;
    let v3_user = app.signup("painter").await;
    let legacy = app.register_legacy("painter@example.com").await;
    let (_, me) = app.get_v3("/api/user/me", Some(&v3_user.token)).await;
    let avatar = me["data"]["src"].clone();
    for (width, height, len) in [
        (16_384, 3_051, 190_000),
        (8_000, 6_000, 3_000_000),
        (9_000, 300, 200_000),
        (6_000, 5_000, 100_000),
    ] {
        let bytes = png_of(width, height, len);
        for reply in upload_everywhere(&app, &v3_user, &legacy, &bytes).await {
            assert_eq!(reply["errno"], 1, "{width}×{height}: {reply}");
            let message = reply.get("data").or_else(|| reply.get("message")).unwrap();
            assert_eq!(message, "图片尺寸过大", "{width}×{height}");
        }
    }
    assert!(app.upload_files().is_empty(), "{:?}", app.upload_files());
    assert_eq!(app.count("messages").await, 0);
    let (_, me) = app.get_v3("/api/user/me", Some(&v3_user.token)).await;
    assert_eq!(
        me["data"]["src"], avatar,
        "the refused avatar changed nothing"
    );

    // A 12 MP phone photo of 2 MB is kept on every path.
    let photo = png_of(4_000, 3_000, 2_000_000);
    for reply in upload_everywhere(&app, &v3_user, &legacy, &photo).await {
        assert_eq!(reply["errno"], 0, "{reply}");
    }
    assert_eq!(app.upload_files().len(), 3);
    assert_eq!(
        app.count("messages").await,
        1,
        "the Laravel-era picture message"
    );
}

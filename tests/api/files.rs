//! Uploads: `/api/file/uploadimg` and `/api/file/avatar`, and serving them back.

use reqwest::multipart::{Form, Part};
use serde_json::json;

use crate::common::{TestApp, bearer, images, read};

fn image_form(bytes: Vec<u8>, filename: &str, mime: &str) -> Form {
    Form::new().part(
        "file",
        Part::bytes(bytes)
            .file_name(filename.to_owned())
            .mime_str(mime)
            .unwrap(),
    )
}

async fn upload_v3(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    form: Form,
) -> (u16, serde_json::Value) {
    read(
        app.post(path)
            .header("authorization", bearer(token))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn v3_picture_upload_returns_a_url_that_serves_the_file() {
    let app = TestApp::spawn().await;
    let user = app.signup("pic").await;
    let (status, reply) = upload_v3(
        &app,
        "/api/file/uploadimg",
        Some(&user.token),
        image_form(images::png(), "我的 图.png", "image/png"),
    )
    .await;
    assert_eq!(
        (status, reply["errno"].as_i64(), reply["msg"].as_str()),
        (200, Some(0), Some("保存成功!"))
    );
    let url = reply["data"].as_str().unwrap();
    assert!(
        url.starts_with("/static/files/") && url.ends_with(".png"),
        "{url}"
    );
    assert!(!url.contains("我的"), "stored under a generated name");

    // The client appends ?width=&height= and Qiniu-style suffixes: they are ignored.
    let served = app
        .get(&format!("{url}?width=1&height=1&imageView2/2/w/360"))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    assert!(
        served.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(served.bytes().await.unwrap().to_vec(), images::png());
    // No message is stored for a v3 upload: the client sends it over the socket.
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test]
async fn every_accepted_format_is_recognised_by_content() {
    let app = TestApp::spawn().await;
    let user = app.signup("formats").await;
    // Names and MIME types lie on purpose: only the bytes count.
    for (bytes, ext) in [
        (images::gif(), "gif"),
        (images::jpeg(), "jpg"),
        (images::webp(), "webp"),
        (images::png(), "png"),
    ] {
        let (_, reply) = upload_v3(
            &app,
            "/api/file/uploadimg",
            Some(&user.token),
            image_form(bytes, "x.txt", "text/plain"),
        )
        .await;
        assert_eq!(reply["errno"], 0, "{ext}: {reply}");
        assert!(
            reply["data"]
                .as_str()
                .unwrap()
                .ends_with(&format!(".{ext}")),
            "{reply}"
        );
    }
}

#[tokio::test]
async fn uploads_that_are_not_images_are_refused_and_leave_nothing() {
    let app = TestApp::spawn().await;
    let user = app.signup("evil").await;
    let mut polyglot = b"<html><script>alert(1)</script>".to_vec();
    polyglot.extend(images::png());
    let cases = [
        (
            images::svg(),
            "a.png",
            "image/png",
            "只支持 PNG、JPEG、WebP 和 GIF 图片",
        ),
        (
            b"<html><script>alert(1)</script></html>".to_vec(),
            "a.jpg",
            "image/jpeg",
            "只支持 PNG、JPEG、WebP 和 GIF 图片",
        ),
        (
            b"MZ\x90\x00\x03".to_vec(),
            "a.gif",
            "image/gif",
            "只支持 PNG、JPEG、WebP 和 GIF 图片",
        ),
        (
            polyglot,
            "a.png",
            "image/png",
            "只支持 PNG、JPEG、WebP 和 GIF 图片",
        ),
        (
            images::png_claiming(30_000, 30_000),
            "flood.png",
            "image/png",
            "图片尺寸过大",
        ),
        (
            b"\x89PNG\r\n\x1a\n".to_vec(),
            "cut.png",
            "image/png",
            "图片已损坏，无法识别尺寸",
        ),
        (Vec::new(), "empty.png", "image/png", "请选择要上传的图片"),
    ];
    for (bytes, name, mime, expected) in cases {
        let (status, reply) = upload_v3(
            &app,
            "/api/file/uploadimg",
            Some(&user.token),
            image_form(bytes, name, mime),
        )
        .await;
        assert_eq!(
            (status, reply["errno"].as_i64()),
            (200, Some(1)),
            "{name}: {reply}"
        );
        assert_eq!(reply["data"], expected, "{name}");
    }
    // A form without the file field, and a body that is not a form at all.
    let (_, reply) = upload_v3(
        &app,
        "/api/file/uploadimg",
        Some(&user.token),
        Form::new().text("other", "x"),
    )
    .await;
    assert_eq!(reply["data"], "请选择要上传的图片");
    let (status, reply) = read(
        app.post("/api/file/uploadimg")
            .header("authorization", bearer(Some(&user.token)))
            .json(&json!({"file": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(1)));
    assert!(app.upload_files().is_empty(), "{:?}", app.upload_files());
}

#[tokio::test]
async fn oversized_uploads_are_refused_and_leave_nothing() {
    let app = TestApp::spawn_with(|s| s.uploads.max_bytes = 64 * 1024).await;
    let user = app.signup("big").await;
    let mut just_over = images::png();
    just_over.resize(64 * 1024 + 1, 0);
    let (status, reply) = upload_v3(
        &app,
        "/api/file/uploadimg",
        Some(&user.token),
        image_form(just_over, "a.png", "image/png"),
    )
    .await;
    assert_eq!(
        (status, reply["errno"].as_i64(), reply["data"].as_str()),
        (413, Some(1), Some("图片不能超过 64KB"))
    );
    // Far over: refused by its announced length, before it is read.
    let mut huge = images::png();
    huge.resize(8 * 1024 * 1024, 0);
    let (status, reply) = upload_v3(
        &app,
        "/api/file/uploadimg",
        Some(&user.token),
        image_form(huge, "b.png", "image/png"),
    )
    .await;
    assert_eq!(
        (status, reply["data"].as_str()),
        (413, Some("图片不能超过 64KB"))
    );
    let mut at_limit = images::png();
    at_limit.resize(64 * 1024, 0);
    let (_, reply) = upload_v3(
        &app,
        "/api/file/uploadimg",
        Some(&user.token),
        image_form(at_limit, "c.png", "image/png"),
    )
    .await;
    assert_eq!(reply["errno"], 0, "exactly at the limit is fine: {reply}");
    assert_eq!(app.upload_files().len(), 1);
}

#[tokio::test]
async fn uploads_need_a_token() {
    let app = TestApp::spawn().await;
    for path in ["/api/file/uploadimg", "/api/file/avatar"] {
        let (status, reply) = upload_v3(
            &app,
            path,
            None,
            image_form(images::png(), "a.png", "image/png"),
        )
        .await;
        assert_eq!(
            (status, reply["msg"].as_str()),
            (401, Some("请先登录")),
            "{path}"
        );
    }
    assert!(app.upload_files().is_empty());
}

#[tokio::test]
async fn avatar_upload_changes_only_the_token_users_avatar() {
    let app = TestApp::spawn().await;
    let me = app.signup("me").await;
    app.signup("victim").await;
    let form = image_form(images::png(), "crop.png", "image/png").text("username", "victim");
    let (status, reply) = upload_v3(&app, "/api/file/avatar", Some(&me.token), form).await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)));
    let url = reply["data"]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("/static/files/"));

    let (_, mine) = app.get_v3("/api/user/getInfo?id=me", None).await;
    assert_eq!(mine["data"]["src"], url.as_str());
    let (_, theirs) = app.get_v3("/api/user/getInfo?id=victim", None).await;
    assert_eq!(theirs["data"]["src"], "//s3.qiufengh.com/avatar/1.jpeg");
    assert_eq!(app.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn upload_paths_cannot_escape_the_store() {
    let app = TestApp::spawn().await;
    std::fs::write(app.dir.path().join("secret.txt"), "top secret").unwrap();
    for path in [
        "/static/files/../secret.txt",
        "/static/files/%2e%2e/secret.txt",
        "/static/files/..%2fsecret.txt",
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_ne!(response.status(), 200, "{path}");
        assert!(!response.text().await.unwrap().contains("top secret"));
    }
}

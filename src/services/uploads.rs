//! The image store behind `/static/files/`.
//!
//! Uploads are untrusted: the type is decided from the file's first bytes (never the client's name or
//! MIME type), only PNG, JPEG, WebP and GIF are kept, the declared pixel size is bounded (a tiny file
//! can claim a huge canvas), and each file is stored under a fresh random name. It is written to a
//! temporary file first and renamed into place, so a failed upload leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::error::AppError;

/// Where uploads are served from, relative to the site root.
pub const PUBLIC_PREFIX: &str = "/static/files/";
/// Largest accepted width or height, in pixels.
pub const MAX_SIDE: usize = 16_384;
/// Largest accepted pixel count (width × height).
pub const MAX_PIXELS: usize = 50_000_000;

/// An accepted image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageKind {
    /// The file extension used for stored files.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Gif => "gif",
            Self::Webp => "webp",
        }
    }
}

/// Recognises an accepted image by its magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageKind::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageKind::Jpeg)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageKind::Gif)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(ImageKind::Webp)
    } else {
        None
    }
}

/// A stored upload.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// The generated file name.
    pub name: String,
    /// Its root-relative URL (`/static/files/<name>`).
    pub url: String,
    /// Width and height in pixels.
    pub width: usize,
    pub height: usize,
}

/// Stores accepted images in one directory.
#[derive(Debug, Clone)]
pub struct UploadStore {
    dir: PathBuf,
    max_bytes: usize,
}

impl UploadStore {
    /// A store writing into `dir` (created if missing) and accepting files up to `max_bytes`.
    ///
    /// # Errors
    /// If the directory cannot be created.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: usize) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir, max_bytes })
    }

    /// The directory files are stored in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest accepted file, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The refusal for a file over the limit.
    pub fn too_large(&self) -> AppError {
        AppError::TooLarge(format!("图片不能超过 {}", human_size(self.max_bytes)))
    }

    /// Checks and stores an image.
    ///
    /// # Errors
    /// [`AppError::TooLarge`] over the size limit, [`AppError::Invalid`] for anything that is not an
    /// accepted image or whose pixel size is out of bounds, [`AppError::Internal`] if writing fails.
    pub async fn store(&self, bytes: &[u8]) -> Result<StoredFile, AppError> {
        if bytes.len() > self.max_bytes {
            return Err(self.too_large());
        }
        if bytes.is_empty() {
            return Err(AppError::invalid("请选择要上传的图片"));
        }
        let kind =
            sniff(bytes).ok_or_else(|| AppError::invalid("只支持 PNG、JPEG、WebP 和 GIF 图片"))?;
        let size = imagesize::blob_size(bytes)
            .map_err(|_| AppError::invalid("图片已损坏，无法识别尺寸"))?;
        if size.width == 0
            || size.height == 0
            || size.width > MAX_SIDE
            || size.height > MAX_SIDE
            || size.width.saturating_mul(size.height) > MAX_PIXELS
        {
            return Err(AppError::invalid("图片尺寸过大"));
        }
        let name = format!(
            "{}-{}.{}",
            chrono::Utc::now().timestamp_millis(),
            hex::encode(rand::random::<[u8; 8]>()),
            kind.extension()
        );
        let tmp = self.dir.join(format!(".upload-{name}.tmp"));
        let result = async {
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, self.dir.join(&name)).await
        }
        .await;
        if let Err(e) = result {
            // Best effort: the temporary file may not exist if the write itself failed.
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(AppError::Internal(e.into()));
        }
        Ok(StoredFile {
            url: format!("{PUBLIC_PREFIX}{name}"),
            name,
            width: size.width,
            height: size.height,
        })
    }

    /// Removes a stored file whose message could not be saved, so nothing is left half-written.
    pub async fn discard(&self, file: &StoredFile) {
        if let Err(e) = tokio::fs::remove_file(self.dir.join(&file.name)).await {
            tracing::warn!(error = %e, file = %file.name, "could not remove an orphaned upload");
        }
    }

    /// Whether `url` points at a file of this store (with or without a query string).
    pub fn owns_url(url: &str) -> bool {
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let name = path
            .strip_prefix(PUBLIC_PREFIX)
            .or_else(|| path.strip_prefix(&PUBLIC_PREFIX[1..]));
        name.is_some_and(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }) && !path.contains("..")
    }
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{}MB", bytes / (1024 * 1024))
    } else if bytes >= 1024 {
        format!("{}KB", bytes / 1024)
    } else {
        format!("{bytes}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content_not_name() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(ImageKind::Png));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageKind::Jpeg));
        assert_eq!(sniff(b"GIF89a...."), Some(ImageKind::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageKind::Webp));
        assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), None);
        assert_eq!(sniff(b"<html><script>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn recognises_its_own_urls() {
        assert!(UploadStore::owns_url(
            "/static/files/1-ab.png?width=3&height=4"
        ));
        assert!(UploadStore::owns_url("static/files/1-ab.png"));
        assert!(!UploadStore::owns_url("/static/files/../x.png"));
        assert!(!UploadStore::owns_url("/static/files/"));
        assert!(!UploadStore::owns_url("http://evil/static/files/a.png"));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(5 * 1024 * 1024), "5MB");
        assert_eq!(human_size(1536), "1KB");
    }
}

//! The image store behind `/static/files/`.
//!
//! Uploads are untrusted: the type is decided from the file's first bytes (never the client's name or
//! MIME type), only PNG, JPEG, WebP and GIF are kept, the declared pixel size is bounded (a tiny file
//! can claim a huge canvas), and each file is stored under a fresh random name. It is written to a
//! temporary file first and renamed into place, so a failed upload leaves nothing behind.
//!
//! Each user has a quota ([`UploadQuota`]): uploads per hour, and bytes kept on disk in all. A file's
//! name ends with its owner's id (`<ms>-<random>-<user id>.<ext>`), so usage is recounted from the
//! directory at start and survives restarts; files stored before quotas existed belong to nobody.
//! An upload takes a [`UploadTicket`] before its body is read, so parallel uploads are counted as
//! they start, not after they have all been stored. Reading a body into memory takes one of the
//! store's few permits ([`UploadStore::permit`]), so uploads together hold a bounded amount of memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::auth::UserId;
use crate::error::AppError;
use crate::services::limiter::RateLimiter;

/// Where uploads are served from, relative to the site root.
pub const PUBLIC_PREFIX: &str = "/static/files/";
/// Largest accepted width or height, in pixels.
pub const MAX_SIDE: usize = 16_384;
/// Largest accepted pixel count (width × height): 40 MP, above any phone camera's or screen's
/// picture. Every viewer's browser decodes what it is sent, at 4 bytes a pixel.
pub const MAX_PIXELS: usize = 40_000_000;
/// Largest accepted ratio of the longer side to the shorter (phone panoramas are about 6:1).
pub const MAX_ASPECT: usize = 24;
/// Pictures above this many pixels must carry at least one byte of file per [`PIXELS_PER_BYTE`]
/// pixels. Real photographs and screenshots hold far more (a 12 MP photo is 2–5 MB, a 4K screenshot
/// hundreds of KB); only a crafted or blank canvas compresses further, and it is refused rather than
/// passed on for every viewer to decode.
pub const DENSITY_CHECK_PIXELS: usize = 4_000_000;
/// See [`DENSITY_CHECK_PIXELS`]: 128 pixels (512 decoded bytes) per file byte at most.
pub const PIXELS_PER_BYTE: usize = 128;

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

/// Decides whether `bytes` are an image chatroom keeps: its kind, and its declared pixel size within
/// [`MAX_SIDE`], [`MAX_PIXELS`] and [`MAX_ASPECT`], and in proportion to the file's size (see
/// [`DENSITY_CHECK_PIXELS`]). Reads headers only; nothing is decoded.
///
/// # Errors
/// [`AppError::Invalid`] for an empty file, an unaccepted format, an unreadable size or one out of
/// bounds.
pub fn inspect(bytes: &[u8]) -> Result<(ImageKind, imagesize::ImageSize), AppError> {
    if bytes.is_empty() {
        return Err(AppError::invalid("请选择要上传的图片"));
    }
    let kind =
        sniff(bytes).ok_or_else(|| AppError::invalid("只支持 PNG、JPEG、WebP 和 GIF 图片"))?;
    let size =
        imagesize::blob_size(bytes).map_err(|_| AppError::invalid("图片已损坏，无法识别尺寸"))?;
    if !in_proportion(size.width, size.height, bytes.len()) {
        return Err(AppError::invalid("图片尺寸过大"));
    }
    Ok((kind, size))
}

/// Whether a picture of `width` × `height` pixels in a file of `len` bytes is one to pass on.
pub fn in_proportion(width: usize, height: usize, len: usize) -> bool {
    let (long, short) = (width.max(height), width.min(height));
    let pixels = width.saturating_mul(height);
    short > 0
        && long <= MAX_SIDE
        && pixels <= MAX_PIXELS
        && long <= short.saturating_mul(MAX_ASPECT)
        && (pixels <= DENSITY_CHECK_PIXELS || len.saturating_mul(PIXELS_PER_BYTE) >= pixels)
}

/// A stored upload.
#[derive(Debug, Clone)]
pub struct StoredFile {
    /// The generated file name.
    pub name: String,
    /// Its root-relative URL (`/static/files/<name>`).
    pub url: String,
}

/// How much one user may upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadQuota {
    /// Uploads stored per hour.
    pub per_hour: u32,
    /// Bytes of stored uploads in all.
    pub bytes: u64,
}

impl UploadQuota {
    /// No limit beyond the size of each file.
    pub const UNLIMITED: Self = Self {
        per_hour: u32::MAX,
        bytes: u64::MAX,
    };
}

/// Uploads being read at once; each holds at most one file in memory.
const CONCURRENT_UPLOADS: usize = 8;

/// Stores accepted images in one directory.
#[derive(Clone)]
pub struct UploadStore {
    dir: PathBuf,
    max_bytes: usize,
    quota: UploadQuota,
    hourly: RateLimiter,
    /// Bytes on disk per owner.
    usage: Arc<Mutex<HashMap<UserId, u64>>>,
    /// Permits to read an upload into memory, [`CONCURRENT_UPLOADS`] in all.
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for UploadStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadStore")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

/// One upload's place in its owner's hourly allowance, taken before the upload is read. Storing a
/// file with it uses it up; dropping it unused gives the place back.
#[must_use = "store a file with the ticket, or drop it to give the place back"]
pub struct UploadTicket {
    owner: UserId,
    hourly: RateLimiter,
    used: bool,
}

impl UploadTicket {
    /// The user the upload is for.
    pub fn owner(&self) -> UserId {
        self.owner
    }
}

impl Drop for UploadTicket {
    fn drop(&mut self) {
        if !self.used {
            self.hourly.release(&self.owner.to_string());
        }
    }
}

impl UploadStore {
    /// A store writing into `dir` (created if missing) and accepting files up to `max_bytes`.
    ///
    /// # Errors
    /// If the directory cannot be created.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: usize) -> std::io::Result<Self> {
        Self::with_quota(dir, max_bytes, UploadQuota::UNLIMITED)
    }

    /// A store with a per-user `quota`. The directory's files are counted to their owners.
    ///
    /// # Errors
    /// If the directory cannot be created or listed.
    pub fn with_quota(
        dir: impl Into<PathBuf>,
        max_bytes: usize,
        quota: UploadQuota,
    ) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut usage: HashMap<UserId, u64> = HashMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(owner) = name.to_str().and_then(owner_of) {
                *usage.entry(owner).or_default() += entry.metadata()?.len();
            }
        }
        Ok(Self {
            dir,
            max_bytes,
            quota,
            hourly: RateLimiter::new(quota.per_hour, Duration::from_secs(3600)),
            usage: Arc::new(Mutex::new(usage)),
            permits: Arc::new(Semaphore::new(CONCURRENT_UPLOADS)),
        })
    }

    /// Waits for one of the permits to read an upload into memory; hold it until the file is read.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] if the permits are gone (they are never closed).
    pub async fn permit(&self) -> Result<SemaphorePermit<'_>, AppError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| AppError::Unavailable)
    }

    /// Takes a place in `owner`'s hourly allowance for one upload.
    ///
    /// # Errors
    /// [`AppError::OverQuota`] (not `storage`) when the hour's uploads are used up.
    pub fn ticket(&self, owner: UserId) -> Result<UploadTicket, AppError> {
        if !self.hourly.try_acquire(&owner.to_string()) {
            return Err(AppError::OverQuota {
                message: format!("每小时最多上传 {} 张图片，请稍后再试", self.quota.per_hour),
                storage: false,
            });
        }
        Ok(UploadTicket {
            owner,
            hourly: self.hourly.clone(),
            used: false,
        })
    }

    /// Bytes `owner`'s uploads take on disk.
    pub fn usage(&self, owner: UserId) -> u64 {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&owner)
            .copied()
            .unwrap_or(0)
    }

    /// Checks and stores an image for the ticket's owner, within their disk quota.
    ///
    /// # Errors
    /// As [`UploadStore::store`], and [`AppError::OverQuota`] (`storage`) when the file would take the
    /// owner past their quota.
    pub async fn store_for(
        &self,
        mut ticket: UploadTicket,
        bytes: &[u8],
    ) -> Result<StoredFile, AppError> {
        let owner = ticket.owner;
        let len = bytes.len() as u64;
        {
            let mut usage = self
                .usage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let used = usage.entry(owner).or_default();
            if used.saturating_add(len) > self.quota.bytes {
                return Err(AppError::OverQuota {
                    message: format!(
                        "图片空间已用完（{}），无法再上传",
                        human_size(usize::try_from(self.quota.bytes).unwrap_or(usize::MAX))
                    ),
                    storage: true,
                });
            }
            // Reserved now, so that parallel uploads cannot all fit in the same room.
            *used += len;
        }
        match self.write(bytes, Some(owner)).await {
            Ok(stored) => {
                ticket.used = true;
                Ok(stored)
            }
            Err(e) => {
                self.uncount(owner, len);
                Err(e)
            }
        }
    }

    fn uncount(&self, owner: UserId, len: u64) {
        let mut usage = self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(used) = usage.get_mut(&owner) {
            *used = used.saturating_sub(len);
        }
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
        self.write(bytes, None).await
    }

    async fn write(&self, bytes: &[u8], owner: Option<UserId>) -> Result<StoredFile, AppError> {
        if bytes.len() > self.max_bytes {
            return Err(self.too_large());
        }
        let (kind, _) = inspect(bytes)?;
        let owner = owner.map(|o| format!("-{o}")).unwrap_or_default();
        let name = format!(
            "{}-{}{owner}.{}",
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
        })
    }

    /// Removes a stored file whose message could not be saved, so nothing is left half-written.
    pub async fn discard(&self, file: &StoredFile) {
        let path = self.dir.join(&file.name);
        let len = tokio::fs::metadata(&path).await.map(|m| m.len());
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                if let (Some(owner), Ok(len)) = (owner_of(&file.name), len) {
                    self.uncount(owner, len);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, file = %file.name, "could not remove an orphaned upload");
            }
        }
    }

    /// Deletes the file `url` points at, if it is one of this store's (a removed message's picture).
    /// A file already gone is fine.
    pub async fn remove_url(&self, url: &str) {
        if !Self::owns_url(url) {
            return;
        }
        let path = url.split(['?', '#']).next().unwrap_or_default();
        let Some(name) = path.rsplit('/').next().filter(|n| !n.is_empty()) else {
            return;
        };
        let file = self.dir.join(name);
        let len = tokio::fs::metadata(&file).await.map(|m| m.len());
        match tokio::fs::remove_file(&file).await {
            Ok(()) => {
                if let (Some(owner), Ok(len)) = (owner_of(name), len) {
                    self.uncount(owner, len);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(error = %e, file = %name, "could not remove a picture"),
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

/// The owner a stored file's name records (`<ms>-<random>-<owner>.<ext>`), if it records one.
pub fn owner_of(name: &str) -> Option<UserId> {
    let stem = name.split('.').next()?;
    let mut parts = stem.split('-');
    let (_ms, _random, owner) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    crate::services::rooms::parse_user_id(owner)
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
    fn file_names_record_their_owner() {
        assert_eq!(owner_of("1700000000000-0123456789abcdef-42.png"), Some(42));
        assert_eq!(owner_of("1700000000000-0123456789abcdef.png"), None);
        assert_eq!(owner_of(".upload-1-2-3.png.tmp"), None);
        assert_eq!(owner_of("1-2-03.png"), None);
        assert_eq!(owner_of("1-2-3-4.png"), None);
    }

    #[tokio::test]
    async fn quotas_count_per_owner_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let quota = UploadQuota {
            per_hour: 3,
            bytes: 100,
        };
        let store = UploadStore::with_quota(dir.path(), 1000, quota).unwrap();
        let png = |len: usize| {
            let mut bytes =
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
            bytes.resize(len, 0);
            bytes
        };
        let first = store
            .store_for(store.ticket(7).unwrap(), &png(60))
            .await
            .unwrap();
        assert_eq!(owner_of(&first.name), Some(7));
        assert_eq!(store.usage(7), 60);
        let over = store.store_for(store.ticket(7).unwrap(), &png(41)).await;
        assert!(matches!(
            over,
            Err(AppError::OverQuota { storage: true, .. })
        ));
        assert_eq!(store.usage(7), 60, "a refused file takes no room");
        store
            .store_for(store.ticket(7).unwrap(), &png(40))
            .await
            .unwrap();
        // Two stored and the refused one given back: one more place this hour, then none.
        let ticket = store.ticket(7).unwrap();
        assert!(matches!(
            store.ticket(7),
            Err(AppError::OverQuota { storage: false, .. })
        ));
        drop(ticket);
        assert!(store.ticket(8).is_ok(), "others have their own allowance");
        let restarted = UploadStore::with_quota(dir.path(), 1000, quota).unwrap();
        assert_eq!(restarted.usage(7), 100);
        restarted.discard(&first).await;
        assert_eq!(restarted.usage(7), 40);
    }

    #[test]
    fn pictures_are_in_proportion_to_their_files() {
        // A 12 MP phone photo of 3 MB, a 4K screenshot of 400 KB, a small blank PNG, a panorama.
        assert!(in_proportion(4000, 3000, 3_000_000));
        assert!(in_proportion(3840, 2160, 400_000));
        assert!(in_proportion(1920, 1080, 8_000));
        assert!(in_proportion(12_000, 2_000, 6_000_000));
        // The hostile pass's 190 KB PNG declaring 16384×3051 (200 MB decoded).
        assert!(!in_proportion(16_384, 3_051, 190_000));
        // Over 40 MP however large the file; a 30 MP canvas in 100 KB; a 1×5000 strip; nothing.
        assert!(!in_proportion(8_000, 6_000, 30_000_000));
        assert!(!in_proportion(6_000, 5_000, 100_000));
        assert!(!in_proportion(5_000, 1, 10_000));
        assert!(!in_proportion(0, 100, 10_000));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(5 * 1024 * 1024), "5MB");
        assert_eq!(human_size(1536), "1KB");
    }
}

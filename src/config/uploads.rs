//! Uploads: where pictures and avatars are stored, how large one may be, and how many and how much one
//! user may store.

use std::path::{Path, PathBuf};

use clap::Args;

/// Flags for uploaded pictures and avatars.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Uploads")]
pub struct UploadsConfig {
    /// Where uploaded images are stored. Default: `<data dir>/uploads`.
    #[arg(long, env = "CHATROOM_UPLOAD_DIR")]
    pub upload_dir: Option<PathBuf>,

    /// Largest accepted upload, in bytes.
    #[arg(long, env = "CHATROOM_UPLOAD_MAX_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub upload_max_bytes: usize,

    /// Uploads (pictures and avatars) one user may store per hour.
    #[arg(long, env = "CHATROOM_UPLOADS_PER_HOUR", default_value_t = 100)]
    pub uploads_per_hour: u32,

    /// Bytes of uploads one user may keep on disk in total.
    #[arg(long, env = "CHATROOM_UPLOAD_QUOTA_BYTES", default_value_t = 500 * 1024 * 1024)]
    pub upload_quota_bytes: u64,
}

/// Uploaded pictures and avatars, resolved.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Where uploads are stored.
    pub dir: PathBuf,
    /// Largest accepted upload, in bytes (at least 1 KiB).
    pub max_bytes: usize,
    /// Uploads one user may store per hour.
    pub per_hour: u32,
    /// Bytes of uploads one user may keep on disk.
    pub quota_bytes: u64,
}

impl UploadsConfig {
    /// Fills in the upload directory (under `data_dir` by default).
    pub fn resolve(self, data_dir: &Path) -> UploadSettings {
        UploadSettings {
            dir: self.upload_dir.unwrap_or_else(|| data_dir.join("uploads")),
            max_bytes: self.upload_max_bytes.max(1024),
            per_hour: self.uploads_per_hour,
            quota_bytes: self.upload_quota_bytes,
        }
    }
}

impl UploadSettings {
    /// Test values: uploads in `dir`, limits no test reaches by accident.
    pub fn for_tests(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 5 * 1024 * 1024,
            per_hour: 1000,
            quota_bytes: 1 << 30,
        }
    }
}

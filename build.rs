//! Embeds the web client's build output, `frontend/dist/`, in the binary.
//!
//! `frontend/dist/` is committed (see `frontend/README.md` for why), so building the server needs no
//! Node.js. This script lists its files into `$OUT_DIR/web_assets.rs` as `(path, include_bytes!(…))`
//! pairs, which `src/api/web.rs` serves; file names are hashed by Vite, so the list changes with
//! every rebuild of the client and cannot be written by hand.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

fn main() -> io::Result<()> {
    println!("cargo::rerun-if-changed=frontend/dist");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = root.join("frontend").join("dist");
    if !dist.join("index.html").is_file() {
        return Err(io::Error::other(
            "frontend/dist/index.html is missing: restore it with `git checkout frontend/dist` \
             or rebuild it with `npm ci && npm run build` in frontend/",
        ));
    }
    let mut files = Vec::new();
    collect(&dist, &mut files)?;
    // Sorted as strings, the order `web.rs` looks paths up in.
    let mut entries = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&dist)
            .map_err(io::Error::other)?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        entries.push((relative, file));
    }
    entries.sort();
    let mut out = String::from("&[\n");
    for (relative, file) in &entries {
        let absolute = file.to_string_lossy();
        writeln!(out, "    ({relative:?}, include_bytes!({absolute:?})),")
            .map_err(io::Error::other)?;
    }
    out.push_str("]\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    std::fs::write(out_dir.join("web_assets.rs"), out)
}

/// Every file under `dir`, recursively.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

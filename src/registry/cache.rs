//! The on-disk, content-addressed cache: `<dir>/blobs/sha256/<hex>`, the layout of an
//! OCI image layout's `blobs/` (OCI image-spec `image-layout.md`).
//!
//! Content is only stored under its own sha256, so an entry never goes stale; every
//! read is verified, and a file that does not hash to its name is deleted. Every
//! failure to read or write is a cache miss, never an error.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A content-addressed blob cache rooted at a directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Cache {
    /// A cache in `root` (created on the first write, mode 0700).
    pub fn new(root: PathBuf) -> Cache {
        Cache { root }
    }

    /// The file for `digest` (`sha256:<hex>`), or `None` for another algorithm or a
    /// malformed digest.
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return None;
        }
        Some(self.root.join("blobs").join("sha256").join(hex))
    }

    /// The cached bytes for `digest`, if present, at most `limit` bytes, and hashing to
    /// `digest`. A file that does not verify (or is too large) is deleted.
    pub fn get(&self, digest: &str, limit: u64) -> Option<Vec<u8>> {
        let path = self.path(digest)?;
        // A regular file only (not a FIFO, a device or a symlink planted there).
        let bytes = match crate::edge::fsutil::read_regular(&path, limit, false) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(_) => {
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        if sha256_digest(&bytes) != digest {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(bytes)
    }

    /// Stores `bytes` under `digest` (which the caller has verified): written to a
    /// temporary file in the same directory, then renamed. Errors are ignored.
    pub fn put(&self, digest: &str, bytes: &[u8]) {
        let _ = self.try_put(digest, bytes);
    }

    fn try_put(&self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.path(digest) else {
            return Ok(());
        };
        let dir = path.parent().expect("blobs/sha256");
        create_private_dir(dir)?;
        // A new file with a random name, created exclusively: nothing planted in the
        // directory is written through.
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Creates `dir` and its missing parents with mode 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The default cache directory: `$XDG_CACHE_HOME/docker-microscale`, else
/// `$HOME/.cache/docker-microscale`; `None` when neither variable is set.
pub fn default_dir() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(xdg) = non_empty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(xdg).join("docker-microscale"));
    }
    non_empty("HOME").map(|h| PathBuf::from(h).join(".cache").join("docker-microscale"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_verification_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"));
        let d = sha256_digest(b"hello");
        assert_eq!(cache.get(&d, 100), None);
        cache.put(&d, b"hello");
        assert_eq!(cache.get(&d, 100).as_deref(), Some(&b"hello"[..]));
        assert_eq!(cache.get(&d, 2), None, "over the limit is a miss");
        cache.put(&d, b"hello");
        std::fs::write(cache.path(&d).unwrap(), b"HELLO").unwrap();
        assert_eq!(cache.get(&d, 100), None);
        assert!(
            !cache.path(&d).unwrap().exists(),
            "a corrupt file is deleted"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("c"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert_eq!(cache.path("sha512:aa"), None);
    }

    #[test]
    fn an_unwritable_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let cache = Cache::new(file.join("sub"));
        let d = sha256_digest(b"x");
        cache.put(&d, b"x");
        assert_eq!(cache.get(&d, 10), None);
    }
}

//! Reading and writing files at paths the user (or another user) controls, safely:
//! a FIFO or device where a file is expected must not hang the command, and an
//! output file must not be written through a planted temporary file.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Largest config file read (config.json, a context's meta.json), in bytes (4 MiB).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads `path`, which must be a regular file of at most `limit` bytes.
///
/// The file is opened non-blocking (a FIFO cannot stall the open) and checked on the
/// open descriptor, so it cannot be swapped for something else in between. With
/// `follow_symlinks` false, a symlink is refused too (for cache entries).
///
/// Errors: `NotFound` when it does not exist; `InvalidInput` when it is not a regular
/// file or is larger than `limit`; other I/O errors as they come.
pub fn read_regular(path: &Path, limit: u64, follow_symlinks: bool) -> std::io::Result<Vec<u8>> {
    let mut flags = libc::O_NONBLOCK;
    if !follow_symlinks {
        flags |= libc::O_NOFOLLOW;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file: it is {}", kind_name(&meta.file_type())),
        ));
    }
    if meta.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("larger than {limit} bytes"),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// What a file of type `ft` is, for an error message: `a regular file`, `a directory`,
/// `a FIFO (named pipe)`, `a socket`, `a block device`, `a character device`,
/// `a symlink`, else `not a regular file`.
pub fn kind_name(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_symlink() {
        "a symlink"
    } else {
        "not a regular file"
    }
}

/// Whether a regular file is at `path` (following symlinks), decided from metadata
/// alone: nothing is opened, so a FIFO cannot block.
///
/// `Ok(false)` only when nothing is there at all. Errors: `InvalidInput` when
/// something else is there, with what it is (`a FIFO (named pipe)`, `a directory`,
/// `a symlink to nothing`, ...: see [`kind_name`]); other I/O errors (a permission
/// denied on the directory) as they come. None of these may be taken for "absent".
pub fn regular_file_present(path: &Path) -> std::io::Result<bool> {
    let not_regular = |what: &str| {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            what.to_string(),
        ))
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(true),
        Ok(m) => not_regular(kind_name(&m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::symlink_metadata(path)
        {
            Ok(_) => not_regular("a symlink to nothing"),
            Err(e2) if e2.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e2) => Err(e2),
        },
        Err(e) => Err(e),
    }
}

/// Like [`read_regular`] (following symlinks), as text (invalid UTF-8 replaced).
pub fn read_config_text(path: &Path) -> std::io::Result<String> {
    read_regular(path, MAX_CONFIG_BYTES, true).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Writes `data` to `path` as `docker save -o` would, but never half-written:
///
/// - a regular file, or a path that does not exist yet: written to a new temporary
///   file (random name, created exclusively) in the same directory, then renamed over
///   it; an existing file keeps its mode and owner;
/// - a symlink: the same, for the file it points to;
/// - anything else (a device such as `/dev/stdout`, a FIFO): written directly.
///
/// Errors: the directory does not exist or is not writable, the path is a
/// directory, or a write fails (the target is then left as it was). An error about
/// the temporary file names its directory and the cause (`cannot create a file in
/// /srv/badges: Permission denied (os error 13)`), never the temporary file's name,
/// which the user never chose and which no longer exists.
pub fn write_replacing(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path)?,
        _ => path.to_path_buf(),
    };
    let existing = match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "it is a directory",
            ));
        }
        Ok(m) if !m.is_file() => {
            let mut f = OpenOptions::new().write(true).open(&target)?;
            f.write_all(data)?;
            return f.flush();
        }
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // tempfile names the temporary file in its errors: say the directory instead.
    let in_dir = |what: &str, e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("cannot {what} in {}: {}", dir.display(), cause_of(&e)),
        )
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".docker-microscale-")
        .tempfile_in(&dir)
        .map_err(|e| in_dir("create a file", e))?;
    let file = tmp.as_file_mut();
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| in_dir("write a file", e))?;
    if let Some(m) = existing {
        let f = tmp.as_file();
        f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| in_dir("set the mode of a file", e))?;
        // Keep the owner when we may (as root); otherwise the file becomes ours.
        let _ = std::os::unix::fs::fchown(f, Some(m.uid()), Some(m.gid()));
    } else {
        // A new file gets the usual mode (0666 minus the umask), not tempfile's 0600.
        let umask = unsafe_umask();
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o666 & !umask))
            .map_err(|e| in_dir("set the mode of a file", e))?;
    }
    tmp.persist(&target)
        .map_err(|e| in_dir("rename a file", e.error))?;
    Ok(())
}

/// The cause of an I/O error without the path tempfile adds to it (`Permission
/// denied (os error 13) at path "/dir/.docker-microscale-Ab12Cd"`: the operating
/// system's error, then ` at path` and the temporary file's name).
fn cause_of(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at path \"") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The process umask (read by setting and restoring it).
fn unsafe_umask() -> u32 {
    // SAFETY: umask(2) cannot fail; the value is restored at once. The plugin is
    // single-threaded when it writes files.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_regular(&fifo, 100, true).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(read_regular(dir.path(), 100, true).is_err());
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 101]).unwrap();
        assert!(read_regular(&big, 100, true).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert!(read_regular(&link, 1000, false).is_err());
        assert_eq!(read_regular(&link, 1000, true).unwrap().len(), 101);
    }

    #[test]
    fn writes_replace_files_keep_modes_follow_links_and_write_into_devices() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out.svg");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_replacing(&f, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);

        // a symlink is written through, and stays a symlink
        let real = dir.path().join("real.svg");
        std::fs::write(&real, "x").unwrap();
        let link = dir.path().join("link.svg");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_replacing(&link, b"through").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "through");

        // a device is written into, not replaced
        write_replacing(Path::new("/dev/null"), b"x").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        let e = write_replacing(Path::new("/dev/full"), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(!std::fs::metadata("/dev/full").unwrap().is_file());

        // nothing left behind, and a directory is refused
        assert!(write_replacing(dir.path(), b"x").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    }

    #[test]
    fn an_unwritable_directory_is_named_not_the_temporary_file() {
        // /sys takes no new files, even from root; a directory without write
        // permission does not either, for anyone else.
        let mut places = vec![Path::new("/sys").to_path_buf()];
        let dir = tempfile::tempdir().unwrap();
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            places.push(locked.clone());
        }
        for place in places {
            let e = write_replacing(&place.join("badge.svg"), b"x").unwrap_err();
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("cannot create a file in {}: ", place.display())),
                "{text}"
            );
            assert!(!text.contains(".docker-microscale"), "{text}");
            assert!(text.contains("(os error "), "the cause: {text}");
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{text}");
        }
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

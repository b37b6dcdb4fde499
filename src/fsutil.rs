//! Writing files so that nothing is lost: write to a temporary file beside the target, flush it
//! to disk, then rename it over the target. A crash or a full disk leaves the old file intact.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temp file + rename in the same folder).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_parts(path, &[bytes], true)
}

/// Writes `parts`, one after the other, to `path` atomically, without first joining them in
/// memory (a checkpoint's sections are each tens of megabytes).
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    write_parts(path, parts, true)
}

/// Replaces `path` by `bytes` through a temp file and a rename, but without the flush to disk:
/// for cache entries, which carry their own checksum and are recomputed when a crash left one
/// damaged. (A flush per entry costs milliseconds on many disks, times 25,000 photos.)
pub fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_parts(path, &[bytes], false)
}

fn write_parts(path: &Path, parts: &[&[u8]], durable: bool) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        if durable {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary name used while writing `path`: `.NAME.tmp-PID` in the same folder.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.vggtune");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn parts_are_written_in_order_and_replace_keeps_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        write_atomic_parts(&path, &[b"head", b"", b"-body"]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"head-body");
        write_replace(&path, b"entry").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"entry");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("x");
        assert!(write_atomic(&path, b"data").is_err());
    }
}

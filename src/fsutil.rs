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

/// Writes whatever `write` produces to `path` atomically, streamed through a buffer: for files
/// assembled from large pieces that are never joined in memory (an ONNX export's weights).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_with(path, true, |file| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        write(&mut out)?;
        out.flush()
    })
}

fn write_parts(path: &Path, parts: &[&[u8]], durable: bool) -> std::io::Result<()> {
    write_with(path, durable, |file| {
        for part in parts {
            file.write_all(part)?;
        }
        Ok(())
    })
}

fn write_with(
    path: &Path,
    durable: bool,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
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

/// vggtune's own folders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppDir {
    /// What can be made again: downloaded weights, the feature cache (`VGGTUNE_CACHE_DIR`).
    Cache,
    /// The window's last run: its model and checkpoint (`VGGTUNE_DATA_DIR`).
    Data,
}

/// Where one of vggtune's folders is: the environment variable when set, else the platform's
/// folder (`~/.cache/vggtune`, `~/.local/share/vggtune` on Linux), else one in the temp folder.
pub fn app_dir(which: AppDir) -> PathBuf {
    let variable = match which {
        AppDir::Cache => "VGGTUNE_CACHE_DIR",
        AppDir::Data => "VGGTUNE_DATA_DIR",
    };
    if let Some(dir) = std::env::var_os(variable) {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("", "", "vggtune")
        .map(|d| match which {
            AppDir::Cache => d.cache_dir().to_owned(),
            AppDir::Data => d.data_dir().to_owned(),
        })
        .unwrap_or_else(|| std::env::temp_dir().join("vggtune"))
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

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
    if durable {
        // Not for cache entries: a folder of 25,000 would be listed for each one.
        remove_stale_temps(path);
    }
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

/// Writing paths into JSON: a path that is not valid UTF-8 (possible on Linux) is written
/// lossily, with U+FFFD where its bytes are not text, instead of failing the whole output
/// (serde's own `PathBuf` serialisation is an error there). For `#[serde(serialize_with)]`.
pub mod lossy {
    use std::path::{Path, PathBuf};

    use serde::Serializer;

    /// One path.
    pub fn path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&path.to_string_lossy())
    }

    /// An optional path.
    pub fn option<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match path {
            Some(p) => s.serialize_some(&p.to_string_lossy()),
            None => s.serialize_none(),
        }
    }

    /// A list of paths.
    pub fn list<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
    }
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

/// Removes the temporary files that saves of `path` by processes that are gone left behind (a
/// save killed halfway): `.NAME.tmp-PID` beside it, for a PID that no longer runs. Where that
/// cannot be known (not Linux), only those untouched for a day.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && process_is_gone(pid, &entry) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn process_is_gone(pid: u32, entry: &std::fs::DirEntry) -> bool {
    if cfg!(target_os = "linux") {
        return !Path::new(&format!("/proc/{pid}")).exists();
    }
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(24 * 3600))
}

/// The temporary name used while writing `path`: `.NAME.tmp-PID-N` in the same folder, N
/// counting this process's writes, so two saves of one file at once never share a temp file.
pub fn temp_path(path: &Path) -> PathBuf {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
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
    fn a_save_removes_what_a_killed_save_of_the_same_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.vggtune");
        // PIDs above the kernel's limit (4194304) never run.
        let stale = dir.path().join(".model.vggtune.tmp-4294967");
        let other = dir.path().join(".other.vggtune.tmp-4294967");
        std::fs::write(&stale, b"half a model").unwrap();
        std::fs::write(&other, b"another file's").unwrap();
        write_atomic(&path, b"model").unwrap();
        assert!(!stale.exists(), "the killed save's temp file is gone");
        assert!(other.exists(), "another file's temp file is left alone");
        assert_eq!(std::fs::read(&path).unwrap(), b"model");
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-folder").join("x");
        assert!(write_atomic(&path, b"data").is_err());
    }
}

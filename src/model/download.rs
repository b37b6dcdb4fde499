//! Getting VGG16's ImageNet weights: download with progress, resume, hash check and an atomic
//! rename into the platform cache; and the cache's listing and imports.
//!
//! The download writes to `NAME.part` beside the final file, resumes a partial `.part` with an
//! HTTP range request, checks the SHA-256 (torchvision names its files after the hash's first
//! eight hex digits), and only then renames it into place, so a cached file is always complete.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::weights::sha256_file;

/// Where torchvision publishes VGG16's ImageNet weights.
pub const VGG16_URL: &str = "https://download.pytorch.org/models/vgg16-397923af.pth";
/// The start of that file's SHA-256.
pub const VGG16_SHA256_PREFIX: &str = "397923af";
/// That file's size in bytes (528 MB).
pub const VGG16_BYTES: u64 = 553_433_881;

/// How far a download has got.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DownloadProgress {
    /// Bytes on disk so far (including a resumed part).
    pub bytes: u64,
    /// The whole file's size, when the server said.
    pub total: Option<u64>,
    /// Bytes per second over this transfer.
    pub bytes_per_sec: f64,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server could not be reached or the connection broke.
    #[error("{url}: {reason}; what was downloaded so far is kept and the next try resumes it")]
    Network {
        /// The address.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url}: the server answered HTTP {status}")]
    Status {
        /// The address.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The file's hash is not the one expected; it was deleted.
    #[error(
        "{url}: the downloaded file's SHA-256 starts with {found}, not {expected}; it was deleted"
    )]
    Hash {
        /// The address.
        url: String,
        /// The expected prefix.
        expected: String,
        /// What the file had.
        found: String,
    },
    /// The user cancelled; the partial file is kept for a resume.
    #[error("download cancelled; the partial file is kept for a resume")]
    Cancelled,
    /// Local disk trouble.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The folder vggtune keeps downloaded and imported weights in.
pub fn weights_cache_dir() -> PathBuf {
    crate::fsutil::app_dir(crate::fsutil::AppDir::Cache).join("weights")
}

/// Downloads `url` to `dest`, resuming `dest.part` when it exists, checking the SHA-256 prefix.
///
/// `progress` is called about ten times a second; setting `cancel` stops within one read.
pub fn download(
    url: &str,
    dest: &Path,
    expected_sha256_prefix: &str,
    mut progress: impl FnMut(DownloadProgress),
    cancel: &AtomicBool,
) -> Result<PathBuf, DownloadError> {
    let io = |path: &Path, e: std::io::Error| DownloadError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let part = part_path(dest);
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let network = |e: ureq::Error| DownloadError::Network {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let mut response = request.call().map_err(network)?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
    let (resumed_from, total) = match status {
        206 => {
            // "bytes START-END/TOTAL"
            let total = header("content-range")
                .and_then(|v| v.rsplit('/').next().and_then(|t| t.parse().ok()));
            (have, total.or(length.map(|l| l + have)))
        }
        200 => (0, length),
        416 if have > 0 => {
            // The part is already whole (or the server disagrees): start again, cleanly.
            std::fs::remove_file(&part).map_err(|e| io(&part, e))?;
            return download(url, dest, expected_sha256_prefix, progress, cancel);
        }
        status => {
            return Err(DownloadError::Status {
                url: url.to_owned(),
                status,
            });
        }
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed_from > 0)
        .truncate(resumed_from == 0)
        .open(&part)
        .map_err(|e| io(&part, e))?;
    let mut reader = response.body_mut().as_reader();
    let fetched = Fetched {
        url,
        part: &part,
        resumed_from,
        total,
    };
    fetched.stream(&mut reader, file, &mut progress, cancel)?;
    let sha = sha256_file(&part).map_err(|e| io(&part, e))?;
    if !sha.starts_with(&expected_sha256_prefix.to_ascii_lowercase()) {
        let _ = std::fs::remove_file(&part);
        return Err(DownloadError::Hash {
            url: url.to_owned(),
            expected: expected_sha256_prefix.to_owned(),
            found: sha[..expected_sha256_prefix.len().min(sha.len())].to_owned(),
        });
    }
    std::fs::rename(&part, dest).map_err(|e| io(dest, e))?;
    Ok(dest.to_owned())
}

/// A download's body being written to its `.part` file.
struct Fetched<'a> {
    url: &'a str,
    part: &'a Path,
    /// Bytes already in the part file before this request.
    resumed_from: u64,
    /// The whole file's size, when the server said.
    total: Option<u64>,
}

impl Fetched<'_> {
    /// Appends the body to the part file and flushes it to disk, reporting progress about ten
    /// times a second; a stop asked for, a broken connection or a short body is an error.
    fn stream(
        &self,
        reader: &mut impl Read,
        mut file: std::fs::File,
        progress: &mut impl FnMut(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<u64, DownloadError> {
        let io = |e: std::io::Error| DownloadError::Io {
            path: self.part.to_owned(),
            reason: e.to_string(),
        };
        let mut buf = vec![0u8; 256 * 1024];
        let started = Instant::now();
        let mut last_report = Instant::now() - Duration::from_secs(1);
        let mut bytes = self.resumed_from;
        let report = |bytes: u64| DownloadProgress {
            bytes,
            total: self.total,
            bytes_per_sec: (bytes - self.resumed_from) as f64
                / started.elapsed().as_secs_f64().max(1e-3),
        };
        loop {
            if cancel.load(Ordering::Relaxed) {
                file.flush().map_err(io)?;
                return Err(DownloadError::Cancelled);
            }
            let n = reader.read(&mut buf).map_err(|e| DownloadError::Network {
                url: self.url.to_owned(),
                reason: format!("the connection broke after {bytes} bytes ({e})"),
            })?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(io)?;
            bytes += n as u64;
            if last_report.elapsed() >= Duration::from_millis(100) {
                last_report = Instant::now();
                progress(report(bytes));
            }
        }
        file.sync_all().map_err(io)?;
        if let Some(total) = self.total
            && bytes < total
        {
            return Err(DownloadError::Network {
                url: self.url.to_owned(),
                reason: format!("the server closed the connection after {bytes} of {total} bytes"),
            });
        }
        progress(report(bytes));
        Ok(bytes)
    }
}

/// Where the downloaded torchvision VGG16 lives in the cache (whether or not it is there yet).
pub fn cached_vgg16_path() -> PathBuf {
    cached_vgg16_path_in(&weights_cache_dir())
}

/// Where torchvision's VGG16 lives in the weights folder `dir`.
pub fn cached_vgg16_path_in(dir: &Path) -> PathBuf {
    dir.join("vgg16-397923af.pth")
}

/// Downloads torchvision's VGG16 into the cache, or returns the cached file.
pub fn download_vgg16(
    progress: impl FnMut(DownloadProgress),
    cancel: &AtomicBool,
) -> Result<PathBuf, DownloadError> {
    download_vgg16_into(&weights_cache_dir(), progress, cancel)
}

/// Downloads torchvision's VGG16 into the weights folder `dir`, or returns the file there.
pub fn download_vgg16_into(
    dir: &Path,
    progress: impl FnMut(DownloadProgress),
    cancel: &AtomicBool,
) -> Result<PathBuf, DownloadError> {
    let dest = cached_vgg16_path_in(dir);
    if dest.is_file() {
        return Ok(dest);
    }
    download(VGG16_URL, &dest, VGG16_SHA256_PREFIX, progress, cancel)
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// One weights file in the cache.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CachedWeights {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// True for a download that has not finished (a `.part` file).
    pub partial: bool,
}

/// The weights files in `dir` (the cache, by default), sorted by name.
pub fn list_cached(dir: &Path) -> Vec<CachedWeights> {
    let mut out: Vec<CachedWeights> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| CachedWeights {
                partial: path.extension().is_some_and(|x| x == "part"),
                bytes: meta.len(),
                path,
            })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Copies a local weights file into the cache (after checking it reads as VGG16 weights).
pub fn import_into_cache(file: &Path, dir: &Path) -> Result<PathBuf, super::weights::WeightsError> {
    let weights = super::weights::read_weights(file)?;
    super::weights::check_vgg16_base(&weights)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("imported-{}", &weights.sha256[..8]));
    let dest = dir.join(name);
    let io = |e: std::io::Error| super::weights::WeightsError::Io {
        path: dest.clone(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let bytes = std::fs::read(file).map_err(|e| super::weights::WeightsError::Io {
        path: file.to_owned(),
        reason: e.to_string(),
    })?;
    crate::fsutil::write_atomic(&dest, &bytes).map_err(io)?;
    Ok(dest)
}

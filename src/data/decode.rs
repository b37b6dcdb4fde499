//! Decoding one image file into 8-bit RGB, safely.
//!
//! Owns: format detection by content (a `.jpg` that is really a PNG still decodes), explicit
//! pixel and memory limits against decompression bombs, EXIF orientation, and the conversion of
//! grayscale, alpha, 16-bit and palette images to RGB. Must not panic on any input: every failure
//! is a [`DecodeError`] naming the file and the reason.

use std::io::{BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder as _, ImageReader, Limits, RgbImage};

/// Limits that refuse decompression bombs before any pixel memory is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodeLimits {
    /// The most pixels (width × height) an image may have.
    pub max_pixels: u64,
    /// The longest side an image may have, in pixels.
    pub max_side_px: u32,
    /// The most memory a decoder may allocate, in bytes.
    pub max_alloc_bytes: u64,
    /// The largest photo file read, in bytes (a 3 GB "photo" is refused unread).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_max_file_bytes() -> u64 {
    256 << 20
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            // 100 megapixels: far above any camera photo used for training (a 24 MP photo is
            // 6000×4000), far below what a bomb asks for.
            max_pixels: 100_000_000,
            max_side_px: 30_000,
            max_alloc_bytes: 1 << 30,
            max_file_bytes: default_max_file_bytes(),
        }
    }
}

impl DecodeLimits {
    /// Checks a header's dimensions against the limits.
    pub fn check(&self, width: u32, height: u32) -> Result<(), String> {
        let pixels = u64::from(width) * u64::from(height);
        if width == 0 || height == 0 {
            return Err(format!("the image has no pixels ({width}×{height})"));
        }
        if pixels > self.max_pixels || width.max(height) > self.max_side_px {
            return Err(format!(
                "{width}×{height} pixels is larger than the limit of {} megapixels / {} px a side",
                self.max_pixels / 1_000_000,
                self.max_side_px
            ));
        }
        Ok(())
    }

    fn image_limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_side_px);
        limits.max_image_height = Some(self.max_side_px);
        limits.max_alloc = Some(self.max_alloc_bytes);
        limits
    }
}

/// Why a file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be read at all.
    #[error("{path}: cannot read the file: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: String,
    },
    /// The content is not a format the app reads.
    #[error("{path}: not an image in a format vggtune reads (JPEG, PNG, WebP, BMP, GIF, TIFF)")]
    NotAnImage {
        /// The file.
        path: PathBuf,
    },
    /// The image is larger than [`DecodeLimits`] allows.
    #[error("{path}: refused: {reason}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size against the limit.
        reason: String,
    },
    /// The file ends before the image does.
    #[error("{path}: truncated: the file ends before the image does ({reason})")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The decoder failed (corrupt data).
    #[error("{path}: the image data is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
}

impl DecodeError {
    /// What went wrong, without the file's name (for lists that show the name beside it).
    pub fn reason(&self) -> String {
        let text = self.to_string();
        let path = match self {
            Self::Io { path, .. }
            | Self::NotAnImage { path }
            | Self::TooLarge { path, .. }
            | Self::Truncated { path, .. }
            | Self::Corrupt { path, .. } => path,
        };
        let prefix = format!("{}: ", path.display());
        text.strip_prefix(&prefix).unwrap_or(&text).to_owned()
    }
}

/// Decodes the photos at `paths` and prepares each one with `prepare(index, photo)`, on all
/// cores, in order: each photo's prepared values, or why it could not be decoded. (Decoding a
/// batch on one thread while the others wait was a few percent of a CPU feature pass, and would
/// be most of a GPU one.)
pub fn decode_prepared<F>(
    paths: &[&Path],
    limits: &DecodeLimits,
    prepare: F,
) -> Vec<Result<Vec<f32>, DecodeError>>
where
    F: Fn(usize, &RgbImage) -> Vec<f32> + Sync,
{
    use rayon::prelude::*;
    paths
        .par_iter()
        .enumerate()
        .map(|(i, path)| decode_rgb(path, limits).map(|photo| prepare(i, &photo)))
        .collect()
}

/// True for the extensions of the formats vggtune decodes.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| {
            ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"].contains(&e.as_str())
        })
}

/// Decodes `path` into RGB, applying EXIF orientation and compositing transparency over white.
/// The file is streamed into the decoder, not read whole first; one larger than
/// [`DecodeLimits::max_file_bytes`] is refused unread.
pub fn decode_rgb(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let io = |e: std::io::Error| DecodeError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    check_file_size(path, len, limits)?;
    decode_from(BufReader::with_capacity(1 << 16, file), path, limits)
}

/// Refuses a file larger than the limit, naming both sizes.
pub fn check_file_size(path: &Path, len: u64, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if len <= limits.max_file_bytes {
        return Ok(());
    }
    Err(DecodeError::TooLarge {
        path: path.to_owned(),
        reason: format!(
            "the file is {:.1} MB; vggtune reads photo files up to {} MB",
            len as f64 / 1e6,
            limits.max_file_bytes >> 20
        ),
    })
}

/// How much memory the decodes running at once may hold together. A decode that would pass it
/// waits for others to finish (one alone always runs, within [`DecodeLimits::max_alloc_bytes`]),
/// so peak memory does not grow with the number of cores: four 100-megapixel 16-bit PNGs took
/// 1.4 GB each, all at once, on as many threads.
pub const DECODE_MEMORY_BUDGET: u64 = 1 << 30;

/// The bytes reserved by decodes in progress.
struct MemoryBudget {
    in_use: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
}

static BUDGET: MemoryBudget = MemoryBudget::new();

/// Bytes held in a budget until dropped.
#[must_use]
struct Reservation<'a>(&'a MemoryBudget, u64);

impl MemoryBudget {
    const fn new() -> Self {
        Self {
            in_use: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
        }
    }

    fn fits(in_use: u64, bytes: u64) -> bool {
        in_use == 0 || in_use.saturating_add(bytes) <= DECODE_MEMORY_BUDGET
    }

    /// Waits until `bytes` fit beside the decodes in progress, then holds them.
    fn reserve(&self, bytes: u64) -> Reservation<'_> {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        while !Self::fits(*in_use, bytes) {
            in_use = self.freed.wait(in_use).unwrap_or_else(|e| e.into_inner());
        }
        *in_use += bytes;
        Reservation(self, bytes)
    }

    /// [`Self::reserve`] without waiting: `None` when `bytes` do not fit now.
    #[cfg(test)]
    fn try_reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        Self::fits(*in_use, bytes).then(|| {
            *in_use += bytes;
            Reservation(self, bytes)
        })
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let budget = self.0;
        let mut in_use = budget.in_use.lock().unwrap_or_else(|e| e.into_inner());
        *in_use = in_use.saturating_sub(self.1);
        budget.freed.notify_all();
    }
}

/// Decodes an image held in memory (a dropped or pasted image); `path` is only for messages.
pub fn decode_rgb_bytes(
    bytes: &[u8],
    path: &Path,
    limits: &DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    decode_from(Cursor::new(bytes), path, limits)
}

fn decode_from<R: std::io::BufRead + Seek>(
    reader: R,
    path: &Path,
    limits: &DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    let reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(|e| DecodeError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if reader.format().is_none() {
        return Err(DecodeError::NotAnImage {
            path: path.to_owned(),
        });
    }
    let mut reader = reader;
    reader.limits(limits.image_limits());
    let corrupt = |e: image::ImageError| classify(e, path);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    limits
        .check(width, height)
        .map_err(|reason| DecodeError::TooLarge {
            path: path.to_owned(),
            reason,
        })?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    // The decoded pixels, the RGB copy and, with transparency, an RGBA one: held in the budget
    // from before the decoder allocates until the RGB image is made.
    let pixels = u64::from(width) * u64::from(height);
    let extra = if decoder.color_type().has_alpha() {
        7
    } else {
        3
    };
    let _reservation = BUDGET.reserve(decoder.total_bytes().saturating_add(extra * pixels));
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    image.apply_orientation(orientation);
    Ok(to_rgb_over_white(image))
}

fn classify(e: image::ImageError, path: &Path) -> DecodeError {
    match e {
        image::ImageError::Limits(l) => DecodeError::TooLarge {
            path: path.to_owned(),
            reason: l.to_string(),
        },
        image::ImageError::Unsupported(u) => DecodeError::Corrupt {
            path: path.to_owned(),
            reason: format!("unsupported: {u}"),
        },
        other if looks_like_early_end(&other.to_string()) => DecodeError::Truncated {
            path: path.to_owned(),
            reason: other.to_string().trim().to_owned(),
        },
        other => DecodeError::Corrupt {
            path: path.to_owned(),
            reason: other.to_string().trim().to_owned(),
        },
    }
}

/// True for decoder messages that mean "the data stops too soon".
fn looks_like_early_end(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "not enough bytes",
        "unexpected eof",
        "unexpectedeof",
        "end of file",
        "unexpected end",
        "ended early",
        "truncated",
        "failed to fill whole buffer",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// Converts any colour type to 8-bit RGB; transparent pixels are composited over white.
fn to_rgb_over_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            let v = (u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255;
            dst[c] = v as u8;
        }
    }
    out
}

/// Reads only what is needed for the header: format (by content) and dimensions.
pub fn read_header(path: &Path) -> Result<(image::ImageFormat, u32, u32), DecodeError> {
    let file = std::fs::File::open(path).map_err(|e| DecodeError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    // Some decoders read their whole input before they parse a byte (the JPEG decoder does):
    // a header is read from the file's first bytes only, so a 3 GB "photo" costs no more than
    // a small one.
    let file = Capped {
        inner: file,
        left: HEADER_READ_CAP,
    };
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| DecodeError::Io {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let Some(format) = reader.format() else {
        return Err(DecodeError::NotAnImage {
            path: path.to_owned(),
        });
    };
    let (w, h) = reader.into_dimensions().map_err(|e| classify(e, path))?;
    Ok((format, w, h))
}

/// The most of a file read to find an image's format and size: markers before a JPEG's frame
/// header are at most a few of 64 KB each, PNG's size is in its first chunk, a TIFF's
/// directory is read where it lies.
pub const HEADER_READ_CAP: u64 = 16 << 20;

/// A file of which at most `left` bytes are read in all; seeks go through (a TIFF's directory
/// may sit after its pixels), reads past the budget see the end of the file.
struct Capped {
    inner: std::fs::File,
    left: u64,
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let room = usize::try_from(self.left).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

impl Seek for Capped {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

/// True when a JPEG or PNG visibly ends early (no end marker near the end of the file).
///
/// Reads only the last bytes of the file, so it is cheap enough for a scan of thousands of
/// files. Other formats are checked when they are decoded.
pub fn looks_truncated(path: &Path, format: image::ImageFormat) -> std::io::Result<bool> {
    const TAIL: u64 = 512;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(std::io::SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity(TAIL as usize);
    file.read_to_end(&mut tail)?;
    Ok(match format {
        image::ImageFormat::Jpeg => !tail.windows(2).any(|w| w == [0xFF, 0xD9]),
        image::ImageFormat::Png => !tail.windows(4).any(|w| w == b"IEND"),
        _ => false,
    })
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn decodes_that_do_not_fit_the_memory_budget_together_wait_and_a_lone_one_always_runs() {
        let big = DECODE_MEMORY_BUDGET / 2 + 1;
        let first = BUDGET.try_reserve(big).expect("nothing else is held");
        assert!(
            BUDGET.try_reserve(big).is_none(),
            "two would pass the budget"
        );
        assert!(
            BUDGET.try_reserve(1 << 20).is_some(),
            "a small one still fits"
        );
        drop(first);
        let lone = BUDGET.try_reserve(4 * DECODE_MEMORY_BUDGET);
        assert!(lone.is_some(), "one decode alone runs whatever its size");
    }

    #[test]
    fn a_reason_leaves_the_file_name_to_the_list_that_shows_it() {
        let e = DecodeError::NotAnImage {
            path: PathBuf::from("/photos/notes.txt"),
        };
        assert!(e.to_string().starts_with("/photos/notes.txt: "));
        assert!(e.reason().starts_with("not an image"), "{}", e.reason());
    }

    #[test]
    fn a_file_past_the_size_limit_is_refused_unread_with_both_sizes() {
        let limits = DecodeLimits::default();
        let err = check_file_size(Path::new("huge.jpg"), 3_000_000_000, &limits).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("huge.jpg") && text.contains("3000.0 MB") && text.contains("256 MB"),
            "{text}"
        );
        assert!(check_file_size(Path::new("ok.jpg"), 5_000_000, &limits).is_ok());
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn a_large_tiff_whose_directory_follows_its_pixels_still_has_a_header() {
        // 3000×2000 RGB, uncompressed: 18 MB of pixels before the directory, past the 16 MiB
        // a header read may take.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.tif");
        let pixels = vec![128u8; 3000 * 2000 * 3];
        image::save_buffer_with_format(
            &path,
            &pixels,
            3000,
            2000,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Tiff,
        )
        .unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > HEADER_READ_CAP);
        let (format, w, h) = read_header(&path).unwrap();
        assert_eq!((format, w, h), (image::ImageFormat::Tiff, 3000, 2000));
    }
}

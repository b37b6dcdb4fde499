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
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            // 100 megapixels: far above any camera photo used for training (a 24 MP photo is
            // 6000×4000), far below what a bomb asks for.
            max_pixels: 100_000_000,
            max_side_px: 30_000,
            max_alloc_bytes: 1 << 30,
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

/// Decodes `path` into RGB, applying EXIF orientation and compositing transparency over white.
pub fn decode_rgb(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    decode_rgb_bytes(&bytes, path, limits)
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

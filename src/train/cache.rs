//! The feature cache: outputs of the frozen part of the network, computed once per image and
//! kept on disk so later epochs and later runs train from them.
//!
//! Entries are grouped under a key made of everything that changes the output (the base weights'
//! SHA-256, the preprocessing, the input size, where the network is cut, its width) and named by
//! the SHA-256 of the image file's content, so a changed photo or changed weights never hit a
//! stale entry. Each entry carries its own checksum; a corrupt or short entry is treated as a miss
//! and recomputed. The cache is safe to delete.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::data::Preprocessing;
use crate::model::weights::hex;

const MAGIC: &[u8; 8] = b"VGGFEAT1";

/// What makes cached features valid.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CacheKey {
    /// SHA-256 of the base weights (or the description of a seeded random start).
    pub weights: String,
    /// How images were prepared.
    pub preprocessing: Preprocessing,
    /// How many convolutions the cached output went through.
    pub frozen_convs: usize,
    /// The network's width divisor.
    pub width_divisor: usize,
    /// The number format the frozen convolutions ran in (absent from an f32 key, so the
    /// caches written before bf16 existed stay valid).
    #[serde(default, skip_serializing_if = "is_f32")]
    pub precision: crate::model::bf16::Precision,
}

fn is_f32(p: &crate::model::bf16::Precision) -> bool {
    *p == crate::model::bf16::Precision::F32
}

impl CacheKey {
    /// The folder name for this key: the first 24 hex digits of its SHA-256.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex(&Sha256::digest(&json))[..24].to_owned()
    }
}

/// The folder all feature caches live in.
pub fn default_cache_root() -> PathBuf {
    crate::fsutil::app_dir(crate::fsutil::AppDir::Cache).join("features")
}

/// SHA-256 of an image file's bytes, in hex: the name of its cache entries.
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// One key's entries on disk.
#[derive(Clone, Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    len: usize,
}

impl FeatureCache {
    /// Opens (creating) the cache for `key` under `root`; every entry holds `len` floats.
    pub fn open(root: &Path, key: &CacheKey, len: usize) -> std::io::Result<Self> {
        let dir = root.join(key.id());
        std::fs::create_dir_all(&dir)?;
        let description = serde_json::to_vec_pretty(key).unwrap_or_default();
        let key_file = dir.join("key.json");
        if !key_file.exists() {
            crate::fsutil::write_atomic(&key_file, &description)?;
        }
        Ok(Self { dir, len })
    }

    /// The folder of this key's entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, content_hash: &str) -> PathBuf {
        self.dir.join(format!("{content_hash}.f32"))
    }

    /// The cached features of the image with this content hash, or `None` when absent, short or
    /// corrupt (a corrupt entry is removed).
    pub fn get(&self, content_hash: &str) -> Option<Vec<f32>> {
        let path = self.entry(content_hash);
        let bytes = std::fs::read(&path).ok()?;
        match self.decode(&bytes) {
            Some(v) => Some(v),
            None => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    pub(crate) fn decode(&self, bytes: &[u8]) -> Option<Vec<f32>> {
        let body_len = self.len * 4;
        if bytes.len() != 8 + 8 + body_len + 32 || &bytes[..8] != MAGIC {
            return None;
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
        if len != self.len {
            return None;
        }
        let body = &bytes[16..16 + body_len];
        if Sha256::digest(body)[..] != bytes[16 + body_len..] {
            return None;
        }
        Some(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// Stores the features of the image with this content hash (through a temp file and a rename;
    /// not flushed to disk: a damaged entry fails its checksum and is recomputed).
    pub fn put(&self, content_hash: &str, features: &[f32]) -> std::io::Result<()> {
        if features.len() != self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} floats for a cache of {}", features.len(), self.len),
            ));
        }
        let mut out = Vec::with_capacity(8 + 8 + features.len() * 4 + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.len as u64).to_le_bytes());
        let body_start = out.len();
        for v in features {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let digest = Sha256::digest(&out[body_start..]);
        out.extend_from_slice(&digest);
        crate::fsutil::write_replace(&self.entry(content_hash), &out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(weights: &str) -> CacheKey {
        CacheKey {
            weights: weights.into(),
            preprocessing: Preprocessing::torchvision(),
            frozen_convs: 13,
            width_divisor: 1,
            precision: Default::default(),
        }
    }

    #[test]
    fn bf16_features_have_a_cache_of_their_own_and_f32_keys_are_unchanged() {
        let f32_key = key("abc");
        // The id of an f32 key is what it was before keys had a precision.
        let json = serde_json::to_string(&f32_key).unwrap();
        assert!(!json.contains("precision"), "{json}");
        let bf16_key = CacheKey {
            precision: crate::model::bf16::Precision::Bf16,
            ..key("abc")
        };
        assert_ne!(f32_key.id(), bf16_key.id());
    }

    #[test]
    fn entries_round_trip_and_corruption_is_a_miss() {
        let root = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(root.path(), &key("abc"), 4).unwrap();
        assert_eq!(cache.get("img"), None);
        cache.put("img", &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(cache.get("img"), Some(vec![1.0, 2.0, 3.0, 4.0]));
        // Flip one byte of the body: the checksum catches it and the entry is dropped.
        let path = cache.dir().join("img.f32");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.get("img"), None);
        assert!(!path.exists());
        assert!(cache.put("img", &[1.0]).is_err());
    }

    #[test]
    fn other_weights_or_preprocessing_use_other_entries() {
        let a = key("abc");
        let b = key("abd");
        let c = CacheKey {
            preprocessing: Preprocessing::caffe(),
            ..key("abc")
        };
        assert_ne!(a.id(), b.id());
        assert_ne!(a.id(), c.id());
        assert_eq!(a.id(), key("abc").id());
    }
}

//! Seeded mutation tests of every parser of untrusted bytes: ONNX, safetensors, the model
//! bundle, feature-cache entries, image headers and exclusion lists. Each valid input is bit-flipped, truncated,
//! zeroed, has sections repeated and length-like fields set to 2^31, 2^32, 2^63, 2^64 − 1
//! and 0, thousands of times from a fixed seed; every parse must return an error or a value,
//! never panic, and never make one allocation larger than a fixed cap (a test-only global
//! allocator records the largest).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use crate::rng::SplitMix64;

/// Records, per thread, the largest single allocation since [`reset_peak`].
struct Counting;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = PEAK.try_with(|p| {
        if size > p.get() {
            p.set(size);
        }
    });
}

fn reset_peak() {
    PEAK.with(|p| p.set(0));
}

fn peak() -> usize {
    PEAK.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; `note` only reads and
// writes a const-initialised thread-local `Cell`, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The values a length or dimension field is set to.
const SPECIAL: [u64; 6] = [0, 1 << 31, 1 << 32, 1 << 63, u64::MAX, 0x7FFF_FFFF];

/// One mutation of `valid`, drawn from `rng`.
fn mutate(valid: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    let len = bytes.len().max(1);
    let at = |rng: &mut SplitMix64| (rng.next_u64() % len as u64) as usize;
    match rng.next_u64() % 6 {
        0 => {
            for _ in 0..1 + rng.next_u64() % 4 {
                let i = at(rng).min(bytes.len().saturating_sub(1));
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << (rng.next_u64() % 8);
                }
            }
        }
        1 => bytes.truncate(at(rng)),
        2 => {
            // A little-endian integer field set to a special value.
            let value = SPECIAL[(rng.next_u64() % SPECIAL.len() as u64) as usize];
            let width = [1, 2, 4, 8][(rng.next_u64() % 4) as usize];
            let i = at(rng);
            for (k, b) in value.to_le_bytes().iter().take(width).enumerate() {
                if let Some(slot) = bytes.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        3 => {
            // A protobuf varint set to a special value.
            let mut value = SPECIAL[(rng.next_u64() % SPECIAL.len() as u64) as usize];
            let mut varint = Vec::new();
            while value >= 0x80 {
                varint.push((value as u8 & 0x7F) | 0x80);
                value >>= 7;
            }
            varint.push(value as u8);
            let i = at(rng).min(bytes.len());
            bytes.splice(i..(i + varint.len()).min(bytes.len()), varint);
        }
        4 => {
            let (a, b) = (at(rng), at(rng));
            let (a, b) = (a.min(b), a.max(b).min(a + 4096));
            for byte in bytes.get_mut(a..b).unwrap_or_default() {
                *byte = 0;
            }
        }
        _ => {
            // A section repeated.
            let (a, b) = (at(rng), at(rng));
            let (a, b) = (a.min(b), a.max(b).min(a + 4096));
            let piece = bytes.get(a..b).unwrap_or_default().to_vec();
            let i = at(rng).min(bytes.len());
            bytes.splice(i..i, piece);
        }
    }
    bytes
}

/// Parses `cases` mutations of `valid` with `parse`; each must not panic nor allocate more
/// than `cap` bytes at once. Returns how many parsed without an error.
fn fuzz(
    what: &str,
    valid: &[u8],
    cases: usize,
    cap: usize,
    mut parse: impl FnMut(&[u8]) -> bool,
) -> usize {
    reset_peak();
    assert!(parse(valid), "{what}: the valid input must parse");
    assert!(
        peak() > 0,
        "{what}: the allocator records the parser's allocations"
    );
    let mut rng = SplitMix64(0x5EED ^ valid.len() as u64);
    let mut accepted = 0;
    for case in 0..cases {
        let bytes = mutate(valid, &mut rng);
        reset_peak();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&bytes)));
        let largest = peak();
        match outcome {
            Ok(ok) => accepted += usize::from(ok),
            Err(_) => {
                let dump = std::env::temp_dir().join(format!("vggtune-mutation-{what}-{case}"));
                let _ = std::fs::write(&dump, &bytes);
                panic!(
                    "{what}: mutation {case} panicked the parser (input: {})",
                    dump.display()
                );
            }
        }
        assert!(
            largest <= cap,
            "{what}: mutation {case} allocated {largest} bytes at once (cap {cap})"
        );
    }
    accepted
}

/// A small VGG16 (widths ÷ 16, the light head) with seeded weights.
fn tiny_model() -> (crate::model::Vgg16, crate::model::bundle::BundleHeader) {
    use crate::model::{HeadKind, Vgg16Config};
    let config = Vgg16Config {
        num_classes: 2,
        input_size: 224,
        width_divisor: 16,
        head: HeadKind::Dense256,
        dropout: 0.5,
    };
    let header = crate::model::bundle::BundleHeader {
        format_version: crate::model::bundle::FORMAT_VERSION,
        vggtune_version: crate::VERSION.to_owned(),
        classes: vec!["cat".into(), "dog".into()],
        preprocessing: crate::data::Preprocessing::torchvision(),
        model: config,
        trained: "head".into(),
        base_weights_sha256: "test".into(),
        base_weights_file: None,
        train_config: serde_json::Value::Null,
        history: serde_json::Value::Null,
        next_epoch: 0,
        validation: None,
        mirror_tta: false,
        square_tta: false,
        stage_start: None,
        calibration: None,
        typicality: None,
    };
    (config.init(&burn::tensor::Device::flex()), header)
}

const SMALL_CAP: usize = 16 << 20;

#[test]
fn mutated_onnx_safetensors_and_model_files_never_panic_nor_allocate_past_a_cap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (model, header) = tiny_model();

    let onnx = dir.path().join("m.onnx");
    crate::model::onnx_export::export_onnx(&model, &header, None, &onnx).expect("export");
    let onnx = std::fs::read(onnx).expect("read");
    let ok = fuzz("onnx", &onnx, 1500, SMALL_CAP, |b| {
        crate::model::onnx::read_onnx(b).is_ok()
    });
    eprintln!("onnx: {ok} of 1500 mutations still parsed");

    let st = dir.path().join("m.safetensors");
    crate::model::weights::export_safetensors(&model, header.preprocessing.convention, &st)
        .expect("export");
    let st = std::fs::read(st).expect("read");
    fuzz("safetensors", &st, 1500, SMALL_CAP, |b| {
        crate::model::weights::read_safetensors(b).is_ok()
    });

    let bundle = dir.path().join("m.vggtune");
    // With its training photos' features, so the fourth section is mutated too.
    let mut rng = crate::rng::SplitMix64(3);
    let features: Vec<Vec<f32>> = (0..40)
        .map(|_| (0..32).map(|_| (rng.next_u64() % 100) as f32).collect())
        .collect();
    let typical = crate::typical::Typicality::fit(&features, 1).expect("fit");
    crate::model::bundle::save_model(&bundle, &header, &model, Some(&typical)).expect("save");
    let bundle = std::fs::read(bundle).expect("read");
    // Half of the cases get a repaired checksum, so the header and weights are parsed too.
    let mut repair = false;
    fuzz("bundle", &bundle, 600, SMALL_CAP, |b| {
        repair = !repair;
        crate::model::bundle::parse_bytes(Path::new("m.vggtune"), b, repair).is_ok()
    });
}

#[test]
fn mutated_cache_entries_and_image_headers_never_panic_nor_allocate_past_a_cap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = crate::train::cache::CacheKey {
        weights: "w".into(),
        preprocessing: crate::data::Preprocessing::torchvision(),
        frozen_convs: 13,
        width_divisor: 1,
        precision: Default::default(),
    };
    let cache = crate::train::cache::FeatureCache::open(dir.path(), &key, 64).expect("open");
    let features: Vec<f32> = (0..64).map(|i| i as f32 * 0.5).collect();
    cache.put("entry", &features).expect("put");
    let entry = std::fs::read(
        std::fs::read_dir(dir.path().join(key.id()))
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "f32"))
            .expect("entry"),
    )
    .expect("read");
    fuzz("cache entry", &entry, 2000, SMALL_CAP, |b| {
        cache.decode(b).is_some_and(|v| v == features)
    });

    // Image headers: a real JPEG and a PNG made from it. The decoder may allocate what the
    // decode limits allow (a mutated header can claim up to their pixel count).
    let limits = crate::data::DecodeLimits::default();
    let cap = usize::try_from(limits.max_alloc_bytes).unwrap_or(usize::MAX) + (64 << 20);
    let photo =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dogscats/train/cat.4.jpg");
    let jpeg = std::fs::read(&photo).expect("a real photo in ../shared/data");
    let decode = |b: &[u8]| crate::data::decode::decode_rgb_bytes(b, &photo, &limits).is_ok();
    fuzz("jpeg", &jpeg, 400, cap, decode);
    let image = crate::data::decode::decode_rgb_bytes(&jpeg, &photo, &limits).expect("decode");
    let small = image::imageops::thumbnail(&image, 64, 48);
    let mut png = Vec::new();
    small
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    fuzz("png", &png, 600, cap, decode);
}

#[test]
fn mutated_pth_files_zip_and_legacy_never_panic_nor_allocate_past_a_cap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    for name in ["vgg16_div16_zip.pth", "vgg16_div16_legacy.pth"] {
        let valid = std::fs::read(fixtures.join(name)).expect("a torch-written fixture");
        let path = dir.path().join(name);
        fuzz(name, &valid, 300, SMALL_CAP, |b| {
            std::fs::write(&path, b).is_ok() && crate::model::read_weights(&path).is_ok()
        });
    }
}

#[test]
fn mutated_exclusion_lists_never_panic_nor_allocate_past_a_cap() {
    let valid =
        b"# Photos that vggtune leaves out\ncats/a.jpg\ndog.12.jpg\n\n  sub\\b.png \n".to_vec();
    let accepted = fuzz("exclusion list", &valid, 2000, SMALL_CAP, |b| {
        crate::data::curate::parse_list(b).len() <= b.len()
    });
    assert_eq!(
        accepted, 2000,
        "every list parses (lines it cannot use match no photo)"
    );
}

#[test]
fn mutated_sort_journals_never_panic_nor_allocate_past_a_cap() {
    let valid = br#"{"step":"sort","mode":"move","photos":2}
{"step":"folder","path":"/out/cat"}
{"step":"begin","from":"/pool/a.jpg","to":"/out/cat/a.jpg"}
{"step":"done","to":"/out/cat/a.jpg"}
{"step":"begin","from":"/pool/b.jpg","to":"/out/cat/b.jpg"}
"#
    .to_vec();
    fuzz("sort journal", &valid, 2000, SMALL_CAP, |b| {
        crate::sort::journal::parse_journal(b).is_ok()
    });
}

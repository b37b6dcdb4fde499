//! The data layer on real Kaggle photos and on a corpus of bad files made here.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};
use vggtune::data::{
    Augmentation, Dataset, DecodeError, DecodeLimits, Layout, Preprocessing, Problem, SkipReason,
    Split, SplitConfig, decode_rgb,
};

fn shared_train() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/dogscats/train")
}

fn running_as_root() -> bool {
    // Root reads files whatever their mode, so permission errors cannot be provoked.
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(true)
}

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 90])
    })
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(gradient(w, h)), ImageFormat::Jpeg)
}

#[test]
fn kaggle_flat_layout_takes_label_from_file_name() {
    let dataset = Dataset::scan(&shared_train()).unwrap();
    assert_eq!(dataset.layout, Layout::KaggleFlat);
    assert_eq!(dataset.classes, vec!["cat", "dog"]);
    assert_eq!(dataset.counts(), vec![1000, 999]);
    assert!(dataset.skipped.is_empty(), "{:?}", dataset.skipped);
    assert!(dataset.problems.is_empty(), "{:?}", dataset.problems);
    let first = &dataset.images[0];
    assert_eq!(first.rel, "cat.1.jpg");
    assert_eq!(first.format, "Jpeg");
    assert!(first.width > 0 && first.height > 0);
}

#[test]
fn folders_as_labels_tree_of_the_same_photos_gives_the_same_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Dataset::scan(&shared_train()).unwrap();
    for image in &source.images {
        let class = &source.classes[image.label];
        // Nested folders inside a class belong to it.
        let sub = if image.rel.ends_with("7.jpg") {
            "nested/deeper"
        } else {
            ""
        };
        let dir = tmp.path().join(format!("{class}s")).join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&image.path, dir.join(&image.rel)).unwrap();
    }
    let dataset = Dataset::scan(tmp.path()).unwrap();
    assert_eq!(dataset.layout, Layout::FoldersAsLabels);
    assert_eq!(dataset.classes, vec!["cats", "dogs"]);
    assert_eq!(dataset.counts(), vec![1000, 999]);
    assert!(dataset.skipped.is_empty(), "{:?}", dataset.skipped);
    assert!(
        dataset
            .images
            .iter()
            .any(|i| i.rel.starts_with("cats/nested/deeper/"))
    );
}

#[test]
fn any_number_of_classes_sorted_for_stable_indices() {
    let tmp = tempfile::tempdir().unwrap();
    for (class, n) in [("zebra", 3), ("ant", 2), ("moose", 4)] {
        for i in 0..n {
            write(
                &tmp.path().join(class).join(format!("{i}.jpg")),
                &jpeg(8, 8),
            );
        }
    }
    let dataset = Dataset::scan(tmp.path()).unwrap();
    assert_eq!(dataset.classes, vec!["ant", "moose", "zebra"]);
    assert_eq!(dataset.counts(), vec![2, 4, 3]);
}

#[test]
fn kaggle_root_with_train_valid_test_uses_the_explicit_validation_folder() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 1..=4 {
        write(&tmp.path().join(format!("train/cat.{i}.jpg")), &jpeg(8, 8));
        write(&tmp.path().join(format!("train/dog.{i}.jpg")), &jpeg(8, 8));
    }
    write(&tmp.path().join("valid/cats/a.jpg"), &jpeg(8, 8));
    write(&tmp.path().join("valid/dogs/b.jpg"), &jpeg(8, 8));
    write(&tmp.path().join("valid/cat/c.jpg"), &jpeg(8, 8));
    write(&tmp.path().join("test/1.jpg"), &jpeg(8, 8));
    let dataset = Dataset::scan(tmp.path()).unwrap();
    assert_eq!(dataset.train_dir, tmp.path().join("train"));
    assert_eq!(dataset.classes, vec!["cat", "dog"]);
    assert_eq!(dataset.test_dir, Some(tmp.path().join("test")));
    // valid/ uses folders named cats/dogs: unknown to train's classes, so reported.
    let valid = dataset.explicit_valid.as_ref().unwrap();
    assert_eq!(valid.len(), 1);
    assert_eq!(valid[0].rel, "cat/c.jpg");
    let unknown: Vec<_> = dataset
        .skipped
        .iter()
        .filter(|s| matches!(s.reason, SkipReason::UnknownClass(_)))
        .collect();
    assert_eq!(unknown.len(), 2, "{:?}", dataset.skipped);
    let split = Split::of(&dataset, &SplitConfig::default()).unwrap();
    assert!(split.explicit);
    assert_eq!(split.train.len(), 8);
    assert_eq!(split.valid.len(), 1);
}

/// A PNG whose header claims `w`×`h` pixels, followed by a tiny (invalid) body.
fn png_header_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut crc_input = b"IHDR".to_vec();
    crc_input.extend_from_slice(&ihdr);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&crc_input);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    // A tiny IDAT (an empty zlib stream), as a real bomb compresses its pixels to almost nothing.
    let idat = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
    let mut idat_chunk = b"IDAT".to_vec();
    idat_chunk.extend_from_slice(&idat);
    out.extend_from_slice(&(idat.len() as u32).to_be_bytes());
    out.extend_from_slice(&idat_chunk);
    out.extend_from_slice(&crc32(&idat_chunk).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(b"IEND");
    out.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn every_bad_file_is_skipped_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let cats = tmp.path().join("cats");
    let dogs = tmp.path().join("dogs");
    write(&cats.join("good.jpg"), &jpeg(16, 12));
    write(
        &cats.join("good2.png"),
        &encode(&DynamicImage::ImageRgb8(gradient(9, 9)), ImageFormat::Png),
    );
    write(&dogs.join("good.jpg"), &jpeg(16, 12));
    write(&dogs.join("good2.jpg"), &jpeg(12, 16));
    write(&cats.join("empty.jpg"), b"");
    write(&cats.join("notes.txt"), b"these are my notes about cats");
    write(
        &cats.join("text-named.jpg"),
        b"not a jpeg at all, just text in disguise",
    );
    // Cut inside the pixel data (header intact: caught by the missing end marker) and inside
    // the header (caught by the header reader).
    let full = jpeg(256, 256);
    write(&cats.join("truncated.jpg"), &full[..full.len() / 2]);
    write(&cats.join("header-cut.jpg"), &full[..200]);
    write(
        &cats.join("bomb.png"),
        &png_header_claiming(100_000, 100_000),
    );
    let mut garbage = b"\x89PNG\r\n\x1a\n".to_vec();
    garbage.extend_from_slice(&[0xAB; 64]);
    write(&cats.join("garbage.png"), &garbage);
    write(&cats.join(".DS_Store"), b"\0\0\0\x01Bud1");
    std::os::unix::fs::symlink(&cats, cats.join("loop")).unwrap();
    std::os::unix::fs::symlink(dogs.join("nowhere.jpg"), dogs.join("broken.jpg")).unwrap();
    std::os::unix::fs::symlink(dogs.join("self.jpg"), dogs.join("self.jpg")).unwrap();
    write(&tmp.path().join("loose.jpg"), &jpeg(8, 8));
    let locked = dogs.join("locked.jpg");
    write(&locked, &jpeg(8, 8));
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    let dataset = Dataset::scan(tmp.path()).unwrap();
    let reason_of = |name: &str| {
        dataset
            .skipped
            .iter()
            .find(|s| s.path.file_name().is_some_and(|n| n == name))
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{name} was not skipped: {:#?}", dataset.skipped))
    };
    assert_eq!(reason_of("empty.jpg"), SkipReason::Empty);
    assert_eq!(reason_of("notes.txt"), SkipReason::NotAnImage);
    assert_eq!(reason_of("text-named.jpg"), SkipReason::NotAnImage);
    assert_eq!(reason_of("truncated.jpg"), SkipReason::Truncated);
    assert_eq!(reason_of("header-cut.jpg"), SkipReason::Truncated);
    assert!(
        matches!(reason_of("bomb.png"), SkipReason::TooLarge(_)),
        "{:?}",
        reason_of("bomb.png")
    );
    assert!(matches!(
        reason_of("garbage.png"),
        SkipReason::Unreadable(_)
    ));
    assert_eq!(reason_of(".DS_Store"), SkipReason::Hidden);
    assert_eq!(reason_of("loop"), SkipReason::SymlinkLoop);
    assert_eq!(reason_of("broken.jpg"), SkipReason::BrokenLink);
    assert_eq!(reason_of("self.jpg"), SkipReason::SymlinkLoop);
    assert_eq!(reason_of("loose.jpg"), SkipReason::OutsideClassFolders);
    let good: Vec<&str> = dataset.images.iter().map(|i| i.rel.as_str()).collect();
    if running_as_root() {
        assert!(
            good.contains(&"dogs/locked.jpg"),
            "root reads any file: {good:?}"
        );
    } else {
        assert_eq!(reason_of("locked.jpg"), SkipReason::PermissionDenied);
    }
    assert!(
        good.contains(&"cats/good.jpg") && good.contains(&"cats/good2.png"),
        "{good:?}"
    );
    // Every reason reads as a sentence naming what to do or what is wrong.
    for s in &dataset.skipped {
        assert!(!s.message.is_empty());
    }
}

#[test]
fn unlabeled_files_in_the_flat_layout_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("cat.1.jpg"), &jpeg(8, 8));
    write(&tmp.path().join("dog.1.jpg"), &jpeg(8, 8));
    write(&tmp.path().join("123.jpg"), &jpeg(8, 8));
    let dataset = Dataset::scan(tmp.path()).unwrap();
    assert_eq!(dataset.layout, Layout::KaggleFlat);
    assert_eq!(dataset.skipped.len(), 1);
    assert_eq!(dataset.skipped[0].reason, SkipReason::Unlabeled);

    // A notes file beside them is not an image, whatever its name says.
    write(&tmp.path().join("readme.txt"), b"notes");
    let dataset = Dataset::scan(tmp.path()).unwrap();
    let readme = dataset
        .skipped
        .iter()
        .find(|s| s.path.ends_with("readme.txt"))
        .unwrap();
    assert_eq!(readme.reason, SkipReason::NotAnImage);
}

#[test]
fn empty_folders_single_class_and_imbalance_are_problems_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = Dataset::scan(tmp.path()).unwrap();
    assert_eq!(empty.problems, vec![Problem::NoImages]);
    assert!(!empty.trainable());

    write(&tmp.path().join("cats/1.jpg"), &jpeg(8, 8));
    write(&tmp.path().join("cats/2.jpg"), &jpeg(8, 8));
    std::fs::create_dir_all(tmp.path().join("dogs")).unwrap();
    let single = Dataset::scan(tmp.path()).unwrap();
    assert!(single.problems.contains(&Problem::EmptyClass {
        class: "dogs".into()
    }));
    assert!(
        single
            .problems
            .iter()
            .any(|p| matches!(p, Problem::SingleClass { .. }))
    );
    assert!(!single.trainable());

    for i in 0..8 {
        write(&tmp.path().join(format!("cats/more{i}.jpg")), &jpeg(8, 8));
    }
    write(&tmp.path().join("dogs/1.jpg"), &jpeg(8, 8));
    write(&tmp.path().join("dogs/2.jpg"), &jpeg(8, 8));
    let imbalanced = Dataset::scan(tmp.path()).unwrap();
    assert!(imbalanced.trainable());
    assert!(
        imbalanced.problems.iter().any(|p| matches!(
            p,
            Problem::Imbalance { largest, largest_count: 10, smallest, smallest_count: 2 }
                if largest == "cats" && smallest == "dogs"
        )),
        "{:?}",
        imbalanced.problems
    );
}

#[test]
fn split_is_stratified_seeded_and_stable_when_unrelated_files_are_added() {
    let dataset = Dataset::scan(&shared_train()).unwrap();
    let config = SplitConfig {
        valid_fraction: 0.1,
        seed: 7,
    };
    let split = Split::of(&dataset, &config).unwrap();
    let valid_counts = |s: &Split| {
        let mut c = vec![0; 2];
        for i in &s.valid {
            c[i.label] += 1;
        }
        c
    };
    assert_eq!(valid_counts(&split), vec![100, 100]);
    assert_eq!(split.train.len() + split.valid.len(), 1999);
    assert_eq!(
        Split::of(&dataset, &config).unwrap(),
        split,
        "same seed, same split"
    );
    let other = Split::of(&dataset, &SplitConfig { seed: 8, ..config }).unwrap();
    assert_ne!(other.valid, split.valid, "another seed, another split");

    // The same files in another folder, plus unrelated files: the same images are held out.
    let tmp = tempfile::tempdir().unwrap();
    for image in &dataset.images {
        std::os::unix::fs::symlink(&image.path, tmp.path().join(&image.rel)).unwrap();
    }
    write(&tmp.path().join("readme.txt"), b"unrelated");
    write(&tmp.path().join("horse.1.jpg"), &jpeg(8, 8));
    let moved = Dataset::scan(tmp.path()).unwrap();
    let moved_split = Split::of(&moved, &config).unwrap();
    let rels = |v: &[vggtune::data::ImageEntry]| {
        v.iter()
            .filter(|i| !i.rel.starts_with("horse"))
            .map(|i| i.rel.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(rels(&moved_split.valid), rels(&split.valid));

    assert!(
        Split::of(
            &dataset,
            &SplitConfig {
                valid_fraction: 1.5,
                seed: 1
            }
        )
        .is_err()
    );
}

#[test]
fn every_format_and_colour_type_decodes_to_rgb() {
    let tmp = tempfile::tempdir().unwrap();
    let rgb = DynamicImage::ImageRgb8(gradient(20, 10));
    let cases: Vec<(&str, DynamicImage, ImageFormat)> = vec![
        ("a.jpg", rgb.clone(), ImageFormat::Jpeg),
        ("a.png", rgb.clone(), ImageFormat::Png),
        ("a.webp", rgb.clone(), ImageFormat::WebP),
        ("a.bmp", rgb.clone(), ImageFormat::Bmp),
        ("a.gif", rgb.clone(), ImageFormat::Gif),
        ("a.tiff", rgb.clone(), ImageFormat::Tiff),
        (
            "gray.png",
            DynamicImage::ImageLuma8(rgb.to_luma8()),
            ImageFormat::Png,
        ),
        (
            "alpha.png",
            DynamicImage::ImageRgba8(rgb.to_rgba8()),
            ImageFormat::Png,
        ),
        (
            "deep.png",
            DynamicImage::ImageRgb16(rgb.to_rgb16()),
            ImageFormat::Png,
        ),
        (
            "graya16.png",
            DynamicImage::ImageLumaA16(rgb.to_luma_alpha16()),
            ImageFormat::Png,
        ),
    ];
    for (name, image, format) in cases {
        let path = tmp.path().join(name);
        write(&path, &encode(&image, format));
        let decoded =
            decode_rgb(&path, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.dimensions(), (20, 10), "{name}");
    }
    // A PNG saved under a .jpg name is decoded by content.
    let path = tmp.path().join("really-a-png.jpg");
    write(&path, &encode(&rgb, ImageFormat::Png));
    let decoded = decode_rgb(&path, &DecodeLimits::default()).unwrap();
    assert_eq!(
        decoded,
        rgb.to_rgb8(),
        "PNG is lossless: content must match exactly"
    );
}

#[test]
fn transparent_pixels_become_white() {
    let tmp = tempfile::tempdir().unwrap();
    let clear = image::RgbaImage::from_pixel(4, 4, image::Rgba([0, 0, 0, 0]));
    let path = tmp.path().join("clear.png");
    write(
        &path,
        &encode(&DynamicImage::ImageRgba8(clear), ImageFormat::Png),
    );
    let decoded = decode_rgb(&path, &DecodeLimits::default()).unwrap();
    assert_eq!(decoded.get_pixel(0, 0).0, [255, 255, 255]);
}

/// Inserts an EXIF APP1 segment with the given orientation right after a JPEG's SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("portrait.jpg");
    // Orientation 6: the camera was turned; the stored 40×20 image must be shown as 20×40.
    write(&path, &with_exif_orientation(&jpeg(40, 20), 6));
    let decoded = decode_rgb(&path, &DecodeLimits::default()).unwrap();
    assert_eq!(decoded.dimensions(), (20, 40));
}

#[test]
fn decompression_bombs_and_damaged_files_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = tmp.path().join("bomb.png");
    write(&bomb, &png_header_claiming(100_000, 100_000));
    let err = decode_rgb(&bomb, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("bomb.png"), "{err}");

    let small_limits = DecodeLimits {
        max_pixels: 100,
        ..DecodeLimits::default()
    };
    let big = tmp.path().join("big.jpg");
    write(&big, &jpeg(20, 20));
    assert!(matches!(
        decode_rgb(&big, &small_limits),
        Err(DecodeError::TooLarge { .. })
    ));

    let truncated = tmp.path().join("cut.png");
    let png = encode(&DynamicImage::ImageRgb8(gradient(64, 64)), ImageFormat::Png);
    write(&truncated, &png[..png.len() / 2]);
    let err = decode_rgb(&truncated, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { .. }), "{err}");
    let garbage = tmp.path().join("garbage.png");
    let mut bytes = png[..40].to_vec();
    bytes.extend_from_slice(&[0xAB; 4000]);
    write(&garbage, &bytes);
    let err = decode_rgb(&garbage, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Corrupt { .. } | DecodeError::Truncated { .. }
        ),
        "{err}"
    );

    let missing = decode_rgb(&tmp.path().join("missing.jpg"), &DecodeLimits::default());
    assert!(matches!(missing, Err(DecodeError::Io { .. })));
}

#[test]
fn preprocessing_of_a_real_photo_has_the_model_input_shape() {
    let dataset = Dataset::scan(&shared_train()).unwrap();
    let photo = decode_rgb(&dataset.images[0].path, &DecodeLimits::default()).unwrap();
    for p in [Preprocessing::torchvision(), Preprocessing::caffe()] {
        let input = p.apply(&photo, None);
        assert_eq!(input.len(), p.input_len());
        assert!(input.iter().all(|v| v.is_finite()));
        let augmented = p.apply(&photo, Some((&Augmentation::default(), 1)));
        assert_eq!(augmented.len(), input.len());
        assert_ne!(augmented, input);
    }
}

#[test]
fn a_batch_decodes_on_all_cores_in_order_with_each_failure_in_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 0..40u32 {
        let path = tmp.path().join(format!("{i}.jpg"));
        if i % 7 == 3 {
            write(&path, b"not a jpeg");
        } else {
            write(&path, &jpeg(10 + i, 12));
        }
        paths.push(path);
    }
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    // Each photo's width and the index it was prepared under, so order and pairing show.
    let prepared = vggtune::data::decode_prepared(&refs, &DecodeLimits::default(), |i, photo| {
        vec![photo.width() as f32, i as f32]
    });
    assert_eq!(prepared.len(), 40);
    for (i, result) in prepared.iter().enumerate() {
        match result {
            Ok(values) => {
                assert_ne!(i % 7, 3, "{i} decoded");
                assert_eq!(values, &[10.0 + i as f32, i as f32]);
            }
            Err(e) => {
                assert_eq!(i % 7, 3, "{i}: {e}");
                assert!(e.to_string().contains(&format!("{i}.jpg")), "{e}");
            }
        }
    }
}

/// A pool of four "photos" (distinct bytes) in two sub-folders, two of them named alike.
fn sort_pool(root: &Path) -> Vec<PathBuf> {
    let files = ["a/x.jpg", "b/x.jpg", "b/y.jpg", "z.png"];
    files
        .iter()
        .enumerate()
        .map(|(i, rel)| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("photo {i} {}", "x".repeat(i * 100))).unwrap();
            path
        })
        .collect()
}

fn contents(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn a_sort_copies_under_free_names_and_its_undo_removes_only_the_copies() {
    use vggtune::sort::journal::{self, Mode};
    let work = tempfile::tempdir().unwrap();
    let pool = sort_pool(&work.path().join("pool"));
    let before = contents(&pool);
    let out = work.path().join("out");
    // A photo already there under the same name is never overwritten.
    std::fs::create_dir_all(out.join("cat")).unwrap();
    std::fs::write(out.join("cat/x.jpg"), "already here").unwrap();
    let plan: Vec<(PathBuf, String)> = vec![
        (pool[0].clone(), "cat".into()),
        (pool[1].clone(), "cat".into()),
        (pool[2].clone(), "dog".into()),
    ];
    let never = std::sync::atomic::AtomicBool::new(false);
    let report = journal::apply(&out, &plan, Mode::Copy, |_, _| {}, &never).unwrap();
    assert_eq!(report.sorted(), 3);
    assert_eq!(report.renamed, 2);
    assert_eq!(
        std::fs::read(out.join("cat/x.jpg")).unwrap(),
        b"already here"
    );
    assert_eq!(std::fs::read(out.join("cat/x-2.jpg")).unwrap(), before[0]);
    assert_eq!(std::fs::read(out.join("cat/x-3.jpg")).unwrap(), before[1]);
    assert_eq!(std::fs::read(out.join("dog/y.jpg")).unwrap(), before[2]);
    assert_eq!(contents(&pool), before, "copying leaves the pool as it was");
    // The sorted folder scans as any other: two classes, the journal passed over (the
    // "photos" here are not images: skipped as such).
    let scanned = Dataset::scan(&out).unwrap();
    assert_eq!(scanned.classes, ["cat", "dog"]);
    assert_eq!(scanned.skipped.len(), 4, "{:?}", scanned.skipped);
    assert!(
        scanned
            .skipped
            .iter()
            .all(|s| s.reason == SkipReason::NotAnImage)
    );

    let undone = journal::undo(&out).unwrap();
    assert_eq!((undone.removed, undone.restored), (3, 0), "{undone:?}");
    assert_eq!(
        std::fs::read(out.join("cat/x.jpg")).unwrap(),
        b"already here"
    );
    assert!(!out.join("cat/x-2.jpg").exists() && !out.join("dog").exists());
    assert!(!out.join(journal::JOURNAL_FILE).exists());
    assert_eq!(contents(&pool), before);
    assert!(journal::undo(&out).is_err(), "nothing left to undo");
}

#[test]
fn a_sort_interrupted_by_a_crash_is_undone_from_its_journal_and_loses_nothing() {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use vggtune::sort::journal::{self, Mode};
    let work = tempfile::tempdir().unwrap();
    let pool = sort_pool(&work.path().join("pool"));
    let before = contents(&pool);
    let out = work.path().join("out");
    let plan: Vec<(PathBuf, String)> = pool
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), ["cat", "dog"][i % 2].to_owned()))
        .collect();
    // Stopped after two photos...
    let stop = AtomicBool::new(false);
    let report = journal::apply(
        &out,
        &plan,
        Mode::Move,
        |done, _| stop.store(done == 2, Ordering::Relaxed),
        &stop,
    )
    .unwrap();
    assert!(report.cancelled);
    assert_eq!(report.sorted(), 2);
    assert!(!pool[0].exists() && !pool[1].exists());
    assert_eq!(std::fs::read(out.join("cat/x.jpg")).unwrap(), before[0]);
    // ...and a crash in the middle of the third (another file system: half a copy, journalled
    // as begun, never as done).
    let partial = out.join("cat/y.jpg");
    std::fs::write(&partial, &before[2][..5]).unwrap();
    let mut journal_file = std::fs::OpenOptions::new()
        .append(true)
        .open(out.join(journal::JOURNAL_FILE))
        .unwrap();
    let begun = serde_json::json!({"step": "begin", "from": pool[2], "to": partial});
    writeln!(journal_file, "{begun}").unwrap();
    // The crash cut the next line short.
    write!(journal_file, "{{\"step\":\"do").unwrap();
    drop(journal_file);

    // A sort after the crash is journalled after the cut line (on a line of its own), and is
    // the one the next undo takes back.
    let never = AtomicBool::new(false);
    let later = vec![(pool[3].clone(), "dog".to_owned())];
    journal::apply(&out, &later, Mode::Copy, |_, _| {}, &never).unwrap();
    let undone = journal::undo(&out).unwrap();
    assert_eq!((undone.restored, undone.removed), (0, 1), "{undone:?}");

    let undone = journal::undo(&out).unwrap();
    assert_eq!((undone.restored, undone.removed), (2, 1), "{undone:?}");
    assert!(undone.kept.is_empty(), "{undone:?}");
    assert_eq!(contents(&pool), before, "every photo is back, whole");
    assert!(!out.join("cat").exists() && !out.join("dog").exists());
}

#[test]
fn a_sort_into_a_folder_that_cannot_be_made_says_which_and_moves_nothing() {
    use vggtune::sort::journal::{self, Mode};
    let work = tempfile::tempdir().unwrap();
    let pool = sort_pool(&work.path().join("pool"));
    let before = contents(&pool);
    // The target sits under a file: it cannot be made, whoever runs this.
    let blocker = work.path().join("file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let out = blocker.join("out");
    let plan = vec![(pool[0].clone(), "cat".to_owned())];
    let never = std::sync::atomic::AtomicBool::new(false);
    let err = journal::apply(&out, &plan, Mode::Move, |_, _| {}, &never).unwrap_err();
    assert!(err.contains(&out.display().to_string()), "{err}");
    assert_eq!(contents(&pool), before);
    // A class that cannot be a folder's name is refused before anything is done.
    let out = work.path().join("out");
    let bad = vec![(pool[0].clone(), "../escape".to_owned())];
    let err = journal::apply(&out, &bad, Mode::Move, |_, _| {}, &never).unwrap_err();
    assert!(err.contains("../escape"), "{err}");
    assert_eq!(contents(&pool), before);
    assert!(!work.path().join("escape").exists());
}

#[test]
fn a_sort_moves_a_linked_photo_as_the_photo_it_points_to() {
    use vggtune::sort::journal::{self, Mode};
    let work = tempfile::tempdir().unwrap();
    let real = work.path().join("real.jpg");
    std::fs::write(&real, "the photo").unwrap();
    let pool = work.path().join("pool");
    std::fs::create_dir_all(&pool).unwrap();
    let link = pool.join("linked.jpg");
    std::os::unix::fs::symlink("../real.jpg", &link).unwrap();
    let out = work.path().join("out");
    let never = std::sync::atomic::AtomicBool::new(false);
    let plan = vec![(link.clone(), "cat".to_owned())];
    let report = journal::apply(&out, &plan, Mode::Move, |_, _| {}, &never).unwrap();
    assert_eq!(report.sorted(), 1, "{report:?}");
    let sorted = out.join("cat/linked.jpg");
    assert!(!sorted.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&sorted).unwrap(), b"the photo");
    assert_eq!(
        std::fs::read(&real).unwrap(),
        b"the photo",
        "the photo linked to stays"
    );
    journal::undo(&out).unwrap();
    assert_eq!(std::fs::read(&link).unwrap(), b"the photo");
}

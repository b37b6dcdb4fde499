//! Scanning a photo folder into a labelled [`Dataset`], the way users keep their photos.
//!
//! Owns: layout detection (folders-as-labels, Kaggle's flat `cat.1.jpg`, a Kaggle-style root with
//! `train/`, `valid/`, `test/`), the list of usable images, every skipped file with a reason a user
//! can act on, and problems that would spoil training (no images, one class, imbalance). Reads
//! only file headers (and a JPEG's or PNG's last bytes), never whole images, so it is fast on
//! 25,000 files. Must not panic on any file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::decode::{DecodeError, DecodeLimits, looks_truncated, read_header};

/// How a folder is organised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One sub-folder per class; nested folders inside a class belong to it.
    FoldersAsLabels,
    /// Kaggle's flat layout: `cat.123.jpg`, label = the name before the first dot.
    KaggleFlat,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FoldersAsLabels => "one folder per class",
            Self::KaggleFlat => "Kaggle flat (label before the first dot of the file name)",
        })
    }
}

/// Options for [`Dataset::scan`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScanOptions {
    /// Images larger than these are skipped.
    pub limits: DecodeLimits,
    /// Largest class ÷ smallest class above which imbalance is reported.
    pub imbalance_ratio: f64,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            limits: DecodeLimits::default(),
            imbalance_ratio: 3.0,
        }
    }
}

/// One usable image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ImageEntry {
    /// Where the file is.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// The path relative to the scanned folder, with `/` separators: the same on any machine.
    pub rel: String,
    /// Index into [`Dataset::classes`].
    pub label: usize,
    /// Width in pixels, from the header.
    pub width: u32,
    /// Height in pixels, from the header.
    pub height: u32,
    /// The format found in the content (not the extension).
    pub format: String,
    /// File size in bytes.
    pub bytes: u64,
}

/// Why a file was left out.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum SkipReason {
    /// The file has no bytes.
    Empty,
    /// The content is no image format vggtune reads.
    NotAnImage,
    /// The header could not be parsed.
    Unreadable(String),
    /// The file ends before the image does.
    Truncated,
    /// More pixels than the limits allow.
    TooLarge(String),
    /// The OS refused to let us read it.
    PermissionDenied,
    /// A symbolic link that leads back to one of its own parent folders.
    SymlinkLoop,
    /// A symbolic link whose target does not exist.
    BrokenLink,
    /// Not a regular file: a FIFO, a socket or a device.
    NotAFile,
    /// In the flat layout, the name has no `label.` prefix (e.g. `123.jpg`).
    Unlabeled,
    /// A file lying outside every class folder in the folders-as-labels layout.
    OutsideClassFolders,
    /// In `valid/`, a class that `train/` does not have.
    UnknownClass(String),
    /// A hidden file or folder (name starting with a dot).
    Hidden,
    /// Listed in the folder's exclusion list ([`super::lists::EXCLUDED_FILE`]).
    Excluded,
    /// Any other I/O error.
    Io(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "the file is empty (0 bytes)"),
            Self::NotAnImage => write!(
                f,
                "not an image (vggtune reads JPEG, PNG, WebP, BMP, GIF and TIFF)"
            ),
            Self::Unreadable(why) => write!(f, "unreadable image header: {why}"),
            Self::Truncated => write!(
                f,
                "truncated: the file ends before the image does (an interrupted copy or download?)"
            ),
            Self::TooLarge(why) => write!(f, "too large: {why}"),
            Self::PermissionDenied => write!(f, "permission denied: vggtune may not read it"),
            Self::SymlinkLoop => write!(f, "symbolic link loop: it leads back to a parent folder"),
            Self::BrokenLink => write!(f, "broken symbolic link: its target does not exist"),
            Self::NotAFile => write!(f, "not a regular file (a FIFO, socket or device)"),
            Self::Unlabeled => write!(
                f,
                "no label in the name: the flat layout needs names like cat.1.jpg"
            ),
            Self::OutsideClassFolders => write!(
                f,
                "not inside a class folder: move it into the folder of its class"
            ),
            Self::UnknownClass(c) => write!(f, "class '{c}' is not among the training classes"),
            Self::Hidden => write!(f, "hidden file or folder"),
            Self::Excluded => write!(
                f,
                "left out of training by its line in {}",
                super::lists::EXCLUDED_FILE
            ),
            Self::Io(why) => write!(f, "cannot read: {why}"),
        }
    }
}

/// A file that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The file.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub path: PathBuf,
    /// Why.
    pub reason: SkipReason,
    /// [`SkipReason`] in words.
    pub message: String,
}

impl Skipped {
    fn new(path: PathBuf, reason: SkipReason) -> Self {
        let message = reason.to_string();
        Self {
            path,
            reason,
            message,
        }
    }
}

/// Something that would spoil training, found before it starts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Problem {
    /// No usable image at all.
    NoImages,
    /// Only one class: nothing to tell apart.
    SingleClass {
        /// Its name.
        class: String,
    },
    /// A class folder with no usable image.
    EmptyClass {
        /// Its name.
        class: String,
    },
    /// A class with a single image cannot be both trained on and validated.
    TooFewImages {
        /// Its name.
        class: String,
        /// How many it has.
        count: usize,
    },
    /// The largest class is much larger than the smallest.
    Imbalance {
        /// The largest class.
        largest: String,
        /// Its count.
        largest_count: usize,
        /// The smallest class.
        smallest: String,
        /// Its count.
        smallest_count: usize,
    },
}

impl Problem {
    /// True when training cannot start at all.
    pub fn blocks_training(&self) -> bool {
        matches!(self, Self::NoImages | Self::SingleClass { .. })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoImages => write!(f, "no usable image was found"),
            Self::SingleClass { class } => write!(
                f,
                "only one class ('{class}'): a classifier needs at least two"
            ),
            Self::EmptyClass { class } => {
                write!(f, "class '{class}' has no usable image; it is left out")
            }
            Self::TooFewImages { class, count } => write!(
                f,
                "class '{class}' has only {count} image(s): too few to train and validate on"
            ),
            Self::Imbalance {
                largest,
                largest_count,
                smallest,
                smallest_count,
            } => write!(
                f,
                "classes are imbalanced: '{largest}' has {largest_count} images, \
                 '{smallest}' only {smallest_count}; accuracy will favour '{largest}'"
            ),
        }
    }
}

/// Why a folder could not be scanned at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The path does not exist or is not a folder.
    #[error("{0}: not a folder")]
    NotAFolder(PathBuf),
    /// The folder could not be listed.
    #[error("{path}: cannot list the folder: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A scanned photo folder.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Dataset {
    /// The folder that was scanned.
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub root: PathBuf,
    /// The folder the training images came from (`root`, or `root/train`).
    #[serde(serialize_with = "crate::fsutil::lossy::path")]
    pub train_dir: PathBuf,
    /// How that folder is organised.
    pub layout: Layout,
    /// Class names, sorted, so indices are stable.
    pub classes: Vec<String>,
    /// Usable images, sorted by relative path.
    pub images: Vec<ImageEntry>,
    /// Images of an explicit `valid/` folder, used instead of a random split.
    pub explicit_valid: Option<Vec<ImageEntry>>,
    /// An unlabelled `test/` folder beside `train/`, for predictions and submissions.
    #[serde(serialize_with = "crate::fsutil::lossy::option")]
    pub test_dir: Option<PathBuf>,
    /// Every file that was left out, with why.
    pub skipped: Vec<Skipped>,
    /// What would spoil training.
    pub problems: Vec<Problem>,
}

/// Folder names that make a root "Kaggle-style" when they stand beside `train/`.
const VALID_NAMES: [&str; 3] = ["valid", "validation", "val"];
const TEST_NAMES: [&str; 2] = ["test", "test1"];

impl Dataset {
    /// Scans `dir` with default options.
    pub fn scan(dir: &Path) -> Result<Self, ScanError> {
        Self::scan_with(dir, &ScanOptions::default())
    }

    /// Scans `dir`: detects the layout, reads every header, reports skipped files and problems.
    pub fn scan_with(dir: &Path, options: &ScanOptions) -> Result<Self, ScanError> {
        if !dir.is_dir() {
            return Err(ScanError::NotAFolder(dir.to_owned()));
        }
        let listing = list_dir(dir)?;
        let find = |names: &[&str]| {
            listing
                .dirs
                .iter()
                .find(|d| names.iter().any(|n| file_name(d).eq_ignore_ascii_case(n)))
                .cloned()
        };
        let train = find(&["train"]);
        let kaggle_root = train.is_some()
            && listing.dirs.iter().all(|d| {
                let name = file_name(d).to_ascii_lowercase();
                name == "train"
                    || VALID_NAMES.contains(&name.as_str())
                    || TEST_NAMES.contains(&name.as_str())
            });
        let (train_dir, valid_dir, test_dir) = match (kaggle_root, train) {
            (true, Some(train)) => (train, find(&VALID_NAMES), find(&TEST_NAMES)),
            _ => (dir.to_owned(), None, None),
        };

        let mut skipped = Vec::new();
        let mut found = collect_labelled(&train_dir, &mut skipped)?;
        let own = super::lists::OWN_FILES.map(|f| train_dir.join(f));
        found.files.retain(|(path, _)| !own.contains(path));
        skipped.retain(|s| !own.contains(&s.path));
        let list = train_dir.join(super::lists::EXCLUDED_FILE);
        let excluded = super::lists::excluded(&train_dir).unwrap_or_else(|e| {
            skipped.push(Skipped::new(list.clone(), SkipReason::Io(e)));
            Default::default()
        });
        let layout = found.layout;
        let mut classes: Vec<String> = found.class_folders.clone();
        for (_, label) in &found.files {
            if !classes.contains(label) {
                classes.push(label.clone());
            }
        }
        classes.sort();
        classes.dedup();

        let (mut images, bad) = check_files(&train_dir, found.files, &classes, options);
        skipped.extend(bad);
        images.retain(|image| {
            let keep = !excluded.contains(&image.rel);
            if !keep {
                skipped.push(Skipped::new(image.path.clone(), SkipReason::Excluded));
            }
            keep
        });
        images.sort_by(|a, b| a.rel.cmp(&b.rel));

        let explicit_valid = match &valid_dir {
            Some(v) => {
                let found_valid = collect_labelled(v, &mut skipped)?;
                let (mut valid, bad) = check_files(v, found_valid.files, &classes, options);
                skipped.extend(bad);
                valid.sort_by(|a, b| a.rel.cmp(&b.rel));
                Some(valid)
            }
            None => None,
        };
        skipped.sort_by(|a, b| a.path.cmp(&b.path));

        let mut dataset = Self {
            root: dir.to_owned(),
            train_dir,
            layout,
            classes,
            images,
            explicit_valid,
            test_dir,
            skipped,
            problems: Vec::new(),
        };
        dataset.problems = dataset.find_problems(options);
        Ok(dataset)
    }

    /// Image counts per class, in class order.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for image in &self.images {
            counts[image.label] += 1;
        }
        counts
    }

    /// True when nothing blocks training.
    pub fn trainable(&self) -> bool {
        !self.problems.iter().any(Problem::blocks_training)
    }

    fn find_problems(&self, options: &ScanOptions) -> Vec<Problem> {
        let counts = self.counts();
        let mut problems = Vec::new();
        if self.images.is_empty() {
            problems.push(Problem::NoImages);
            return problems;
        }
        let non_empty: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
        for (class, &count) in self.classes.iter().zip(&counts) {
            if count == 0 {
                problems.push(Problem::EmptyClass {
                    class: class.clone(),
                });
            } else if count < 2 {
                problems.push(Problem::TooFewImages {
                    class: class.clone(),
                    count,
                });
            }
        }
        if non_empty.len() == 1 {
            problems.push(Problem::SingleClass {
                class: self.classes[non_empty[0]].clone(),
            });
            return problems;
        }
        let largest = non_empty.iter().copied().max_by_key(|&i| counts[i]);
        let smallest = non_empty.iter().copied().min_by_key(|&i| counts[i]);
        if let (Some(l), Some(s)) = (largest, smallest)
            && counts[l] as f64 > options.imbalance_ratio * counts[s] as f64
        {
            problems.push(Problem::Imbalance {
                largest: self.classes[l].clone(),
                largest_count: counts[l],
                smallest: self.classes[s].clone(),
                smallest_count: counts[s],
            });
        }
        problems
    }
}

/// The scan in words: layout, counts per class, problems, and every skipped file with its reason.
pub fn report(dataset: &Dataset) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "folder:  {}", dataset.root.display());
    if dataset.train_dir != dataset.root {
        let _ = writeln!(out, "train:   {}", dataset.train_dir.display());
    }
    let _ = writeln!(out, "layout:  {}", dataset.layout);
    let counts = dataset.counts();
    let total: usize = counts.iter().sum();
    let _ = writeln!(out, "classes: {} ({total} images)", dataset.classes.len());
    let width = dataset.classes.iter().map(String::len).max().unwrap_or(0);
    for (class, count) in dataset.classes.iter().zip(&counts) {
        let share = if total > 0 {
            100.0 * *count as f64 / total as f64
        } else {
            0.0
        };
        let _ = writeln!(out, "  {class:<width$}  {count:>7}  ({share:.1}%)");
    }
    if let Some(valid) = &dataset.explicit_valid {
        let _ = writeln!(
            out,
            "validation folder: {} images (used instead of a random split)",
            valid.len()
        );
    }
    if let Some(test) = &dataset.test_dir {
        let _ = writeln!(out, "test folder: {}", test.display());
    }
    for problem in &dataset.problems {
        let level = if problem.blocks_training() {
            "error"
        } else {
            "warning"
        };
        let _ = writeln!(out, "{level}: {problem}");
    }
    let _ = writeln!(out, "skipped: {} file(s)", dataset.skipped.len());
    for s in &dataset.skipped {
        let _ = writeln!(out, "  {}: {}", s.path.display(), s.message);
    }
    out
}

struct Listing {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    hidden: Vec<PathBuf>,
    broken: Vec<(PathBuf, SkipReason)>,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn list_dir(dir: &Path) -> Result<Listing, ScanError> {
    let io = |source| ScanError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut listing = Listing {
        dirs: Vec::new(),
        files: Vec::new(),
        hidden: Vec::new(),
        broken: Vec::new(),
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if file_name(&path).starts_with('.') {
            listing.hidden.push(path);
            continue;
        }
        // `metadata` follows symbolic links, as a user expects a link to a folder to be one.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => listing.dirs.push(path),
            Ok(_) => listing.files.push(path),
            Err(e) => listing.broken.push((path, io_reason(&e))),
        }
    }
    listing.dirs.sort();
    listing.files.sort();
    Ok(listing)
}

/// Why a folder walk could not go on at an entry.
pub fn walk_error_reason(e: &walkdir::Error) -> SkipReason {
    if e.loop_ancestor().is_some() {
        SkipReason::SymlinkLoop
    } else if let Some(io) = e.io_error() {
        io_reason(io)
    } else {
        SkipReason::Io(e.to_string())
    }
}

/// Checks one file as the scan checks every photo (empty, not an image, unreadable header,
/// truncated, too many pixels, permission, links): what predictions and evaluations of loose
/// files and folders use, so every photo either gets a result or a reason.
pub fn check_image(path: &Path, limits: &DecodeLimits) -> Result<(), SkipReason> {
    let root = path.parent().unwrap_or(path);
    check_file(root, path.to_owned(), 0, limits)
        .map(|_| ())
        .map_err(|s| s.reason)
}

/// The reason a path cannot be read, from the error the OS gave.
pub fn io_reason(e: &std::io::Error) -> SkipReason {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => SkipReason::PermissionDenied,
        std::io::ErrorKind::NotFound => SkipReason::BrokenLink,
        _ if e.raw_os_error() == Some(40) => SkipReason::SymlinkLoop, // ELOOP on Linux
        _ if e
            .to_string()
            .to_ascii_lowercase()
            .contains("symbolic links") =>
        {
            SkipReason::SymlinkLoop
        }
        _ => SkipReason::Io(e.to_string()),
    }
}

struct Collected {
    layout: Layout,
    class_folders: Vec<String>,
    files: Vec<(PathBuf, String)>,
}

/// Lists the files of one folder with their labels (not yet checked as images).
fn collect_labelled(dir: &Path, skipped: &mut Vec<Skipped>) -> Result<Collected, ScanError> {
    let listing = list_dir(dir)?;
    skipped.extend(
        listing
            .hidden
            .iter()
            .map(|p| Skipped::new(p.clone(), SkipReason::Hidden)),
    );
    skipped.extend(
        listing
            .broken
            .iter()
            .map(|(p, r)| Skipped::new(p.clone(), r.clone())),
    );
    if listing.dirs.is_empty() {
        let mut files = Vec::new();
        for path in listing.files {
            match flat_label(&path) {
                Some(label) => files.push((path, label)),
                // A notes file is "not an image" before it is "unlabelled".
                None if !super::has_image_extension(&path) => {
                    skipped.push(Skipped::new(path, SkipReason::NotAnImage));
                }
                None => skipped.push(Skipped::new(path, SkipReason::Unlabeled)),
            }
        }
        return Ok(Collected {
            layout: Layout::KaggleFlat,
            class_folders: Vec::new(),
            files,
        });
    }
    skipped.extend(
        listing
            .files
            .into_iter()
            .map(|p| Skipped::new(p, SkipReason::OutsideClassFolders)),
    );
    let mut class_folders = Vec::new();
    let mut files = Vec::new();
    for class_dir in &listing.dirs {
        let class = file_name(class_dir);
        class_folders.push(class.clone());
        walk_class(class_dir, &class, &mut files, skipped);
    }
    Ok(Collected {
        layout: Layout::FoldersAsLabels,
        class_folders,
        files,
    })
}

/// Every file below a class folder, following links but never round a loop.
fn walk_class(
    class_dir: &Path,
    class: &str,
    files: &mut Vec<(PathBuf, String)>,
    skipped: &mut Vec<Skipped>,
) {
    let mut walker = walkdir::WalkDir::new(class_dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        match entry {
            Ok(e) if e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.') => {
                if e.file_type().is_dir() {
                    walker.skip_current_dir();
                }
                skipped.push(Skipped::new(e.into_path(), SkipReason::Hidden));
            }
            Ok(e) if e.file_type().is_file() => files.push((e.into_path(), class.to_owned())),
            Ok(e) if e.file_type().is_dir() => {}
            Ok(e) => skipped.push(Skipped::new(e.into_path(), SkipReason::NotAFile)),
            Err(e) => {
                let path = e.path().map(Path::to_owned).unwrap_or_default();
                skipped.push(Skipped::new(path, walk_error_reason(&e)));
            }
        }
    }
}

/// The Kaggle label of `cat.123.jpg` ("cat"), or `None` when the name carries none.
pub fn flat_label(path: &Path) -> Option<String> {
    let name = file_name(path);
    let mut parts = name.split('.');
    let label = parts.next()?.trim();
    // "cat.123.jpg" has at least three parts; "123.jpg" or "photo.jpg" carry no label.
    if parts.count() < 2 || label.is_empty() || label.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(label.to_lowercase())
}

/// Reads every candidate's header in parallel.
fn check_files(
    root: &Path,
    files: Vec<(PathBuf, String)>,
    classes: &[String],
    options: &ScanOptions,
) -> (Vec<ImageEntry>, Vec<Skipped>) {
    let index: BTreeMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();
    let results: Vec<Result<ImageEntry, Skipped>> = files
        .into_par_iter()
        .map(|(path, class)| {
            let Some(&label) = index.get(class.as_str()) else {
                return Err(Skipped::new(path, SkipReason::UnknownClass(class)));
            };
            check_file(root, path, label, &options.limits)
        })
        .collect();
    partition(results)
}

/// `paths` (under `root`) as photos of class `label`, each checked as a scan checks its photos,
/// on all cores; the files that fail, with why.
pub fn entries_of(
    root: &Path,
    paths: Vec<PathBuf>,
    label: usize,
    limits: &DecodeLimits,
) -> (Vec<ImageEntry>, Vec<Skipped>) {
    let results: Vec<Result<ImageEntry, Skipped>> = paths
        .into_par_iter()
        .map(|path| check_file(root, path, label, limits))
        .collect();
    partition(results)
}

fn partition(results: Vec<Result<ImageEntry, Skipped>>) -> (Vec<ImageEntry>, Vec<Skipped>) {
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for r in results {
        match r {
            Ok(i) => images.push(i),
            Err(s) => skipped.push(s),
        }
    }
    (images, skipped)
}

fn check_file(
    root: &Path,
    path: PathBuf,
    label: usize,
    limits: &DecodeLimits,
) -> Result<ImageEntry, Skipped> {
    let fail = |path: PathBuf, reason| Err(Skipped::new(path, reason));
    let bytes = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) => return fail(path, io_reason(&e)),
    };
    if bytes == 0 {
        return fail(path, SkipReason::Empty);
    }
    // Refused unread: nothing of a file over the cap is read, not even its header.
    if let Err(DecodeError::TooLarge { reason, .. }) =
        super::decode::check_file_size(&path, bytes, limits)
    {
        return fail(path, SkipReason::TooLarge(reason));
    }
    let (format, width, height) = match read_header(&path) {
        Ok(h) => h,
        Err(DecodeError::NotAnImage { .. }) => return fail(path, SkipReason::NotAnImage),
        Err(DecodeError::Io { reason, .. }) => {
            let reason = if reason.to_ascii_lowercase().contains("permission denied") {
                SkipReason::PermissionDenied
            } else {
                SkipReason::Io(reason)
            };
            return fail(path, reason);
        }
        Err(DecodeError::TooLarge { reason, .. }) => {
            return fail(path, SkipReason::TooLarge(reason));
        }
        Err(DecodeError::Truncated { .. }) => return fail(path, SkipReason::Truncated),
        Err(DecodeError::Corrupt { reason, .. }) => {
            return fail(path, SkipReason::Unreadable(reason));
        }
    };
    if let Err(why) = limits.check(width, height) {
        return fail(path, SkipReason::TooLarge(why));
    }
    match looks_truncated(&path, format) {
        Ok(true) => return fail(path, SkipReason::Truncated),
        Ok(false) => {}
        Err(e) => return fail(path, io_reason(&e)),
    }
    let rel = path
        .strip_prefix(root)
        .unwrap_or(&path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    Ok(ImageEntry {
        rel,
        label,
        width,
        height,
        format: format!("{format:?}"),
        bytes,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_label_is_the_name_before_the_first_dot() {
        assert_eq!(flat_label(Path::new("cat.123.jpg")).as_deref(), Some("cat"));
        assert_eq!(flat_label(Path::new("Dog.45.JPG")).as_deref(), Some("dog"));
        assert_eq!(
            flat_label(Path::new("a/b/dog.1.2.png")).as_deref(),
            Some("dog")
        );
        assert_eq!(flat_label(Path::new("123.jpg")), None);
        assert_eq!(flat_label(Path::new("photo.jpg")), None);
        assert_eq!(flat_label(Path::new("7.8.jpg")), None);
    }

    #[test]
    fn io_errors_map_to_reasons_a_user_can_act_on() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            io_reason(&Error::from(ErrorKind::PermissionDenied)),
            SkipReason::PermissionDenied
        );
        assert_eq!(
            io_reason(&Error::from(ErrorKind::NotFound)),
            SkipReason::BrokenLink
        );
        assert_eq!(
            io_reason(&Error::from_raw_os_error(40)),
            SkipReason::SymlinkLoop
        );
    }
}

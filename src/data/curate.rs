//! Fixing a dataset's labels without ever losing a file: move a photo to the class it belongs
//! to (into that class's folder, or renamed `dog.123.jpg` in Kaggle's flat layout), leave it out
//! of training through an exclusion list kept in the photo folder itself ([`EXCLUDED_FILE`], one
//! relative path a line, which the scan reads), or mark its label as checked ([`KEPT_FILE`], which
//! label audits read). No photo is deleted and nothing is overwritten; every change can be undone
//! ([`Change::undo`]), and a list that undoing empties is removed.

use std::path::{Path, PathBuf};

pub use super::lists::{
    EXCLUDED_FILE, KEPT_FILE, OWN_FILES, SORT_JOURNAL_FILE, excluded, kept, parse_list,
};
use super::lists::{read_list, write_list};
use super::scan::{Dataset, ImageEntry, Layout};

/// A change made to a dataset, which [`Change::undo`] takes back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A photo moved (relabelled) from `from` to `to`.
    Moved {
        /// Where it was.
        from: PathBuf,
        /// Where it is.
        to: PathBuf,
    },
    /// `rel` was added to `train_dir`'s exclusion list.
    Excluded {
        /// The folder of the list.
        train_dir: PathBuf,
        /// The photo.
        rel: String,
    },
    /// `rel`'s label was checked and kept: added to `train_dir`'s list of kept photos.
    Kept {
        /// The folder of the list.
        train_dir: PathBuf,
        /// The photo.
        rel: String,
    },
}

impl Change {
    /// Takes the change back: moves the photo back (never over another file), or takes it off
    /// the exclusion list.
    pub fn undo(&self) -> Result<(), String> {
        match self {
            Self::Moved { from, to } => move_new(to, from),
            Self::Excluded { train_dir, rel } => remove_from(train_dir, EXCLUDED_FILE, rel),
            Self::Kept { train_dir, rel } => remove_from(train_dir, KEPT_FILE, rel),
        }
    }

    /// What undoing it did, in words.
    pub fn describe_undone(&self) -> String {
        match self {
            Self::Moved { from, .. } => format!("{} is back", from.display()),
            Self::Excluded { rel, .. } => format!("{rel} is used for training again"),
            Self::Kept { rel, .. } => format!("{rel} will be listed again when doubted"),
        }
    }

    /// In words, for a confirmation.
    pub fn describe(&self) -> String {
        match self {
            Self::Moved { from, to } => format!("moved {} to {}", from.display(), to.display()),
            Self::Excluded { rel, .. } => format!("{rel} is left out of training"),
            Self::Kept { rel, .. } => format!("{rel} keeps its label"),
        }
    }
}

/// Takes `rel` off the list; a list left empty is removed (lists are written whole, header and
/// paths), so that undoing every change leaves the folder as it was.
fn remove_from(train_dir: &Path, file: &str, rel: &str) -> Result<(), String> {
    let mut list = read_list(train_dir, file)?;
    list.remove(rel);
    if list.is_empty() {
        let path = train_dir.join(file);
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", path.display()))
            }
            _ => Ok(()),
        };
    }
    write_list(train_dir, file, &list)
}

fn add_to(train_dir: &Path, file: &str, rel: &str) -> Result<(), String> {
    let mut list = read_list(train_dir, file)?;
    list.insert(rel.to_owned());
    write_list(train_dir, file, &list)
}

/// Leaves `image` of `dataset` out of training: adds it to the exclusion list.
pub fn exclude(dataset: &Dataset, image: &ImageEntry) -> Result<Change, String> {
    add_to(&dataset.train_dir, EXCLUDED_FILE, &image.rel)?;
    Ok(Change::Excluded {
        train_dir: dataset.train_dir.clone(),
        rel: image.rel.clone(),
    })
}

/// Marks `image`'s label as checked: label audits do not list it again.
pub fn keep(dataset: &Dataset, image: &ImageEntry) -> Result<Change, String> {
    add_to(&dataset.train_dir, KEPT_FILE, &image.rel)?;
    Ok(Change::Kept {
        train_dir: dataset.train_dir.clone(),
        rel: image.rel.clone(),
    })
}

/// Gives `image` of `dataset` the label `class` (one of the dataset's classes) by moving it:
/// into `class`'s folder, or, in the flat layout, renamed to `class.REST` beside itself. A name
/// already taken gets `-2`, `-3`… before its extension.
pub fn relabel(dataset: &Dataset, image: &ImageEntry, class: &str) -> Result<Change, String> {
    if !dataset.classes.iter().any(|c| c == class) {
        return Err(format!("'{class}' is not one of the dataset's classes"));
    }
    let name = image
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{}: not a file", image.path.display()))?;
    let (dir, name) = match dataset.layout {
        Layout::FoldersAsLabels => (dataset.train_dir.join(class), name),
        Layout::KaggleFlat => {
            let rest = name.split_once('.').map_or(name.as_str(), |(_, r)| r);
            let dir = image.path.parent().unwrap_or(&dataset.train_dir).to_owned();
            (dir, format!("{class}.{rest}"))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let to = free_name(&dir, &name);
    move_new(&image.path, &to)?;
    Ok(Change::Moved {
        from: image.path.clone(),
        to,
    })
}

/// `dir/name`, or `dir/STEM-k.EXT` for the first k from 2 that no file has.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !taken(&first) {
        return first;
    }
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    (2..)
        .map(|k| {
            dir.join(if ext.is_empty() {
                format!("{stem}-{k}")
            } else {
                format!("{stem}-{k}.{ext}")
            })
        })
        .find(|p| !taken(p))
        .unwrap_or(first)
}

/// Whether anything is at `path`, a dangling symbolic link included.
fn taken(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Renames `from` to `to`, refusing to replace a file at `to`.
fn move_new(from: &Path, to: &Path) -> Result<(), String> {
    if taken(to) {
        return Err(format!(
            "{}: a file is already there; nothing was moved",
            to.display()
        ));
    }
    std::fs::rename(from, to).map_err(|e| {
        format!(
            "cannot move {} to {}: {e}; nothing was moved",
            from.display(),
            to.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(dir: &Path, rel: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]))
            .save(&path)
            .unwrap();
    }

    #[test]
    fn a_flat_photo_is_renamed_and_undone_without_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["cat.1.png", "cat.2.png", "dog.1.png", "dog.2.png"] {
            photo(dir.path(), rel);
        }
        let data = Dataset::scan(dir.path()).unwrap();
        let cat1 = data.images.iter().find(|i| i.rel == "cat.1.png").unwrap();
        // dog.1.png exists: the relabelled cat.1.png becomes dog.1-2.png.
        let change = relabel(&data, cat1, "dog").unwrap();
        assert_eq!(
            change,
            Change::Moved {
                from: dir.path().join("cat.1.png"),
                to: dir.path().join("dog.1-2.png")
            }
        );
        let again = Dataset::scan(dir.path()).unwrap();
        assert_eq!(again.counts(), [1, 3]);
        change.undo().unwrap();
        assert_eq!(Dataset::scan(dir.path()).unwrap().counts(), [2, 2]);
        assert!(relabel(&data, cat1, "horse").unwrap_err().contains("horse"));
    }

    #[test]
    fn an_excluded_photo_is_skipped_by_the_scan_until_undone() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["cats/a.png", "cats/b.png", "dogs/a.png", "dogs/b.png"] {
            photo(dir.path(), rel);
        }
        let data = Dataset::scan(dir.path()).unwrap();
        let change = exclude(&data, &data.images[0]).unwrap();
        let again = Dataset::scan(dir.path()).unwrap();
        assert_eq!(again.counts(), [1, 2]);
        assert_eq!(again.classes, ["cats", "dogs"]);
        assert_eq!(again.skipped.len(), 1, "{:?}", again.skipped);
        assert!(again.skipped[0].message.contains(EXCLUDED_FILE));
        assert!(dir.path().join("cats/a.png").is_file(), "never deleted");
        // Kept: listed for audits, not for the scan, which passes over the list.
        let kept = keep(&again, &again.images[0]).unwrap();
        assert!(
            super::kept(dir.path())
                .unwrap()
                .contains(&again.images[0].rel)
        );
        let rescanned = Dataset::scan(dir.path()).unwrap();
        assert_eq!(
            (rescanned.counts(), rescanned.skipped.len()),
            (vec![1, 2], 1)
        );
        kept.undo().unwrap();
        assert!(super::kept(dir.path()).unwrap().is_empty());
        assert!(
            !dir.path().join(KEPT_FILE).exists(),
            "a list emptied by undo goes, header and all"
        );
        // Moving into a class folder, and undoing both.
        let moved = relabel(&again, &again.images[1], "cats").unwrap();
        assert!(dir.path().join("cats/a-2.png").is_file());
        moved.undo().unwrap();
        change.undo().unwrap();
        let back = Dataset::scan(dir.path()).unwrap();
        assert_eq!(back.counts(), [2, 2]);
        assert!(back.skipped.is_empty(), "{:?}", back.skipped);
        assert!(!dir.path().join(EXCLUDED_FILE).exists());
    }

    #[test]
    fn the_flat_layout_does_not_take_the_list_for_a_class() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["cat.1.png", "cat.2.png", "dog.1.png", "dog.2.png"] {
            photo(dir.path(), rel);
        }
        let data = Dataset::scan(dir.path()).unwrap();
        exclude(&data, &data.images[3]).unwrap();
        let again = Dataset::scan(dir.path()).unwrap();
        assert_eq!(again.classes, ["cat", "dog"]);
        assert_eq!(again.counts(), [2, 1]);
    }

    #[test]
    fn lists_are_read_loosely() {
        let list = parse_list(b"# note\n\n  cats\\a.png \r\ndogs/b.png\n\xff\xfe\n");
        assert!(list.contains("cats/a.png") && list.contains("dogs/b.png"));
        assert_eq!(list.len(), 3);
    }
}

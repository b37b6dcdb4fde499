//! Puts sorted photos into `OUT/CLASS/`, copied or moved, never over another file (a name
//! clash gets a suffix: `x-2.jpg`), with a journal in `OUT` ([`JOURNAL_FILE`]) written before
//! each step and after it, so that [`undo`] takes the last sort back, also after a crash or a
//! restart: moved photos go back where they were, copies are removed (only while the original
//! is still there and the same), and the class folders the sort made go when empty.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The journal's file name, in the sorted folder (the scan passes over it).
pub const JOURNAL_FILE: &str = crate::data::curate::SORT_JOURNAL_FILE;
/// The longest journal read back.
const MAX_JOURNAL_BYTES: u64 = 256 << 20;
/// The most suffixes tried for a free name.
const MAX_SUFFIX: usize = 10_000;

/// Copy the photos, or move them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Copy,
    Move,
}

/// One line of the journal.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub(crate) enum Line {
    /// A sort begins.
    Sort { mode: Mode, photos: usize },
    /// The sort made this class folder.
    Folder { path: PathBuf },
    /// About to put `from` at `to`.
    Begin { from: PathBuf, to: PathBuf },
    /// `to` is done.
    Done { to: PathBuf },
}

/// What a sort did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    /// Photos put in each class folder, in the order of the classes given.
    pub per_class: Vec<(String, usize)>,
    /// The photos sorted (where they were).
    #[serde(skip)]
    pub placed: Vec<PathBuf>,
    /// Photos whose name was taken in their class folder, put under another.
    pub renamed: usize,
    /// The photos not sorted, with why.
    pub failed: Vec<(PathBuf, String)>,
    /// Whether it was cancelled before the end.
    pub cancelled: bool,
}

impl Report {
    /// How many photos were sorted.
    pub fn sorted(&self) -> usize {
        self.per_class.iter().map(|c| c.1).sum()
    }
}

/// The journal of `out`, appended to with each line flushed to disk.
struct Journal(std::fs::File);

impl Journal {
    fn open(out: &Path) -> Result<Self, String> {
        let path = out.join(JOURNAL_FILE);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map(Self)
            .map_err(|e| format!("{}: cannot write the sort's journal: {e}", path.display()))
    }

    fn write(&mut self, line: &Line) -> Result<(), String> {
        let mut text = serde_json::to_string(line).map_err(|e| e.to_string())?;
        text.push('\n');
        self.0
            .write_all(text.as_bytes())
            .and_then(|()| self.0.sync_data())
            .map_err(|e| format!("cannot write the sort's journal: {e}"))
    }
}

/// A class name that can be a folder name: not empty, no separator, not `.` or `..`.
pub fn check_class_name(name: &str) -> Result<(), String> {
    let bad = name.trim().is_empty()
        || name.contains(['/', '\\', '\0'])
        || name == "."
        || name == ".."
        || name.len() > 255;
    if bad {
        Err(format!("'{name}' cannot be a folder's name"))
    } else {
        Ok(())
    }
}

/// Puts each photo of `plan` (photo, class) into `out/CLASS/`, as `mode` says, journalled;
/// `progress(done, total)` after each. A photo that cannot be sorted is listed in the report
/// and the others go on; a folder or journal that cannot be written stops the sort with why.
pub fn apply(
    out: &Path,
    plan: &[(PathBuf, String)],
    mode: Mode,
    mut progress: impl FnMut(usize, usize),
    cancel: &AtomicBool,
) -> Result<Report, String> {
    let mut classes: Vec<String> = Vec::new();
    for (_, class) in plan {
        check_class_name(class)?;
        if !classes.contains(class) {
            classes.push(class.clone());
        }
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut journal = Journal::open(out)?;
    journal.write(&Line::Sort {
        mode,
        photos: plan.len(),
    })?;
    let mut report = Report {
        mode,
        per_class: classes.iter().map(|c| (c.clone(), 0)).collect(),
        placed: Vec::new(),
        renamed: 0,
        failed: Vec::new(),
        cancelled: false,
    };
    for (done, (photo, class)) in plan.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            report.cancelled = true;
            break;
        }
        let folder = out.join(class);
        if !folder.is_dir() {
            std::fs::create_dir(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
            journal.write(&Line::Folder {
                path: folder.clone(),
            })?;
        }
        match put(photo, &folder, mode, &mut journal)? {
            Ok(renamed) => {
                report.renamed += usize::from(renamed);
                report.placed.push(photo.clone());
                if let Some(c) = report.per_class.iter_mut().find(|c| &c.0 == class) {
                    c.1 += 1;
                }
            }
            Err(why) => report.failed.push((photo.clone(), why)),
        }
        progress(done + 1, plan.len());
    }
    Ok(report)
}

/// Puts `photo` into `folder` under a free name. `Ok(Ok(renamed))` when done, `Ok(Err(why))`
/// when this photo could not be, `Err` when the journal could not be written.
fn put(
    photo: &Path,
    folder: &Path,
    mode: Mode,
    journal: &mut Journal,
) -> Result<Result<bool, String>, String> {
    let Some(name) = photo.file_name() else {
        return Ok(Err("not a file".into()));
    };
    if photo.to_str().is_none() || name.to_str().is_none() {
        return Ok(Err("its path is not UTF-8: rename it first".into()));
    }
    for n in 1..=MAX_SUFFIX {
        let to = folder.join(suffixed(Path::new(name), n));
        if to.symlink_metadata().is_ok() {
            continue;
        }
        journal.write(&Line::Begin {
            from: photo.to_owned(),
            to: to.clone(),
        })?;
        match place(photo, &to, mode) {
            Ok(()) => {
                journal.write(&Line::Done { to })?;
                return Ok(Ok(n > 1));
            }
            // Taken meanwhile: the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    Ok(Err(format!(
        "{MAX_SUFFIX} names taken in {}",
        folder.display()
    )))
}

/// `name` with `-n` before its extension (`n` > 1).
fn suffixed(name: &Path, n: usize) -> PathBuf {
    if n == 1 {
        return name.to_owned();
    }
    let stem = name.file_stem().unwrap_or_default().to_string_lossy();
    match name.extension() {
        Some(ext) => PathBuf::from(format!("{stem}-{n}.{}", ext.to_string_lossy())),
        None => PathBuf::from(format!("{stem}-{n}")),
    }
}

/// Copies or moves `from` to `to`, which must not exist (never overwritten).
fn place(from: &Path, to: &Path, mode: Mode) -> std::io::Result<()> {
    if mode == Mode::Move {
        match std::fs::hard_link(from, to) {
            Ok(()) => return std::fs::remove_file(from),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
            // Another file system, or one without links: copy, then remove.
            Err(_) => {}
        }
    }
    copy_new(from, to)?;
    if mode == Mode::Move {
        std::fs::remove_file(from)?;
    }
    Ok(())
}

/// Copies `from` to a new file `to` (refused if it exists), synced; a partial copy is removed.
fn copy_new(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    let copied = std::io::copy(&mut src, &mut dst).and_then(|_| dst.sync_all());
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}

/// What an undo did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Undone {
    /// Moved photos put back.
    pub restored: usize,
    /// Copies removed.
    pub removed: usize,
    /// Files left where they are, with why (nothing is deleted that is not a copy of a photo
    /// still in its place).
    pub kept: Vec<(PathBuf, String)>,
}

/// Takes back the last sort journalled in `out`.
pub fn undo(out: &Path) -> Result<Undone, String> {
    let path = out.join(JOURNAL_FILE);
    let lines = read_journal(&path)?;
    let Some(start) = lines.iter().rposition(|l| matches!(l, Line::Sort { .. })) else {
        return Err(format!("{}: no sort to undo", path.display()));
    };
    let Line::Sort { mode, .. } = lines[start] else {
        return Err("unreachable".into());
    };
    let last = &lines[start + 1..];
    let done: std::collections::HashSet<&PathBuf> = last
        .iter()
        .filter_map(|l| match l {
            Line::Done { to } => Some(to),
            _ => None,
        })
        .collect();
    let mut undone = Undone::default();
    for line in last.iter().rev() {
        match line {
            Line::Begin { from, to } => take_back(from, to, mode, done.contains(to), &mut undone),
            Line::Folder { path } => {
                // Only when empty.
                let _ = std::fs::remove_dir(path);
            }
            Line::Sort { .. } | Line::Done { .. } => {}
        }
    }
    let kept: Vec<&Line> = lines[..start].iter().collect();
    if kept.is_empty() {
        std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    } else {
        let text: String = kept
            .iter()
            .filter_map(|l| serde_json::to_string(l).ok())
            .map(|l| l + "\n")
            .collect();
        crate::fsutil::write_atomic(&path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(undone)
}

/// Undoes one photo's step: `finished` when the journal says it was done.
fn take_back(from: &Path, to: &Path, mode: Mode, finished: bool, undone: &mut Undone) {
    let (at_from, at_to) = (from.exists(), to.exists());
    if !at_to {
        // Never placed (a crash before), or moved away since: nothing to do here.
        if !at_from {
            undone
                .kept
                .push((from.to_owned(), "it is in neither place".into()));
        }
        return;
    }
    if at_from {
        // A copy, or a move that did not get to remove the original: remove the copy when it
        // is the same as the original.
        if same_content(from, to) {
            match std::fs::remove_file(to) {
                Ok(()) => undone.removed += 1,
                Err(e) => undone.kept.push((to.to_owned(), e.to_string())),
            }
        } else if finished {
            undone.kept.push((
                to.to_owned(),
                "it differs from the photo it copied: changed since".into(),
            ));
        } else {
            // An interrupted copy: the original is whole.
            match std::fs::remove_file(to) {
                Ok(()) => undone.removed += 1,
                Err(e) => undone.kept.push((to.to_owned(), e.to_string())),
            }
        }
        return;
    }
    if mode == Mode::Copy {
        undone.kept.push((
            to.to_owned(),
            "the photo it copied is gone: this copy is kept".into(),
        ));
        return;
    }
    match place(to, from, Mode::Move) {
        Ok(()) => undone.restored += 1,
        Err(e) => undone
            .kept
            .push((to.to_owned(), format!("cannot move it back: {e}"))),
    }
}

fn same_content(a: &Path, b: &Path) -> bool {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn read_journal(path: &Path) -> Result<Vec<Line>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
    let len = file.metadata().map_err(|e| fail(&e))?.len();
    if len > MAX_JOURNAL_BYTES {
        return Err(fail(&format!("{len} bytes: not a journal vggtune wrote")));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_JOURNAL_BYTES),
        &mut bytes,
    )
    .map_err(|e| fail(&e))?;
    parse_journal(&bytes).map_err(|e| fail(&e))
}

/// The journal's lines. A last line cut short (a crash while writing it) is left out; any
/// other line that is not one of the journal's is an error.
pub(crate) fn parse_journal(bytes: &[u8]) -> Result<Vec<Line>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the journal is not UTF-8 text")?;
    let all: Vec<&str> = text.lines().collect();
    let mut lines = Vec::new();
    for (n, line) in all.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(l) => lines.push(l),
            Err(_) if n + 1 == all.len() => {}
            Err(e) => return Err(format!("line {} is not a journal line: {e}", n + 1)),
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_before_the_extension() {
        assert_eq!(suffixed(Path::new("x.jpg"), 1), PathBuf::from("x.jpg"));
        assert_eq!(suffixed(Path::new("x.jpg"), 3), PathBuf::from("x-3.jpg"));
        assert_eq!(suffixed(Path::new("x"), 2), PathBuf::from("x-2"));
    }

    #[test]
    fn class_names_must_be_folder_names() {
        for bad in ["", " ", "a/b", "..", ".", "a\\b"] {
            assert!(check_class_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_class_name("golden retriever").is_ok());
    }
}

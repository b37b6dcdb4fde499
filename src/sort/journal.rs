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

    /// What the sort did, in words: "copied 57 photos into OUT (cat: 27, dog: 30)", with the
    /// renamed, a cancel and the first failure.
    pub fn summary(&self, out: &Path) -> String {
        let per_class: Vec<String> = self
            .per_class
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        let mut text = format!(
            "{} {} into {} ({})",
            if self.mode == Mode::Move {
                "moved"
            } else {
                "copied"
            },
            crate::words::photos(self.sorted()),
            out.display(),
            per_class.join(", ")
        );
        if self.renamed > 0 {
            text.push_str(&format!("; {} renamed: their name was taken", self.renamed));
        }
        if self.cancelled {
            text.push_str("; cancelled");
        }
        if let Some((_, why)) = self.failed.first() {
            let n = self.failed.len();
            text.push_str(&format!("; {n} could not be sorted (the first: {why})"));
        }
        text
    }
}

/// The journal of `out`, appended to with each line flushed to disk.
struct Journal(std::fs::File);

impl Journal {
    fn open(out: &Path) -> Result<Self, String> {
        let path = out.join(JOURNAL_FILE);
        let fail =
            |e: std::io::Error| format!("{}: cannot write the sort's journal: {e}", path.display());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(fail)?;
        // A last line a crash cut short is ended, so that the next line stays a line.
        let len = file.metadata().map_err(fail)?.len();
        if len > 0 {
            use std::io::{Read, Seek};
            let mut last = [0u8];
            file.seek(std::io::SeekFrom::Start(len - 1)).map_err(fail)?;
            file.read_exact(&mut last).map_err(fail)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(fail)?;
            }
        }
        Ok(Self(file))
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
    const RESERVED: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let stem = name.split('.').next().unwrap_or(name).to_ascii_uppercase();
    // Names any of Linux, macOS and Windows would refuse or change.
    let bad = name.trim().is_empty()
        || name.contains(['/', '\\', '\0', ':', '*', '?', '"', '<', '>', '|'])
        || name.chars().any(char::is_control)
        || name.ends_with(['.', ' '])
        || name == "."
        || name == ".."
        || RESERVED.contains(&stem.as_str())
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
    let mut report = Report {
        mode,
        per_class: classes.iter().map(|c| (c.clone(), 0)).collect(),
        placed: Vec::new(),
        renamed: 0,
        failed: Vec::new(),
        cancelled: false,
    };
    if plan.is_empty() {
        return Ok(report);
    }
    // The journal holds whole paths: an undo from another folder finds the same files.
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    let out = &absolute(out)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut journal = Journal::open(out)?;
    journal.write(&Line::Sort {
        mode,
        photos: plan.len(),
    })?;
    for (done, (photo, class)) in plan.iter().enumerate() {
        let given = photo;
        let photo = &absolute(photo)?;
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
                report.placed.push(given.clone());
                if let Some(c) = report.per_class.iter_mut().find(|c| &c.0 == class) {
                    c.1 += 1;
                }
            }
            Err(why) => report.failed.push((given.clone(), why)),
        }
        progress(done + 1, plan.len());
    }
    Ok(report)
}

/// Puts `photo` into `folder` under a free name. `Ok(Ok(renamed))` when done, `Ok(Err(why))`
/// when this photo could not be (nothing of it is left in `folder`), `Err` when the journal
/// could not be written.
///
/// The name is claimed first (a hard link to the photo for a move on one file system, else a
/// new empty file: neither can replace a file), then journalled as begun, then filled (or
/// the photo removed from where it was), then journalled as done: an undo after a crash at
/// any point finds a copy it can remove or a photo it can move back.
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
    // A link in the pool is sorted as the photo it points to (a link to it would break).
    let is_link = photo
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink());
    for n in 1..=MAX_SUFFIX {
        let to = folder.join(suffixed(Path::new(name), n));
        let claimed = match claim(photo, &to, mode == Mode::Move && !is_link) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Ok(Err(e.to_string())),
        };
        journal.write(&Line::Begin {
            from: photo.to_owned(),
            to: to.clone(),
        })?;
        if let Err(e) = fill(photo, &to, claimed, mode) {
            // Nothing of this photo stays in the folder; the journal's Begin without Done
            // leaves nothing for an undo to do.
            let _ = std::fs::remove_file(&to);
            return Ok(Err(e.to_string()));
        }
        journal.write(&Line::Done { to })?;
        return Ok(Ok(n > 1));
    }
    Ok(Err(format!(
        "{MAX_SUFFIX} names taken in {}",
        folder.display()
    )))
}

/// A name claimed in the sorted folder.
enum Claimed {
    /// A hard link to the photo.
    Link,
    /// A new, empty file.
    File(std::fs::File),
}

/// Claims `to`: a hard link to `photo` when `link` (and the file system allows), else a new
/// empty file; `AlreadyExists` when the name is taken.
fn claim(photo: &Path, to: &Path, link: bool) -> std::io::Result<Claimed> {
    if link {
        match std::fs::hard_link(photo, to) {
            Ok(()) => return Ok(Claimed::Link),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
            // Another file system, or one without links: a copy.
            Err(_) => {}
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map(Claimed::File)
}

/// Finishes putting `photo` at the claimed `to`: the copy's bytes, synced with its folder;
/// for a move, the photo removed from where it was.
fn fill(photo: &Path, to: &Path, claimed: Claimed, mode: Mode) -> std::io::Result<()> {
    if let Claimed::File(mut file) = claimed {
        let mut src = std::fs::File::open(photo)?;
        std::io::copy(&mut src, &mut file)?;
        file.sync_all()?;
        sync_folder(to);
    }
    if mode == Mode::Move {
        std::fs::remove_file(photo)?;
    }
    Ok(())
}

/// Flushes the folder of `path` (its new entry) to disk, where the platform can.
fn sync_folder(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = path;
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

/// Moves `from` back to `to`, which must not exist (never overwritten).
fn move_back(from: &Path, to: &Path) -> std::io::Result<()> {
    match claim(from, to, true)? {
        Claimed::Link => std::fs::remove_file(from),
        claimed @ Claimed::File(_) => fill(from, to, claimed, Mode::Move),
    }
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

impl Undone {
    /// What the undo did, in words.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} moved back, {} copies removed",
            crate::words::photos(self.restored),
            self.removed
        );
        if let Some((_, why)) = self.kept.first() {
            let n = self.kept.len();
            text.push_str(&format!("; {n} files kept (the first: {why})"));
        }
        text
    }
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
    // The steps left undone stay journalled, so that a later undo can try them again.
    let left: std::collections::HashSet<&PathBuf> = undone.kept.iter().map(|k| &k.0).collect();
    let mut kept: Vec<&Line> = lines[..start].iter().collect();
    let unfinished: Vec<&Line> = last
        .iter()
        .filter(|l| match l {
            Line::Begin { from, to } => left.contains(to) || left.contains(from),
            Line::Done { to } => left.contains(to),
            Line::Sort { .. } | Line::Folder { .. } => false,
        })
        .collect();
    if !unfinished.is_empty() {
        kept.push(&lines[start]);
        kept.extend(unfinished);
    }
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
        } else if !finished && is_prefix(to, from) {
            // An interrupted copy: the original is whole.
            match std::fs::remove_file(to) {
                Ok(()) => undone.removed += 1,
                Err(e) => undone.kept.push((to.to_owned(), e.to_string())),
            }
        } else {
            undone.kept.push((
                to.to_owned(),
                "it differs from the photo it copied: changed since".into(),
            ));
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
    match move_back(to, from) {
        Ok(()) => undone.restored += 1,
        Err(e) => undone
            .kept
            .push((to.to_owned(), format!("cannot move it back: {e}"))),
    }
}

/// Whether `part`'s bytes begin `whole`'s (a copy cut short).
fn is_prefix(part: &Path, whole: &Path) -> bool {
    match (std::fs::read(part), std::fs::read(whole)) {
        (Ok(x), Ok(y)) => y.starts_with(&x),
        _ => false,
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

/// The journal's lines. A line cut short by a crash (the last, or the last before a later
/// sort began) is left out; any other line that is not one of the journal's is an error.
pub(crate) fn parse_journal(bytes: &[u8]) -> Result<Vec<Line>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the journal is not UTF-8 text")?;
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut lines = Vec::new();
    for (n, line) in all.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(l) => lines.push(l),
            Err(e) => {
                let next: Option<Line> = all.get(n + 1).and_then(|l| serde_json::from_str(l).ok());
                if !(next.is_none() && n + 1 == all.len()
                    || matches!(next, Some(Line::Sort { .. })))
                {
                    return Err(format!("line {} is not a journal line: {e}", n + 1));
                }
            }
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
        for bad in [
            "", " ", "a/b", "..", ".", "a\\b", "a:b", "what?", "nul", "com1.x", "dot.",
        ] {
            assert!(check_class_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_class_name("golden retriever").is_ok());
    }
}

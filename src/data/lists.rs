//! The lists vggtune keeps in a photo folder: the photos left out of training
//! ([`EXCLUDED_FILE`], which the scan reads) and those whose label a person checked and kept
//! ([`KEPT_FILE`], which label checks read). Below both the scan and the changes that write them.

use std::collections::BTreeSet;
use std::path::Path;

/// The exclusion list's file name, in the folder the training photos are in.
pub const EXCLUDED_FILE: &str = "vggtune-excluded.txt";
/// The list of photos whose label a person checked and kept, beside the exclusion list.
pub const KEPT_FILE: &str = "vggtune-kept.txt";
/// The journal of the photos a sort put in a folder ([`crate::sort::journal`]).
pub const SORT_JOURNAL_FILE: &str = "vggtune-sort-journal.jsonl";
/// vggtune's own files in a photo folder, which the scan passes over.
pub const OWN_FILES: [&str; 3] = [EXCLUDED_FILE, KEPT_FILE, SORT_JOURNAL_FILE];
/// The longest exclusion list read (a list of every photo of Kaggle's 25,000 is ~400 KB).
const MAX_LIST_BYTES: u64 = 16 << 20;

/// The first line of each list.
pub(super) fn list_header(file: &str) -> &'static str {
    if file == KEPT_FILE {
        "# Photos whose label was checked and kept: vggtune's label checks do not list them again. \
One path a line, relative to this folder.\n"
    } else {
        "# Photos that vggtune leaves out of training: one path a line, relative to this folder. \
Delete a line to train on that photo again.\n"
    }
}

/// The photos (relative paths, `/`-separated) excluded from training in `train_dir`; none when
/// there is no list.
pub fn excluded(train_dir: &Path) -> Result<BTreeSet<String>, String> {
    read_list(train_dir, EXCLUDED_FILE)
}

/// The photos of `train_dir` whose label was checked and kept; none when there is no list.
pub fn kept(train_dir: &Path) -> Result<BTreeSet<String>, String> {
    read_list(train_dir, KEPT_FILE)
}

pub(super) fn read_list(train_dir: &Path, file: &str) -> Result<BTreeSet<String>, String> {
    let path = train_dir.join(file);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let len = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if len > MAX_LIST_BYTES {
        return Err(format!(
            "{}: the exclusion list is {len} bytes; vggtune reads lists up to {MAX_LIST_BYTES}",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_LIST_BYTES), &mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(parse_list(&bytes))
}

/// The paths an exclusion list names: one a line, trimmed; blank lines and `#` comments
/// ignored; `\` read as `/`.
pub fn parse_list(bytes: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.replace('\\', "/"))
        .collect()
}

pub(super) fn write_list(
    train_dir: &Path,
    file: &str,
    list: &BTreeSet<String>,
) -> Result<(), String> {
    let path = train_dir.join(file);
    let mut text = String::from(list_header(file));
    for rel in list {
        text.push_str(rel);
        text.push('\n');
    }
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

//! Reads the audit log back: the rotated files oldest first, then the current file.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use super::{AuditError, Record};

/// Name of rotated file `n` (1 = newest) of the log at `path`: `audit.jsonl.1`, `.2`, ...
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The rotated files of the log at `path` that exist, with their numbers, oldest (highest
/// number) first.
pub fn rotated_files(path: &Path) -> Vec<(u32, PathBuf)> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix(&base)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(n) = n.filter(|n| *n > 0) {
                rotated.push((n, rotated_path(path, n)));
            }
        }
    }
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    rotated
}

/// The log's files in the order their records were written: `.N` ... `.1`, then `path` itself.
/// Only files that exist are listed.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = rotated_files(path).into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    files
}

/// Call `visit` with every record of `file` in order. A final line without its newline is a
/// record still being written and is skipped; a complete line that is not a record is an error
/// naming the file and line (reported by `on_error`, reading goes on).
pub fn read_file(
    file: &Path,
    visit: &mut dyn FnMut(Record),
    on_error: &mut dyn FnMut(AuditError),
) -> Result<(), AuditError> {
    let f = File::open(file).map_err(AuditError::io(file))?;
    let mut reader = BufReader::new(f);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(AuditError::io(file))?;
        if n == 0 || !line.ends_with('\n') {
            return Ok(());
        }
        number += 1;
        match serde_json::from_str::<Record>(line.trim_end()) {
            Ok(record) => visit(record),
            Err(e) => on_error(AuditError::Malformed {
                path: file.to_path_buf(),
                line: number,
                reason: e.to_string(),
            }),
        }
    }
}

/// Every record of the log at `path`, rotated files included, in write order.
pub fn read_log(
    path: &Path,
    visit: &mut dyn FnMut(Record),
    on_error: &mut dyn FnMut(AuditError),
) -> Result<(), AuditError> {
    for file in log_files(path) {
        match read_file(&file, visit, on_error) {
            // Rotated away between listing and opening: its records are in the next file name.
            Err(AuditError::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
                continue
            }
            other => other?,
        }
    }
    Ok(())
}

/// The `seq` of the last complete record of `file` (0 if none), reading only its tail.
pub fn last_seq(file: &Path) -> Result<u64, AuditError> {
    Ok(last_record(file)?.map_or(0, |r| r.seq()))
}

/// The last complete record of `file`, reading only its tail.
pub fn last_record(file: &Path) -> Result<Option<Record>, AuditError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuditError::Io {
                path: file.to_path_buf(),
                cause: e,
            })
        }
    };
    let len = f.metadata().map_err(AuditError::io(file))?.len();
    // Records are far below 64 KiB (target <= 4 KiB); the tail holds at least one whole line.
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start))
        .map_err(AuditError::io(file))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).map_err(AuditError::io(file))?;
    let text = String::from_utf8_lossy(&tail);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => return Ok(None),
    };
    Ok(complete
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Record>(l).ok()))
}

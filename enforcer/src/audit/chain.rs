//! The audit log's hash chain: every record ends with `"prev":"<hex>"`, the SHA-256 of the exact
//! bytes of the line before it (without its newline), across rotated files and daemon restarts;
//! the first record of a new log has [`GENESIS`]. Editing, deleting, inserting or reordering a
//! line breaks the link of the line after it (`enforcer events --verify`, [`super::verify`]).
//! What this does and does not prove: docs/events.md ("Hash chain").

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use sha2::{Digest, Sha256};

use super::AuditError;

pub type Hash = [u8; 32];

/// `prev` of the first record of a new log.
pub const GENESIS: Hash = [0; 32];

/// The name of the field, and its bytes as the writer appends them (before the hex and `"}`).
pub const FIELD: &str = "prev";
const FIELD_PREFIX: &[u8] = b",\"prev\":\"";

pub fn line_hash(line: &[u8]) -> Hash {
    Sha256::digest(line).into()
}

pub fn hex(hash: &Hash) -> String {
    let mut out = Vec::with_capacity(64);
    push_hex(&mut out, hash);
    String::from_utf8(out).unwrap_or_default()
}

fn push_hex(out: &mut Vec<u8>, hash: &Hash) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in hash {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

/// Turn the JSON object `out[start..]` (ending in `}`) into one ending in `,"prev":"<hex>"}`.
/// Returns false (nothing changed) if it does not end in `}`.
pub fn append_prev(out: &mut Vec<u8>, start: usize, prev: &Hash) -> bool {
    if out.len() <= start || out.last() != Some(&b'}') {
        return false;
    }
    out.pop();
    out.extend_from_slice(FIELD_PREFIX);
    push_hex(out, prev);
    out.extend_from_slice(b"\"}");
    true
}

/// The end of a log file as a restarting writer finds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileTail {
    /// The last complete line (without its newline).
    pub last_line: Option<Vec<u8>>,
    /// Bytes after the last newline: a line cut by a crash or by truncation.
    pub torn: Vec<u8>,
}

/// Read the end of `file` (records are far below 64 KiB, so the tail holds the last complete
/// line and any torn one after it). A missing file has an empty tail.
pub fn file_tail(file: &Path) -> Result<FileTail, AuditError> {
    let mut f = match File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileTail::default()),
        Err(e) => return Err(AuditError::io(file)(e)),
    };
    let len = f.metadata().map_err(AuditError::io(file))?.len();
    let start = len.saturating_sub(128 * 1024);
    f.seek(SeekFrom::Start(start))
        .map_err(AuditError::io(file))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).map_err(AuditError::io(file))?;
    let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
        // No newline in the tail: all of it is one torn line (only possible from offset 0).
        return Ok(FileTail {
            last_line: None,
            torn: tail,
        });
    };
    let torn = tail[end + 1..].to_vec();
    let line_start = tail[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    // A line starting before the tail read (start > 0, no newline before it) is incomplete.
    let last_line = (line_start > 0 || start == 0).then(|| tail[line_start..end].to_vec());
    Ok(FileTail { last_line, torn })
}

/// Where the chain of a log stands when a writer opens it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogTail {
    /// SHA-256 of the last complete line (the current file's, else the newest rotated one's).
    pub last_hash: Option<Hash>,
    /// Length of the torn line the writer ends with a newline (0: the log ended cleanly).
    pub torn_bytes: u64,
    /// `prev` of the next record: the hash of the line before it (the torn one, if any).
    pub next_prev: Hash,
}

impl LogTail {
    pub fn of(
        current: &FileTail,
        rotated: impl FnOnce() -> Result<FileTail, AuditError>,
    ) -> Result<Self, AuditError> {
        let last_line = match &current.last_line {
            Some(line) => Some(line.clone()),
            None => rotated()?.last_line,
        };
        let last_hash = last_line.as_deref().map(line_hash);
        let next_prev = if current.torn.is_empty() {
            last_hash.unwrap_or(GENESIS)
        } else {
            line_hash(&current.torn)
        };
        Ok(LogTail {
            last_hash,
            torn_bytes: current.torn.len() as u64,
            next_prev,
        })
    }
}

//! `enforcer events --verify`: walk the log's files in write order (`.N` ... `.1`, then the
//! current file) and check every line's hash link ([`super::chain`]), `seq` continuity, and
//! what the daemon said at its restarts. Stops at the first failure.

use std::{
    fmt,
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::{
    chain::{self, Hash, GENESIS},
    reader::log_files,
    AuditError,
};

/// A line of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub file: PathBuf,
    /// 1-based.
    pub line: u64,
    pub seq: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        match self.seq {
            Some(seq) => write!(f, " (seq {seq})"),
            None => Ok(()),
        }
    }
}

/// The first failure: where, and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub at: Position,
    pub reason: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

/// An intact log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intact {
    pub files: usize,
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// The oldest record is the log's first (`seq` 1, `prev` all zeros); false when older files
    /// were deleted by retention (the chain is checked from the oldest record kept).
    pub from_genesis: bool,
    /// Lines cut by a crash that the next daemon's `start` record accounts for.
    pub torn_lines: u64,
    /// Records at the old end written before the hash chain existed (not covered by it).
    pub unchained: u64,
    pub last_hash: Hash,
}

impl fmt::Display for Intact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "intact: {} records in {} file{}, seq {}..{}, ",
            self.records,
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.first_seq,
            self.last_seq
        )?;
        if self.unchained > 0 {
            write!(
                f,
                "chained from seq {} ({} older records were written without the chain and are not covered)",
                self.first_seq + self.unchained,
                self.unchained
            )?;
        } else if self.from_genesis {
            write!(f, "chained from the log's first record")?;
        } else {
            write!(
                f,
                "chained from seq {} (older records rotated away)",
                self.first_seq
            )?;
        }
        if self.torn_lines > 0 {
            write!(
                f,
                ", {} line(s) cut by a crash and reported at restart",
                self.torn_lines
            )?;
        }
        write!(f, "; last hash {}", chain::hex(&self.last_hash))
    }
}

/// The fields verification reads; every other field is covered by the hash.
#[derive(Deserialize)]
struct Linked {
    seq: u64,
    #[serde(default)]
    prev: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// What a `start` record says it found at the log's end (`detail.log_tail`).
#[derive(Deserialize, Default)]
struct TailReport {
    #[serde(default)]
    torn_bytes: u64,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    altered: bool,
    #[serde(default)]
    reason: Option<String>,
}

fn tail_report(r: &Linked) -> Option<TailReport> {
    if r.kind != "daemon" || r.event.as_deref() != Some("start") {
        return None;
    }
    let v = r.detail.as_ref()?.get("log_tail")?;
    serde_json::from_value(v.clone()).ok()
}

fn parse_hash(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[derive(Default)]
struct Walk {
    prev_hash: Option<Hash>,
    prev_seq: Option<u64>,
    /// A line that is not a record, waiting for the next record to account for it.
    torn: Option<(Position, u64)>,
    records: u64,
    first_seq: Option<u64>,
    from_genesis: bool,
    torn_lines: u64,
    unchained: u64,
}

impl Walk {
    fn line(&mut self, at: Position, line: &[u8]) -> Result<(), Broken> {
        let hash = chain::line_hash(line);
        let broken = |at: &Position, reason: String| Broken {
            at: at.clone(),
            reason,
        };
        let record: Linked = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(_) => {
                if let Some((first, _)) = &self.torn {
                    return Err(broken(first, "not an audit record".into()));
                }
                self.torn = Some((at.clone(), line.len() as u64));
                self.prev_hash = Some(hash);
                return Ok(());
            }
        };
        let at = Position {
            seq: Some(record.seq),
            ..at
        };
        let Some(prev) = record.prev.as_deref() else {
            // Records of a daemon from before the chain, at the old end of the log: the first
            // chained record links to the last of them, so they cannot be swapped in later.
            if self.records == self.unchained && self.torn.is_none() {
                self.unchained += 1;
                self.records += 1;
                self.first_seq.get_or_insert(record.seq);
                self.prev_seq = Some(record.seq);
                self.prev_hash = Some(hash);
                return Ok(());
            }
            return Err(broken(
                &at,
                "no `prev` field: a record without the hash chain after chained ones (edited)"
                    .into(),
            ));
        };
        let prev = parse_hash(prev)
            .ok_or_else(|| broken(&at, format!("`prev` is not a hash: {prev:?}")))?;
        match self.prev_hash {
            None if record.seq == 1 && prev != GENESIS => {
                return Err(broken(
                    &at,
                    "the log's first record (seq 1) must have `prev` all zeros".into(),
                ))
            }
            None => self.from_genesis = record.seq == 1,
            Some(expected) if expected != prev => {
                return Err(broken(
                    &at,
                    format!(
                        "`prev` does not match the line before it (expected {}): a line was changed, removed, inserted or reordered here or just before",
                        chain::hex(&expected)
                    ),
                ))
            }
            Some(_) => {}
        }
        let report = tail_report(&record);
        if let Some((torn_at, len)) = self.torn.take() {
            match &report {
                Some(r) if r.torn_bytes == len => self.torn_lines += 1,
                _ => return Err(broken(&torn_at, "not an audit record".into())),
            }
        }
        if let Some(r) = &report {
            if r.truncated || r.altered {
                return Err(broken(
                    &at,
                    format!(
                        "the restarted daemon found the log's end changed: {}",
                        r.reason.as_deref().unwrap_or("no reason given")
                    ),
                ));
            }
        }
        if let Some(p) = self.prev_seq {
            if record.seq != p + 1 {
                return Err(broken(
                    &at,
                    format!(
                        "seq {} follows seq {p}: records missing or out of order",
                        record.seq
                    ),
                ));
            }
        }
        self.first_seq.get_or_insert(record.seq);
        self.prev_seq = Some(record.seq);
        self.prev_hash = Some(hash);
        self.records += 1;
        Ok(())
    }
}

/// Check the log at `path` and its rotated files. `Ok(Err(_))`: the first broken or missing
/// record; `Err(_)`: a file could not be read.
pub fn verify_log(path: &Path) -> Result<Result<Intact, Broken>, AuditError> {
    let files = log_files(path);
    let mut walk = Walk::default();
    let mut buf = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let f = File::open(file).map_err(AuditError::io(file))?;
        let mut reader = BufReader::new(f);
        let mut number = 0u64;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(AuditError::io(file))?;
            if n == 0 {
                break;
            }
            number += 1;
            let at = Position {
                file: file.clone(),
                line: number,
                seq: None,
            };
            if buf.last() != Some(&b'\n') {
                let last = i + 1 == files.len();
                return Ok(Err(Broken {
                    at,
                    reason: format!(
                        "the file ends inside a line ({} bytes){}",
                        buf.len(),
                        if last {
                            ": its tail was cut (a crash of the daemon, or truncation)"
                        } else {
                            ": a rotated file is always complete, so it was truncated"
                        }
                    ),
                }));
            }
            buf.pop();
            if let Err(b) = walk.line(at, &buf) {
                return Ok(Err(b));
            }
        }
    }
    if let Some((at, _)) = walk.torn {
        return Ok(Err(Broken {
            at,
            reason: "not an audit record".into(),
        }));
    }
    if walk.records > 0 && walk.unchained == walk.records {
        return Ok(Err(Broken {
            at: Position {
                file: files.last().cloned().unwrap_or_default(),
                line: 0,
                seq: walk.prev_seq,
            },
            reason: "no record carries the hash chain (`prev`): written by a daemon before the chain existed, or stripped".into(),
        }));
    }
    Ok(Ok(Intact {
        files: files.len(),
        records: walk.records,
        first_seq: walk.first_seq.unwrap_or(0),
        last_seq: walk.prev_seq.unwrap_or(0),
        from_genesis: walk.from_genesis || walk.records == 0,
        torn_lines: walk.torn_lines,
        unchained: walk.unchained,
        last_hash: walk.prev_hash.unwrap_or(GENESIS),
    }))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;

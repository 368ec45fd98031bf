//! Appends records to the audit log with size-based rotation.
//!
//! Durability (documented in docs/events.md): every batch is written with `write(2)` as soon as
//! it is appended (no user-space buffer survives a call), so a daemon crash loses nothing that
//! was appended; `fdatasync` runs at most every `fsync_interval` while there is unsynced data,
//! before every rotation and on close, bounding what a power loss can take.
//!
//! Rotation: `audit.jsonl` -> `audit.jsonl.1` -> ... -> `audit.jsonl.<retain>`, the oldest beyond
//! `retain` deleted. The writer is the only one appending and rotates between two records, so no
//! record is split or dropped by a rotation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::reader::{last_seq, rotated_path};
use super::{AuditError, Record};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a record would make the current file larger than this.
    pub max_bytes: u64,
    /// Rotated files to keep (0: the current file only).
    pub retain: u32,
    /// Longest time appended data may stay unsynced.
    pub fsync_interval: Duration,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_bytes: 100 * 1024 * 1024, retain: 10, fsync_interval: Duration::from_secs(1) }
    }
}

pub struct AuditWriter {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
    next_seq: u64,
    unsynced_since: Option<Instant>,
}

/// The log is readable by root and the file's group only: it names files agents touched.
const LOG_MODE: u32 = 0o640;

fn open_append(path: &Path) -> Result<(File, u64), AuditError> {
    let file = OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(path).map_err(AuditError::io(path))?;
    let size = file.metadata().map_err(AuditError::io(path))?.len();
    Ok((file, size))
}

fn ends_with_newline(path: &Path) -> Result<bool, AuditError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).map_err(AuditError::io(path))?;
    f.seek(SeekFrom::End(-1)).map_err(AuditError::io(path))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last).map_err(AuditError::io(path))?;
    Ok(last[0] == b'\n')
}

impl AuditWriter {
    /// Open (or create, with its directory) the log at `path`. Sequence numbers continue from the
    /// last record already in the log, so they keep increasing across daemon restarts.
    pub fn open(path: &Path, rotation: Rotation) -> Result<Self, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(AuditError::io(dir))?;
        }
        let last = last_seq(path)?.max(last_seq(&rotated_path(path, 1))?);
        let (mut file, mut size) = open_append(path)?;
        if size > 0 && !ends_with_newline(path)? {
            // A crash cut the last record: end its line so the next record starts on its own.
            file.write_all(b"\n").map_err(AuditError::io(path))?;
            size += 1;
        }
        Ok(AuditWriter { path: path.to_path_buf(), rotation, file, size, next_seq: last + 1, unsynced_since: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sequence number the next appended record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Append records (assigning their `seq`) and return their JSON lines (with the newline), for
    /// live subscribers.
    pub fn append(&mut self, records: &mut [Record]) -> Result<Vec<String>, AuditError> {
        let mut lines = Vec::with_capacity(records.len());
        let mut pending = String::new();
        for record in records.iter_mut() {
            record.set_seq(self.next_seq);
            self.next_seq += 1;
            let mut line = serde_json::to_string(record)?;
            line.push('\n');
            let len = line.len() as u64;
            if self.size + pending.len() as u64 > 0 && self.size + pending.len() as u64 + len > self.rotation.max_bytes {
                self.write_out(&pending)?;
                pending.clear();
                self.rotate()?;
            }
            pending.push_str(&line);
            lines.push(line);
        }
        self.write_out(&pending)?;
        self.sync_if_due()?;
        Ok(lines)
    }

    fn write_out(&mut self, data: &str) -> Result<(), AuditError> {
        if data.is_empty() {
            return Ok(());
        }
        self.file.write_all(data.as_bytes()).map_err(AuditError::io(&self.path))?;
        self.size += data.len() as u64;
        self.unsynced_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// fdatasync if data has been unsynced for `fsync_interval` (call from a timer too).
    pub fn sync_if_due(&mut self) -> Result<(), AuditError> {
        match self.unsynced_since {
            Some(since) if since.elapsed() >= self.rotation.fsync_interval => self.sync(),
            _ => Ok(()),
        }
    }

    pub fn sync(&mut self) -> Result<(), AuditError> {
        if self.unsynced_since.take().is_some() {
            self.file.sync_data().map_err(AuditError::io(&self.path))?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        self.sync()?;
        let oldest = rotated_path(&self.path, self.rotation.retain + 1);
        for n in (1..=self.rotation.retain).rev() {
            let from = rotated_path(&self.path, n);
            match std::fs::rename(&from, rotated_path(&self.path, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(AuditError::Io { path: from, cause: e }),
                _ => {}
            }
        }
        let first = rotated_path(&self.path, 1);
        if self.rotation.retain == 0 {
            std::fs::remove_file(&self.path).map_err(AuditError::io(&self.path))?;
        } else {
            std::fs::rename(&self.path, &first).map_err(AuditError::io(&self.path))?;
        }
        match std::fs::remove_file(&oldest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(AuditError::Io { path: oldest, cause: e }),
            _ => {}
        }
        let (file, size) = open_append(&self.path)?;
        self.file = file;
        self.size = size;
        Ok(())
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::reader::{log_files, read_log};
    use super::super::DaemonRecord;
    use super::*;

    fn record(i: u64) -> Record {
        Record::Daemon(DaemonRecord { event: format!("test-{i}"), time: "t".into(), host: "h".into(), ..Default::default() })
    }

    fn read_all(path: &Path) -> Vec<Record> {
        let mut out = Vec::new();
        read_log(path, &mut |r| out.push(r), &mut |e| panic!("malformed record: {e}")).expect("reading the log");
        out
    }

    #[test]
    fn rotation_keeps_every_record_in_order_up_to_retention() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let rotation = Rotation { max_bytes: 400, retain: 100, fsync_interval: Duration::ZERO };
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        for batch in 0..20u64 {
            let mut records: Vec<Record> = (0..7).map(|i| record(batch * 7 + i)).collect();
            w.append(&mut records).unwrap();
        }
        let files = log_files(&path);
        assert!(files.len() > 5, "expected several rotations, got files {files:?}");
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len <= 400, "{} is {len} bytes, over the rotation size", f.display());
        }
        let seqs: Vec<u64> = read_all(&path).iter().map(Record::seq).collect();
        assert_eq!(seqs, (1..=140).collect::<Vec<_>>(), "records lost or reordered across rotation");
    }

    #[test]
    fn retention_deletes_only_the_oldest_files() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let rotation = Rotation { max_bytes: 200, retain: 2, fsync_interval: Duration::ZERO };
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        for i in 0..60 {
            w.append(&mut [record(i)]).unwrap();
        }
        let files = log_files(&path);
        assert_eq!(files, vec![rotated_path(&path, 2), rotated_path(&path, 1), path.clone()]);
        let seqs: Vec<u64> = read_all(&path).iter().map(Record::seq).collect();
        assert_eq!(*seqs.last().unwrap(), 60, "the newest record must survive retention");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "a gap inside the retained files: {seqs:?}");
    }

    #[test]
    fn sequence_numbers_continue_after_reopening() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let rotation = Rotation { max_bytes: 300, retain: 3, fsync_interval: Duration::from_secs(60) };
        {
            let mut w = AuditWriter::open(&path, rotation).unwrap();
            for i in 0..10 {
                w.append(&mut [record(i)]).unwrap();
            }
        }
        // Simulate a crash mid-line: the partial record is skipped by readers.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"type\":\"dae").unwrap();
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        assert_eq!(w.next_seq(), 11);
        w.append(&mut [record(10)]).unwrap();
        drop(w);
        let mut errors = Vec::new();
        let mut seqs = Vec::new();
        read_log(&path, &mut |r| seqs.push(r.seq()), &mut |e| errors.push(e.to_string())).unwrap();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
        assert_eq!(errors.len(), 1, "the cut line must be reported once: {errors:?}");
        assert!(errors[0].contains("audit.jsonl:"), "error names file and line: {}", errors[0]);
    }

    #[test]
    fn log_file_is_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir();
        let path = dir.join("sub/audit.jsonl");
        AuditWriter::open(&path, Rotation::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "audit log mode {mode:o} lets everyone read it");
    }

    /// A fresh directory under the target dir's temp (cleaned by the OS / next run).
    pub(crate) fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir()
            .join(format!("enforcer-audit-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

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
//!
//! Hash chain ([`super::chain`]): every line gets `"prev"`, the SHA-256 of the line before it,
//! appended as the line is queued (one hash of ~300 bytes per record; nothing is read back). The
//! chain runs on across rotations (the writer rotates between lines) and restarts ([`open`]
//! hashes the log's last line, and says in [`AuditWriter::opened_tail`] whether it was torn).
//!
//! Write failures (disk full, I/O errors): records that cannot be written stay queued in memory,
//! in order, and are retried on the next append; up to [`MAX_QUEUED_BYTES`]. Beyond that new
//! records are refused (no `seq` is spent on them) and counted, so the caller can log a `lost`
//! record once writing works again.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::{
    chain::{self, Hash, LogTail},
    reader::{last_record, rotated_files, rotated_path},
    AuditError, Record,
};

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
        Rotation {
            max_bytes: 100 * 1024 * 1024,
            retain: 10,
            fsync_interval: Duration::from_secs(1),
        }
    }
}

/// Memory the queue of unwritten records may take while the log cannot be written.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;
/// Bytes handed to one write(2), at most (plus one line).
const WRITE_CHUNK: usize = 1 << 20;

pub struct AuditWriter {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
    next_seq: u64,
    unsynced_since: Option<Instant>,
    /// Encoded lines not in the file yet, in order: `pending[written..]` is still to be written.
    /// One buffer for all lines: encoding a record costs no allocation of its own.
    pending: Vec<u8>,
    written: usize,
    /// End offset in `pending` of every line not completely written, oldest first.
    line_ends: VecDeque<usize>,
    /// Start of the oldest line not completely written.
    line_start: usize,
    /// Records refused while the queue was full, not reported yet.
    refused: u64,
    /// [`MAX_QUEUED_BYTES`] (smaller in tests).
    max_queued_bytes: usize,
    /// The log's last record when it was opened (how the previous daemon run ended).
    previous: Option<Record>,
    /// How the log ended when it was opened (for the `start` record).
    opened_tail: LogTail,
    /// SHA-256 of the last line queued: the next record's `prev`.
    prev: Hash,
}

/// The log is readable by root and the file's group only: it names files agents touched.
const LOG_MODE: u32 = 0o640;

fn open_append(path: &Path) -> Result<(File, u64), AuditError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_MODE)
        .open(path)
        .map_err(AuditError::io(path))?;
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
        // After a rotation the current file can be empty: the last record is then in `.1`.
        let previous = match last_record(path)? {
            Some(record) => Some(record),
            None => last_record(&rotated_path(path, 1))?,
        };
        let last = previous.as_ref().map_or(0, Record::seq);
        let opened_tail = LogTail::of(&chain::file_tail(path)?, || {
            chain::file_tail(&rotated_path(path, 1))
        })?;
        let (mut file, mut size) = open_append(path)?;
        if size > 0 && !ends_with_newline(path)? {
            // A crash cut the last record: end its line so the next record starts on its own.
            file.write_all(b"\n").map_err(AuditError::io(path))?;
            size += 1;
        }
        Ok(AuditWriter {
            path: path.to_path_buf(),
            rotation,
            file,
            size,
            next_seq: last + 1,
            unsynced_since: None,
            pending: Vec::new(),
            written: 0,
            line_ends: VecDeque::new(),
            line_start: 0,
            refused: 0,
            max_queued_bytes: MAX_QUEUED_BYTES,
            previous,
            prev: opened_tail.next_prev,
            opened_tail,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last record in the log when it was opened.
    pub fn previous_record(&self) -> Option<&Record> {
        self.previous.as_ref()
    }

    /// How the log ended when it was opened: its last line's hash, and a torn line.
    pub fn opened_tail(&self) -> &LogTail {
        &self.opened_tail
    }

    /// The `seq` and hash of the last line queued (the head of the chain).
    pub fn chain_head(&self) -> (u64, Hash) {
        (self.next_seq - 1, self.prev)
    }

    /// Sequence number the next appended record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Append records (assigning their `seq`) and return their JSON lines (with the newline), for
    /// live subscribers, with the outcome of writing them. On a write error the records stay
    /// queued (they are still returned) and are written by a later call.
    pub fn append(&mut self, records: &mut [Record]) -> (Vec<String>, Result<(), AuditError>) {
        let mark = self.mark();
        for record in records.iter_mut() {
            self.push_record(record);
        }
        let lines = self.lines_since(mark).map(str::to_owned).collect();
        (lines, self.flush())
    }

    /// Where the lines pushed from now on start (for [`AuditWriter::lines_since`]).
    pub fn mark(&self) -> usize {
        self.pending.len()
    }

    /// Queue one record (its `seq` assigned); false if the queue is full and it was refused.
    pub fn push_record(&mut self, record: &mut Record) -> bool {
        let seq = self.next_seq;
        record.set_seq(seq);
        record.clear_prev();
        self.push_with(|_, out| {
            serde_json::to_writer(out, &*record).expect("audit records always serialize")
        })
    }

    /// Queue one line that `encode(seq, buffer)` appends (one JSON object, no newline). False if
    /// the queue is full: nothing is kept and no `seq` is spent on it.
    pub fn push_with(&mut self, encode: impl FnOnce(u64, &mut Vec<u8>)) -> bool {
        let start = self.pending.len();
        encode(self.next_seq, &mut self.pending);
        let chained = chain::append_prev(&mut self.pending, start, &self.prev);
        debug_assert!(chained, "an audit record is one JSON object");
        let hash = chain::line_hash(&self.pending[start..]);
        self.pending.push(b'\n');
        if self.pending.len() - self.written > self.max_queued_bytes {
            self.pending.truncate(start);
            self.refused += 1;
            return false;
        }
        self.prev = hash;
        self.next_seq += 1;
        self.line_ends.push_back(self.pending.len());
        true
    }

    /// The lines pushed since `mark` (each with its newline) that are still buffered: all of
    /// them until the next [`AuditWriter::flush`].
    pub fn lines_since(&self, mark: usize) -> impl Iterator<Item = &str> + '_ {
        let from = mark.max(self.line_start);
        let bytes = self.pending.get(from..).unwrap_or_default();
        // Every line is UTF-8: JSON from serde_json or the event encoder.
        std::str::from_utf8(bytes)
            .unwrap_or_default()
            .split_inclusive('\n')
    }

    /// Swap the log's file (tests: a full disk is `/dev/full`).
    #[cfg(test)]
    pub(crate) fn replace_file(&mut self, file: File) -> File {
        std::mem::replace(&mut self.file, file)
    }

    /// Records refused because the queue was full, once everything queued has been written
    /// (so the count can be logged right after them). Resets the count.
    pub fn take_refused(&mut self) -> Option<u64> {
        (self.line_ends.is_empty() && self.refused > 0).then(|| std::mem::take(&mut self.refused))
    }

    /// Records waiting to be written.
    pub fn queued(&self) -> usize {
        self.line_ends.len()
    }

    /// Write the queued lines (rotating between lines as needed), then fdatasync if due.
    pub fn flush(&mut self) -> Result<(), AuditError> {
        let result = self.write_pending();
        if self.written == self.pending.len() {
            self.pending.clear();
            self.written = 0;
            self.line_start = 0;
        } else if self.line_start > WRITE_CHUNK {
            // A backlog (the log cannot be written): drop what is in the file already.
            let done = self.line_start;
            self.pending.drain(..done);
            self.written -= done;
            self.line_start = 0;
            self.line_ends.iter_mut().for_each(|end| *end -= done);
        }
        result.and_then(|()| self.sync_if_due())
    }

    fn write_pending(&mut self) -> Result<(), AuditError> {
        while let Some(&front_end) = self.line_ends.front() {
            let at_line_start = self.written == self.line_start;
            if at_line_start
                && self.size > 0
                && self.size + (front_end - self.line_start) as u64 > self.rotation.max_bytes
            {
                self.rotate()?;
            }
            // The rest of the front line plus the lines after it that fit before the next
            // rotation, in bounded chunks (a long backlog is not written in one piece).
            let mut end = front_end;
            for &next in self.line_ends.iter().skip(1) {
                if self.size + (next - self.written) as u64 > self.rotation.max_bytes
                    || next - self.written > WRITE_CHUNK
                {
                    break;
                }
                end = next;
            }
            let result = loop {
                if self.written == end {
                    break Ok(());
                }
                match self.file.write(&self.pending[self.written..end]) {
                    Ok(0) => break Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                    Ok(n) => {
                        self.written += n;
                        self.size += n as u64;
                        self.unsynced_since.get_or_insert_with(Instant::now);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            while let Some(&line_end) = self.line_ends.front() {
                if line_end > self.written {
                    break;
                }
                self.line_start = line_end;
                self.line_ends.pop_front();
            }
            result.map_err(AuditError::io(&self.path))?;
        }
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
        let retain = self.rotation.retain;
        for n in (1..=retain).rev() {
            let from = rotated_path(&self.path, n);
            match std::fs::rename(&from, rotated_path(&self.path, n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(AuditError::Io {
                        path: from,
                        cause: e,
                    })
                }
                _ => {}
            }
        }
        if retain == 0 {
            std::fs::remove_file(&self.path).map_err(AuditError::io(&self.path))?;
        } else {
            let first = rotated_path(&self.path, 1);
            std::fs::rename(&self.path, &first).map_err(AuditError::io(&self.path))?;
        }
        // Beyond `retain`: the file just shifted past it, and the ones a run with a larger
        // retention count left (lowering `audit.retain` takes effect at the next rotation).
        for (_, stale) in rotated_files(&self.path)
            .into_iter()
            .filter(|(n, _)| *n > retain)
        {
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(AuditError::Io {
                        path: stale,
                        cause: e,
                    })
                }
                _ => {}
            }
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
    use super::{
        super::{
            reader::{log_files, read_log},
            DaemonRecord,
        },
        *,
    };

    fn record(i: u64) -> Record {
        Record::Daemon(DaemonRecord {
            event: format!("test-{i}"),
            time: "t".into(),
            host: "h".into(),
            ..Default::default()
        })
    }

    fn read_all(path: &Path) -> Vec<Record> {
        let mut out = Vec::new();
        read_log(path, &mut |r| out.push(r), &mut |e| {
            panic!("malformed record: {e}")
        })
        .expect("reading the log");
        out
    }

    #[test]
    fn rotation_keeps_every_record_in_order_up_to_retention() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 400,
            retain: 100,
            fsync_interval: Duration::ZERO,
        };
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        for batch in 0..20u64 {
            let mut records: Vec<Record> = (0..7).map(|i| record(batch * 7 + i)).collect();
            w.append(&mut records).1.unwrap();
        }
        let files = log_files(&path);
        assert!(
            files.len() > 5,
            "expected several rotations, got files {files:?}"
        );
        for f in &files {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(
                len <= 400,
                "{} is {len} bytes, over the rotation size",
                f.display()
            );
        }
        let seqs: Vec<u64> = read_all(&path).iter().map(Record::seq).collect();
        assert_eq!(
            seqs,
            (1..=140).collect::<Vec<_>>(),
            "records lost or reordered across rotation"
        );
    }

    #[test]
    fn retention_deletes_only_the_oldest_files() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 200,
            retain: 2,
            fsync_interval: Duration::ZERO,
        };
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        for i in 0..60 {
            w.append(&mut [record(i)]).1.unwrap();
        }
        let files = log_files(&path);
        assert_eq!(
            files,
            vec![rotated_path(&path, 2), rotated_path(&path, 1), path.clone()]
        );
        let seqs: Vec<u64> = read_all(&path).iter().map(Record::seq).collect();
        assert_eq!(
            *seqs.last().unwrap(),
            60,
            "the newest record must survive retention"
        );
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "a gap inside the retained files: {seqs:?}"
        );
    }

    #[test]
    fn a_lowered_retention_removes_older_files_at_the_next_rotation() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let mut rotation = Rotation {
            max_bytes: 200,
            retain: 10,
            fsync_interval: Duration::ZERO,
        };
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        for i in 0..40 {
            w.append(&mut [record(i)]).1.unwrap();
        }
        drop(w);
        assert_eq!(
            log_files(&path).len(),
            11,
            "retain 10 keeps ten rotated files"
        );
        // Restarted with a smaller count: nothing is removed until a rotation is due.
        rotation.retain = 2;
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        assert_eq!(log_files(&path).len(), 11);
        while log_files(&path).len() == 11 {
            let i = w.next_seq();
            w.append(&mut [record(i)]).1.unwrap();
        }
        assert_eq!(
            log_files(&path),
            vec![rotated_path(&path, 2), rotated_path(&path, 1), path.clone()]
        );
        let seqs: Vec<u64> = read_all(&path).iter().map(Record::seq).collect();
        assert_eq!(*seqs.last().unwrap(), w.next_seq() - 1);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "a gap inside the retained files: {seqs:?}"
        );
    }

    #[test]
    fn sequence_numbers_continue_after_reopening() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 600,
            retain: 3,
            fsync_interval: Duration::from_secs(60),
        };
        {
            let mut w = AuditWriter::open(&path, rotation).unwrap();
            for i in 0..10 {
                w.append(&mut [record(i)]).1.unwrap();
            }
        }
        // Simulate a crash mid-line: the partial record is skipped by readers.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"type\":\"dae")
            .unwrap();
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        assert_eq!(w.next_seq(), 11);
        w.append(&mut [record(10)]).1.unwrap();
        drop(w);
        let mut errors = Vec::new();
        let mut seqs = Vec::new();
        read_log(&path, &mut |r| seqs.push(r.seq()), &mut |e| {
            errors.push(e.to_string())
        })
        .unwrap();
        assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
        assert_eq!(
            errors.len(),
            1,
            "the cut line must be reported once: {errors:?}"
        );
        assert!(
            errors[0].contains("audit.jsonl:"),
            "error names file and line: {}",
            errors[0]
        );
    }

    #[test]
    fn write_failures_queue_records_in_order_until_the_log_is_writable_again() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 64 * 1024,
            retain: 3,
            fsync_interval: Duration::from_secs(60),
        };
        let mut w = AuditWriter::open(&path, rotation).unwrap();
        w.append(&mut [record(0)]).1.unwrap();
        // The disk fills up: every write fails with ENOSPC.
        let real = std::mem::replace(
            &mut w.file,
            OpenOptions::new().write(true).open("/dev/full").unwrap(),
        );
        let (lines, result) = w.append(&mut [record(1), record(2)]);
        assert_eq!(
            lines.len(),
            2,
            "queued records still go to live subscribers"
        );
        let err = result
            .expect_err("writing to a full disk must be reported")
            .to_string();
        assert!(
            err.contains("audit.jsonl") && err.contains("No space left"),
            "{err}"
        );
        assert_eq!(w.queued(), 2);
        // Space is back: the queue is written first, then the new record, in seq order.
        w.file = real;
        w.append(&mut [record(3)]).1.expect("writing works again");
        assert_eq!(w.queued(), 0);
        assert_eq!(w.take_refused(), None);
        drop(w);
        let seqs: Vec<u64> = read_all(&path).iter().map(Record::seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_full_queue_refuses_records_without_spending_seq_numbers() {
        let dir = tempdir();
        let path = dir.join("audit.jsonl");
        let mut w = AuditWriter::open(&path, Rotation::default()).unwrap();
        w.max_queued_bytes = 64 * 1024;
        let real = std::mem::replace(
            &mut w.file,
            OpenOptions::new().write(true).open("/dev/full").unwrap(),
        );
        let big = |i: u64| {
            Record::Daemon(DaemonRecord {
                event: "x".into(),
                message: Some("m".repeat(1 << 10)),
                seq: i,
                ..Default::default()
            })
        };
        let mut accepted = 0;
        for i in 0..80 {
            accepted += w.append(&mut [big(i)]).0.len();
        }
        assert!(
            (50..80).contains(&accepted),
            "{accepted} records of 1 KiB accepted into a 64 KiB queue"
        );
        assert_eq!(
            w.take_refused(),
            None,
            "the refusal count waits until the queue is written"
        );
        w.file = real;
        w.append(&mut []).1.unwrap();
        assert_eq!(w.take_refused(), Some(80 - accepted as u64));
        assert_eq!(
            w.next_seq(),
            accepted as u64 + 1,
            "refused records must not spend seq numbers"
        );
    }

    #[test]
    fn log_file_is_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir();
        let path = dir.join("sub/audit.jsonl");
        AuditWriter::open(&path, Rotation::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode & 0o007,
            0,
            "audit log mode {mode:o} lets everyone read it"
        );
    }

    /// A fresh directory under the target dir's temp (cleaned by the OS / next run).
    pub(crate) fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "enforcer-audit-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

//! The policy lifecycle around the audit log: `replay` (what would a candidate policy change
//! for what really happened?) and `learn` (write a least-privilege policy from what an agent did
//! in audit mode).
//!
//! Pure: both work on audit records and policy text, never on the kernel, so unit tests drive
//! them from synthetic logs. `requests` turns a record back into the request the kernel decided,
//! which both use; the reference evaluator (`policy::eval`) decides it again.

pub mod collapse;
pub mod learn;
pub mod probe;
pub mod render;
pub mod replay;
pub mod requests;
pub mod sensitive;
pub mod sets;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::audit::{
    reader::{read_file, read_log},
    AuditError, EventRecord, Record,
};

/// Where the events come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// A log and its rotated files (`audit.jsonl.N` ... `.1`, then `audit.jsonl`).
    WithRotations(PathBuf),
    /// Exactly these files, in this order (the user names rotated files one by one).
    Files(Vec<PathBuf>),
}

/// Call `visit` with every event record of `source`, in write order. Malformed lines are passed
/// to `on_error` and skipped: one damaged line must not hide the rest of the log.
pub fn for_each_event(
    source: &LogSource,
    visit: &mut dyn FnMut(&EventRecord),
    on_error: &mut dyn FnMut(AuditError),
) -> Result<(), AuditError> {
    let mut record_visit = |record: Record| {
        if let Record::Event(e) = record {
            visit(&e);
        }
    };
    match source {
        LogSource::WithRotations(path) => read_log(path, &mut record_visit, on_error),
        LogSource::Files(files) => {
            for file in files {
                read_file(file, &mut record_visit, on_error)?;
            }
            Ok(())
        }
    }
}

/// The files of a source, for messages.
pub fn describe(source: &LogSource) -> String {
    let show = |p: &Path| p.display().to_string();
    match source {
        LogSource::WithRotations(path) => format!("{} (and its rotated files)", show(path)),
        LogSource::Files(files) => files.iter().map(|f| show(f)).collect::<Vec<_>>().join(", "),
    }
}

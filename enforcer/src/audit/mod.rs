//! The audit log: one JSON object per line (schema in docs/events.md).
//!
//! `record` defines the records and maps kernel events onto them, `names` holds the stable names
//! of ops, verdicts, flags and access kinds, `clock` turns kernel boot time into wall-clock time,
//! `history` keeps recent compiled policies so old events still resolve rule ids, `writer` appends
//! with size-based rotation, `reader` reads the current and rotated files back in order, `chain`
//! links every record to the one before it by hash and `verify` checks that chain.

pub mod chain;
pub mod clock;
pub mod encode;
pub mod filter;
pub mod history;
pub mod names;
pub mod reader;
pub mod record;
pub mod text;
pub mod verify;
pub mod writer;

use std::path::PathBuf;

pub use record::{DaemonRecord, EventRecord, LostRecord, Record};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}:{line}: not an audit record: {reason}", path.display())]
    Malformed {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("serializing an audit record: {0}")]
    Serialize(serde_json::Error),
}

impl From<serde_json::Error> for AuditError {
    fn from(e: serde_json::Error) -> Self {
        AuditError::Serialize(e)
    }
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuditError {
        let path = path.into();
        move |cause| AuditError::Io { path, cause }
    }
}

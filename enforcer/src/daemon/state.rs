//! State that must outlive one daemon run: the last policy version (versions stamped on events
//! keep increasing across restarts, so an event never names a version that meant something
//! else) and the kernel loss counters already written to the log as `lost` records (the kernel
//! counters survive with the pinned maps; without this a restart would report old losses again).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::DaemonError;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonState {
    pub policy_version: u32,
    /// Agent id -> kernel loss counter value already reported.
    pub losses_reported: BTreeMap<u32, u64>,
    /// The audit log's last record at a clean stop (seq and hash of its line): the next start
    /// checks the log still ends there (a removed or changed tail is reported). Cleared at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_end: Option<AuditEnd>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEnd {
    pub seq: u64,
    pub hash: String,
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        StateFile {
            path: dir.join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Name tables of recent policy versions (see `audit::history`).
    pub fn versions_dir(&self) -> PathBuf {
        self.path.with_file_name("versions")
    }

    /// The saved state; a missing file is a first start. A corrupt file is an error rather than
    /// a silent reset, which would reuse policy versions.
    pub fn load(&self) -> Result<DaemonState, DaemonError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| self.error(format!("{e} (remove the file to start over)"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DaemonState::default()),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    /// Replace the file atomically (write a temporary file, fsync, rename).
    pub fn save(&self, state: &DaemonState) -> Result<(), DaemonError> {
        use std::io::Write;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.error(format!("creating {}: {e}", dir.display())))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(state).expect("state always serializes");
        let mut f = std::fs::File::create(&tmp).map_err(|e| self.error(e.to_string()))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| self.error(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.error(e.to_string()))
    }

    fn error(&self, reason: String) -> DaemonError {
        DaemonError::State {
            path: self.path.clone(),
            reason,
        }
    }
}

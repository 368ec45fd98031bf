//! The daemon's grants (`enforcer grant`), kept in `<state dir>/grants.json` so a restarted
//! daemon keeps them until they expire. The kernel ends a grant on time by itself (its rule is
//! conditional on the grant's lifetime); this book only decides what is compiled next and what
//! the audit log says.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::DaemonError;
use crate::policy::grant::Grant;

pub const GRANTS_FILE: &str = "grants.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    next_id: u32,
    grants: Vec<Grant>,
}

#[derive(Debug, Default)]
pub struct GrantBook {
    /// `None` in tests: nothing persisted.
    path: Option<PathBuf>,
    saved: Saved,
}

impl GrantBook {
    /// The book in `state_dir`; a missing file is an empty book, a corrupt one an error (a silent
    /// reset would forget grants and reuse their ids).
    pub fn open(state_dir: &Path) -> Result<GrantBook, DaemonError> {
        let path = state_dir.join(GRANTS_FILE);
        let saved = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| DaemonError::State {
                path: path.clone(),
                reason: format!("{e} (remove the file to drop every grant)"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => {
                return Err(DaemonError::State {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        Ok(GrantBook {
            path: Some(path),
            saved,
        })
    }

    pub fn grants(&self) -> &[Grant] {
        &self.saved.grants
    }

    /// A new grant (not yet in the book: see [`GrantBook::add`]).
    pub fn draft(
        &self,
        agent: &str,
        rule: &str,
        now: Timestamp,
        expires: Timestamp,
        reason: Option<String>,
        uid: u32,
    ) -> Grant {
        Grant {
            id: self.saved.next_id.max(1),
            agent: agent.to_owned(),
            rule: rule.to_owned(),
            granted_at: now,
            expires,
            reason,
            uid,
        }
    }

    /// The grants with `g` added (to compile before committing to it).
    pub fn with(&self, g: &Grant) -> Vec<Grant> {
        let mut all = self.saved.grants.clone();
        all.push(g.clone());
        all
    }

    /// Add `g` (or put a removed one back), keeping the book in id order.
    pub fn add(&mut self, g: Grant) -> Result<(), DaemonError> {
        self.saved.next_id = self.saved.next_id.max(g.id + 1);
        let at = self.saved.grants.partition_point(|x| x.id < g.id);
        self.saved.grants.insert(at, g);
        self.save()
    }

    pub fn remove(&mut self, id: u32) -> Result<Option<Grant>, DaemonError> {
        let Some(i) = self.saved.grants.iter().position(|g| g.id == id) else {
            return Ok(None);
        };
        let g = self.saved.grants.remove(i);
        self.save()?;
        Ok(Some(g))
    }

    /// Take the grants that have expired at `now` out of the book.
    pub fn take_expired(&mut self, now: Timestamp) -> Result<Vec<Grant>, DaemonError> {
        let (gone, live): (Vec<Grant>, Vec<Grant>) =
            self.saved.grants.drain(..).partition(|g| !g.is_live(now));
        self.saved.grants = live;
        if !gone.is_empty() {
            self.save()?;
        }
        Ok(gone)
    }

    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.saved.grants.iter().map(|g| g.expires).min()
    }

    /// Replace the file atomically (temporary file, fsync, rename).
    fn save(&self) -> Result<(), DaemonError> {
        use std::io::Write;
        let Some(path) = &self.path else {
            return Ok(());
        };
        let err = |reason: String| DaemonError::State {
            path: path.clone(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
        }
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.saved).expect("grants always serialize");
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn grants_persist_expire_and_ids_never_repeat() {
        let dir = std::env::temp_dir().join(format!("enforcer-grants-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut book = GrantBook::open(&dir).unwrap();
        let now = ts("2026-01-01T10:00:00Z");
        let a = book.draft(
            "a",
            "net.connect 10.0.0.1:80",
            now,
            ts("2026-01-01T10:01:00Z"),
            None,
            0,
        );
        book.add(a.clone()).unwrap();
        let b = book.draft(
            "a",
            "net.connect 10.0.0.2:80",
            now,
            ts("2026-01-01T11:00:00Z"),
            Some("why".into()),
            0,
        );
        assert_eq!((a.id, b.id), (1, 2));
        book.add(b.clone()).unwrap();

        let mut again = GrantBook::open(&dir).unwrap();
        assert_eq!(
            again.grants(),
            &[a.clone(), b.clone()],
            "a restarted daemon reads the same grants"
        );
        assert_eq!(again.next_expiry(), Some(a.expires));
        assert_eq!(
            again.take_expired(ts("2026-01-01T10:01:00Z")).unwrap(),
            vec![a]
        );
        assert_eq!(again.remove(b.id).unwrap(), Some(b.clone()));
        assert_eq!(again.remove(b.id).unwrap(), None);
        let c = again.draft(
            "a",
            "net.connect 10.0.0.3:80",
            now,
            ts("2026-01-01T12:00:00Z"),
            None,
            0,
        );
        assert_eq!(c.id, 3, "ids of expired and revoked grants are not reused");
        assert!(GrantBook::open(&dir).unwrap().grants().is_empty());

        std::fs::write(dir.join(GRANTS_FILE), "{").unwrap();
        assert!(GrantBook::open(&dir)
            .unwrap_err()
            .to_string()
            .contains("remove the file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

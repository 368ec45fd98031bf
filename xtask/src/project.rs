//! Where things live: the repository, project-local tools, caches and logs.

use std::path::{Path, PathBuf};

/// Paths every task needs. Tools live under `<repo>/target/tools` whatever `CARGO_TARGET_DIR`
/// says, so that every checkout (and every engineer's private target dir) shares one bpf-linker.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    pub fn locate() -> Self {
        // xtask is always built from `<repo>/xtask`, so its manifest dir pins the repository root.
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf();
        Self { root }
    }

    pub fn tools_dir(&self) -> PathBuf {
        self.root.join("target").join("tools")
    }

    /// A fresh scratch directory for generated artefacts (initramfs images and their staging
    /// trees), private to this process so that concurrent `cargo xtask` runs in one checkout
    /// never overwrite each other's images. Removed when dropped.
    pub fn scratch_dir(&self, name: &str) -> std::io::Result<ScratchDir> {
        let path = self
            .root
            .join("target")
            .join("xtask")
            .join(format!("{name}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDir { path })
    }

    pub fn test_logs_dir(&self) -> PathBuf {
        self.root.join("target").join("test-logs")
    }

    pub fn policies_dir(&self) -> PathBuf {
        self.root.join("policies")
    }

    pub fn fuzz_dir(&self) -> PathBuf {
        self.root.join("fuzz")
    }

    /// Downloaded kernels survive `cargo clean` and fresh clones: `$ENFORCER_CACHE` or
    /// `~/.cache/enforcer`.
    pub fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = std::env::var_os("ENFORCER_CACHE").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".cache").join("enforcer")
    }
}

/// A directory that is deleted (with its contents) when this value is dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

//! Policies and files for tests.

use std::path::{Path, PathBuf};

use enforcer::policy::{
    self,
    compile::{CompiledPolicy, RuleKind},
    ResolvedHosts,
};

/// Compile one TOML policy text (panics with the diagnostics if it is invalid).
pub fn compile(toml: &str) -> CompiledPolicy {
    let set = policy::load_sources(&[("test-policy.toml", toml)])
        .unwrap_or_else(|d| panic!("test policy does not load:\n{d}\n{toml}"));
    policy::compile(&set, &ResolvedHosts::default())
        .unwrap_or_else(|d| panic!("test policy does not compile:\n{d}\n{toml}"))
}

/// Compile several policy files (name, TOML) together, as a policy directory would load them.
pub fn compile_files(files: &[(&str, &str)]) -> CompiledPolicy {
    let set =
        policy::load_sources(files).unwrap_or_else(|d| panic!("test policies do not load:\n{d}"));
    policy::compile(&set, &ResolvedHosts::default())
        .unwrap_or_else(|d| panic!("test policies do not compile:\n{d}"))
}

/// Id of the rule whose pattern is exactly `pattern` (the first in file order).
pub fn rule_id(policy: &CompiledPolicy, pattern: &str) -> u32 {
    policy
        .rules
        .iter()
        .find(|r| r.pattern == pattern)
        .unwrap_or_else(|| panic!("no rule with pattern {pattern:?} in {:#?}", policy.rules))
        .id
}

/// Id of the rule of `kind` whose pattern is exactly `pattern`.
pub fn rule_id_of(policy: &CompiledPolicy, kind: RuleKind, pattern: &str) -> u32 {
    policy
        .rules
        .iter()
        .find(|r| r.kind == kind && r.pattern == pattern)
        .unwrap_or_else(|| {
            panic!(
                "no {kind:?} rule with pattern {pattern:?} in {:#?}",
                policy.rules
            )
        })
        .id
}

/// A directory under /tmp removed on drop. Not under /tmp/enforcer* of other tests.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = PathBuf::from(format!("/tmp/enforcer-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create test dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// Create `rel` with `contents`, returning its full path as a string.
    pub fn file(&self, rel: &str, contents: &str) -> String {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&p, contents).expect("write fixture");
        p.to_string_lossy().into_owned()
    }
    pub fn join(&self, rel: &str) -> String {
        self.0.join(rel).to_string_lossy().into_owned()
    }
    /// A copy of busybox at `rel` (its own path, for exec rules), returning the full path.
    pub fn busybox(&self, rel: &str) -> String {
        let dst = self.0.join(rel);
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(busybox(), &dst).expect("copy busybox");
        dst.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A static binary to run in exec tests (busybox-static: `cargo xtask bootstrap` installs it on
/// the host, and every VM image has it).
pub fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is needed for exec tests (cargo xtask bootstrap installs it)")
}

/// xorshift64: reproducible random test cases without a dependency (print the seed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next_u64() % xs.len() as u64) as usize]
    }
}

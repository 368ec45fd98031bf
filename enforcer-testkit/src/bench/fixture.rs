//! What the micro benchmark operates on: files at depth 1 and 16 (allowed and denied), a
//! loopback TCP listener, a UDP sink, a static binary to exec, and the policy that allows
//! exactly the allowed ones. Removed again on drop.

use std::{
    net::{TcpListener, UdpSocket},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use enforcer::policy::{compile, load_sources, CompiledPolicy, ResolvedHosts};

use crate::synthetic::{synthetic_policy_with, ExtraRules};

pub struct Fixture {
    pub allow1: String,
    pub deny1: String,
    pub allow16: String,
    pub deny16: String,
    pub busybox: String,
    pub tcp_port: u16,
    pub udp_port: u16,
    deep_root: PathBuf,
    _udp: UdpSocket,
}

/// Components of an absolute path (`/a/b` has 2).
pub fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}

fn touch(path: &Path) -> anyhow::Result<String> {
    std::fs::write(path, b"x").with_context(|| format!("creating {}", path.display()))?;
    // Rules match canonical paths (symlinks resolved), so the rule must name the real file.
    let real = std::fs::canonicalize(path)?;
    Ok(real.to_string_lossy().into_owned())
}

impl Fixture {
    pub fn create() -> anyhow::Result<Fixture> {
        let tag = format!("enforcer-bench-{}", std::process::id());
        // Depth 1 means a file directly under `/`.
        let allow1 = touch(Path::new(&format!("/{tag}-allow")))?;
        let deny1 = touch(Path::new(&format!("/{tag}-deny")))?;
        let tmp = std::fs::canonicalize("/tmp")?;
        let deep_root = tmp.join(&tag);
        let mut dir = deep_root.clone();
        while depth(&dir.to_string_lossy()) < 15 {
            let next = depth(&dir.to_string_lossy()) + 1;
            dir = dir.join(format!("c{next}"));
        }
        std::fs::create_dir_all(&dir)?;
        let allow16 = touch(&dir.join("allow"))?;
        let deny16 = touch(&dir.join("deny"))?;
        let busybox = std::fs::canonicalize("/bin/busybox")
            .context("/bin/busybox (Debian busybox-static) is the exec benchmark's binary")?
            .to_string_lossy()
            .into_owned();
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let tcp_port = listener.local_addr()?.port();
        // Accept and drop forever: the benchmark's connects must find a listener, and an
        // unaccepted backlog would make connect() itself slow down.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let udp_port = udp.local_addr()?.port();
        Ok(Fixture {
            allow1,
            deny1,
            allow16,
            deny16,
            busybox,
            tcp_port,
            udp_port,
            deep_root,
            _udp: udp,
        })
    }

    /// The agent "bench" with `rules` rules: the synthetic mix plus what the benchmark uses.
    pub fn policy(&self, rules: usize) -> anyhow::Result<CompiledPolicy> {
        self.policy_logging(rules, false)
    }

    /// [`Fixture::policy`]; with `file_allow`, the agent also logs its allowed file opens, so
    /// that every decision on the benchmark's operations is logged.
    pub fn policy_logging(&self, rules: usize, file_allow: bool) -> anyhow::Result<CompiledPolicy> {
        let mut text = synthetic_policy_with(rules, &self.extra_rules());
        if file_allow {
            let agent = "[agent]\nname = \"bench\"\n";
            anyhow::ensure!(
                text.starts_with(agent),
                "the synthetic policy no longer starts with {agent:?}"
            );
            text.insert_str(agent.len(), "log.file_allow = true\n");
        }
        let set = load_sources(&[("bench.toml", &text)])
            .map_err(|d| anyhow::anyhow!("benchmark policy invalid:\n{d}"))?;
        let compiled = compile(&set, &ResolvedHosts::new())
            .map_err(|d| anyhow::anyhow!("benchmark policy rejected:\n{d}"))?;
        anyhow::ensure!(
            compiled.rules.len() == rules,
            "expected {rules} rules, compiled {}",
            compiled.rules.len()
        );
        Ok(compiled)
    }

    pub fn extra_rules(&self) -> ExtraRules {
        ExtraRules {
            read: vec![self.allow1.clone(), self.allow16.clone()],
            exec: vec![self.busybox.clone()],
            connect: vec![
                format!("127.0.0.1:{}/tcp", self.tcp_port),
                format!("127.0.0.1:{}/udp", self.udp_port),
            ],
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.allow1);
        let _ = std::fs::remove_file(&self.deny1);
        let _ = std::fs::remove_dir_all(&self.deep_root);
    }
}

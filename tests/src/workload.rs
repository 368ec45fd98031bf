//! The agent's work in the daemon end-to-end tests (`daemon_restart`, `daemon_reload`): a loop
//! of allowed, explicitly denied and default-denied operations whose outcome must not change
//! whatever the daemon does meanwhile (reloads, SIGKILL, restarts).
//!
//! The operations are the ones the daemon's backend refuses in the kernel: BPF LSM refuses opens
//! and connects with `EPERM`, so its steps alternate between both; the fallback refuses IP
//! connects (cgroup sock_addr programs) but only logs or kills on opens (docs/fallback.md), so
//! its steps are connects. Either way every step has one expected outcome - errno 0 and an
//! `allow` event, or `EPERM` and a `deny` event - so a test checks both backends with the same
//! assertions. Denied steps get a target of their own (a fresh file, a fresh loopback address),
//! so each has exactly one event to find in the audit log.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::{
    backend::DaemonBackend,
    daemon::{testkit_exe, toml_list, LIBC_READS},
    EPERM,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Open,
    Connect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Allowed,
    /// Denied by an explicit deny rule.
    Denied,
    /// Matched by no rule.
    DefaultDenied,
}

impl Class {
    pub fn errno(self) -> i32 {
        if self == Class::Allowed {
            0
        } else {
            EPERM
        }
    }

    pub fn verdict(self) -> &'static str {
        if self == Class::Allowed {
            "allow"
        } else {
            "deny"
        }
    }
}

/// Rule ids of one policy: `daemon_reload` alternates two that decide the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleIds {
    pub allow: &'static str,
    pub deny: &'static str,
}

impl RuleIds {
    /// The id of the rule that decides `class` for `kind`.
    pub fn rule(self, class: Class, kind: Kind) -> String {
        let suffix = if kind == Kind::Open { "file" } else { "net" };
        match class {
            Class::Allowed => format!("{}-{suffix}", self.allow),
            Class::Denied => format!("{}-{suffix}", self.deny),
            Class::DefaultDenied => "default-deny".into(),
        }
    }

    /// Is `rule` one of this policy's rule ids?
    pub fn owns(self, rule: &str) -> bool {
        [Class::Allowed, Class::Denied].iter().any(|&c| {
            [Kind::Open, Kind::Connect]
                .iter()
                .any(|&k| self.rule(c, k) == rule)
        })
    }
}

/// One operation of the agent's loop and what must come of it.
#[derive(Clone, Debug)]
pub struct Step {
    pub index: usize,
    pub kind: Kind,
    pub class: Class,
    /// The `try-ops` operation (`open:PATH`, `connect:ADDR:PORT`).
    pub op: String,
    target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Target {
    Path(String),
    Addr(String, u16),
}

impl Step {
    /// For messages: `open #12 of /tmp/.../denied/d12 (denied)`.
    pub fn describe(&self) -> String {
        format!(
            "{:?} #{} of {} ({:?})",
            self.kind,
            self.index,
            self.op.split_once(':').map_or("", |(_, t)| t),
            self.class
        )
    }

    /// Key of the target: allowed steps share theirs, denied ones have their own.
    pub fn target_key(&self) -> String {
        match &self.target {
            Target::Path(p) => p.clone(),
            Target::Addr(a, port) => format!("{a}:{port}"),
        }
    }

    /// The target of an event, in [`Step::target_key`]'s form.
    pub fn key_of(record: &Value) -> Option<String> {
        match (
            record["path"].as_str(),
            record["addr"].as_str(),
            record["port"].as_u64(),
        ) {
            (Some(p), _, _) => Some(p.to_string()),
            (None, Some(a), Some(port)) => Some(format!("{a}:{port}")),
            _ => None,
        }
    }
}

/// The files, the loopback listener and the policy the loop works with.
pub struct Workload {
    root: PathBuf,
    /// A listener on 0.0.0.0: every 127.x.y.z connect would reach it (errno 0) if the kernel did
    /// not refuse it, so an `EPERM` is the kernel's and nothing else's.
    port: u16,
}

/// Loopback networks of the connect steps: allowed is 127.0.0.1 only.
const DENIED_NET: u8 = 1;
const DEFAULT_NET: u8 = 2;

impl Workload {
    /// Files under `root` and a listener that accepts (and drops) connections until the test
    /// process ends.
    pub fn new(root: &Path) -> Workload {
        for dir in ["allowed", "denied", "outside"] {
            std::fs::create_dir_all(root.join(dir)).expect("create workload dir");
        }
        for i in 0..4 {
            std::fs::write(root.join(format!("allowed/a{i}")), "ok").expect("create allowed file");
        }
        let listener = TcpListener::bind("0.0.0.0:0").expect("listen on 0.0.0.0");
        let port = listener.local_addr().expect("listener address").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
        Workload {
            root: root.to_path_buf(),
            port,
        }
    }

    /// The agent's policy with these rule ids. `reshuffled`: the same decisions from rules in
    /// another order, with rules that match none of the steps added, so the compiled maps differ.
    pub fn policy(&self, agent: &str, ids: RuleIds, reshuffled: bool) -> String {
        let (root, port, exe, libc) = (
            self.root.display(),
            self.port,
            testkit_exe(),
            toml_list(LIBC_READS),
        );
        let (allow, deny) = (ids.allow, ids.deny);
        let allowed_read = format!(r#"{{ path = "{root}/allowed/**", id = "{allow}-file" }}"#);
        let denied_read = format!(r#"{{ path = "{root}/denied/**", id = "{deny}-file" }}"#);
        let allowed_net = format!(r#"{{ to = "127.0.0.1:{port}/tcp", id = "{allow}-net" }}"#);
        let denied_net = format!(r#"{{ to = "127.{DENIED_NET}.0.0/16", id = "{deny}-net" }}"#);
        let (read, file_deny, connect, net_deny) = if reshuffled {
            (
                format!(r#"{libc}, "{root}/extra/**", {allowed_read}"#),
                format!(r#""{root}/other/**", {denied_read}"#),
                format!(r#""127.3.0.0/16:{port}", {allowed_net}"#),
                format!(r#""127.4.0.0/16", {denied_net}"#),
            )
        } else {
            (
                format!("{allowed_read}, {libc}"),
                denied_read,
                allowed_net,
                denied_net,
            )
        };
        format!(
            r#"[agent]
name = "{agent}"
mode = "enforce"
on_violation = "audit"
log.file_allow = true

[file]
read = [{read}]
deny = [{file_deny}]

[exec]
allow = [{{ path = "{exe}", id = "agent-binary" }}]

[net]
connect = [{connect}]
deny = [{net_deny}]
"#
        )
    }

    /// Step `index` of the loop for `backend`: allowed, denied and default-denied in turn, over
    /// the kinds of operations the backend refuses. Creates a denied step's file (the test
    /// process is no agent).
    pub fn step(&self, backend: DaemonBackend, index: usize) -> Step {
        let kinds: &[Kind] = match backend {
            DaemonBackend::Lsm => &[Kind::Open, Kind::Connect],
            DaemonBackend::Fallback => &[Kind::Connect],
        };
        let class = [Class::Allowed, Class::Denied, Class::DefaultDenied][index % 3];
        let kind = kinds[index / 3 % kinds.len()];
        let root = self.root.display();
        let target = match (kind, class) {
            (Kind::Open, Class::Allowed) => Target::Path(format!("{root}/allowed/a{}", index % 4)),
            (Kind::Open, _) => {
                let dir = if class == Class::Denied {
                    "denied"
                } else {
                    "outside"
                };
                let path = format!("{root}/{dir}/f{index}");
                // The open hooks only see files that exist.
                std::fs::write(&path, "x").expect("create denied file");
                Target::Path(path)
            }
            (Kind::Connect, Class::Allowed) => Target::Addr("127.0.0.1".into(), self.port),
            (Kind::Connect, _) => {
                // A loopback address of its own (the 250 x 250 of 127.N.1.1 - 127.N.250.250).
                let net = if class == Class::Denied {
                    DENIED_NET
                } else {
                    DEFAULT_NET
                };
                let n = index / 3 % 62_500;
                Target::Addr(
                    format!("127.{net}.{}.{}", 1 + n / 250, 1 + n % 250),
                    self.port,
                )
            }
        };
        let op = match &target {
            Target::Path(p) => format!("open:{p}"),
            Target::Addr(a, port) => format!("connect:{a}:{port}"),
        };
        Step {
            index,
            kind,
            class,
            op,
            target,
        }
    }
}

//! Locations `learn` never grants, whatever the agent did: credentials, keys, browser profiles,
//! password hashes, the cloud metadata service. A learned policy lists them all as explicit
//! denies (an explicit deny beats any allow, so a collapsed `/home/dev/project/**` still cannot
//! reach `/home/dev/project/.env`), and an observed access to one is reported, not granted.
//!
//! Whether an access is sensitive is decided by compiling this list and asking the reference
//! evaluator, so the classification is exactly what the learned deny rules will do.

use crate::policy::{
    eval::{self, Request, Verdict},
    CompiledPolicy, ResolvedHosts,
};

/// `file.deny` patterns (deny read, write and exec).
pub const FILE_DENY: &[&str] = &[
    "/home/*/.ssh/**",
    "/root/.ssh/**",
    "**/id_rsa",
    "**/id_ecdsa",
    "**/id_ed25519",
    "**/id_dsa",
    "**/*.pem",
    "**/*.key",
    "**/.env",
    "**/.env.local",
    "**/.env.production",
    "/home/*/.aws/**",
    "/root/.aws/**",
    "/home/*/.config/gcloud/**",
    "/root/.config/gcloud/**",
    "/home/*/.azure/**",
    "/root/.azure/**",
    "/home/*/.kube/**",
    "/root/.kube/**",
    "/home/*/.gnupg/**",
    "/root/.gnupg/**",
    "/home/*/.docker/config.json",
    "/home/*/.netrc",
    "/root/.netrc",
    "/home/*/.git-credentials",
    "/home/*/.mozilla/**",
    "/home/*/.config/google-chrome/**",
    "/home/*/.config/chromium/**",
    "/home/*/.config/BraveSoftware/**",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/ssl/private/**",
];

/// `net.deny` targets: the cloud metadata service hands out instance credentials.
pub const NET_DENY: &[&str] = &["169.254.169.254", "[fd00:ec2::254]"];

const PROBE_AGENT: &str = "learn-sensitive-probe";

/// The compiled list, to classify requests.
pub struct Sensitive {
    policy: CompiledPolicy,
    agent: u32,
}

impl Default for Sensitive {
    fn default() -> Self {
        Self::new()
    }
}

impl Sensitive {
    pub fn new() -> Sensitive {
        let text = format!(
            "[agent]\nname = \"{PROBE_AGENT}\"\n[file]\ndeny = {}\n[net]\ndeny = {}\n",
            toml_list(FILE_DENY),
            toml_list(NET_DENY)
        );
        let set = crate::policy::load_sources(&[("sensitive.toml", &text)])
            .expect("the built-in sensitive list is a valid policy");
        let policy = crate::policy::compile(&set, &ResolvedHosts::new())
            .expect("the built-in sensitive list compiles");
        let agent = policy.agent_by_name(PROBE_AGENT).expect("probe agent").id;
        Sensitive { policy, agent }
    }

    /// The pattern of the list that denies `request`, if one does.
    pub fn denied_by(&self, request: &Request) -> Option<&str> {
        let d = eval::evaluate(&self.policy, self.agent, request);
        if d.verdict == Verdict::Allow || d.rule == 0 {
            return None;
        }
        self.policy.rule(d.rule).map(|r| r.pattern.as_str())
    }
}

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

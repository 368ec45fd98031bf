//! Peer: auditd logging the same syscalls for the same process tree, on the same kernel, with
//! the same workers and the same ABBA rounds as `micro`. The audited worker gets a login uid
//! (inherited by its children, like agent membership) and one `auditctl` rule selects it by
//! `auid`: the audit equivalent of "this agent's opens, execs, connects and sends".
//!
//! The binaries come from Debian's `auditd` package (unpacked by `cargo xtask bench`, which
//! passes `--audit-root`); auditd runs in the foreground with its own config and log here and is
//! stopped, and every rule deleted, on drop.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _};

use super::fixture::Fixture;
use super::micro::MicroPlan;
use super::stats::{median, Ratio};
use super::worker::{Op, Worker};

/// A login uid nobody logs in with.
const AUID: u32 = 4_242_424;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PeerRow {
    pub op: String,
    /// Audited process, rules loaded vs not.
    pub audited: Ratio,
    /// Any other process while the rule is loaded.
    pub other: Ratio,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PeerReport {
    pub auditd: Result<Vec<PeerRow>, String>,
    /// AppArmor was not measured; why.
    pub apparmor: String,
}

struct Audit {
    root: PathBuf,
    daemon: Child,
    dir: PathBuf,
}

impl Audit {
    fn auditctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(self.root.join("sbin/auditctl")).args(args).env("LD_LIBRARY_PATH", lib_path(&self.root)).output()?;
        if !out.status.success() {
            bail!("auditctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start(root: &Path) -> anyhow::Result<Audit> {
        let dir = std::env::temp_dir().join(format!("enforcer-bench-auditd-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // The shipped defaults, except the log location and no plugins/network.
        let conf = format!(
            "local_events = yes\nwrite_logs = yes\nlog_file = {}/audit.log\nlog_format = ENRICHED\nflush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 1024\nnum_logs = 2\npriority_boost = 4\nmax_log_file_action = ROTATE\nspace_left = 75\nspace_left_action = IGNORE\nadmin_space_left = 50\nadmin_space_left_action = IGNORE\ndisk_full_action = IGNORE\ndisk_error_action = IGNORE\nuse_libwrap = no\nq_depth = 2000\noverflow_action = IGNORE\nplugin_dir = {}/plugins.d\n",
            dir.display(),
            dir.display()
        );
        std::fs::create_dir_all(dir.join("plugins.d"))?;
        let conf_file = dir.join("auditd.conf");
        std::fs::write(&conf_file, conf)?;
        let daemon = Command::new(root.join("sbin/auditd"))
            // -c takes the directory holding auditd.conf.
            .args(["-f", "-n", "-c"])
            .arg(&dir)
            .env("LD_LIBRARY_PATH", lib_path(root))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("auditd.stderr"))?)
            .spawn()
            .context("starting auditd")?;
        let audit = Audit { root: root.to_path_buf(), daemon, dir };
        // auditd registers its pid with the kernel once it is up.
        let mut status = String::new();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            status = audit.auditctl(&["-s"])?;
            if status.lines().any(|l| l.starts_with("pid ") && l != "pid 0") {
                break;
            }
        }
        if !status.lines().any(|l| l.starts_with("pid ") && l != "pid 0") {
            bail!("auditd did not register with the kernel: {}; its stderr: {}", status.replace('\n', ", "), std::fs::read_to_string(audit.dir.join("auditd.stderr")).unwrap_or_default());
        }
        audit.auditctl(&["-D"])?;
        audit.auditctl(&["-e", "1"])?;
        Ok(audit)
    }

    fn rule(&self, on: bool) -> anyhow::Result<()> {
        // ABBA rounds ask for "on" twice in a row: start from no rules every time.
        self.auditctl(&["-D"])?;
        if on {
            let auid = format!("auid={AUID}");
            self.auditctl(&["-a", "always,exit", "-F", "arch=b64", "-S", "open,openat,openat2,execve,connect,sendto,sendmsg", "-F", &auid])?;
        }
        Ok(())
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let _ = self.auditctl(&["-D"]);
        let _ = self.auditctl(&["-e", "0"]);
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lib_path(root: &Path) -> String {
    format!("{}:{}", root.join("lib/x86_64-linux-gnu").display(), root.join("usr/lib/x86_64-linux-gnu").display())
}

fn auditd_rows(root: &Path, plan: MicroPlan, log: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<PeerRow>> {
    let fixture = Fixture::create()?;
    let audit = Audit::start(root)?;
    let mut audited = Worker::spawn()?;
    audited.set_loginuid(AUID)?;
    let mut other = Worker::spawn()?;
    let cases: Vec<(String, Op, usize)> = vec![
        ("open+close allowed, 1 components".into(), Op::Open(fixture.allow1.clone()), plan.batch),
        ("open+close allowed, 16 components".into(), Op::Open(fixture.allow16.clone()), plan.batch),
        ("exec busybox true (spawn+wait)".into(), Op::Exec(fixture.busybox.clone()), (plan.batch / 20).max(3)),
        ("TCP connect 127.0.0.1 (+close)".into(), Op::Tcp(fixture.tcp_port), (plan.batch / 4).max(5)),
        ("UDP sendto 127.0.0.1".into(), Op::Udp(fixture.udp_port), plan.batch),
    ];
    // [case][worker][loaded] -> per-round medians
    let mut med = vec![[[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]]; cases.len()];
    for round in 0..plan.rounds {
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for loaded in order {
            audit.rule(loaded)?;
            for (c, (_, op, n)) in cases.iter().enumerate() {
                for (w, worker) in [(0, &mut audited), (1, &mut other)] {
                    let b = worker.run(op, *n)?;
                    med[c][w][usize::from(loaded)].push(median(&b.ns));
                }
            }
        }
        log(&format!("auditd: round {}/{} done", round + 1, plan.rounds));
    }
    audit.rule(false)?;
    // INCREMENTAL_ASYNC (the shipped default) flushes in the background: give it time.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let records = std::fs::read_to_string(audit.dir.join("audit.log")).map(|t| t.lines().filter(|l| l.contains(&format!("auid={AUID}"))).count()).unwrap_or(0);
    log(&format!("auditd: {records} records for the audited worker in its log"));
    if records == 0 {
        bail!("auditd logged no record for the audited worker: the comparison would be meaningless");
    }
    let pairs = |v: &[Vec<f64>; 2]| v[1].iter().copied().zip(v[0].iter().copied()).collect::<Vec<_>>();
    Ok(cases
        .iter()
        .enumerate()
        .map(|(c, (label, _, _))| PeerRow { op: label.clone(), audited: Ratio::of(&pairs(&med[c][0])), other: Ratio::of(&pairs(&med[c][1])) })
        .collect())
}

pub fn run(audit_root: Option<&Path>, plan: MicroPlan, log: &mut dyn FnMut(&str)) -> PeerReport {
    let auditd = match audit_root {
        None => Err("no --audit-root given (cargo xtask bench unpacks Debian's auditd package and passes it)".into()),
        Some(root) => auditd_rows(root, plan, log).map_err(|e| format!("{e:#}")),
    };
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_else(|e| format!("unreadable: {e}"));
    let apparmor = if lsm.split(',').any(|l| l.trim() == "apparmor") {
        "AppArmor is active on this kernel but the comparison is not built yet".to_string()
    } else {
        format!("not on this kernel: /sys/kernel/security/lsm is `{}` (no apparmor)", lsm.trim())
    };
    PeerReport { auditd, apparmor }
}

impl PeerReport {
    /// `ours`: (operation, confined-agent ratio, non-agent ratio) from the micro run on the same
    /// kernel, to put next to auditd's.
    pub fn table(&self, ours: &[(String, f64, f64)]) -> String {
        let mut s = String::new();
        match &self.auditd {
            Err(why) => {
                let _ = writeln!(s, "auditd peer: **not measured**: {}\n", why.replace('\n', " "));
            }
            Ok(rows) => {
                s.push_str("| operation (same kernel, same run style) | auditd, audited process: ratio (min-max) | auditd, other process | enforcer fallback, confined agent | enforcer fallback, non-agent | our overhead / auditd's (target <= 0.33) |\n| --- | ---: | ---: | ---: | ---: | --- |\n");
                for r in rows {
                    let mine = ours.iter().find(|(op, _, _)| *op == r.op);
                    let (c, o) = mine.map(|(_, c, o)| (format!("{c:.3}x"), format!("{o:.3}x"))).unwrap_or(("-".into(), "-".into()));
                    let share = match mine {
                        Some((_, c, _)) if r.audited.median > 1.0 => {
                            let q = (c - 1.0).max(0.0) / (r.audited.median - 1.0);
                            format!("{q:.2}: {}", super::report::verdict(q, 0.3334))
                        }
                        Some(_) => "auditd shows no overhead here: not comparable".into(),
                        None => "-".into(),
                    };
                    let _ = writeln!(
                        s,
                        "| {} | {:.3}x ({:.3}-{:.3}) | {:.3}x | {c} | {o} | {share} |",
                        r.op, r.audited.median, r.audited.min, r.audited.max, r.other.median
                    );
                }
                s.push('\n');
            }
        }
        let _ = writeln!(s, "AppArmor peer: **not measured** here: {}.", self.apparmor);
        s
    }
}

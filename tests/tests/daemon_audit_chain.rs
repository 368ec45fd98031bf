//! End to end: the audit log is tamper-evident. A real daemon (fallback backend: the log does
//! not depend on the backend) writes a registered agent's events over several rotations (the
//! smallest rotation size) and a restart after a SIGKILL; `enforcer events --verify`
//! on the real files says intact. Then, each on a copy of the files: one edited byte, a deleted
//! line, two swapped lines, a rotated file cut short, the current file cut inside a line: each
//! is reported (exit 1, file:line). Last, records removed from the end while no daemon runs are
//! reported by the next daemon's `start` record, and `--verify` fails there. Three daemon starts
//! in all (each verifies the fallback's programs: about a minute under emulation).

use std::path::{Path, PathBuf};

use enforcer::{audit::reader::log_files, daemon::config::MIN_ROTATE_BYTES};
use enforcer_tests::{adversarial, daemon::*, Agent};

const AGENT: &str = "chain-agent";
/// Opens per daemon run: a few files of the smallest rotation size.
const OPENS: usize = 250;

fn policy(root: &Path) -> String {
    format!(
        r#"[agent]
name = "{AGENT}"
log.file_allow = true

[file]
read = [{{ path = "{root}/gen/**", id = "generated" }}, {libc}]

[exec]
allow = [{{ path = "{exe}", id = "agent-binary" }}]
"#,
        root = root.display(),
        libc = toml_list(LIBC_READS),
        exe = testkit_exe()
    )
}

fn run_agent(setup: &DaemonSetup, root: &Path, run: usize) {
    let mut agent = Agent::spawn_registered(&setup.socket, AGENT, &[], true);
    agent.start();
    for i in 0..OPENS {
        let path = root.join(format!("gen/r{run}-{i}"));
        std::fs::write(&path, "x").unwrap();
        let r = agent.op(&format!("open:{}", path.display()));
        assert_eq!(r.errno, 0, "an allowed open failed: {r:?}");
    }
    agent.finish();
}

/// `enforcer events --verify LOG`: (exit code, stdout).
fn verify(log: &Path) -> (i32, String) {
    let out = std::process::Command::new(enforcer_exe())
        .args(["events", "--verify"])
        .arg(log)
        .output()
        .expect("run enforcer events --verify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines().count() == 1,
        "one line expected: {text:?} (stderr {})",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A copy of the log's files in a directory of its own; returns the copy's log path.
fn copy_log(log: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for file in log_files(log) {
        std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
    }
    to.join(log.file_name().unwrap())
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(file: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(file, text).unwrap();
}

#[test]
fn tampering_with_the_audit_log_is_detected() {
    enforcer_tests::require_root();
    let mut setup = DaemonSetup::new("chain");
    let root = setup.dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("gen")).unwrap();
    std::fs::write(setup.policy_dir.join("agent.toml"), policy(&root)).unwrap();
    setup.extra = vec![
        "--audit-rotate-bytes".into(),
        MIN_ROTATE_BYTES.to_string(),
        "--audit-retain".into(),
        "1000".into(),
    ];
    setup.backend = "fallback";
    let log = setup.audit_log.clone();

    // Two runs: the first ends with a SIGKILL, the second with a clean stop (which the state
    // file remembers for the truncation check at the end).
    let mut daemon = setup.start();
    run_agent(&setup, &root, 0);
    daemon.kill();
    let mut daemon = setup.start();
    run_agent(&setup, &root, 1);
    daemon.stop();
    let files = log_files(&log);
    assert!(files.len() >= 4, "expected rotations: {files:?}");
    let (code, text) = verify(&log);
    assert_eq!(code, 0, "the untouched log: {text}");
    assert!(
        text.contains(": intact: ") && text.contains("chained from the log's first record"),
        "{text}"
    );
    println!("untouched, {} files: {text}", files.len());

    // Each tampering on a copy: (what, change the copy, expected text in the report).
    type Tamper = Box<dyn Fn(&[PathBuf])>;
    let cases: Vec<(&str, &str, Tamper, &str)> = vec![
        (
            "edit-byte",
            "one edited byte in a rotated file",
            Box::new(|f: &[PathBuf]| {
                let mut l = lines(&f[1]);
                l[5] = l[5].replacen("\"open\"", "\"opeN\"", 1);
                write_lines(&f[1], &l);
            }),
            "`prev` does not match",
        ),
        (
            "delete-line",
            "a deleted line",
            Box::new(|f: &[PathBuf]| {
                let mut l = lines(&f[2]);
                l.remove(10);
                write_lines(&f[2], &l);
            }),
            "`prev` does not match",
        ),
        (
            "swap-lines",
            "two swapped lines",
            Box::new(|f: &[PathBuf]| {
                let mut l = lines(&f[0]);
                l.swap(3, 4);
                write_lines(&f[0], &l);
            }),
            "`prev` does not match",
        ),
        (
            "cut-rotated",
            "a rotated file without its last line (across a rotation)",
            Box::new(|f: &[PathBuf]| {
                let mut l = lines(&f[1]);
                l.pop();
                write_lines(&f[1], &l);
            }),
            "`prev` does not match",
        ),
        (
            "cut-current",
            "the current file cut inside its last line",
            Box::new(|f: &[PathBuf]| {
                let current = f.last().unwrap();
                let bytes = std::fs::read(current).unwrap();
                std::fs::write(current, &bytes[..bytes.len() - 20]).unwrap();
            }),
            "ends inside a line",
        ),
    ];
    for (n, (slug, what, tamper, expected)) in cases.iter().enumerate() {
        let copy = copy_log(&log, &root.join(format!("copy-{n}")));
        let copied = log_files(&copy);
        tamper(&copied);
        let (code, text) = verify(&copy);
        assert_eq!(code, 1, "{what}: not detected: {text}");
        assert!(
            text.starts_with("BROKEN ") && text.contains(expected),
            "{what}: {text}"
        );
        println!("{what}: {text}");
        adversarial::pass(&format!("13-audit-chain/{slug}"), "fallback");
    }

    // Records removed from the end while no daemon runs: the next start reports it.
    let current = files.last().unwrap();
    let mut l = lines(current);
    let cut_to = l.len() - 3;
    l.truncate(cut_to);
    write_lines(current, &l);
    let mut daemon = setup.start();
    daemon.stop();
    let (code, text) = verify(&log);
    assert_eq!(code, 1, "a truncated tail at restart: {text}");
    assert!(text.contains("records are missing at its end"), "{text}");
    let start = setup
        .records()
        .into_iter()
        .rev()
        .find(|r| r["type"] == "daemon" && r["event"] == "start")
        .expect("the last start record");
    assert_eq!(start["detail"]["log_tail"]["truncated"], true, "{start}");
    println!("truncated while stopped: {text}");
    adversarial::pass("13-audit-chain/cut-tail-at-restart", "fallback");
}

//! End to end on the fallback backend (every kernel, the host included): an agent opens a denied
//! file thousands of times a second while the daemon is SIGKILLed and restarted again and again,
//! at random moments, so most kills land while it moves a batch from the ring buffer to the log.
//! Afterwards every open is in the audit log or counted in a kernel `lost` record: nothing is
//! lost across a kill. A batch a killed daemon had written but not released in the ring buffer
//! comes again from the next daemon, with the same `ring_pos` and content, after its
//! `restarted` record: duplicates are possible and recognisable, loss is not.

use std::{
    collections::HashMap,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use enforcer_testkit::bench::worker::Worker;
use enforcer_tests::{daemon::*, kernel_label};
use serde_json::Value;

const AGENT: &str = "flood-agent";

fn policy(denied_dir: &str) -> String {
    format!(
        r#"
[agent]
name = "{AGENT}"
mode = "enforce"
on_violation = "audit"

[file]
read = [{libc}]
deny = [{{ path = "{denied_dir}/**", id = "denied-read" }}]

[exec]
allow = [{{ path = "{exe}", id = "agent-binary" }}]
"#,
        libc = toml_list(LIBC_READS),
        exe = testkit_exe()
    )
}

/// A small deterministic generator for the kill times (the seed is printed).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Events for `path` by ring position (each kernel decision once), and how many lines repeat one.
fn events_by_ring_pos<'a>(
    records: &'a [Value],
    path: &str,
) -> (HashMap<u64, Vec<&'a Value>>, usize) {
    let mut by_pos: HashMap<u64, Vec<&Value>> = HashMap::new();
    for r in records
        .iter()
        .filter(|r| r["type"] == "event" && r["path"] == path)
    {
        let pos = r["ring_pos"]
            .as_u64()
            .unwrap_or_else(|| panic!("event without ring_pos: {r}"));
        by_pos.entry(pos).or_default().push(r);
    }
    let repeats = by_pos.values().map(|v| v.len() - 1).sum();
    (by_pos, repeats)
}

/// The kernel's loss counter for the agent as last reported (`lost` records carry it as `total`).
fn kernel_lost(records: &[Value]) -> u64 {
    records
        .iter()
        .filter(|r| r["type"] == "lost" && r["source"] == "kernel" && r["agent"] == AGENT)
        .map(|r| {
            r["total"]
                .as_u64()
                .unwrap_or_else(|| panic!("kernel lost record without total: {r}"))
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn no_event_is_lost_when_the_daemon_is_killed_mid_drain() {
    enforcer_tests::require_root();
    let host = kernel_label() == "host";
    // Under emulation a daemon start costs most of a minute: one round there (the ring
    // buffer's re-reading on each kernel is also checked, cheaply, by fallback_pinning).
    let (kills, rate) = if host { (6, 20_000) } else { (1, 2_000) };
    let mut setup = DaemonSetup::new("killflood");
    setup.backend = "fallback";
    let denied_dir = setup.dir.path().join("denied");
    std::fs::create_dir_all(&denied_dir).unwrap();
    let denied = denied_dir.join("secret");
    std::fs::write(&denied, "x").unwrap();
    let denied = denied.display().to_string();
    std::fs::write(
        setup.policy_dir.join("flood.toml"),
        policy(&denied_dir.display().to_string()),
    )
    .unwrap();

    let mut daemon = setup.start();
    let mut run = Command::new(enforcer_exe());
    run.arg("run")
        .arg("--socket")
        .arg(&setup.socket)
        .args(["--agent", AGENT, "--"])
        .arg(testkit_exe());
    let mut worker =
        Worker::spawn_with(run).expect("start the agent (bench-worker under enforcer run)");
    // Its exec is logged before the flood: from then on every agent event is an open of `denied`,
    // so the agent's kernel loss counter counts only those.
    setup.wait_records("the agent's exec event", 60, |records| {
        records
            .iter()
            .any(|r| r["type"] == "event" && r["agent"] == AGENT && r["op"] == "exec")
    });

    // The agent floods while a daemon runs and pauses while the next one starts (a start takes
    // seconds: at this rate the ring buffer would overflow and the kernel count the rest lost,
    // which would prove less). So nearly every event passes through a daemon that gets killed.
    let (stop, up, generated) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicU64::new(0)),
    );
    let flood = {
        let (stop, up, generated, denied) =
            (stop.clone(), up.clone(), generated.clone(), denied.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if !up.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let (n, _) = worker.pace(&denied, rate, 50).expect("agent opens");
                generated.fetch_add(n, Ordering::SeqCst);
            }
            worker
        })
    };

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill times seeded with {seed}");
    let mut lcg = Lcg(seed);
    for round in 0..kills {
        let running = Duration::from_millis(150 + lcg.below(600));
        std::thread::sleep(running);
        let before = generated.load(Ordering::SeqCst);
        daemon.kill();
        up.store(false, Ordering::SeqCst);
        let t = Instant::now();
        daemon = setup.start();
        up.store(true, Ordering::SeqCst);
        println!(
            "kill {round}: after {running:?} running ({before} opens so far), restarted in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    drop(flood.join().expect("flood thread"));
    let generated = generated.load(Ordering::SeqCst);
    // A clean stop drains the ring buffer and reports the loss counters one last time.
    daemon.stop();

    let records = setup.records();
    let (by_pos, repeats) = events_by_ring_pos(&records, &denied);
    let lost = kernel_lost(&records);
    println!("{generated} opens: {} distinct events in the log, {repeats} lines written twice, {lost} counted lost by the kernel", by_pos.len());
    assert!(
        generated > 1000,
        "the agent made too few opens ({generated}) for the test to mean anything"
    );
    assert_eq!(
        by_pos.len() as u64 + lost,
        generated,
        "every open must be in the log or counted lost: {} events + {lost} lost != {generated} opens",
        by_pos.len()
    );
    assert!(
        !records
            .iter()
            .any(|r| r["type"] == "lost" && r["source"] == "audit-log"),
        "the audit log never failed, yet records were dropped"
    );

    // Duplicates: same kernel decision, written again after the next daemon's `restarted`
    // record, from a ring position at or after the one that daemon adopted.
    let restarted: Vec<&Value> = records
        .iter()
        .filter(|r| r["type"] == "daemon" && r["event"] == "restarted")
        .collect();
    assert_eq!(restarted.len(), kills, "one restarted record per kill");
    for (pos, copies) in by_pos.iter().filter(|(_, c)| c.len() > 1) {
        assert_eq!(
            copies.len(),
            2,
            "ring_pos {pos} written {} times: {copies:?}",
            copies.len()
        );
        let strip = |v: &Value| {
            let mut v = v.clone();
            for field in ["seq", "time", "exe"] {
                v.as_object_mut().unwrap().remove(field);
            }
            v
        };
        assert_eq!(
            strip(copies[0]),
            strip(copies[1]),
            "the two copies of ring_pos {pos} differ"
        );
        let (first, second) = (
            copies[0]["seq"].as_u64().unwrap(),
            copies[1]["seq"].as_u64().unwrap(),
        );
        let between = restarted
            .iter()
            .find(|r| (first..second).contains(&r["seq"].as_u64().unwrap()));
        let between = between.unwrap_or_else(|| {
            panic!("ring_pos {pos} repeated (seq {first}, {second}) without a restart between")
        });
        let adopted_from = between["detail"]["ring_released_pos"]
            .as_u64()
            .expect("restarted detail has ring_released_pos");
        assert!(
            *pos >= adopted_from,
            "ring_pos {pos} repeated, but the restart adopted from {adopted_from}"
        );
    }
    // Lost records repeated by a kill carry the same total: never count them twice.
    let mut totals: Vec<u64> = records
        .iter()
        .filter(|r| r["type"] == "lost" && r["agent"] == AGENT)
        .map(|r| r["total"].as_u64().unwrap())
        .collect();
    totals.dedup();
    assert!(
        totals.windows(2).all(|w| w[0] < w[1]),
        "kernel loss totals must grow: {totals:?}"
    );
}

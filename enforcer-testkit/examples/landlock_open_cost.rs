//! The cost of the Landlock envelope on `open` (docs/landlock.md, "Cost"): N open+close of a
//! deep path inside the envelope, first unconfined, then after applying an envelope shaped like
//! the example policies' (the libc set plus a work tree). Run as root:
//! `cargo run -p enforcer-testkit --example landlock_open_cost [N]`.

use std::{ffi::CString, time::Instant};

use enforcer::policy::envelope::{Envelope, Reach};

fn per_open_ns(path: &CString, n: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: a valid C string; the descriptor is closed right away.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        assert!(fd >= 0, "open failed: {}", std::io::Error::last_os_error());
        unsafe { libc::close(fd) };
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let path = CString::new("/usr/lib/x86_64-linux-gnu/libc.so.6").expect("no NUL");
    let dirs = |d: &[&str]| Reach::Within(d.iter().map(|s| s.to_string()).collect());
    let envelope = Envelope {
        agent: "cost".into(),
        policy_version: 1,
        read: dirs(&[
            "/etc/ld.so.cache",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/locale",
            "/usr/share/zoneinfo",
            "/tmp/landlock-cost",
            "/proc",
        ]),
        write: dirs(&["/tmp/landlock-cost"]),
        exec: dirs(&["/usr/bin"]),
        abstract_unix_allowed: false,
        single_files: vec!["/etc/ld.so.cache".into()],
    };
    per_open_ns(&path, n / 10); // warm the dentry cache
    let mut without = Vec::new();
    for _ in 0..3 {
        without.push(per_open_ns(&path, n));
    }
    let applied = enforcer::kernel::landlock::apply(&envelope).expect("envelope applies");
    assert!(
        applied.enforced,
        "Landlock is not enforced here: {:?}",
        applied.lines
    );
    let mut with = Vec::new();
    for _ in 0..3 {
        with.push(per_open_ns(&path, n));
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    println!(
        "open+close of {:?}, {n} times, best of 3: without {:.0} ns, with the envelope {:.0} ns (+{:.0} ns, {:+.1}%)",
        path,
        best(&without),
        best(&with),
        best(&with) - best(&without),
        100.0 * (best(&with) / best(&without) - 1.0)
    );
}

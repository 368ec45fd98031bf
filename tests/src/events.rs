//! Waiting for kernel events.

use std::{
    cell::RefCell,
    time::{Duration, Instant},
};

use enforcer::kernel::{Backend, RawEvent};

thread_local! {
    /// Every event polled so far in this test: a wait must see events an earlier wait passed.
    static SEEN: RefCell<Vec<RawEvent>> = const { RefCell::new(Vec::new()) };
}

/// Wait until an event satisfies `pred` (panics after 5 s with what was seen).
pub fn wait_for(
    backend: &mut dyn Backend,
    what: &str,
    pred: impl Fn(&RawEvent) -> bool,
) -> RawEvent {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(e) = SEEN.with(|s| s.borrow().iter().find(|e| pred(e)).cloned()) {
            return e;
        }
        let mut batch = Vec::new();
        backend.poll_events(&mut batch).expect("poll events");
        let got = !batch.is_empty();
        SEEN.with(|s| s.borrow_mut().extend(batch));
        if got {
            continue;
        }
        let seen = SEEN.with(|s| s.borrow().clone());
        if Instant::now() > deadline {
            let summary: Vec<String> = seen
                .iter()
                .map(|e| {
                    format!(
                        "op={} verdict={} rule={} pid={} target={:?}",
                        e.header.op,
                        e.header.verdict,
                        e.header.rule,
                        e.header.pid,
                        String::from_utf8_lossy(&e.target)
                    )
                })
                .collect();
            panic!(
                "no event: {what}; saw {} events:\n{}",
                seen.len(),
                summary.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn target(e: &RawEvent) -> String {
    String::from_utf8_lossy(&e.target).into_owned()
}

/// The events of thread group `pid` that arrived since the last call (`seen`: how many events
/// of this test were seen by then; updated).
pub fn since(backend: &mut dyn Backend, seen: &mut usize, pid: u32) -> Vec<RawEvent> {
    let all = drain_all(backend);
    let fresh = all[*seen..]
        .iter()
        .filter(|e| e.header.tgid == pid)
        .cloned()
        .collect();
    *seen = all.len();
    fresh
}

/// Poll until the ring buffer has stayed empty for a while, then return every event seen so far
/// in this test.
pub fn drain_all(backend: &mut dyn Backend) -> Vec<RawEvent> {
    let mut quiet = 0;
    while quiet < 5 {
        let mut batch = Vec::new();
        backend.poll_events(&mut batch).expect("poll events");
        if batch.is_empty() {
            quiet += 1;
            std::thread::sleep(Duration::from_millis(100));
        } else {
            quiet = 0;
            SEEN.with(|s| s.borrow_mut().extend(batch));
        }
    }
    SEEN.with(|s| s.borrow().clone())
}

/// Panics if the kernel counted any ring-buffer loss (every event of the test must have been read).
pub fn assert_nothing_lost<B: Backend + ?Sized>(backend: &B) {
    let lost: u64 = backend
        .losses()
        .expect("losses")
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(lost, 0, "events were lost");
}

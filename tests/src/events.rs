//! Waiting for kernel events.

use std::time::{Duration, Instant};

use enforcer::kernel::{Backend, RawEvent};

/// Poll `backend` until an event satisfies `pred` (panics after 5 s with what was seen).
pub fn wait_for(backend: &mut dyn Backend, what: &str, pred: impl Fn(&RawEvent) -> bool) -> RawEvent {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let mut batch = Vec::new();
        backend.poll_events(&mut batch).expect("poll events");
        for e in batch {
            if pred(&e) {
                return e;
            }
            seen.push(e);
        }
        if Instant::now() > deadline {
            let summary: Vec<String> = seen
                .iter()
                .map(|e| format!("op={} verdict={} rule={} pid={} target={:?}", e.header.op, e.header.verdict, e.header.rule, e.header.pid, String::from_utf8_lossy(&e.target)))
                .collect();
            panic!("no event: {what}; saw {} events:\n{}", seen.len(), summary.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn target(e: &RawEvent) -> String {
    String::from_utf8_lossy(&e.target).into_owned()
}

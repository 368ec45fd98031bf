//! Ring-buffer bytes to an audit line, as the daemon does it: `EventHeader::parse` (header and
//! declared target; None for short or lying records), then the audit line from both writers,
//! the hot-path encoder and the `EventRecord` + serde one. Nothing may panic, the line must be
//! one valid JSON object, and both writers must agree byte for byte. The event names agents and
//! rules of a real compiled policy (version 1) so the name lookups run on fuzzed ids too.
#![no_main]

use std::sync::{Arc, OnceLock};

use enforcer::{
    audit::{
        chain,
        clock::BootClock,
        encode::EventEncoder,
        history::{PolicyHistory, PolicyNames},
        record::{event_record, EventContext, Record},
        text,
    },
    kernel::RawEvent,
    policy::{compile, load_sources, ResolvedHosts},
};
use enforcer_common::{EventHeader, EVENT_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fn history() -> &'static PolicyHistory {
    static HISTORY: OnceLock<PolicyHistory> = OnceLock::new();
    HISTORY.get_or_init(|| {
        let text = "[agent]\nname = \"coder\"\n\n[file]\nread = [\"/work/**\"]\ndeny = [\"/work/.ssh/**\"]\n\n[net]\nconnect = [\"192.0.2.1:443/tcp\"]\n";
        let policies = load_sources(&[("coder.toml", text)]).expect("fixture policy loads");
        let compiled = compile(&policies, &ResolvedHosts::new()).expect("fixture policy compiles");
        let mut history = PolicyHistory::new(2);
        history.push(1, Arc::new(PolicyNames::of(&compiled)));
        history
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((header, target)) = EventHeader::parse(data) else {
        return;
    };
    assert_eq!(
        target.len(),
        header.target_len as usize,
        "parse returned another length than the record declares"
    );
    assert!(data.len() >= EVENT_HEADER_BYTES + target.len());
    let raw = RawEvent {
        header,
        target: target.to_vec(),
        ring_pos: 7,
    };
    let exe_of = |pid: u32| (pid % 2 == 0).then(|| Arc::from("/usr/bin/agent"));
    let ctx = EventContext {
        host: "fuzz",
        clock: BootClock::with_offset(1_795_444_620_000_000_000),
        policies: history(),
        exe_of: &exe_of,
    };

    let mut fast = Vec::new();
    EventEncoder::default().encode(&mut fast, 42, &raw, &ctx);
    let mut record = event_record(&raw, &ctx);
    record.seq = 42;
    let serde = serde_json::to_string(&Record::Event(record)).expect("an event record serializes");
    let fast = String::from_utf8(fast).expect("the encoder writes UTF-8");
    assert_eq!(
        fast, serde,
        "the hot-path encoder and the EventRecord disagree"
    );
    let value: serde_json::Value = serde_json::from_str(&fast).expect("the audit line is JSON");
    assert_eq!(value["type"], "event");

    // As the writer queues it: the line gains the hash chain's `prev`, and the readers
    // (`events`, `learn`, `replay`) still take it; its text form is terminal-safe.
    let mut chained = fast.into_bytes();
    assert!(chain::append_prev(
        &mut chained,
        0,
        &chain::line_hash(b"the line before")
    ));
    let line = String::from_utf8(chained).expect("still UTF-8");
    let value: serde_json::Value = serde_json::from_str(&line).expect("the chained line is JSON");
    assert_eq!(value["prev"].as_str().map(str::len), Some(64));
    let parsed: Record = serde_json::from_str(&line).expect("readers accept the chained line");
    let shown = text::format_record(&parsed, false);
    assert!(
        !shown.chars().any(text::needs_escape),
        "raw control or bidi character in the text line: {shown:?}"
    );
});

//! Parse + validate + compile arbitrary bytes, then evaluate a few requests: nothing may panic.
//! The input is split at the first 0xFF byte into an agent file and a set file it may include
//! (`include = ["sets/s.toml"]`), so includes are fuzzed too.
#![no_main]

use enforcer::policy::{
    compile,
    eval::{evaluate, Request},
    load_sources, ResolvedHosts,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let agent = String::from_utf8_lossy(first);
    let set = String::from_utf8_lossy(second);
    let Ok(policies) = load_sources(&[("a.toml", &agent), ("sets/s.toml", &set)]) else {
        return;
    };
    let mut hosts = ResolvedHosts::new();
    hosts.insert("example.com", "192.0.2.1".parse().unwrap());
    let Ok(compiled) = compile(&policies, &hosts) else {
        return;
    };
    let requests = [
        Request::Open {
            path: "/home/u/.ssh/id".into(),
            read: true,
            write: true,
        },
        Request::Open {
            path: format!("/{}", "a/".repeat(200)),
            read: false,
            write: true,
        },
        Request::Exec {
            path: "/usr/bin/x.tar.gz".into(),
        },
        Request::Connect {
            addr: "192.0.2.1".parse().unwrap(),
            port: 443,
            udp: false,
        },
        Request::ConnectUnix {
            path: "@bus".into(),
        },
    ];
    for agent in 0..=compiled.agents.len() as u32 + 1 {
        for r in &requests {
            let d = evaluate(&compiled, agent, r);
            assert!(
                d.rule as usize <= compiled.rules.len(),
                "rule id {} out of range",
                d.rule
            );
        }
    }
});

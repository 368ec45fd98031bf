use super::*;
use crate::{
    lifecycle::{
        learn::{learn, LearnOptions, Observations},
        probe::compile_with_sets,
        requests::{recorded_allow, request_of, HostsSeen},
        sensitive::Sensitive,
    },
    policy::{
        eval::{self, Request, Verdict},
        CompiledPolicy,
    },
};

/// This machine's first name server (the `dns` set allows `@resolvers`, read from resolv.conf).
fn resolver() -> String {
    crate::policy::hosts::system_resolvers().expect("/etc/resolv.conf")[0].to_string()
}

/// A coding agent run in audit mode with file-allow logging: a rough policy allowed some of it,
/// the rest is `audit-deny` (it happened anyway).
fn scripted_log() -> Vec<EventRecord> {
    let a = "coder";
    let events = vec![
        // The dynamic loader and libc: the `libc` set covers them.
        read(a, "/etc/ld.so.cache", "audit-deny"),
        read(a, "/usr/lib/x86_64-linux-gnu/libc.so.6", "audit-deny"),
        read(a, "/usr/lib/x86_64-linux-gnu/libc.so.6", "audit-deny"),
        read(a, "/usr/lib/locale/C.utf8/LC_CTYPE", "audit-deny"),
        // Name resolution: the `dns` set.
        read(a, "/etc/resolv.conf", "audit-deny"),
        connect(
            a,
            &resolver(),
            53,
            "udp",
            "audit-deny",
            "default-deny",
            None,
        ),
        // The project.
        read(a, "/home/dev/project/src/main.rs", "allow"),
        read(a, "/home/dev/project/src/main.rs", "allow"),
        read(a, "/home/dev/project/src/lib.rs", "allow"),
        read(a, "/home/dev/project/Cargo.toml", "allow"),
        open(
            a,
            "/home/dev/project/target/debug/app",
            &["write"],
            "audit-deny",
            "default-deny",
            None,
        ),
        open(
            a,
            "/home/dev/project/target/debug/app.d",
            &["write"],
            "audit-deny",
            "default-deny",
            None,
        ),
        open(
            a,
            "/home/dev/project/target/.lock",
            &["read", "write"],
            "audit-deny",
            "default-deny",
            None,
        ),
        read(a, "/proc/4711/status", "audit-deny"),
        exec(a, "/usr/bin/git", "allow"),
        exec(a, "/usr/bin/x86_64-linux-gnu-gcc-12", "audit-deny"),
        connect(
            a,
            "140.82.112.3",
            443,
            "tcp",
            "allow",
            "rough.toml:9",
            Some("github.com:443"),
        ),
        connect(
            a,
            "140.82.112.4",
            443,
            "tcp",
            "audit-deny",
            "default-deny",
            None,
        ),
        connect(
            a,
            "203.0.113.7",
            8443,
            "tcp",
            "audit-deny",
            "default-deny",
            None,
        ),
        connect_unix(a, "/run/dbus/system_bus_socket", "audit-deny"),
        // Sensitive: observed, never granted.
        read(a, "/home/dev/project/.env", "allow"),
        read(a, "/home/dev/.ssh/id_ed25519", "audit-deny"),
        read(a, "/etc/shadow", "audit-deny"),
        connect(
            a,
            "169.254.169.254",
            80,
            "tcp",
            "audit-deny",
            "default-deny",
            None,
        ),
        // Refused in the kernel (did not happen): not learned.
        read(a, "/srv/secret-data/x", "deny"),
        // Another agent, a membership record.
        read("helper", "/srv/helper/data", "allow"),
        join(a),
    ];
    through_log("learn", &events).1
}

fn learned_policy(events: &[EventRecord]) -> (String, CompiledPolicy, u32) {
    let mut obs = Observations::new("coder", None);
    events.iter().for_each(|e| obs.add(e));
    let opts = LearnOptions {
        collapse: Default::default(),
        sets: repo_sets(),
        source: "audit.jsonl".into(),
    };
    let learned = learn(&obs, &opts).unwrap();
    assert!(
        learned.mismatches.is_empty(),
        "{:#?}\n{}",
        learned.mismatches,
        learned.text
    );
    assert_eq!(learned.verified, obs.seen.len());
    assert!(learned.inexpressible.is_empty());
    // What `enforcer check` does with the file next to policies/sets: load and compile.
    let (_, compiled) = compile_with_sets(
        "coder.toml",
        &learned.text,
        &repo_sets(),
        &obs.hosts.resolved(),
    )
    .unwrap_or_else(|d| panic!("{d}\n{}", learned.text));
    let id = compiled.agent_by_name("coder").unwrap().id;
    (learned.text, compiled, id)
}

#[test]
fn learned_policy_compiles_and_allows_exactly_what_was_observed() {
    let events = scripted_log();
    let (text, compiled, id) = learned_policy(&events);
    let sensitive = Sensitive::new();
    let mut checked = 0;
    for e in events
        .iter()
        .filter(|e| e.agent.as_deref() == Some("coder"))
    {
        let Ok(request) = request_of(e) else { continue };
        if e.verdict == "deny" {
            continue;
        }
        assert!(recorded_allow(e).is_some());
        let verdict = eval::evaluate(&compiled, id, &request).verdict;
        let want = if sensitive.denied_by(&request).is_some() {
            Verdict::Deny
        } else {
            Verdict::Allow
        };
        assert_eq!(verdict, want, "{request:?}\n{text}");
        checked += 1;
    }
    assert_eq!(checked, 24);
}

#[test]
fn sensitive_and_unseen_operations_are_denied() {
    let (text, compiled, id) = learned_policy(&scripted_log());
    let decide = |r: Request| eval::evaluate(&compiled, id, &r).verdict;
    let read = |p: &str| Request::Open {
        path: p.into(),
        read: true,
        write: false,
    };
    for denied in [
        read("/etc/shadow"),
        read("/home/dev/.ssh/id_ed25519"),
        read("/home/dev/project/.env"),
        // Unseen, inside a granted subtree: the built-in denies still hold.
        read("/home/dev/project/deploy/server.pem"),
        read("/home/dev/.aws/credentials"),
        read("/srv/secret-data/x"),
        read("/home/dev/other/notes.txt"),
        Request::Open {
            path: "/home/dev/project/src/main.rs".into(),
            read: false,
            write: true,
        },
        Request::Exec {
            path: "/usr/bin/curl".into(),
        },
        Request::Connect {
            addr: "203.0.113.7".parse().unwrap(),
            port: 22,
            udp: false,
        },
        Request::Connect {
            addr: "169.254.169.254".parse().unwrap(),
            port: 80,
            udp: false,
        },
    ] {
        assert_eq!(decide(denied.clone()), Verdict::Deny, "{denied:?}\n{text}");
    }
    assert_eq!(
        decide(read("/home/dev/project/README.md")),
        Verdict::Allow,
        "the project subtree is granted"
    );
}

#[test]
fn policy_text_is_tight_and_says_what_was_observed() {
    let (text, _, _) = learned_policy(&scripted_log());
    for expected in [
        "include = [",
        "\"dns\",",
        "\"libc\",",
        "name = \"coder\"",
        "\"/home/dev/project/**\",",
        "\"/home/dev/project/target/**\",",
        "\"/proc/*/status\",",
        "\"/usr/bin/git\",",
        "\"/usr/bin/x86_64-linux-gnu-gcc-12\",",
        // The log names the host that allowed one of its addresses: the rule names the host.
        "\"github.com:443/tcp\",",
        "addresses seen: 140.82.112.3",
        // An address no host rule allowed stays an address.
        "\"140.82.112.4:443/tcp\",",
        "\"203.0.113.7:8443/tcp\",",
        "\"unix:/run/dbus/system_bus_socket\",",
        "OBSERVED 1 time, NOT granted: read /etc/shadow",
        "OBSERVED 1 time, NOT granted: read /home/dev/project/.env",
        "OBSERVED 1 time, NOT granted: tcp 169.254.169.254:80/tcp",
        "5 reads of 4 paths, e.g. /home/dev/project/Cargo.toml",
        "1 operation the kernel refused",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for absent in [
        "\"/etc/ld.so.cache",
        "\"/usr/lib/x86_64-linux-gnu",
        "/srv",
        "python-runtime",
        "\"/home/dev/**\"",
        "4711",
        "\"tls-roots\"",
    ] {
        assert!(!text.contains(absent), "unexpected {absent:?} in:\n{text}");
    }
}

#[test]
fn without_sets_runtime_files_are_listed_and_nothing_observed_is_an_error() {
    let events = scripted_log();
    let mut obs = Observations::new("coder", None);
    events.iter().for_each(|e| obs.add(e));
    let opts = LearnOptions {
        collapse: Default::default(),
        sets: Vec::new(),
        source: "x".into(),
    };
    let learned = learn(&obs, &opts).unwrap();
    assert!(learned.mismatches.is_empty(), "{:#?}", learned.mismatches);
    assert!(
        learned
            .text
            .contains("\"/usr/lib/x86_64-linux-gnu/libc.so.6\","),
        "{}",
        learned.text
    );
    assert!(!learned.text.contains("include = ["), "{}", learned.text);

    let nobody = Observations::new("nobody", None);
    assert!(learn(&nobody, &opts).is_err());
    let mut later = Observations::new(
        "coder",
        crate::audit::clock::parse_rfc3339("2027-01-01T00:00:00Z"),
    );
    events.iter().for_each(|e| later.add(e));
    assert_eq!(later.events, 0, "--since leaves out older events");
    let _ = HostsSeen::default();
}

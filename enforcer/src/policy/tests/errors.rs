//! Every error message, with its exact `file:line:col`.

use super::*;

fn one(files: &[(&str, &str)]) -> String {
    let e = errors(files);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

fn agent_err(body: &str) -> String {
    one(&[("a.toml", &agent(body))])
}

#[test]
fn toml_syntax_and_schema_errors() {
    assert_eq!(
        one(&[("a.toml", "[agent\nname = \"a\"\n")]),
        "a.toml:1:7: invalid table header\nexpected `.`, `]`"
    );
    assert_eq!(agent_err("colour = \"red\"\n"), "a.toml:3:1: unknown field `colour`, expected one of `name`, `description`, `mode`, `on_violation`, `delegate`, `match`, `log`");
    assert_eq!(
        agent_err("mode = \"strict\"\n"),
        "a.toml:3:8: unknown variant `strict`, expected `enforce` or `audit`"
    );
    assert_eq!(
        agent_err("on_violation = \"explode\"\n"),
        "a.toml:3:16: unknown variant `explode`, expected `audit` or `kill`"
    );
    assert_eq!(
        agent_err("log.file_allow = \"yes\"\n"),
        "a.toml:3:18: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        agent_err("match.pid = [1]\n"),
        "a.toml:3:7: unknown field `pid`, expected `exe` or `cgroup`"
    );
    assert_eq!(agent_err("[file]\nexecute = [\"/x\"]\n"), "a.toml:4:1: unknown field `execute`, expected one of `read`, `write`, `deny`, `deny_read`, `deny_write`");
    assert_eq!(
        agent_err("[file]\nread = \"/x\"\n"),
        "a.toml:4:8: invalid type: string \"/x\", expected a sequence"
    );
    assert_eq!(agent_err("[file]\nread = [42]\n"), "a.toml:4:9: invalid type: integer `42`, expected a pattern string or a table { path = \"...\", id = \"...\" }");
    assert_eq!(
        agent_err("[file]\nread = [{ pth = \"/x\" }]\n"),
        "a.toml:4:9: unknown field `pth`, expected one of `path`, `id`, `when`"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [{ path = \"1.2.3.4\" }]\n"),
        "a.toml:4:12: unknown field `path`, expected one of `to`, `id`, `when`"
    );
    assert_eq!(
        agent_err("[file]\nread = [{ id = \"x\" }]\n"),
        "a.toml:4:9: missing field `path`"
    );
    assert_eq!(
        one(&[("a.toml", "[agent]\ndescription = \"no name\"\n")]),
        "a.toml:1:1: missing field `name`"
    );
    assert_eq!(one(&[("a.toml", "[file]\nread = [\"/x\"]\n")]), "a.toml:1:1: expected an [agent] table (an agent policy) or a [set] table (a permission set)");
    assert_eq!(
        one(&[("a.toml", "[agent]\nname = \"a\"\n[set]\nname = \"s\"\n")]),
        "a.toml:3:1: a file is either an agent policy ([agent]) or a permission set ([set]), not both"
    );
}

#[test]
fn name_and_id_errors() {
    let e = "invalid agent name `bad name`: use 1-64 letters, digits, `.`, `_`, `-`, starting with a letter or digit";
    assert_eq!(
        one(&[("a.toml", "[agent]\nname = \"bad name\"\n")]),
        format!("a.toml:2:8: {e}")
    );
    assert_eq!(
        agent_err("delegate = [\"a\"]\n"),
        "a.toml:3:13: an agent cannot delegate to itself"
    );
    assert_eq!(
        agent_err("delegate = [\"ghost\"]\n"),
        "a.toml:3:13: unknown agent `ghost` in delegate (no loaded policy defines it)"
    );
    assert_eq!(
        agent_err("[file]\nread = [{ path = \"/x\", id = \"has space\" }]\n"),
        "a.toml:4:29: invalid rule id `has space`: use 1-128 printable characters without spaces"
    );
    assert_eq!(
        agent_err("[file]\nread = [{ path = \"/x\", id = \"r\" }]\nwrite = [{ path = \"/y\", id = \"r\" }]\n"),
        "a.toml:5:19: rule id `r` is already used in agent `a` (at a.toml:4:18)"
    );
    assert_eq!(
        one(&[
            ("a.toml", "[agent]\nname = \"a\"\n"),
            ("b.toml", "[agent]\nname = \"a\"\n")
        ]),
        "b.toml:2:8: duplicate agent name `a` (first defined at a.toml:2:8)"
    );
}

#[test]
fn pattern_errors_name_the_field_and_point_at_the_pattern() {
    assert_eq!(
        agent_err("[file]\nread = [\"/ok\", \"/a/**/b\"]\n"),
        "a.toml:4:16: file.read: `**` is only supported at the end (`/dir/**`) or start (`**/NAME`); supported forms: \
         `/exact/path`, `/dir/**`, one whole `*` component (`/home/*/.ssh/**`), `**/NAME` and `**/*.EXT`"
    );
    assert_eq!(
        agent_err("[exec]\ndeny = [{ path = \"bin/sh\" }]\n"),
        "a.toml:4:18: exec.deny: a path pattern must be absolute (start with `/`) or `**/NAME`; supported forms: \
         `/exact/path`, `/dir/**`, one whole `*` component (`/home/*/.ssh/**`), `**/NAME` and `**/*.EXT`"
    );
    assert_eq!(
        agent_err("match.exe = [\"/usr/bin/*\"]\n"),
        "a.toml:3:14: agent.match.exe: only exact paths and `/dir/**` subtrees (no `*`, no `**/NAME`) can be used here"
    );
    assert_eq!(
        agent_err("match.cgroup = [\"/\"]\n"),
        "a.toml:3:17: agent.match.cgroup: the root cgroup `/` would match every process"
    );
    assert_eq!(
        agent_err("[file]\ndeny = [\"~/.ssh/**\"]\n"),
        "a.toml:4:9: file.deny: `~` is not expanded: write the absolute path (e.g. `/home/*/.ssh/**`)"
    );
}

#[test]
fn net_errors() {
    assert_eq!(
        agent_err("[net]\nconnect = [\"10.0.0.1/8:443\"]\n"),
        "a.toml:4:12: net.connect: host bits set in `10.0.0.1/8`: did you mean `10.0.0.0/8`?"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [\"[::1]x\"]\n"),
        "a.toml:4:12: net.connect: unexpected `x` after `]` (expected `:PORT`)"
    );
    assert_eq!(
        agent_err("[net]\ndeny = [\"1.2.3.4:99999\"]\n"),
        "a.toml:4:9: net.deny: port 99999 is out of range (0..=65535)"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [{ to = \"[::1]:80/sctp\", id = \"x\" }]\n"),
        "a.toml:4:19: net.connect: unknown protocol `/sctp` (expected `/tcp`, `/udp` or `/icmp`)"
    );
}

#[test]
fn include_errors() {
    assert_eq!(
        one(&[("a.toml", "include = [\"sets/missing.toml\"]\n[agent]\nname = \"a\"\n")]),
        "a.toml:1:12: cannot read included file `sets/missing.toml`: No such file or directory (os error 2)"
    );
    assert_eq!(
        one(&[("a.toml", "include = [\"nothing\"]\n[agent]\nname = \"a\"\n")]),
        "a.toml:1:12: no permission set named `nothing` (looked for a loaded [set] and `sets/nothing.toml`: No such \
         file or directory (os error 2))"
    );
    assert_eq!(
        one(&[
            ("a.toml", "include = [\"b.toml\"]\n[agent]\nname = \"a\"\n"),
            ("b.toml", "[agent]\nname = \"b\"\n")
        ]),
        "a.toml:1:12: `b.toml` is an agent policy; only permission sets ([set]) can be included"
    );
    let cycle = [
        ("a.toml", "include = [\"x.toml\"]\n[agent]\nname = \"a\"\n"),
        ("x.toml", "include = [\"y.toml\"]\n[set]\nname = \"x\"\n"),
        ("y.toml", "include = [\"x.toml\"]\n[set]\nname = \"y\"\n"),
    ];
    let e = errors(&cycle);
    assert!(
        e.contains(&"y.toml:1:12: include cycle: a.toml -> x.toml -> y.toml -> x.toml".to_string()),
        "{e:#?}"
    );
}

#[test]
fn conflicting_selectors() {
    let files = [
        ("a.toml", "[agent]\nname = \"a\"\nmatch.exe = [\"/opt/tools/**\"]\nmatch.cgroup = [\"/agents/x\"]\n"),
        ("b.toml", "[agent]\nname = \"b\"\nmatch.exe = [\"/opt/tools/bin/b\"]\nmatch.cgroup = [\"/agents/x\"]\n"),
    ];
    assert_eq!(
        errors(&files),
        vec![
            "b.toml:4:17: cgroup `/agents/x` is already matched by agent `a` (at a.toml:4:17); a cgroup selects one agent",
            "b.toml:3:14: agent.match.exe overlaps agent `a`'s pattern at a.toml:3:14; an executable selects one agent",
        ]
    );
}

#[test]
fn limits_are_compile_errors() {
    let depths =
        "[file]\nread = [\"/*/a\", \"/a/*/b\", \"/a/b/*/c\", \"/a/b/c/*/d\", \"/a/b/c/d/*/e\"]\n";
    assert_eq!(
        agent_err(depths),
        "a.toml:4:53: `*` at depth 5: agent `a` already uses `*` at depths [1, 2, 3, 4]; at most 4 distinct depths per agent"
    );
    let rules: Vec<String> = (0..17)
        .map(|p| format!("\"10.0.0.0/8:{}\"", 1000 + p))
        .collect();
    assert_eq!(
        agent_err(&format!("[net]\nconnect = [{}]\n", rules.join(", "))),
        "a.toml:4:12: more than 16 net rules apply to 10.0.0.0/8 (counting every rule of a CIDR that contains it); \
         the kernel keeps at most 16 per address prefix"
    );
}

#[test]
fn errors_are_collected_across_files_and_rules() {
    let files = [
        (
            "a.toml",
            "[agent]\nname = \"a\"\n[file]\nread = [\"rel\", \"/ok\", \"/x*\"]\n",
        ),
        ("b.toml", "[agent]\nname = \"b\"\nmode = \"loud\"\n"),
    ];
    let e = errors(&files);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e[0].starts_with("a.toml:4:9: file.read: a path pattern must be absolute"),
        "{e:#?}"
    );
    assert!(
        e[1].starts_with("a.toml:4:23: file.read: `*` must be a whole path component"),
        "{e:#?}"
    );
    assert!(
        e[2].starts_with("b.toml:3:8: unknown variant `loud`"),
        "{e:#?}"
    );
}

#[test]
fn rendered_errors_quote_the_line_with_a_caret() {
    let d = load_sources(&[(
        "a.toml",
        "[agent]\nname = \"a\"\n[file]\nread = [\"/ok\", \"/a/**/b\"]\n",
    )])
    .unwrap_err();
    let text = d.to_string();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("a.toml:4:16: file.read: `**` is only supported"));
    assert_eq!(lines.next(), Some("4 | read = [\"/ok\", \"/a/**/b\"]"));
    assert_eq!(lines.next(), Some("  |                ^^^^^^^^^"));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json[0]["file"], "a.toml");
    assert_eq!(
        (json[0]["line"].as_u64(), json[0]["col"].as_u64()),
        (Some(4), Some(16))
    );
    assert_eq!(json[0]["source_line"], "read = [\"/ok\", \"/a/**/b\"]");
}

#[test]
fn missing_paths_are_errors() {
    let d = crate::policy::load_paths(&["/nonexistent/enforcer/p.toml".into()]).unwrap_err();
    assert_eq!(
        d.headlines(),
        vec!["/nonexistent/enforcer/p.toml: cannot read: No such file or directory (os error 2)"]
    );
}

#[test]
fn remaining_validation_messages() {
    let e = "invalid set name `-x`: use 1-64 letters, digits, `.`, `_`, `-`, starting with a letter or digit";
    assert_eq!(
        one(&[("s.toml", "[set]\nname = \"-x\"\n")]),
        format!("s.toml:2:8: {e}")
    );
    assert_eq!(
        agent_err("match.cgroup = [\"agents/a\"]\n"),
        "a.toml:3:17: agent.match.cgroup: a cgroup path is absolute within the cgroup2 hierarchy (e.g. `/agents/coder`)"
    );
    assert_eq!(
        agent_err("match.cgroup = [\"/agents/../a\"]\n"),
        "a.toml:3:17: agent.match.cgroup: a cgroup path must be normalized, without `*`, `.`, `..` or `//`"
    );
    assert_eq!(
        one(&[(
            "a.toml",
            "include = [\"/etc/enforcer/sets/x.toml\"]\n[agent]\nname = \"a\"\n"
        )]),
        "a.toml:1:12: include paths are relative to the including file"
    );
    assert_eq!(
        agent_err("[file]\nread = [\"\"]\n"),
        "a.toml:4:9: file.read: empty pattern"
    );
    assert_eq!(
        agent_err("[file]\nread = [\"/a\\u0000b\"]\n"),
        "a.toml:4:9: file.read: a pattern cannot contain a NUL byte"
    );
    assert_eq!(
        agent_err("[file]\nread = [\"**/\"]\n"),
        "a.toml:4:9: file.read: `**/` must be followed by a file name (`**/.env`) or `*.EXT` (`**/*.pem`); use `/**` to match everything"
    );
    assert_eq!(
        agent_err("[file]\nread = [\"**/..\"]\n"),
        "a.toml:4:9: file.read: `.` and `..` are not file names"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [\"unix:@\"]\n"),
        "a.toml:4:12: net.connect: empty abstract socket name"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [\"unix:@x*\"]\n"),
        "a.toml:4:12: net.connect: abstract socket names are matched exactly; `*` is not supported"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [\":80\"]\n"),
        "a.toml:4:12: net.connect: missing address (use `*` for any address)"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [\"example.com/24\"]\n"),
        "a.toml:4:12: net.connect: invalid address `example.com` in CIDR"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [\"fe80::zz\"]\n"),
        "a.toml:4:12: net.connect: invalid IPv6 address `fe80::zz`"
    );
}

#[test]
fn agent_table_limits() {
    // Delegation bits cover agent ids below 64: agent `a` (id 1) cannot delegate to id 65.
    let mut files: Vec<(String, String)> = vec![(
        "a.toml".into(),
        "[agent]\nname = \"a\"\ndelegate = [\"z\"]\n".into(),
    )];
    for i in 0..63 {
        files.push((
            format!("m{i:02}.toml"),
            format!("[agent]\nname = \"m{i:02}\"\n"),
        ));
    }
    files.push(("z.toml".into(), "[agent]\nname = \"z\"\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        errors(&refs),
        vec!["a.toml:3:13: agent `z` has id 65; delegation can only name agents with ids below 64"]
    );

    let files: Vec<(String, String)> = (0..1024)
        .map(|i| {
            (
                format!("a{i:04}.toml"),
                format!("[agent]\nname = \"a{i:04}\"\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        errors(&refs),
        vec!["a1022.toml:2:8: too many agents: at most 1022 fit the kernel's agent table"]
    );
}

#[test]
fn map_capacity_is_a_compile_error() {
    let names: Vec<String> = (0..=crate::policy::limits::MAX_NAME_ENTRIES)
        .map(|i| format!("\"**/n{i}\""))
        .collect();
    let text = agent(&format!("[file]\ndeny = [{}]\n", names.join(",")));
    assert_eq!(
        errors(&[("a.toml", &text)]),
        vec!["a.toml:2:8: the policies need 8193 NAME_RULES entries; the map holds 8192 (agent `a` needs 8193)"]
    );
}

#[test]
fn when_errors_point_at_the_bad_value() {
    assert_eq!(
        agent_err("[net]\nconnect = [{ to = \"10.0.0.1:443\", when.hours = \"09:00-18:00\" }]\n"),
        "a.toml:4:48: net.connect: `when.hours` needs an explicit time zone: add `tz = \"UTC\"` or an IANA name such as \"Europe/Paris\""
    );
    assert_eq!(
        agent_err("[net]\nconnect = [{ to = \"10.0.0.1:443\", when = { hours = \"9-18\", tz = \"UTC\" } }]\n"),
        "a.toml:4:52: net.connect: `9`: expected a time HH:MM (00:00 to 23:59)"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [{ to = \"10.0.0.1:443\", when = { hours = \"09:00-18:00\", tz = \"Europe/Pariss\" } }]\n"),
        "a.toml:4:72: net.connect: time zone `Europe/Pariss`: failed to find time zone `Europe/Pariss` in time zone database (an IANA name such as \"Europe/Paris\" or \"UTC\")"
    );
    assert_eq!(
        agent_err("[net]\ndeny = [{ to = \"10.0.0.1\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } }]\n"),
        "a.toml:4:9: net.deny: a deny cannot have `when`: a deny applies always (one that lapsed with the daemon stopped would fail open)"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [{ to = \"unix:/run/x.sock\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } }]\n"),
        "a.toml:4:12: net.connect: `when` applies to address and host rules, not to unix socket paths"
    );
    assert_eq!(
        agent_err("[file]\ndeny_read = [{ path = \"/x\", when = { hours = \"09:00-18:00\", tz = \"UTC\" } }]\n"),
        "a.toml:4:14: file.deny_read: a deny cannot have `when`: a deny applies always (one that lapsed with the daemon stopped would fail open)"
    );
    assert_eq!(
        agent_err("[net]\nconnect = [{ to = \"10.0.0.1:443\", when = { hours = \"09:00-18:00\", tz = \"UTC\", days = \"mon\" } }]\n"),
        "a.toml:4:79: unknown field `days`, expected `hours` or `tz`"
    );
}

#[test]
fn deeply_nested_values_are_an_error_not_a_crash() {
    // A hostile file must not overflow the parser's stack (the daemon would die with it).
    for depth in [1_000, 100_000] {
        let body = format!(
            "[file]\nread = {}\"/x\"{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let e = agent_err(&body);
        assert!(e.starts_with("a.toml:4:"), "depth {depth}: {e}");
    }
    let tables = format!(
        "[agent]\nname = \"a\"\n[file]\nread = [\"/x\"]\n[{}]\n",
        vec!["t"; 10_000].join(".")
    );
    assert!(
        one(&[("a.toml", &tables)]).starts_with("a.toml:5:"),
        "deep dotted table header"
    );
}

#[test]
fn a_long_include_chain_loads_and_its_cycle_is_named() {
    let n = 60;
    let mut files: Vec<(String, String)> = (0..n)
        .map(|i| {
            let include = if i + 1 < n {
                format!("include = [\"s{}.toml\"]\n", i + 1)
            } else {
                String::new()
            };
            (
                format!("s{i}.toml"),
                format!("{include}[set]\nname = \"s{i}\"\n[file]\nread = [\"/set{i}/**\"]\n"),
            )
        })
        .collect();
    files.push((
        "a.toml".into(),
        format!("include = [\"s0.toml\"]\n{}", agent("")),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let p = compiled(&refs);
    assert_eq!(
        p.rules.len(),
        n,
        "every set of the chain contributes its rule"
    );
    files[n - 1].1 = format!("include = [\"s0.toml\"]\n{}", files[n - 1].1);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let e = errors(&refs);
    assert!(
        e.iter()
            .any(|e| e.contains("include cycle: a.toml -> s0.toml -> s1.toml")),
        "{e:#?}"
    );
}

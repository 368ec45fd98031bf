//! The human, one-line-per-record format of `enforcer events --format text`.

use anstyle::{AnsiColor, Style};

use super::{DaemonRecord, EventRecord, LostRecord, Record};

fn verdict_style(verdict: &str) -> Style {
    let color = match verdict {
        "allow" => AnsiColor::Green,
        "deny" => AnsiColor::Red,
        "audit-deny" => AnsiColor::Yellow,
        "kill" => AnsiColor::Magenta,
        _ => AnsiColor::White,
    };
    Style::new().fg_color(Some(color.into())).bold()
}

/// One line (no newline). With `color`, ANSI styles mark the verdict and record kind.
pub fn format_record(record: &Record, color: bool) -> String {
    let paint = |style: Style, text: &str| {
        if color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    };
    let dim = Style::new().dimmed();
    match record {
        Record::Event(e) => format_event(e, &paint, dim),
        Record::Lost(l) => format_lost(l, &paint),
        Record::Daemon(d) => format_daemon(d, &paint, dim),
    }
}

/// `HH:MM:SS.mmm` of an RFC 3339 time, the date is in the JSON format.
fn short_time(time: &str) -> &str {
    time.get(11..23).unwrap_or(time)
}

fn format_event(e: &EventRecord, paint: &dyn Fn(Style, &str) -> String, dim: Style) -> String {
    let who = match e.chain.len() {
        0 | 1 => e.agent.clone().unwrap_or_else(|| "?".into()),
        _ => e.chain.join(">"),
    };
    let target = match (&e.path, &e.addr, &e.unix_path) {
        (Some(path), _, _) => path.clone(),
        (_, Some(addr), _) if addr.contains(':') => format!(
            "[{addr}]:{}/{}",
            e.port.unwrap_or(0),
            e.proto.as_deref().unwrap_or("?")
        ),
        (_, Some(addr), _) => format!(
            "{addr}:{}/{}",
            e.port.unwrap_or(0),
            e.proto.as_deref().unwrap_or("?")
        ),
        (_, _, Some(unix)) => format!("unix:{unix}"),
        _ => String::new(),
    };
    let mut line = format!(
        "{} {:<10} {} {}[{} {}] {} {}",
        paint(dim, short_time(&e.time)),
        paint(verdict_style(&e.verdict), &e.verdict.to_uppercase()),
        paint(
            dim,
            &format!("s:{}", e.session.get(12..).unwrap_or(&e.session))
        ),
        who,
        e.pid,
        e.comm,
        e.op,
        target
    );
    if !e.access.is_empty() {
        line.push_str(&format!(" ({})", e.access.join(",")));
    }
    let mut rule = format!("rule={}", e.rule);
    if let Some(pattern) = &e.rule_pattern {
        rule.push_str(&format!(" {pattern:?}"));
    }
    if let Some(by) = &e.rule_agent {
        rule.push_str(&format!(" of {by}"));
    }
    line.push_str(&format!(
        " {} {}",
        paint(dim, &rule),
        paint(dim, &format!("v{}", e.policy_version))
    ));
    if !e.flags.is_empty() {
        line.push_str(&format!(" [{}]", e.flags.join(",")));
    }
    line
}

fn format_lost(l: &LostRecord, paint: &dyn Fn(Style, &str) -> String) -> String {
    let style = Style::new()
        .fg_color(Some(AnsiColor::Yellow.into()))
        .bold()
        .underline();
    let whose = l
        .agent
        .as_ref()
        .map_or_else(String::new, |a| format!(" of agent {a}"));
    let why = match l.source.as_str() {
        "kernel" => "the kernel ring buffer was full; these events are not in the log",
        "subscriber" => "this live stream fell behind; the events are in the log",
        other => other,
    };
    format!(
        "{} {:<10} {} events{whose} ({why})",
        short_time(&l.time),
        paint(style, "LOST"),
        l.count
    )
}

fn format_daemon(d: &DaemonRecord, paint: &dyn Fn(Style, &str) -> String, dim: Style) -> String {
    let style = Style::new().fg_color(Some(AnsiColor::Cyan.into())).bold();
    let mut line = format!(
        "{} {:<10} {}",
        paint(dim, short_time(&d.time)),
        paint(style, "DAEMON"),
        d.event
    );
    if let Some(v) = d.policy_version {
        line.push_str(&format!(" v{v}"));
    }
    if let Some(agent) = &d.agent {
        line.push_str(&format!(" agent={agent}"));
    }
    if let Some(session) = &d.session {
        line.push_str(&format!(" session={session}"));
    }
    if let Some(since) = &d.down_since {
        line.push_str(&format!(" down_since={since}"));
    }
    if let Some(message) = &d.message {
        line.push_str(&format!(": {message}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_line_has_verdict_agent_target_and_rule() {
        let e = EventRecord {
            time: "2026-11-23T14:37:00.123456789Z".into(),
            agent: Some("coder".into()),
            session: "00000000deadbeef".into(),
            pid: 42,
            comm: "cat".into(),
            op: "open".into(),
            path: Some("/etc/shadow".into()),
            access: vec!["read".into()],
            verdict: "deny".into(),
            rule: "default-deny".into(),
            policy_version: 3,
            ..Default::default()
        };
        let plain = format_record(&Record::Event(e.clone()), false);
        assert_eq!(plain, "14:37:00.123 DENY       s:beef coder[42 cat] open /etc/shadow (read) rule=default-deny v3");
        let colored = format_record(&Record::Event(e), true);
        assert!(
            colored.contains("\u{1b}[") && colored.contains("DENY"),
            "{colored:?}"
        );
    }

    #[test]
    fn network_targets_and_losses() {
        let e = EventRecord {
            time: "2026-11-23T14:37:00.000000000Z".into(),
            op: "connect".into(),
            addr: Some("2001:db8::1".into()),
            port: Some(443),
            proto: Some("tcp".into()),
            verdict: "allow".into(),
            ..Default::default()
        };
        assert!(format_record(&Record::Event(e), false).contains("connect [2001:db8::1]:443/tcp"));
        let l = LostRecord {
            time: "2026-11-23T14:37:00.000000000Z".into(),
            count: 7,
            agent: Some("coder".into()),
            source: "kernel".into(),
            ..Default::default()
        };
        let line = format_record(&Record::Lost(l), false);
        assert!(
            line.contains("LOST") && line.contains("7 events of agent coder"),
            "{line}"
        );
    }
}

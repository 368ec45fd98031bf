//! The human, one-line-per-record format of `enforcer events --format text`, and the one
//! terminal-safe escape every text output uses for data an agent controls.
//!
//! Terminal safety: paths, comm, unix names, exe and the other fields an agent chooses reach an
//! operator's terminal. A control character (C0, DEL, C1) could move the cursor, erase or forge
//! a line, or set the window title; a bidirectional override or isolate, or invisible formatting,
//! could make a name read as another. [`escape`] writes each such character visibly: ASCII
//! controls as `\xNN`, the others as `\u{XXXX}`, bytes that are not UTF-8 as `\xNN` too, and the
//! backslash itself as `\\`, so the escaped text is unambiguous and reverses to the original
//! ([`unescape`]). docs/events.md ("Text output is terminal-safe") lists the characters.

use std::{borrow::Cow, fmt::Write as _, io};

use anstyle::{AnsiColor, Style};

use super::{DaemonRecord, EventRecord, LostRecord, Record};

/// Whether `c` is written escaped in text output: C0 and C1 controls and DEL, bidirectional
/// embeddings, overrides, isolates and marks, line/paragraph separators, and invisible
/// formatting characters (zero-width, joiners, word joiner, invisible operators, BOM, the
/// interlinear annotation controls, tag characters).
pub fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{ad}'                      // soft hyphen
        | '\u{61c}'                     // Arabic letter mark
        | '\u{115f}' | '\u{1160}'        // Hangul fillers (render as nothing)
        | '\u{180e}'                    // Mongolian vowel separator
        | '\u{200b}'..='\u{200f}'        // zero-width space/non-joiner/joiner, LRM, RLM
        | '\u{2028}'..='\u{202e}'        // line/paragraph separator, LRE RLE PDF LRO RLO
        | '\u{2060}'..='\u{206f}'        // word joiner, invisible operators, LRI RLI FSI PDI, ...
        | '\u{3164}'                    // Hangul filler
        | '\u{feff}'                    // BOM / zero-width no-break space
        | '\u{fff9}'..='\u{fffb}'        // interlinear annotation controls
        | '\u{e0000}'..='\u{e007f}'      // tag characters
    )
}

/// `text` with every character of [`needs_escape`] and the backslash escaped (`\n` too: one
/// field stays on one line). Borrowed when nothing needed escaping (the common case).
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_bytes(text.as_bytes(), false)
}

/// [`escape`] for a multi-line text an output built itself (status, explain, diagnostics): line
/// breaks stay, everything else is escaped the same way.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_bytes(text.as_bytes(), true)
}

/// The one escape: bytes that are not UTF-8 become `\xNN` as well, so a field that was stored
/// with its raw bytes (`target_bytes`) prints exactly once-escaped.
pub fn escape_bytes(bytes: &[u8], keep_newlines: bool) -> Cow<'_, str> {
    let plain = |b: u8| ((0x20..0x7f).contains(&b) && b != b'\\') || (keep_newlines && b == b'\n');
    if bytes.iter().all(|&b| plain(b)) {
        // All printable ASCII: valid UTF-8 by construction.
        return Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default());
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' if keep_newlines => out.push('\n'),
                c if (c as u32) < 0x80 && needs_escape(c) => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if needs_escape(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// The original bytes of an [`escape`]d text; `None` if it is not well formed.
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        rest = &rest[i + 1..];
        if let Some(tail) = rest.strip_prefix('\\') {
            out.push(b'\\');
            rest = tail;
        } else if let Some(tail) = rest.strip_prefix('x') {
            out.push(u8::from_str_radix(tail.get(..2)?, 16).ok()?);
            rest = &tail[2..];
        } else if let Some(tail) = rest.strip_prefix("u{") {
            let end = tail.find('}')?;
            let c = char::from_u32(u32::from_str_radix(&tail[..end], 16).ok()?)?;
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            rest = &tail[end + 1..];
        } else {
            return None;
        }
    }
    out.extend_from_slice(rest.as_bytes());
    Some(out)
}

/// A writer for a whole text output (status, explain, replay, diagnostics): every write is
/// passed through [`escape_lines`]. Each `write!` piece is a whole `str`, so characters are not
/// split across writes.
pub struct TerminalSafe<W: io::Write>(pub W);

impl<W: io::Write> io::Write for TerminalSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(escape_bytes(buf, true).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

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

/// The target as text, terminal-safe. A `target-escaped` path holds `\\` and `\xNN` for its
/// non-UTF-8 bytes already: it is decoded to those bytes first, so it is escaped once.
fn target_escaped(e: &EventRecord, text: &str) -> String {
    let raw = e
        .flags
        .iter()
        .any(|f| f == super::names::FLAG_TARGET_ESCAPED)
        .then(|| super::record::target_bytes(text, true))
        .flatten();
    match raw {
        Some(bytes) => escape_bytes(&bytes, false).into_owned(),
        None => escape(text).into_owned(),
    }
}

fn format_event(e: &EventRecord, paint: &dyn Fn(Style, &str) -> String, dim: Style) -> String {
    let who = match e.chain.len() {
        0 | 1 => e.agent.as_deref().map_or_else(|| "?".into(), escape),
        _ => Cow::Owned(escape(&e.chain.join(">")).into_owned()),
    };
    let proto = e.proto.as_deref().map_or(Cow::Borrowed("?"), escape);
    let target = match (&e.path, &e.addr, &e.unix_path) {
        (Some(path), _, _) => target_escaped(e, path),
        (_, Some(addr), _) if addr.contains(':') => {
            format!("[{}]:{}/{proto}", escape(addr), e.port.unwrap_or(0))
        }
        (_, Some(addr), _) => format!("{}:{}/{proto}", escape(addr), e.port.unwrap_or(0)),
        (_, _, Some(unix)) => format!("unix:{}", target_escaped(e, unix)),
        _ => match (&e.process, &e.socket) {
            (Some(p), _) => format!("pid {}", escape(p)),
            (_, Some(socket)) => format!("socket {}", escape(socket)),
            _ => String::new(),
        },
    };
    let mut line = format!(
        "{} {:<10} {} {}[{} {}] {} {}",
        paint(dim, &escape(short_time(&e.time))),
        paint(
            verdict_style(&e.verdict),
            &escape(&e.verdict.to_uppercase())
        ),
        paint(
            dim,
            &format!("s:{}", escape(e.session.get(12..).unwrap_or(&e.session)))
        ),
        who,
        e.pid,
        escape(&e.comm),
        escape(&e.op),
        target
    );
    if !e.access.is_empty() {
        line.push_str(&format!(" ({})", escape(&e.access.join(","))));
    }
    let mut rule = format!("rule={}", escape(&e.rule));
    if let Some(pattern) = &e.rule_pattern {
        rule.push_str(&format!(" \"{}\"", escape(pattern)));
    }
    if let Some(by) = &e.rule_agent {
        rule.push_str(&format!(" of {}", escape(by)));
    }
    line.push_str(&format!(
        " {} {}",
        paint(dim, &rule),
        paint(dim, &format!("v{}", e.policy_version))
    ));
    if !e.flags.is_empty() {
        line.push_str(&format!(" [{}]", escape(&e.flags.join(","))));
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
        .map_or_else(String::new, |a| format!(" of agent {}", escape(a)));
    let why = match l.source.as_str() {
        "kernel" => {
            Cow::Borrowed("the kernel ring buffer was full; these events are not in the log")
        }
        "subscriber" => Cow::Borrowed("this live stream fell behind; the events are in the log"),
        other => escape(other),
    };
    format!(
        "{} {:<10} {} events{whose} ({why})",
        escape(short_time(&l.time)),
        paint(style, "LOST"),
        l.count
    )
}

fn format_daemon(d: &DaemonRecord, paint: &dyn Fn(Style, &str) -> String, dim: Style) -> String {
    let style = Style::new().fg_color(Some(AnsiColor::Cyan.into())).bold();
    let mut line = format!(
        "{} {:<10} {}",
        paint(dim, &escape(short_time(&d.time))),
        paint(style, "DAEMON"),
        escape(&d.event)
    );
    if let Some(v) = d.policy_version {
        line.push_str(&format!(" v{v}"));
    }
    if let Some(agent) = &d.agent {
        line.push_str(&format!(" agent={}", escape(agent)));
    }
    if let Some(session) = &d.session {
        line.push_str(&format!(" session={}", escape(session)));
    }
    if let Some(since) = &d.down_since {
        line.push_str(&format!(" down_since={}", escape(since)));
    }
    if let Some(message) = &d.message {
        line.push_str(&format!(": {}", escape(message)));
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
    fn escape_makes_controls_bidi_and_invisible_characters_visible_and_reverses() {
        let cases = [
            ("plain /etc/passwd", "plain /etc/passwd"),
            ("a\\b", "a\\\\b"),
            ("x\ry", "x\\x0dy"),
            ("\u{1b}[2Kgone", "\\x1b[2Kgone"),
            ("\u{1b}]0;title\u{7}", "\\x1b]0;title\\x07"),
            ("del\u{7f}", "del\\x7f"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
            ("invoice\u{202e}fdp.exe", "invoice\\u{202e}fdp.exe"),
            ("\u{2066}iso\u{2069}", "\\u{2066}iso\\u{2069}"),
            (
                "lrm\u{200e}rlm\u{200f}zw\u{200b}bom\u{feff}",
                "lrm\\u{200e}rlm\\u{200f}zw\\u{200b}bom\\u{feff}",
            ),
            ("line\nbreak\ttab", "line\\x0abreak\\x09tab"),
            ("\u{2028}sep", "\\u{2028}sep"),
            ("caf\u{e9} \u{65e5}\u{672c}", "caf\u{e9} \u{65e5}\u{672c}"),
        ];
        for (raw, shown) in cases {
            let escaped = escape(raw);
            assert_eq!(escaped, shown, "{raw:?}");
            assert!(
                !escaped.chars().any(needs_escape),
                "nothing unsafe remains in {escaped:?}"
            );
            assert_eq!(
                unescape(&escaped).as_deref(),
                Some(raw.as_bytes()),
                "{raw:?}"
            );
        }
        // Bytes that are not UTF-8 are \xNN too, distinct from the character U+0080.
        assert_eq!(escape_bytes(b"a\x80\xff\\", false), "a\\x80\\xff\\\\");
        assert_eq!(unescape("a\\x80\\xff\\\\").unwrap(), b"a\x80\xff\\");
        assert_eq!(escape("\u{80}"), "\\u{80}");
        // Whole outputs keep their line breaks and nothing else.
        assert_eq!(escape_lines("a\n\u{1b}[2Kb\r\n"), "a\n\\x1b[2Kb\\x0d\n");
        let mut out = TerminalSafe(Vec::new());
        use std::io::Write as _;
        writeln!(out, "path x\u{1b}]0;t\u{7}").unwrap();
        assert_eq!(out.0, b"path x\\x1b]0;t\\x07\n");
        assert_eq!(unescape("bad\\q"), None);
    }

    #[test]
    fn every_agent_field_of_a_text_line_is_escaped() {
        let hostile = "/tmp/x\r\u{1b}[2K\u{1b}]0;pwned\u{7}\u{202e}fdp.txt";
        let e = EventRecord {
            time: "2026-11-23T14:37:00.123456789Z".into(),
            agent: Some("coder".into()),
            session: "00000000deadbeef".into(),
            pid: 42,
            comm: "ev\u{1b}[1Ail".into(),
            op: "open".into(),
            path: Some(hostile.into()),
            verdict: "deny".into(),
            rule: "default-deny".into(),
            ..Default::default()
        };
        for color in [false, true] {
            let line = format_record(&Record::Event(e.clone()), color);
            for bad in ['\r', '\u{7}', '\u{202e}'] {
                assert!(!line.contains(bad), "{line:?}");
            }
            assert!(
                line.contains("/tmp/x\\x0d\\x1b[2K\\x1b]0;pwned\\x07\\u{202e}fdp.txt"),
                "{line:?}"
            );
            assert!(line.contains("[42 ev\\x1b[1Ail]"), "{line:?}");
            if !color {
                assert!(!line.contains('\u{1b}'), "{line:?}");
            }
        }
        let unix = EventRecord {
            op: "connect".into(),
            unix_path: Some("@sock\u{1b}c".into()),
            ..e.clone()
        };
        let line = format_record(&Record::Event(EventRecord { path: None, ..unix }), false);
        assert!(line.contains("unix:@sock\\x1bc"), "{line}");
        // A non-UTF-8 path is stored `target-escaped`; the text shows it escaped once.
        let raw = EventRecord {
            path: Some("/tmp/a\\\\b\\xff".into()),
            flags: vec![crate::audit::names::FLAG_TARGET_ESCAPED.into()],
            ..e.clone()
        };
        let line = format_record(&Record::Event(raw), false);
        assert!(line.contains("open /tmp/a\\\\b\\xff "), "{line}");
        let d = DaemonRecord {
            time: e.time.clone(),
            event: "register".into(),
            message: Some("exe /tmp/\u{1b}[2K".into()),
            ..Default::default()
        };
        let line = format_record(&Record::Daemon(d), false);
        assert!(line.ends_with(": exe /tmp/\\x1b[2K"), "{line}");
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

//! Conditions of conditional allows: daily time windows in an explicit IANA time zone
//! (`when = { hours = "09:00-18:00", tz = "Europe/Paris" }`) and the lifetime of a grant.
//!
//! The kernel is given only the window that is open now or opens next (`CONDS`, boot-clock
//! nanoseconds), and the daemon writes the following one when it ends. So the horizon is one
//! window: with the daemon stopped, a window already written still opens and closes on time,
//! and no later one ever opens. Conditional allows lapse by themselves (fail closed). A deny
//! cannot carry a condition: a deny that lapsed with the daemon would fail open.

use jiff::{civil::Date, tz::TimeZone, Span, Timestamp};

/// A condition of a rule; `CompiledPolicy::conditions[i]` is the kernel's condition id `i + 1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Condition {
    /// Every day from `start_min` to `end_min` (minutes after local midnight) in `tz`;
    /// `end_min <= start_min` crosses midnight.
    Hours {
        tz: String,
        start_min: u16,
        end_min: u16,
    },
    /// One window: a grant, from when it was given until it expires.
    Between { start: Timestamp, end: Timestamp },
}

impl Condition {
    /// Parse `hours = "HH:MM-HH:MM"` with time zone `tz` (an IANA name from the system tzdb).
    pub fn hours(hours: &str, tz: &str) -> Result<Condition, String> {
        let (start, end) = hours
            .split_once('-')
            .ok_or_else(|| format!("`{hours}`: expected HH:MM-HH:MM (e.g. \"09:00-18:00\")"))?;
        let start_min = parse_hhmm(start.trim(), false)?;
        let end_min = parse_hhmm(end.trim(), true)?;
        if start_min == end_min % (24 * 60) {
            return Err(format!("`{hours}`: the window is empty (start equals end); omit `when` for a rule that always applies"));
        }
        zone(tz).map_err(|e| {
            format!("time zone `{tz}`: {e} (an IANA name such as \"Europe/Paris\" or \"UTC\")")
        })?;
        Ok(Condition::Hours {
            tz: tz.to_owned(),
            start_min,
            end_min,
        })
    }

    /// The window that contains `now`, else the next one; `None`: never again.
    pub fn window_at(&self, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        match self {
            Condition::Between { start, end } => (now < *end).then_some((*start, *end)),
            Condition::Hours {
                tz,
                start_min,
                end_min,
            } => {
                // A time zone that vanished from the tzdb since validation: never open.
                let tz = zone(tz).ok()?;
                let today = now.to_zoned(tz.clone()).date();
                // Yesterday's window may cross midnight into today; windows are in day order.
                (-1..=2).find_map(|d| {
                    let day = today.checked_add(Span::new().days(d)).ok()?;
                    let (s, e) = day_window(&tz, day, *start_min, *end_min)?;
                    (now < e && s < e).then_some((s, e))
                })
            }
        }
    }

    pub fn is_open_at(&self, now: Timestamp) -> bool {
        self.window_at(now)
            .is_some_and(|(s, e)| s <= now && now < e)
    }

    pub fn describe(&self) -> String {
        match self {
            Condition::Hours {
                tz,
                start_min,
                end_min,
            } => format!(
                "{:02}:{:02}-{:02}:{:02} {tz}",
                start_min / 60,
                start_min % 60,
                end_min / 60,
                end_min % 60
            ),
            Condition::Between { end, .. } => format!("until {end}"),
        }
    }
}

/// The zone named `name` in the system tzdb; UTC needs none (minimal systems and the test VMs
/// have no /usr/share/zoneinfo).
fn zone(name: &str) -> Result<TimeZone, jiff::Error> {
    if name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name)
}

fn parse_hhmm(s: &str, is_end: bool) -> Result<u16, String> {
    let bad = || {
        format!(
            "`{s}`: expected a time HH:MM (00:00 to 23:59{})",
            if is_end { ", or 24:00" } else { "" }
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !is_end)) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// The window starting on local `day`. Local times that a DST change skips or repeats resolve
/// the way jiff's "compatible" disambiguation does (RFC 5545: a skipped time moves forward by
/// the gap, a repeated time takes its first occurrence).
fn day_window(
    tz: &TimeZone,
    day: Date,
    start_min: u16,
    end_min: u16,
) -> Option<(Timestamp, Timestamp)> {
    let at = |d: Date, min: u16| -> Option<Timestamp> {
        let (d, min) = if min >= 24 * 60 {
            (d.checked_add(Span::new().days(1)).ok()?, min - 24 * 60)
        } else {
            (d, min)
        };
        let dt = d.at((min / 60) as i8, (min % 60) as i8, 0, 0);
        tz.to_ambiguous_zoned(dt)
            .compatible()
            .ok()
            .map(|z| z.timestamp())
    };
    let start = at(day, start_min)?;
    let end_day = if end_min <= start_min {
        day.checked_add(Span::new().days(1)).ok()?
    } else {
        day
    };
    let end = at(end_day, end_min)?;
    Some((start, end))
}

/// Wall clock -> `CLOCK_BOOTTIME` for the kernel's `CONDS`, from one paired sample of both.
#[derive(Clone, Copy, Debug)]
pub struct BootMapping {
    pub wall: Timestamp,
    pub boot_ns: u64,
}

impl BootMapping {
    pub fn now() -> BootMapping {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        BootMapping {
            wall: Timestamp::now(),
            boot_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }

    fn boot_ns(&self, t: Timestamp) -> u64 {
        let delta = t.as_nanosecond() - self.wall.as_nanosecond();
        (self.boot_ns as i128 + delta).clamp(0, u64::MAX as i128) as u64
    }

    /// The kernel's window for `cond` now: `{0, 0}` when it never opens again.
    pub fn kernel_window(&self, cond: &Condition) -> enforcer_common::CondWindow {
        match cond.window_at(self.wall) {
            Some((s, e)) => enforcer_common::CondWindow {
                start_ns: self.boot_ns(s),
                end_ns: self.boot_ns(e),
            },
            None => enforcer_common::CondWindow::default(),
        }
    }
}

/// When the kernel's windows must be written again: the earliest end of a window written now.
pub fn next_refresh(conditions: &[Condition], now: Timestamp) -> Option<Timestamp> {
    conditions
        .iter()
        .filter_map(|c| c.window_at(now).map(|(_, e)| e))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn hours_parse_errors_are_precise() {
        assert!(Condition::hours("09:00-18:00", "Europe/Paris").is_ok());
        assert!(Condition::hours("22:00-06:00", "UTC").is_ok());
        assert!(Condition::hours("09:00-24:00", "UTC").is_ok());
        for (h, tz, want) in [
            ("9-18", "UTC", "expected a time HH:MM"),
            ("09:00", "UTC", "expected HH:MM-HH:MM"),
            ("09:60-18:00", "UTC", "`09:60`"),
            ("24:00-18:00", "UTC", "`24:00`"),
            ("09:00-09:00", "UTC", "empty"),
            ("09:00-18:00", "Mars/Olympus", "time zone `Mars/Olympus`"),
        ] {
            let e = Condition::hours(h, tz).unwrap_err();
            assert!(e.contains(want), "{h} {tz}: {e}");
        }
    }

    #[test]
    fn window_edges_are_half_open() {
        let c = Condition::hours("09:00-18:00", "Europe/Paris").unwrap();
        // Winter: Paris is UTC+1.
        assert!(!c.is_open_at(ts("2026-01-15T07:59:59Z")));
        assert!(c.is_open_at(ts("2026-01-15T08:00:00Z")));
        assert!(c.is_open_at(ts("2026-01-15T16:59:59.999Z")));
        assert!(!c.is_open_at(ts("2026-01-15T17:00:00Z")));
        assert_eq!(
            c.window_at(ts("2026-01-15T17:00:00Z")),
            Some((ts("2026-01-16T08:00:00Z"), ts("2026-01-16T17:00:00Z")))
        );
    }

    #[test]
    fn windows_cross_midnight() {
        let c = Condition::hours("22:00-06:00", "UTC").unwrap();
        assert!(c.is_open_at(ts("2026-03-02T05:00:00Z")));
        assert_eq!(
            c.window_at(ts("2026-03-02T05:00:00Z")),
            Some((ts("2026-03-01T22:00:00Z"), ts("2026-03-02T06:00:00Z")))
        );
        assert!(!c.is_open_at(ts("2026-03-02T12:00:00Z")));
    }

    #[test]
    fn dst_changes_keep_local_hours() {
        let c = Condition::hours("09:00-18:00", "Europe/Paris").unwrap();
        // 2026-03-29: Paris moves to UTC+2 at 02:00 local.
        assert_eq!(
            c.window_at(ts("2026-03-28T20:00:00Z")),
            Some((ts("2026-03-29T07:00:00Z"), ts("2026-03-29T16:00:00Z")))
        );
        // A window over the skipped hour is an hour shorter; 02:30 does not exist and starts at 03:30.
        let c = Condition::hours("02:30-04:00", "Europe/Paris").unwrap();
        assert_eq!(
            c.window_at(ts("2026-03-28T20:00:00Z")),
            Some((ts("2026-03-29T01:30:00Z"), ts("2026-03-29T02:00:00Z")))
        );
    }

    #[test]
    fn grants_end_and_refresh_is_the_earliest_end() {
        let g = Condition::Between {
            start: ts("2026-01-01T10:00:00Z"),
            end: ts("2026-01-01T10:10:00Z"),
        };
        assert!(g.is_open_at(ts("2026-01-01T10:05:00Z")));
        assert_eq!(g.window_at(ts("2026-01-01T10:10:00Z")), None);
        let h = Condition::hours("09:00-18:00", "UTC").unwrap();
        assert_eq!(
            next_refresh(&[h.clone(), g], ts("2026-01-01T10:05:00Z")),
            Some(ts("2026-01-01T10:10:00Z"))
        );
        assert_eq!(
            next_refresh(&[h], ts("2026-01-01T19:00:00Z")),
            Some(ts("2026-01-02T18:00:00Z"))
        );
    }

    #[test]
    fn kernel_window_maps_wall_to_boot_time() {
        let m = BootMapping {
            wall: ts("2026-01-01T10:00:00Z"),
            boot_ns: 5_000_000_000,
        };
        let g = Condition::Between {
            start: ts("2026-01-01T09:59:59Z"),
            end: ts("2026-01-01T10:00:03Z"),
        };
        let w = m.kernel_window(&g);
        assert_eq!((w.start_ns, w.end_ns), (4_000_000_000, 8_000_000_000));
        let over = Condition::Between {
            start: ts("2026-01-01T09:00:00Z"),
            end: ts("2026-01-01T09:30:00Z"),
        };
        assert_eq!(
            m.kernel_window(&over),
            enforcer_common::CondWindow::default()
        );
    }
}

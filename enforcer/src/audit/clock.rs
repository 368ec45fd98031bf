//! Kernel events carry `bpf_ktime_get_boot_ns()` (CLOCK_BOOTTIME); the log shows wall-clock time.

use jiff::Timestamp;

/// RFC 3339 in UTC with exactly nine fractional digits, so lines sort and align textually.
const RFC3339_NS: &str = "%Y-%m-%dT%H:%M:%S.%9fZ";

/// Offset between CLOCK_REALTIME and CLOCK_BOOTTIME, sampled once per batch of events: the two
/// clocks only drift apart when the wall clock is stepped, and a batch spans milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    realtime_minus_boot_ns: i128,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clock ids exist on every Linux we support.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl BootClock {
    pub fn sample() -> Self {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        BootClock {
            realtime_minus_boot_ns: real - boot,
        }
    }

    /// A clock with a fixed offset (tests).
    pub fn with_offset(realtime_minus_boot_ns: i128) -> Self {
        BootClock {
            realtime_minus_boot_ns,
        }
    }

    /// Wall-clock nanoseconds since the Unix epoch of a boot-time stamp.
    pub fn wall_ns(&self, boot_ns: u64) -> i128 {
        boot_ns as i128 + self.realtime_minus_boot_ns
    }
}

/// Current CLOCK_BOOTTIME in nanoseconds (the kernel's `bpf_ktime_get_boot_ns`).
pub fn boot_now_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME) as u64
}

/// Current wall-clock time in nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Format epoch nanoseconds as RFC 3339 with nanoseconds (`2026-11-23T14:37:00.000000001Z`).
pub fn format_rfc3339_ns(epoch_ns: i128) -> String {
    Timestamp::from_nanosecond(epoch_ns)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .strftime(RFC3339_NS)
        .to_string()
}

/// [`format_rfc3339_ns`] for a stream of times that mostly share their second (a batch of
/// events): the date and time of day are formatted once per second, the nanoseconds each time.
#[derive(Default)]
pub struct TimeFormatter {
    /// Epoch second and its `YYYY-MM-DDTHH:MM:SS.` text.
    cached: Option<(i128, [u8; 20])>,
}

impl TimeFormatter {
    /// Append the RFC 3339 text of `epoch_ns` (no quotes).
    pub fn write(&mut self, out: &mut Vec<u8>, epoch_ns: i128) {
        let (second, nanos) = (
            epoch_ns.div_euclid(1_000_000_000),
            epoch_ns.rem_euclid(1_000_000_000),
        );
        if self.cached.is_none_or(|(s, _)| s != second) {
            self.cached = None;
            // Out-of-range times take the slow path every time (format_rfc3339_ns's fallback).
            if Timestamp::from_nanosecond(second * 1_000_000_000).is_ok() {
                let text = format_rfc3339_ns(second * 1_000_000_000);
                if let Ok(prefix) = <[u8; 20]>::try_from(&text.as_bytes()[..text.len().min(20)]) {
                    if text.len() == 30 {
                        self.cached = Some((second, prefix));
                    }
                }
            }
        }
        let Some((_, prefix)) = &self.cached else {
            out.extend_from_slice(format_rfc3339_ns(epoch_ns).as_bytes());
            return;
        };
        out.extend_from_slice(prefix);
        let mut digits = [b'0'; 9];
        let mut n = nanos as u32;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&digits);
        out.push(b'Z');
    }
}

/// Parse an RFC 3339 time (any offset, any number of fractional digits) into epoch nanoseconds.
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    text.parse::<Timestamp>().ok().map(|t| t.as_nanosecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_nine_fraction_digits_in_utc() {
        assert_eq!(
            format_rfc3339_ns(1_000_000_001),
            "1970-01-01T00:00:01.000000001Z"
        );
        assert_eq!(
            format_rfc3339_ns(1_795_444_620_123_456_789),
            "2026-11-23T14:37:00.123456789Z"
        );
    }

    #[test]
    fn boot_time_converts_with_the_sampled_offset() {
        let clock = BootClock::with_offset(1_000);
        assert_eq!(clock.wall_ns(5), 1_005);
        let live = BootClock::sample();
        let wall = live.wall_ns(clock_ns(libc::CLOCK_BOOTTIME) as u64);
        assert!(
            (wall - now_ns()).abs() < 1_000_000_000,
            "boot->wall conversion is off by more than 1s"
        );
    }

    #[test]
    fn the_cached_formatter_writes_what_format_rfc3339_ns_does() {
        let mut f = TimeFormatter::default();
        let base = 1_795_444_620_123_456_789i128;
        let times = [
            base,
            base + 1,
            base + 876_543_210,
            base + 999_999_999,
            base - 5,
            0,
            1,
            -1,
            base * 1000,
            base,
        ];
        for t in times {
            let mut out = Vec::new();
            f.write(&mut out, t);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format_rfc3339_ns(t),
                "epoch ns {t}"
            );
        }
    }

    #[test]
    fn parses_what_it_formats_and_other_offsets() {
        let t = 1_795_444_620_123_456_789;
        assert_eq!(parse_rfc3339(&format_rfc3339_ns(t)), Some(t));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}

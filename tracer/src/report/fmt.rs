//! The reports' duration formatters: a CLOCK_BOOTTIME time or a span, in nanoseconds.

/// Seconds with milliseconds, rounded: `12.346s`.
pub(crate) fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// Whole milliseconds (truncated) below a second, else [`secs`]: `250ms`, `1.250s`.
pub(crate) fn ms_or_secs(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        secs(ns)
    } else {
        format!("{}ms", ns / 1_000_000)
    }
}

/// A span as systemd-analyze prints it (systemd's `format_timespan` to the millisecond):
/// the largest units first, the seconds below a minute with their milliseconds after a
/// dot, truncated: `3.250s`, `1min 2.345s`, `1min 578ms`, `2s`, `1h 1min 5.100s`.
pub(crate) fn min_secs(ns: u64) -> String {
    const MS: u64 = 1_000;
    const UNITS: [(u64, &str); 9] = [
        (31_557_600_000_000, "y"),
        (2_629_800_000_000, "month"),
        (604_800_000_000, "w"),
        (86_400_000_000, "d"),
        (3_600_000_000, "h"),
        (60_000_000, "min"),
        (1_000_000, "s"),
        (1_000, "ms"),
        (1, "us"),
    ];
    let mut t = ns / 1_000;
    if t == 0 {
        return "0".into();
    }
    let mut parts: Vec<String> = Vec::new();
    for (unit, suffix) in UNITS {
        if t == 0 || (t < MS && !parts.is_empty()) {
            break;
        }
        if t < unit {
            continue;
        }
        let (a, b) = (t / unit, t % unit);
        // Below a minute, what is left of this unit goes after a dot, to the millisecond.
        let digits = unit.ilog10().saturating_sub(MS.ilog10());
        if t < 60_000_000 && b > 0 && digits > 0 {
            let frac = b / MS;
            parts.push(format!("{a}.{frac:0w$}{suffix}", w = digits as usize));
            t = 0;
        } else {
            parts.push(format!("{a}{suffix}"));
            t = if t < 60_000_000 && b > 0 { b / MS } else { b };
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_rounds_to_the_millisecond() {
        assert_eq!(secs(0), "0.000s");
        assert_eq!(secs(12_345_600_000), "12.346s");
        assert_eq!(secs(999_999), "0.001s");
        assert_eq!(secs(75_000_000_000), "75.000s");
    }

    #[test]
    fn ms_or_secs_switches_to_seconds_at_one() {
        assert_eq!(ms_or_secs(0), "0ms");
        assert_eq!(ms_or_secs(250_900_000), "250ms");
        assert_eq!(ms_or_secs(999_999_999), "999ms");
        assert_eq!(ms_or_secs(1_000_000_000), "1.000s");
        assert_eq!(ms_or_secs(1_250_400_000), "1.250s");
    }

    #[test]
    fn min_secs_prints_as_systemd_analyze() {
        // As systemd 252's and 257's `systemd-analyze time` print them (format_timespan
        // with USEC_PER_MSEC): "1min 578ms" was seen in a slow VM boot.
        assert_eq!(min_secs(0), "0");
        assert_eq!(min_secs(3_250_999_999), "3.250s");
        assert_eq!(min_secs(59_999_999_999), "59.999s");
        assert_eq!(min_secs(60_000_000_000), "1min");
        assert_eq!(min_secs(60_578_000_000), "1min 578ms");
        assert_eq!(min_secs(62_345_678_901), "1min 2.345s");
        assert_eq!(min_secs(62_000_000_000), "1min 2s");
        assert_eq!(min_secs(3_000_000_000), "3s");
        assert_eq!(min_secs(300_500_000), "300ms");
        assert_eq!(min_secs(3_665_100_000_000), "1h 1min 5.100s");
        assert_eq!(min_secs(60_000_400_000), "1min");
    }
}

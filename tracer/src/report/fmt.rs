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

/// Minutes and seconds to the millisecond, truncated, as systemd-analyze prints a span:
/// `3.250s`, `1min 2.345s`.
pub(crate) fn min_secs(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let (min, rest) = (ms / 60_000, ms % 60_000);
    let secs = format!("{}.{:03}s", rest / 1000, rest % 1000);
    if min > 0 {
        format!("{min}min {secs}")
    } else {
        secs
    }
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
        assert_eq!(min_secs(0), "0.000s");
        assert_eq!(min_secs(3_250_999_999), "3.250s");
        assert_eq!(min_secs(59_999_999_999), "59.999s");
        assert_eq!(min_secs(60_000_000_000), "1min 0.000s");
        assert_eq!(min_secs(62_345_678_901), "1min 2.345s");
    }
}

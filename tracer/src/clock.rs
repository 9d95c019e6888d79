//! Boot-time timestamps (CLOCK_BOOTTIME, what the kernel programs record) to wall-clock time,
//! and times, spans and sizes as systemd and journalctl write them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; both clocks exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Converts CLOCK_BOOTTIME nanoseconds to wall-clock time, using the offset between the
/// two clocks when it was made (a later change of the wall clock is not followed).
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    boot_epoch: SystemTime,
}

impl BootClock {
    pub fn new() -> Self {
        let real = now(libc::CLOCK_REALTIME);
        let boot = now(libc::CLOCK_BOOTTIME);
        Self {
            boot_epoch: UNIX_EPOCH + real.saturating_sub(boot),
        }
    }

    /// CLOCK_BOOTTIME now, in nanoseconds.
    pub fn boot_ns_now() -> u64 {
        now(libc::CLOCK_BOOTTIME).as_nanos() as u64
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        self.boot_epoch + Duration::from_nanos(boot_ns)
    }

    /// A clock for another boot, from one moment known on both clocks.
    pub fn from_wall_at(wall: SystemTime, boot_ns: u64) -> Self {
        Self {
            boot_epoch: wall
                .checked_sub(Duration::from_nanos(boot_ns))
                .unwrap_or(UNIX_EPOCH),
        }
    }

    /// CLOCK_BOOTTIME ns of a wall-clock time (0 before the boot).
    pub fn boot_ns_of(&self, wall: SystemTime) -> u64 {
        wall.duration_since(self.boot_epoch)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

/// A time in systemd's syntax as CLOCK_BOOTTIME ns on `clock`'s boot: `2026-11-01`,
/// `2026-11-01 10:00[:30]` (local), `today`, `yesterday`, `tomorrow`, `now`, `-5min`,
/// `+1h`, `@1795000000` (epoch seconds); a plain number is seconds since the boot.
pub fn parse_when(s: &str, clock: &BootClock) -> Option<u64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0).then_some((secs * 1e9) as u64);
    }
    let now = SystemTime::now();
    let wall = if let Some(epoch) = s.strip_prefix('@') {
        UNIX_EPOCH + Duration::from_secs_f64(epoch.parse::<f64>().ok()?)
    } else if let Some(span) = s.strip_prefix('-') {
        now.checked_sub(parse_span(span)?)?
    } else if let Some(span) = s.strip_prefix('+') {
        now + parse_span(span)?
    } else {
        match s {
            "now" => now,
            "today" | "yesterday" | "tomorrow" => {
                let midnight = local_midnight(now)?;
                match s {
                    "yesterday" => midnight.checked_sub(Duration::from_secs(86_400))?,
                    "tomorrow" => midnight + Duration::from_secs(86_400),
                    _ => midnight,
                }
            }
            _ => local_datetime(s)?,
        }
    };
    Some(clock.boot_ns_of(wall))
}

/// `512K`, `100M`, `1G`, `1T` or plain bytes (powers of 1024, as journalctl).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * mult as f64) as u64)
}

/// A byte size in the configuration: an integer (`4194304`) or a string [`parse_size`]
/// reads (`"4M"`, `"256M"`, `"1.5G"`), for `#[serde(deserialize_with = "...")]` on a field
/// of any unsigned width (a value too large for it is an error, not a wrap).
pub fn deserialize_size<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct Size;
    impl serde::de::Visitor<'_> for Size {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "a size in bytes: an integer, or a string like \"4M\" or \"256M\" (K, M, G, T: powers of 1024)",
            )
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
        }
    }
    let bytes = d.deserialize_any(Size)?;
    T::try_from(bytes).map_err(|_| {
        <D::Error as serde::de::Error>::custom(format!(
            "{bytes} bytes is too large for this setting"
        ))
    })
}

/// A systemd-style time span: `30s`, `5min`, `12h`, `2d`, `2weeks`, `1month`, `1y`, or
/// several (`1h 30min`).
pub fn parse_span(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 0.001,
            "us" | "usec" => 0.000_001,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "M" | "month" | "months" => 2_629_800.0,
            "y" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += value * secs;
        rest = rest[unit_end..].trim_start();
    }
    Some(Duration::from_secs_f64(total))
}

fn mktime(tm: &mut libc::tm) -> Option<SystemTime> {
    tm.tm_isdst = -1;
    // SAFETY: a valid tm we own.
    let t = unsafe { libc::mktime(tm) };
    (t >= 0).then(|| UNIX_EPOCH + Duration::from_secs(t as u64))
}

fn local_midnight(t: SystemTime) -> Option<SystemTime> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs() as libc::time_t;
    // SAFETY: localtime_r writes into the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return None;
    }
    tm.tm_hour = 0;
    tm.tm_min = 0;
    tm.tm_sec = 0;
    mktime(&mut tm)
}

/// `YYYY-MM-DD` or `YYYY-MM-DD HH:MM[:SS]`, local time.
fn local_datetime(s: &str) -> Option<SystemTime> {
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let d: Vec<i32> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i32> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, mo, day], [h, mi, rest @ ..]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    // SAFETY: an all-zero tm is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = *day;
    tm.tm_hour = *h;
    tm.tm_min = *mi;
    tm.tm_sec = rest.first().copied().unwrap_or(0);
    mktime(&mut tm)
}

/// Local time of day with microseconds, `14:03:07.123456`.
pub fn local_time_of_day(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as libc::time_t;
    // SAFETY: localtime_r writes into the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { libc::localtime_r(&secs, &mut tm) }.is_null();
    if !ok {
        return format!("{}.{:06}", d.as_secs(), d.subsec_micros());
    }
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        d.subsec_micros()
    )
}

/// RFC 3339 UTC time with microseconds, `2026-11-26T14:03:07.123456Z`. (Written digit by
/// digit: the stream formats one per event.)
pub fn rfc3339_utc(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339_utc(&mut out, t);
    String::from_utf8(out).unwrap_or_default()
}

/// [`rfc3339_utc`], appended to `out`.
pub fn write_rfc3339_utc(out: &mut Vec<u8>, t: SystemTime) {
    // Events come many to the second: the date and time of day are worked out once per
    // second, the microseconds every time.
    thread_local! {
        static LAST: std::cell::Cell<(i64, [u8; 27])> =
            const { std::cell::Cell::new((-1, *b"0000-00-00T00:00:00.000000Z")) };
    }
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (last, mut b) = LAST.get();
    if last != secs {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, day) = civil_from_days(days);
        if !(0..=9999).contains(&y) {
            let s = format!(
                "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
                rem / 3600,
                rem / 60 % 60,
                rem % 60,
                d.subsec_micros()
            );
            out.extend_from_slice(s.as_bytes());
            return;
        }
        let mut put = |at: usize, width: usize, v: u64| put_digits(&mut b[at..at + width], v);
        put(0, 4, y as u64);
        put(5, 2, u64::from(m));
        put(8, 2, u64::from(day));
        put(11, 2, (rem / 3600) as u64);
        put(14, 2, (rem / 60 % 60) as u64);
        put(17, 2, (rem % 60) as u64);
    }
    put_digits(&mut b[20..26], u64::from(d.subsec_micros()));
    LAST.set((secs, b));
    out.extend_from_slice(&b);
}

/// `v` as decimal digits filling `out`, zero-padded.
fn put_digits(out: &mut [u8], mut v: u64) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 123_456_000);
        assert_eq!(rfc3339_utc(t), "2026-11-18T11:06:40.123456Z");
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339_utc(leap)[..10], "2000-02-29");
    }

    #[test]
    fn times_in_systemd_syntax() {
        let clock = BootClock::new();
        let now = BootClock::boot_ns_now();
        let near = |a: u64, b: u64| a.abs_diff(b) < 2_000_000_000;
        assert_eq!(parse_when("12.5", &clock), Some(12_500_000_000));
        assert!(near(parse_when("now", &clock).unwrap(), now));
        assert!(near(
            parse_when("-5min", &clock).unwrap(),
            now.saturating_sub(300_000_000_000)
        ));
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(near(parse_when(&format!("@{epoch}"), &clock).unwrap(), now));
        assert!(parse_when("today", &clock).unwrap() <= now);
        assert_eq!(
            parse_when("2001-01-01", &clock),
            Some(0),
            "before this boot"
        );
        assert!(parse_when("2001-01-01 10:00:30", &clock).is_some());
        assert_eq!(parse_when("soonish", &clock), None);
        assert_eq!(parse_when("2026-13", &clock), None);
    }

    #[test]
    fn sizes_and_spans_read_like_journalctl() {
        assert_eq!(parse_size("100M"), Some(100 << 20));
        assert_eq!(parse_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("inf"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_span("2weeks"), Some(Duration::from_secs(1_209_600)));
        assert_eq!(parse_span("1h 30min"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_span("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_span("3 fortnights"), None);
    }

    #[test]
    fn boot_clock_is_close_to_now() {
        let clock = BootClock::new();
        let wall = clock.wall(BootClock::boot_ns_now());
        let diff = match wall.duration_since(SystemTime::now()) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(diff < Duration::from_secs(1), "{diff:?}");
    }
}

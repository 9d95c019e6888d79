//! Boot-time timestamps (CLOCK_BOOTTIME, what the kernel programs record) to wall-clock time.

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
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
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

/// RFC 3339 UTC time with microseconds, `2026-11-26T14:03:07.123456Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
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

//! The daemon's own CPU time, memory and open files, under the names Prometheus's client
//! libraries give them (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`), read from /proc/self when scraped: nothing is read between
//! scrapes, and a read that fails leaves the last values.

use std::sync::{Arc, Mutex};

use prometheus::{
    Counter, IntGauge,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// The series, made once; [`Collector::collect`] brings them up to date.
#[derive(Clone)]
pub struct SelfProcess {
    cpu: Counter,
    resident: IntGauge,
    open_fds: IntGauge,
    ticks_per_sec: f64,
    page_bytes: i64,
    /// Held while the series are brought up to date: two scrapes at once would both add
    /// the CPU time since the last one.
    updating: Arc<Mutex<()>>,
}

impl SelfProcess {
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Self {
            cpu: Counter::new(
                "process_cpu_seconds_total",
                "User and system CPU time the daemon has used.",
            )
            .expect("valid metric"),
            resident: IntGauge::new(
                "process_resident_memory_bytes",
                "The daemon's resident set size.",
            )
            .expect("valid metric"),
            open_fds: IntGauge::new("process_open_fds", "File descriptors the daemon has open.")
                .expect("valid metric"),
            ticks_per_sec: ticks.max(1) as f64,
            page_bytes: page.max(1),
            updating: Arc::default(),
        }
    }

    /// Sets the series from /proc/self.
    fn update(&self) {
        let _one_at_a_time = self.updating.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((ticks, pages)) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(crate::procfs::parse_stat_usage)
        {
            let seconds = ticks as f64 / self.ticks_per_sec;
            let counted = self.cpu.get();
            if seconds > counted {
                self.cpu.inc_by(seconds - counted);
            }
            self.resident.set(
                i64::try_from(pages)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(self.page_bytes),
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            // (The directory being read holds one of them.)
            self.open_fds
                .set(fds.count().saturating_sub(1).try_into().unwrap_or(i64::MAX));
        }
    }
}

impl Collector for SelfProcess {
    fn desc(&self) -> Vec<&Desc> {
        [self.cpu.desc(), self.resident.desc(), self.open_fds.desc()].concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.update();
        [
            self.cpu.collect(),
            self.resident.collect(),
            self.open_fds.collect(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series of one family, by name.
    fn value(families: &[MetricFamily], name: &str) -> f64 {
        let f = families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} collected"));
        let m = &f.get_metric()[0];
        if name.ends_with("_total") {
            m.get_counter().get_value()
        } else {
            m.get_gauge().get_value()
        }
    }

    #[test]
    fn this_process_s_usage_is_collected() {
        let p = SelfProcess::new();
        let busy = std::time::Instant::now();
        let mut x = 0u64;
        while busy.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let first = p.collect();
        let cpu = value(&first, "process_cpu_seconds_total");
        assert!(cpu > 0.0, "{cpu}");
        let rss = value(&first, "process_resident_memory_bytes");
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        assert!(
            (rss / 1024.0 - kib).abs() < kib / 2.0,
            "{rss} bytes against VmRSS {kib} KiB"
        );
        // (Other tests' threads open and close files meanwhile: within a few.)
        let fds = value(&first, "process_open_fds");
        let files: Vec<_> = (0..64)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let more = value(&p.collect(), "process_open_fds");
        drop(files);
        assert!(
            (more - fds - 64.0).abs() <= 8.0,
            "{fds}, then {more} with 64 more open"
        );
        assert!(value(&p.collect(), "process_cpu_seconds_total") >= cpu);
    }
}

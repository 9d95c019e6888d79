//! systemd's notification protocol (Type=notify): readiness and status.

/// Tells systemd (Type=notify) how the service is doing; nothing without $NOTIFY_SOCKET.
pub fn sd_notify(msg: &str) {
    use std::os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    };
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|a| UnixDatagram::unbound()?.send_to_addr(msg.as_bytes(), &a));
    if let Err(e) = sent {
        tracing::warn!("telling systemd {msg:?} failed: {e}");
    }
}

/// systemd's watchdog (WatchdogSec=): `WATCHDOG=1` sent from the loop that reads the ring
/// buffer, at half the interval systemd asks for, so that a stalled loop is seen and the
/// daemon restarted.
pub struct Watchdog {
    every: std::time::Duration,
    last: Option<std::time::Instant>,
}

impl Watchdog {
    /// The watchdog systemd asks for in $WATCHDOG_USEC (for this process, when
    /// $WATCHDOG_PID names one), or None.
    pub fn from_env() -> Option<Self> {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self::asked(usec.as_deref(), pid.as_deref(), std::process::id())
    }

    fn asked(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Self> {
        if pid.is_some_and(|p| p.parse::<u32>().ok() != Some(me)) {
            return None;
        }
        let usec: u64 = usec?.parse().ok().filter(|&u| u > 0)?;
        Some(Self {
            every: std::time::Duration::from_micros(usec / 2),
            last: None,
        })
    }

    /// Tells systemd the loop is alive, when half its interval has passed.
    pub fn pet(&mut self) {
        let now = std::time::Instant::now();
        if self
            .last
            .is_none_or(|l| now.duration_since(l) >= self.every)
        {
            sd_notify("WATCHDOG=1");
            self.last = Some(now);
        }
    }
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The sockets systemd passed this process (socket activation: $LISTEN_FDS for
/// $LISTEN_PID, named by $LISTEN_FDNAMES), as (name, descriptor); the variables are then
/// removed, as sd_listen_fds(1) does.
pub fn listen_fds() -> Vec<(String, std::os::fd::OwnedFd)> {
    let vars = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"].map(|v| std::env::var(v).ok());
    let fds = passed(
        vars[0].as_deref(),
        vars[1].as_deref(),
        vars[2].as_deref(),
        std::process::id(),
    );
    // SAFETY: the daemon is single-threaded this early (no thread reads the environment).
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        unsafe { std::env::remove_var(v) };
    }
    fds.into_iter()
        .map(|(name, fd)| {
            use std::os::fd::FromRawFd as _;
            // SAFETY: systemd passed these descriptors to this process, and nothing else
            // in it has taken them.
            (name, unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
        })
        .collect()
}

/// The (name, fd) pairs the variables describe, for process `me`.
fn passed(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> Vec<(String, i32)> {
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(me) {
        return Vec::new();
    }
    let n: i32 = fds.and_then(|n| n.parse().ok()).unwrap_or(0).clamp(0, 64);
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    (0..n)
        .map(|i| {
            let name = names.get(i as usize).copied().unwrap_or("unknown");
            (name.to_owned(), LISTEN_FDS_START + i)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_sockets_are_this_process_s_and_named() {
        assert_eq!(
            passed(Some("7"), Some("2"), Some("metrics:other"), 7),
            [("metrics".to_owned(), 3), ("other".to_owned(), 4)]
        );
        assert_eq!(
            passed(Some("8"), Some("1"), None, 7),
            [],
            "another process's"
        );
        assert_eq!(passed(None, Some("1"), None, 7), []);
        assert_eq!(
            passed(Some("7"), Some("1"), None, 7),
            [("unknown".to_owned(), 3)]
        );
    }

    #[test]
    fn the_watchdog_is_kept_at_half_the_interval_for_this_process_only() {
        let w = Watchdog::asked(Some("30000000"), None, 7).unwrap();
        assert_eq!(w.every, std::time::Duration::from_secs(15));
        assert!(Watchdog::asked(Some("30000000"), Some("7"), 7).is_some());
        assert!(
            Watchdog::asked(Some("30000000"), Some("8"), 7).is_none(),
            "another's"
        );
        assert!(Watchdog::asked(None, None, 7).is_none());
        assert!(Watchdog::asked(Some("0"), None, 7).is_none());
        assert!(Watchdog::asked(Some("x"), None, 7).is_none());
    }
}
